//! The guest SDK for Switchboard plugins.
//!
//! A plugin is a WebAssembly component that implements some of Switchboard's hooks. With this
//! crate a plugin author writes ordinary Rust: implement [`Plugin`] (every hook defaults to
//! "continue" / "allow") in a block marked [`#[plugin]`](plugin), which derives
//! [`Plugin::HOOKS`] from the hook methods you wrote and exports the type. Build with
//! `cargo build --release --target wasm32-wasip2`.
//!
//! ```ignore
//! use switchboard_plugin_api::{plugin, Message, Plugin, PreSendOutcome};
//!
//! struct Shout;
//!
//! #[plugin]
//! impl Plugin for Shout {
//!     fn new() -> Self {
//!         Shout
//!     }
//!     fn message_pre_send(&self, msg: Message) -> PreSendOutcome {
//!         PreSendOutcome::modify(msg.body.to_uppercase(), msg.metadata)
//!     }
//! }
//! ```
//!
//! Without the attribute, set `const HOOKS` yourself and call [`export_plugin!`] once.
//! Natively (`cargo test`), the capabilities are served by the fake host of [`testing`].
//!
//! The host capabilities are wrapped in [`log`], [`config`], [`kv`], [`bot`], [`http`],
//! [`rooms`] and [`llm`] (the operator's language model, governed by the server). Each is
//! granted by the operator in the plugin's manifest; a call to one that was not granted
//! returns [`HostError::NotGranted`]. [`upload`] reads the file a `file_pre_upload` call is
//! about.
//!
//! This SDK builds against WIT `switchboard:plugin@0.3.0`. Plugins built with an older SDK
//! (0.1, 0.2) keep loading: the server speaks all three.

pub mod bot;
pub mod config;
pub mod http;
pub mod kv;
pub mod llm;
pub mod log;
mod outcome;
pub mod rooms;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod upload;

pub use outcome::{MetadataExt, meta_get, meta_set};
pub use switchboard_plugin_macros::plugin;

// `#[plugin]` expands to paths through `::switchboard_plugin_api`, which this crate's own
// tests must resolve too.
extern crate self as switchboard_plugin_api;

/// The generated bindings. Not part of the API: use the re-exports at the crate root. It is
/// public only because [`export_plugin!`] expands in the plugin's crate and must name it.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod __wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "::switchboard_plugin_api::__wit",
    });
}

pub use __wit::switchboard::plugin::types::{
    AuthOutcome, CommandCall, CommandOutcome, Credentials, Decision, Event, EventKind, FileInfo,
    FileReplacement, FileUploadOutcome, HookSet, HostError, Message, Metadata, Modification,
    PreSendOutcome, Rejection, Room, RoomKind, User,
};

