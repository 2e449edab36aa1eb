//! What every version of the plugin interface shares on the host side, written once:
//! linking, the hook calls and answers of the 0.1 hooks, the conversions of the server's
//! types into the interface's, and the `log`, `config` and `kv` imports.
//!
//! `since_v0_2` adds the calls and imports every version from 0.2 on shares. What a later
//! version adds to shared records and interfaces comes in as `extra_message_fields`,
//! `extra_event_fields` (named after the value they read, `|msg|`, `|event|`) and
//! `extra_bot_imports`.
//!
//! Each version's bindings (`bindings_v0_1`, `bindings_v0_2`, …) are distinct generated
//! types of the same shape, so this is a macro expanded inside each bindings module after
//! its `bindgen!`: a new interface version costs only its delta (new hooks as `extra_hooks`
//! and `extra_calls`, new imports, new error cases as `extra_errors`). `extra_calls` names
//! the hooks handle and the store (`|hooks, store|`) so its match arms can use them.

macro_rules! interface_glue {
    (
        extra_hooks: [$(($flag:ident, $hook:ident)),* $(,)?],
        extra_calls: |$hooks:ident, $store:ident| { $($extra_call:tt)* },
        extra_errors: { $($extra_error:tt)* },
        extra_message_fields: |$msg:ident| { $($extra_message_field:tt)* },
        extra_event_fields: |$event:ident| { $($extra_event_field:tt)* } $(,)?
    ) => {
        /// Add WASI (locked down by the store's context) and this version's host imports.
        pub(crate) fn add_to_linker(
            linker: &mut wasmtime::component::Linker<HostState>,
        ) -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
            Plugin::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
                linker,
                |state| state,
            )
        }

        /// The hooks the component says it implements.
        pub(crate) async fn implemented_hooks(
            bindings: &Plugin,
            store: &mut wasmtime::Store<HostState>,
        ) -> wasmtime::Result<Vec<HookKind>> {
            let set = bindings
                .switchboard_plugin_hooks()
                .call_implemented_hooks(store)
                .await?;
            Ok([
                (HookSet::MESSAGE_PRE_SEND, HookKind::MessagePreSend),
                (HookSet::MESSAGE_DELIVERED, HookKind::MessageDelivered),
                (HookSet::ON_LOGIN, HookKind::OnLogin),
                (HookSet::ON_CONNECT, HookKind::OnConnect),
                $((HookSet::$flag, HookKind::$hook),)*
            ]
            .into_iter()
            .filter(|(flag, _)| set.contains(*flag))
            .map(|(_, hook)| hook)
            .collect())
        }

        /// Make one hook call.
        pub(crate) async fn call(
            bindings: &Plugin,
            $store: &mut wasmtime::Store<HostState>,
            request: Request<'_>,
        ) -> wasmtime::Result<Response> {
            let $hooks = bindings.switchboard_plugin_hooks();
            Ok(match request {
                Request::PreSend {
                    msg: $msg,
                    body,
                    metadata,
                } => {
                    let input = Message {
                        room_id: $msg.room_id,
                        sender_id: $msg.sender_id,
                        sender_name: $msg.sender_name.clone(),
                        client_msg_id: $msg.client_msg_id.clone(),
                        editing: $msg.editing,
                        body: body.to_string(),
                        metadata: pairs(metadata),
                        $($extra_message_field)*
                    };
                    Response::PreSend(match $hooks.call_message_pre_send($store, &input).await? {
                        PreSendOutcome::Continue => PreSendAnswer::Continue,
                        PreSendOutcome::Modify(m) => PreSendAnswer::Modify {
                            body: m.body,
                            metadata: m.metadata,
                        },
                        PreSendOutcome::Reject(r) => PreSendAnswer::Reject {
                            code: r.code,
                            reason: r.reason,
                        },
                    })
                }
                Request::Delivered(room_, event_) => {
                    // An event this interface version has no kind for is not shown to it.
                    if let Some(event_) = event(event_) {
                        $hooks
                            .call_message_delivered($store, &room(room_), &event_)
                            .await?;
                    }
                    Response::Delivered
                }
                Request::Login(u) => decision($hooks.call_on_login($store, &user(u)).await?),
                Request::Connect(u, session) => {
                    decision($hooks.call_on_connect($store, &user(u), session).await?)
                }
                $($extra_call)*
            })
        }

        fn decision(d: Decision) -> Response {
            Response::Decision(match d {
                Decision::Allow => DecisionAnswer::Allow,
                Decision::Deny(reason) => DecisionAnswer::Deny(reason),
            })
        }

        impl From<CapError> for HostError {
            fn from(e: CapError) -> Self {
                match e {
                    CapError::NotGranted => Self::NotGranted,
                    CapError::TooLarge => Self::TooLarge,
                    CapError::QuotaExceeded => Self::QuotaExceeded,
                    CapError::InvalidArgument(m) => Self::InvalidArgument(m),
                    $($extra_error)*
                }
            }
        }

        impl switchboard::plugin::types::Host for HostState {}

        impl switchboard::plugin::log::Host for HostState {
            fn write(
                &mut self,
                level: switchboard::plugin::log::Level,
                message: String,
            ) -> Result<(), HostError> {
                use switchboard::plugin::log::Level;
                let level = match level {
                    Level::Trace => LogLevel::Trace,
                    Level::Debug => LogLevel::Debug,
                    Level::Info => LogLevel::Info,
                    Level::Warn => LogLevel::Warn,
                    Level::Error => LogLevel::Error,
                };
                Ok(self.log_write(level, message)?)
            }
        }

        impl switchboard::plugin::config::Host for HostState {
            fn get(&mut self, key: String) -> Result<Option<String>, HostError> {
                Ok(self.config_get(&key)?)
            }

            fn keys(&mut self) -> Result<Vec<String>, HostError> {
                Ok(self.config_keys()?)
            }
        }

        impl switchboard::plugin::kv::Host for HostState {
            fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, HostError> {
                Ok(self.kv_get(&key)?)
            }
            fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), HostError> {
                Ok(self.kv_set(key, value)?)
            }
            fn delete(&mut self, key: String) -> Result<bool, HostError> {
                Ok(self.kv_delete(&key)?)
            }
            fn keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, HostError> {
                Ok(self.kv_keys(&prefix, limit)?)
            }
            fn increment(&mut self, key: String, delta: i64) -> Result<i64, HostError> {
                Ok(self.kv_increment(key, delta)?)
            }
        }

        fn pairs(metadata: &store::Metadata) -> Vec<(String, String)> {
            metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }

        fn user(user: &store::User) -> User {
            User {
                id: user.id,
                name: user.name.clone(),
                display_name: user.display_name.clone(),
                is_admin: user.is_admin,
                is_bot: user.is_bot,
            }
        }

        fn room(room: &store::Room) -> Room {
            Room {
                id: room.id,
                kind: match room.kind {
                    store::RoomKind::Direct => RoomKind::Direct,
                    store::RoomKind::Group => RoomKind::Group,
                },
                name: room.name.clone(),
            }
        }

        /// The event as this version sees it; `None` for kinds it does not have (reactions
        /// and pins: no released version has them, and only messages are delivered).
        fn event($event: &store::Event) -> Option<Event> {
            Some(Event {
                id: $event.id,
                room_id: $event.room_id,
                seq: $event.seq,
                kind: match $event.kind {
                    store::EventKind::Message => EventKind::Message,
                    store::EventKind::Edit => EventKind::Edit,
                    store::EventKind::Delete => EventKind::Delete,
                    store::EventKind::MemberJoined => EventKind::MemberJoined,
                    store::EventKind::MemberLeft => EventKind::MemberLeft,
                    store::EventKind::Reaction
                    | store::EventKind::ReactionRemoved
                    | store::EventKind::Pinned
                    | store::EventKind::Unpinned => return None,
                },
                sender_id: $event.sender_id,
                target: $event.target,
                body: $event.body.clone(),
                metadata: pairs(&$event.metadata),
                created_at: $event.created_at,
                $($extra_event_field)*
            })
        }
    };
}

