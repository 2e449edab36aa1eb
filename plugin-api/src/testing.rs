//! A stand-in for the server, so a plugin's hooks run in `cargo test` unchanged.
//!
//! Natively (any target but `wasm32`) every host capability of the SDK ([`config`](crate::config),
//! [`kv`](crate::kv), [`log`](crate::log), [`bot`](crate::bot), [`http`](crate::http),
//! [`rooms`](crate::rooms), [`upload`](crate::upload), [`llm`](crate::llm)) is served by a
//! [`FakeHost`] kept per thread; each `#[test]` runs on its own thread, so tests do not see
//! each other's state.
//! Set it up, call your plugin's hooks, then look at what they did:
//!
//! ```ignore
//! use switchboard_plugin_api::{testing, Plugin, PreSendOutcome};
//!
//! #[test]
//! fn blocks_the_configured_word() {
//!     testing::reset();
//!     testing::set_config("block", "secret");
//!     let plugin = MyPlugin::new(); // reads config as on the server
//!     let outcome = plugin.message_pre_send(testing::message("a secret plan"));
//!     assert!(matches!(outcome, PreSendOutcome::Reject(_)));
//!     assert_eq!(testing::logs().len(), 1);
//! }
//! ```
//!
//! Capabilities count as granted unless [`deny`] says otherwise; a denied one answers
//! [`HostError::NotGranted`] as the server does for a capability the manifest lacks. The
//! fake does not enforce the server's limits (sizes, quotas, rate limits): test those
//! against a real server (`switchboard plugin test`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::http::{Request, Response};
use crate::llm::{self, Completion, Delivery};
use crate::log::Level;
use crate::rooms::{Member, RoomInfo};
use crate::{HostError, Message, User};

/// What the fake server holds and what the plugin did to it.
#[derive(Default)]
pub struct FakeHost {
    /// The manifest's `[settings]` (an array setting is its entries joined by newlines).
    pub settings: BTreeMap<String, String>,
    /// The plugin's `kv` namespace.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Every line logged, in order.
    pub logs: Vec<(Level, String)>,
    /// Every bot post: the room (`None` for `bot::reply`) and the body.
    pub posts: Vec<(Option<i64>, String)>,
    /// `(room, root, body)` of each `bot::reply_in_thread` (also listed in `posts`).
    pub thread_replies: Vec<(i64, i64, String)>,
    /// `(room, message, emoji)` of each `bot::react`.
    pub reactions: Vec<(i64, i64, String)>,
    /// The bot's user id (`bot::user_id`).
    pub bot_user_id: i64,
    /// Every HTTP request sent, in order.
    pub requests: Vec<Request>,
    /// Answers HTTP requests; without one, `http` answers `unavailable`.
    #[allow(clippy::type_complexity)]
    pub http: Option<Box<dyn FnMut(&Request) -> Result<Response, HostError>>>,
    /// What `rooms::info` / `rooms::members` answer, per room id.
    pub rooms: HashMap<i64, (RoomInfo, Vec<Member>)>,
    /// What `rooms::display_name` answers, per user id.
    pub display_names: HashMap<i64, String>,
    /// The bytes `upload::read` serves (the file of a `file_pre_upload` call).
    pub upload: Vec<u8>,
    /// Every request of `llm::complete`, in order.
    pub llm_requests: Vec<llm::Request>,
    /// Answers `llm::complete`; without one, it answers `unavailable`.
    #[allow(clippy::type_complexity)]
    pub llm: Option<Box<dyn FnMut(&llm::Request) -> Result<Completion, HostError>>>,
    /// `(request, delivery, preface)` of each `llm::answer` the fake accepted.
    pub answers: Vec<(llm::Request, Delivery, Option<String>)>,
    /// `(code, approve)` of each `llm::decide` the fake accepted.
    pub decisions: Vec<(String, bool)>,
    /// When set, every `llm` call fails with it (a spent budget, a DLP block, ...).
    pub llm_error: Option<HostError>,
    /// Capabilities answered with `not-granted` (`"kv"`, `"http"`, ...).
    pub denied: BTreeSet<String>,
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// Set up or inspect this thread's fake host.
pub fn with_host<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Start from an empty fake host (no settings, empty kv, nothing logged or posted).
pub fn reset() {
    with_host(|host| *host = FakeHost::default());
}

/// Set one setting, as the manifest's `[settings]` would.
pub fn set_config(key: &str, value: &str) {
    with_host(|host| host.settings.insert(key.to_string(), value.to_string()));
}

/// Answer calls to `capability` with `not-granted`.
pub fn deny(capability: &str) {
    with_host(|host| host.denied.insert(capability.to_string()));
}

/// The lines logged so far.
pub fn logs() -> Vec<(Level, String)> {
    with_host(|host| host.logs.clone())
}

/// The bot posts so far.
pub fn posts() -> Vec<(Option<i64>, String)> {
    with_host(|host| host.posts.clone())
}

/// The bot's replies in threads so far: `(room, root, body)`.
pub fn thread_replies() -> Vec<(i64, i64, String)> {
    with_host(|host| host.thread_replies.clone())
}

/// `(room, message, emoji)` of each `bot::react` so far.
pub fn reactions() -> Vec<(i64, i64, String)> {
    with_host(|host| host.reactions.clone())
}

/// Answer every HTTP request with `respond`.
pub fn on_http(respond: impl FnMut(&Request) -> Result<Response, HostError> + 'static) {
    with_host(|host| host.http = Some(Box::new(respond)));
}

/// Answer every `llm::complete` with `respond`.
pub fn on_llm(respond: impl FnMut(&llm::Request) -> Result<Completion, HostError> + 'static) {
    with_host(|host| host.llm = Some(Box::new(respond)));
}

/// Make every `llm` call fail with `error`, as the server does when the person's budget is
/// spent or its policy refuses the prompt (`Denied`, with the reason), or when too many
/// answers are queued (`QuotaExceeded`).
pub fn fail_llm(error: HostError) {
    with_host(|host| host.llm_error = Some(error));
}

/// `(request, delivery, preface)` of each accepted `llm::answer` so far.
pub fn answers() -> Vec<(llm::Request, Delivery, Option<String>)> {
    with_host(|host| host.answers.clone())
}

/// `(code, approve)` of each accepted `llm::decide` so far.
pub fn decisions() -> Vec<(String, bool)> {
    with_host(|host| host.decisions.clone())
}

/// A message from user 2 (`alice`) in room 1, as `message_pre_send` receives it; change
/// the fields you care about.
pub fn message(body: &str) -> Message {
    Message {
        room_id: 1,
        sender_id: 2,
        sender_name: "alice".into(),
        client_msg_id: "test-1".into(),
        editing: None,
        body: body.into(),
        metadata: Vec::new(),
        thread_root: None,
    }
}

/// A user that is neither an admin nor a bot.
pub fn user(id: i64, name: &str) -> User {
    User {
        id,
        name: name.into(),
        display_name: name.into(),
        is_admin: false,
        is_bot: false,
    }
}

/// The host functions the SDK calls natively, with the generated bindings' signatures.
pub(crate) mod fake {
    use super::*;