/// A Switchboard plugin. Implement the hooks you need; the others keep their defaults, and
/// the host never calls a hook that is not in [`Plugin::HOOKS`].
///
/// One value of the type is created (with [`Plugin::new`]) per instance and reused for the
/// following calls: for the instance the server warms when it loads the plugin, at load time
/// (under the load budget, so the first message after a load or a settings change does not
/// pay for it); for instances added later, on their first hook call. The host may run several instances of a
/// plugin, and may replace an instance at any time (after a trap, or after many calls), so
/// keep durable state in [`kv`], not in `self`.
pub trait Plugin: 'static {
    /// The hooks this plugin implements, e.g.
    /// `HookSet::MESSAGE_PRE_SEND | HookSet::ON_LOGIN`.
    const HOOKS: HookSet;

    /// Create the plugin; a good place to read [`config`] once.
    fn new() -> Self;

    /// Before a message (or an edit) is stored: continue, modify or reject it.
    fn message_pre_send(&self, msg: Message) -> PreSendOutcome {
        let _ = msg;
        PreSendOutcome::Continue
    }

    /// After a message is stored and delivered. Observe only.
    fn message_delivered(&self, room: Room, event: Event) {
        let _ = (room, event);
    }

    /// After a user's credentials were checked, before a token is issued.
    fn on_login(&self, user: User) -> Decision {
        let _ = user;
        Decision::Allow
    }

    /// When a user opens a WebSocket session.
    fn on_connect(&self, user: User, session_id: String) -> Decision {
        let _ = (user, session_id);
        Decision::Allow
    }

    /// A `/name args` command this plugin registered (manifest `commands`). Answer with
    /// [`CommandOutcome::Reply`] (posted as the plugin's bot), [`CommandOutcome::PrivateReply`]
    /// (shown to the sender only) or [`CommandOutcome::Done`].
    fn command(&self, call: CommandCall) -> CommandOutcome {
        let _ = call;
        CommandOutcome::Done
    }

    /// A login with a method the server does not check itself (`api-key`, ...): answer
    /// [`AuthOutcome::Accept`] with an existing user's name, [`AuthOutcome::Reject`], or
    /// [`AuthOutcome::Defer`] (the default) to leave it to the next plugin.
    fn authenticate(&self, credentials: Credentials) -> AuthOutcome {
        let _ = credentials;
        AuthOutcome::Defer
    }

    /// Since 0.3: an uploaded file, before anyone can download or attach it. Read its bytes
    /// with [`upload`] (in chunks: never more than you need in memory), then allow, reject
    /// (the uploader sees the reason), replace the content, or quarantine it for review.
    fn file_pre_upload(&self, file: FileInfo) -> FileUploadOutcome {
        let _ = file;
        FileUploadOutcome::Allow
    }

    /// Since 0.3: before a room member downloads a file.
    fn file_pre_download(&self, file: FileInfo, downloader: User) -> Decision {
        let _ = (file, downloader);
        Decision::Allow
    }
}

/// Export a type implementing [`Plugin`] as the component's hooks. Call it exactly once, at
/// the root of the plugin crate.
///
/// Outside `wasm32` it expands to nothing, so a plugin crate also builds (and is linted and
/// unit-tested) natively.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            use $crate::__wit::exports::switchboard::plugin::hooks::Guest as __Guest;
            use $crate::Plugin as __Plugin;

            struct __SwitchboardExport;

            ::std::thread_local! {
                static __INSTANCE: ::std::cell::OnceCell<$ty> =
                    const { ::std::cell::OnceCell::new() };
            }

            fn __with<R>(f: impl FnOnce(&$ty) -> R) -> R {
                __INSTANCE.with(|cell| f(cell.get_or_init(<$ty as __Plugin>::new)))
            }

            impl __Guest for __SwitchboardExport {
                fn implemented_hooks() -> $crate::HookSet {
                    // The server asks this once per load, under its generous load budget:
                    // constructing the plugin here (parsing settings, compiling patterns)
                    // keeps that cost out of the first hook call's deadline.
                    __with(|_| <$ty as __Plugin>::HOOKS)
                }
                fn message_pre_send(msg: $crate::Message) -> $crate::PreSendOutcome {
                    __with(|p| p.message_pre_send(msg))
                }
                fn message_delivered(room: $crate::Room, event: $crate::Event) {
                    __with(|p| p.message_delivered(room, event))
                }
                fn on_login(user: $crate::User) -> $crate::Decision {
                    __with(|p| p.on_login(user))
                }
                fn on_connect(user: $crate::User, session_id: String) -> $crate::Decision {
                    __with(|p| p.on_connect(user, session_id))
                }
                fn command(call: $crate::CommandCall) -> $crate::CommandOutcome {
                    __with(|p| p.command(call))
                }
                fn authenticate(creds: $crate::Credentials) -> $crate::AuthOutcome {
                    __with(|p| p.authenticate(creds))
                }
                fn file_pre_upload(file: $crate::FileInfo) -> $crate::FileUploadOutcome {
                    __with(|p| p.file_pre_upload(file))
                }
                fn file_pre_download(
                    file: $crate::FileInfo,
                    downloader: $crate::User,
                ) -> $crate::Decision {
                    __with(|p| p.file_pre_download(file, downloader))
                }
            }

    $crate::__wit::__export_plugin_world!(__SwitchboardExport with_types_in $crate::__wit);
        };

        // Natively nothing is exported, but the type must still implement `Plugin`, and
        // naming its constructor keeps the plugin's code alive for the dead-code lint.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $ty = <$ty as $crate::Plugin>::new;
    };
}