pub(super) use interface_glue;

/// What 0.2 added and every version since shares: the `command` and `authenticate` calls
/// and the `bot`, `http` and `rooms` imports.
macro_rules! since_v0_2 {
    (extra_bot_imports: { $($extra_bot_import:tt)* }) => {
        async fn command(
            hooks: &exports::switchboard::plugin::hooks::Guest,
            store: &mut wasmtime::Store<HostState>,
            c: &crate::router::hooks::CommandCall,
        ) -> wasmtime::Result<Response> {
            use super::call::CommandAnswer;
            use switchboard::plugin::types::{CommandCall, CommandOutcome};
            let input = CommandCall {
                name: c.name.clone(),
                args: c.args.clone(),
                room_id: c.room_id,
                sender: user(&c.sender),
            };
            Ok(Response::Command(
                match hooks.call_command(store, &input).await? {
                    CommandOutcome::Done => CommandAnswer::Done,
                    CommandOutcome::Reply(text) => CommandAnswer::Reply(text),
                    CommandOutcome::PrivateReply(text) => CommandAnswer::PrivateReply(text),
                },
            ))
        }

        async fn authenticate(
            hooks: &exports::switchboard::plugin::hooks::Guest,
            store: &mut wasmtime::Store<HostState>,
            a: &crate::router::hooks::AuthRequest,
        ) -> wasmtime::Result<Response> {
            use super::call::AuthAnswer;
            use switchboard::plugin::types::{AuthOutcome, Credentials};
            let input = Credentials {
                method: a.method.clone(),
                username: a.username.clone(),
                credential: a.credential.clone(),
            };
            Ok(Response::Auth(
                match hooks.call_authenticate(store, &input).await? {
                    AuthOutcome::Accept(name) => AuthAnswer::Accept(name),
                    AuthOutcome::Reject(reason) => AuthAnswer::Reject(reason),
                    AuthOutcome::Defer => AuthAnswer::Defer,
                },
            ))
        }

        impl switchboard::plugin::bot::Host for HostState {
            async fn post(&mut self, room_id: i64, body: String) -> Result<(), HostError> {
                Ok(self.bot_post(Some(room_id), None, body).await?)
            }
            async fn reply(&mut self, body: String) -> Result<(), HostError> {
                let room = self.call.room;
                Ok(self.bot_post(room, None, body).await?)
            }
            fn user_id(&mut self) -> Result<i64, HostError> {
                Ok(self.bot_user_id()?)
            }
            $($extra_bot_import)*
        }

        impl switchboard::plugin::http::Host for HostState {
            async fn send(
                &mut self,
                request: switchboard::plugin::http::Request,
            ) -> Result<switchboard::plugin::http::Response, HostError> {
                let response = self
                    .http_send(super::capabilities::http::HttpRequest {
                        method: request.method,
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                    })
                    .await?;
                Ok(switchboard::plugin::http::Response {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                })
            }
        }

        impl switchboard::plugin::rooms::Host for HostState {
            async fn info(
                &mut self,
                room_id: i64,
            ) -> Result<switchboard::plugin::rooms::RoomInfo, HostError> {
                let (rooms, started) = self.rooms()?;
                let result = rooms.info(room_id).await;
                self.settle(started);
                let (r, member_count) = result?;
                Ok(switchboard::plugin::rooms::RoomInfo {
                    room: room(&r),
                    topic: r.topic.clone(),
                    member_count,
                })
            }

            async fn members(
                &mut self,
                room_id: i64,
            ) -> Result<Vec<switchboard::plugin::rooms::Member>, HostError> {
                use switchboard::plugin::rooms::{Member, Role};
                let (rooms, started) = self.rooms()?;
                let result = rooms.members(room_id).await;
                self.settle(started);
                Ok(result?
                    .into_iter()
                    .map(|(u, m)| Member {
                        user: user(&u),
                        role: match m.role {
                            store::Role::Member => Role::Member,
                            store::Role::Admin => Role::Admin,
                            store::Role::Owner => Role::Owner,
                        },
                    })
                    .collect())
            }

            async fn display_name(&mut self, user_id: i64) -> Result<String, HostError> {
                let (rooms, started) = self.rooms()?;
                let result = rooms.display_name(user_id).await;
                self.settle(started);
                Ok(result?)
            }
        }
    };
}

pub(super) use since_v0_2;