    fn granted(capability: &str) -> Result<(), HostError> {
        if with_host(|host| host.denied.contains(capability)) {
            Err(HostError::NotGranted)
        } else {
            Ok(())
        }
    }

    pub(crate) mod config {
        use super::*;
        pub(crate) fn get(key: &str) -> Result<Option<String>, HostError> {
            granted("config")?;
            Ok(with_host(|host| host.settings.get(key).cloned()))
        }
        pub(crate) fn keys() -> Result<Vec<String>, HostError> {
            granted("config")?;
            Ok(with_host(|host| host.settings.keys().cloned().collect()))
        }
    }

    pub(crate) mod log {
        use super::*;
        pub(crate) fn write(level: Level, message: &str) -> Result<(), HostError> {
            granted("log")?;
            with_host(|host| host.logs.push((level, message.to_string())));
            Ok(())
        }
    }

    pub(crate) mod kv {
        use super::*;
        fn key_ok(key: &str) -> Result<(), HostError> {
            granted("kv")?;
            if key.is_empty() {
                return Err(HostError::InvalidArgument("empty key".into()));
            }
            Ok(())
        }
        pub(crate) fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
            key_ok(key)?;
            Ok(with_host(|host| host.kv.get(key).cloned()))
        }
        pub(crate) fn set(key: &str, value: &[u8]) -> Result<(), HostError> {
            key_ok(key)?;
            with_host(|host| host.kv.insert(key.to_string(), value.to_vec()));
            Ok(())
        }
        pub(crate) fn delete(key: &str) -> Result<bool, HostError> {
            key_ok(key)?;
            Ok(with_host(|host| host.kv.remove(key).is_some()))
        }
        pub(crate) fn keys(prefix: &str, limit: u32) -> Result<Vec<String>, HostError> {
            granted("kv")?;
            Ok(with_host(|host| {
                host.kv
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .take(limit as usize)
                    .cloned()
                    .collect()
            }))
        }
        pub(crate) fn increment(key: &str, delta: i64) -> Result<i64, HostError> {
            key_ok(key)?;
            with_host(|host| {
                let current = match host.kv.get(key) {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| {
                            HostError::InvalidArgument("the value is not a decimal counter".into())
                        })?,
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    HostError::InvalidArgument("the counter would overflow".into())
                })?;
                host.kv
                    .insert(key.to_string(), next.to_string().into_bytes());
                Ok(next)
            })
        }
    }

    pub(crate) mod bot {
        use super::*;
        pub(crate) fn post(room_id: i64, body: &str) -> Result<(), HostError> {
            granted("bot")?;
            with_host(|host| host.posts.push((Some(room_id), body.to_string())));
            Ok(())
        }
        pub(crate) fn reply(body: &str) -> Result<(), HostError> {
            granted("bot")?;
            with_host(|host| host.posts.push((None, body.to_string())));
            Ok(())
        }
        pub(crate) fn reply_in_thread(
            room_id: i64,
            root_id: i64,
            body: &str,
        ) -> Result<(), HostError> {
            granted("bot")?;
            with_host(|host| {
                host.posts.push((Some(room_id), body.to_string()));
                host.thread_replies
                    .push((room_id, root_id, body.to_string()));
            });
            Ok(())
        }
        pub(crate) fn react(room_id: i64, message_id: i64, emoji: &str) -> Result<(), HostError> {
            granted("bot")?;
            with_host(|host| {
                host.reactions
                    .push((room_id, message_id, emoji.to_string()));
            });
            Ok(())
        }
        pub(crate) fn user_id() -> Result<i64, HostError> {
            granted("bot")?;
            Ok(with_host(|host| host.bot_user_id))
        }
    }

    pub(crate) mod http {
        use super::*;
        pub(crate) fn send(request: &Request) -> Result<Response, HostError> {
            granted("http")?;
            // The responder is taken out while it runs, so it may itself use the fake host.
            let mut respond = with_host(|host| {
                host.requests.push(request.clone());
                host.http.take()
            })
            .ok_or_else(|| HostError::Unavailable("no testing::on_http responder".into()))?;
            let response = respond(request);
            with_host(|host| host.http = Some(respond));
            response
        }
    }

    pub(crate) mod rooms {
        use super::*;
        fn room(room_id: i64) -> Result<(RoomInfo, Vec<Member>), HostError> {
            granted("rooms")?;
            with_host(|host| host.rooms.get(&room_id).cloned())
                .ok_or_else(|| HostError::InvalidArgument(format!("no room {room_id}")))
        }
        pub(crate) fn info(room_id: i64) -> Result<RoomInfo, HostError> {
            Ok(room(room_id)?.0)
        }
        pub(crate) fn members(room_id: i64) -> Result<Vec<Member>, HostError> {
            Ok(room(room_id)?.1)
        }
        pub(crate) fn display_name(user_id: i64) -> Result<String, HostError> {
            granted("rooms")?;
            with_host(|host| host.display_names.get(&user_id).cloned())
                .ok_or_else(|| HostError::InvalidArgument(format!("no user {user_id}")))
        }
    }

    pub(crate) mod llm {
        use super::*;
        use crate::llm::Request;
        fn allowed() -> Result<(), HostError> {
            granted("llm")?;
            match with_host(|host| host.llm_error.clone()) {
                Some(error) => Err(error),
                None => Ok(()),
            }
        }
        pub(crate) fn complete(request: &Request) -> Result<Completion, HostError> {
            allowed()?;
            // The responder is taken out while it runs, so it may itself use the fake host.
            let mut respond = with_host(|host| {
                host.llm_requests.push(request.clone());
                host.llm.take()
            })
            .ok_or_else(|| HostError::Unavailable("no testing::on_llm responder".into()))?;
            let completion = respond(request);
            with_host(|host| host.llm = Some(respond));
            completion
        }
        pub(crate) fn answer(
            request: &Request,
            delivery: Delivery,
            preface: Option<&str>,
        ) -> Result<(), HostError> {
            // As on the server: the answer is delivered by the plugin's bot, so it needs `bot`.
            if granted("bot").is_err() {
                let rule = "llm.answer posts as the plugin's bot: grant `bot` too";
                return Err(HostError::Denied(rule.into()));
            }
            allowed()?;
            with_host(|host| {
                host.answers
                    .push((request.clone(), delivery, preface.map(str::to_string)));
            });
            Ok(())
        }
        pub(crate) fn decide(code: &str, approve: bool) -> Result<(), HostError> {
            allowed()?;
            if code.is_empty() {
                return Err(HostError::InvalidArgument("unknown approval code".into()));
            }
            with_host(|host| host.decisions.push((code.to_string(), approve)));
            Ok(())
        }
    }

    pub(crate) mod upload {
        use super::*;
        pub(crate) fn read(offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
            if len > crate::upload::MAX_READ {
                return Err(HostError::TooLarge);
            }
            Ok(with_host(|host| {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(host.upload.len());
                let end = start.saturating_add(len as usize).min(host.upload.len());
                host.upload[start..end].to_vec()
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{bot, config, http, kv, log, upload};
    use std::io::Read as _;

    #[test]
    fn capabilities_are_served_natively_and_recorded() {
        reset();
        set_config("block", "a\nb");
        assert_eq!(config::list("block"), ["a", "b"]);
        assert_eq!(config::get("missing").unwrap(), None);

        kv::set("n", b"41").unwrap();
        assert_eq!(kv::increment("n", 1).unwrap(), 42);
        assert_eq!(kv::get_string("n").unwrap().as_deref(), Some("42"));
        assert!(kv::delete("n").unwrap());
        assert!(matches!(kv::get(""), Err(HostError::InvalidArgument(_))));

        crate::info!("blocked {} of {}", 1, 2);
        assert_eq!(logs().len(), 1);
        assert_eq!(logs()[0].1, "blocked 1 of 2");
        assert!(matches!(logs()[0].0, log::Level::Info));

        bot::post(7, "hi").unwrap();
        bot::reply("there").unwrap();
        assert_eq!(posts(), [(Some(7), "hi".into()), (None, "there".into())]);

        assert!(matches!(
            http::get("https://x.test/"),
            Err(HostError::Unavailable(_))
        ));
        on_http(|request| {
            Ok(Response {
                status: 200,
                headers: Vec::new(),
                body: request.url.as_bytes().to_vec(),
            })
        });
        let response = http::get("https://x.test/a").unwrap();
        assert_eq!(response.body, b"https://x.test/a");
        assert_eq!(with_host(|host| host.requests.len()), 2);

        with_host(|host| host.upload = b"0123456789".to_vec());
        let mut file = String::new();
        upload::Upload::with_chunk(10, 3)
            .read_to_string(&mut file)
            .unwrap();
        assert_eq!(file, "0123456789");
    }

    struct Derived;

    #[crate::plugin]
    impl crate::Plugin for Derived {
        fn new() -> Self {
            Derived
        }
        fn message_pre_send(&self, _msg: Message) -> crate::PreSendOutcome {
            crate::PreSendOutcome::Continue
        }
        fn on_login(&self, _user: User) -> crate::Decision {
            crate::Decision::Allow
        }
    }

    #[test]
    fn the_plugin_attribute_derives_the_hooks_from_the_methods() {
        use crate::{HookSet, Plugin as _};
        assert_eq!(
            Derived::HOOKS,
            HookSet::MESSAGE_PRE_SEND | HookSet::ON_LOGIN
        );
        let _ = Derived::new().message_pre_send(message("x"));
    }

    #[test]
    fn metadata_reads_and_writes_like_a_map() {
        use crate::MetadataExt as _;
        let mut msg = message("hi");
        msg.metadata.set_value("a", "1");
        msg.metadata.set_value("b", "2");
        msg.metadata.set_value("a", "3");
        assert_eq!(
            msg.metadata,
            [("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(msg.metadata.get_value("b"), Some("2"));
        assert_eq!(msg.metadata.remove_value("a").as_deref(), Some("3"));
        assert_eq!(msg.metadata.get_value("a"), None);
    }

    #[test]
    fn llm_calls_are_recorded_and_can_fail() {
        use crate::llm::{ChatMessage, ContextSource};
        reset();
        let request = llm::Request {
            messages: vec![ChatMessage::user("hi")],
            context: vec![ContextSource::room(1, 20)],
            max_tokens: None,
            tools: false,
        };
        assert!(matches!(
            llm::complete(&request),
            Err(HostError::Unavailable(_))
        ));
        on_llm(|request| {
            Ok(Completion {
                text: request.messages[0].content.to_uppercase(),
                tokens_in: 1,
                tokens_out: 1,
            })
        });
        assert_eq!(llm::complete(&request).unwrap().text, "HI");
        llm::answer(&request, &Delivery::Thread(5), Some("q")).unwrap();
        llm::decide("ab12", true).unwrap();
        assert!(matches!(answers()[0].1, Delivery::Thread(5)));
        assert_eq!(answers()[0].2.as_deref(), Some("q"));
        assert_eq!(decisions(), [("ab12".to_string(), true)]);

        fail_llm(HostError::QuotaExceeded);
        assert!(matches!(
            llm::answer(&request, &Delivery::Private, None),
            Err(HostError::QuotaExceeded)
        ));
        deny("bot");
        assert!(matches!(
            llm::answer(&request, &Delivery::Private, None),
            Err(HostError::Denied(_))
        ));
        assert_eq!(answers().len(), 1);
    }

    #[test]
    fn a_denied_capability_answers_not_granted() {
        reset();
        deny("kv");
        assert!(matches!(kv::set("k", b"v"), Err(HostError::NotGranted)));
        assert!(config::keys().unwrap().is_empty(), "others stay granted");
    }
}
