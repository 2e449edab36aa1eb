//! The WebSocket session: JSON frames in, acks and room events out.
//!
//! A session is two halves. The *reader* parses client frames one at a time and calls the
//! router, so one client's messages commit in the order it sent them. The *writer* owns the
//! socket's sending half and is the only place that decides what the client sees next: live
//! events from the hub, replies from the reader, catch-up after `sync`, heartbeats and the
//! close frame. Because one task orders everything, a client never sees a room's events out
//! of `seq` order, twice, or with a hole: the writer remembers the last `seq` it sent per
//! room, drops anything at or below it, and fetches from the store whatever lies between.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at, sleep_until, timeout};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppQuery, AppState, bearer_token, parse_json};
use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::hub::{CloseReason, ListenerKind, Outbound, SessionHandle};
use crate::protocol::{ClientFrame, ClientPresence, ServerFrame};
use crate::store::{Event, RoomId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WsQuery {
    /// The access token, for clients that cannot set `Authorization` on a WebSocket (browsers);
    /// the header wins when both are sent.
    token: Option<String>,
}

/// Open the real-time session: a WebSocket of JSON text frames.
///
/// Authenticate before upgrading, so a bad token is a plain `401` with our error body. The
/// access token comes as `Authorization: Bearer …` or as `?token=`; a request that is not a
/// WebSocket upgrade is refused with `400 websocket_required`. The server speaks first
/// (`hello`); the frames each way, heartbeats, close codes and resuming with `sync` are
/// described in docs/protocol.md.
#[utoipa::path(get, path = "/api/v1/ws", tag = "realtime", operation_id = "websocket",
    params(WsQuery),
    security(("bearer" = []), ()),
    responses((status = 101, description = "Switching Protocols: the connection is now a \
        WebSocket carrying JSON text frames (docs/protocol.md)")))]
async fn upgrade(
    State(state): State<AppState>,
    parts: Parts,
    AppQuery(query): AppQuery<WsQuery>,
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response> {
    let token = bearer_token(&parts)
        .map(str::to_string)
        .or(query.token)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "missing_token",
                "send the access token in `Authorization` or `?token=`",
            )
        })?;
    let caller = state.auth.authenticate(&token).await?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request("websocket_required", "this endpoint speaks WebSocket only")
    })?;
    state
        .accounts
        .may_connect(&caller.user, &caller.session_id)
        .await?;
    let limits = &state.config.limits;
    Ok(ws
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        // Bound what queues in the socket's own buffer too; past it, sending fails and the
        // session ends instead of growing.
        .max_write_buffer_size(4 * 1024 * 1024)
        // tungstenite reserves a 128 KiB read buffer per connection by default, which made
        // an idle connection cost ~137 KiB. Most frames are small; the buffer still grows
        // for a large one (up to `max_frame_bytes`).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| run_session(state, caller, socket)))
}

/// What the reader hands the writer.
#[derive(Debug)]
enum Control {
    /// A reply (ack, error, pong) to send as is.
    Reply(String),
    /// Catch up these rooms, then start live delivery.
    Sync {
        req: Option<String>,
        rooms: BTreeMap<RoomId, i64>,
    },
    /// The client spoke without asking to sync: start live delivery now.
    Start,
}

async fn run_session(state: AppState, caller: Caller, socket: WebSocket) {
    let limits = state.config.limits.clone();
    let (handle, outbound) = state.hub.register(
        ListenerKind::WebSocket,
        caller.user.id,
        caller.session_id.clone(),
        limits.ws_send_queue,
    );
    state.hub.presence_changed(caller.user.id);
    let (sink, stream) = socket.split();
    let (control_tx, control_rx) = mpsc::channel::<Control>(64);
    tracing::debug!(
        user = caller.user.id,
        conn = handle.conn_id,
        "websocket open"
    );

    let writer = Writer {
        state: state.clone(),
        handle: handle.clone(),
        sink,
        sent: HashMap::new(),
        live: false,
    };
    let mut writer_task = tokio::spawn(writer.run(outbound, control_rx));
    let reader = Reader {
        state: state.clone(),
        caller,
        handle: handle.clone(),
        control: control_tx,
    };

    let writer_done = tokio::select! {
        () = reader.run(stream) => false,
        _ = &mut writer_task => true,
        _ = handle.closed() => false,
    };
    // Whoever ended it, let the writer send its close frame (briefly), then stop it. (A
    // finished task's handle must not be polled again: tokio panics, and the session would
    // never be unregistered.)
    handle.close(CloseReason::Closed);
    if !writer_done
        && timeout(Duration::from_secs(2), &mut writer_task)
            .await
            .is_err()
    {
        writer_task.abort();
    }
    let reason = handle.reason().map_or("client", CloseReason::code);
    crate::metrics::Metrics::count(&state.metrics.ws_closed, reason);
    state.hub.unregister(&handle);
    state.hub.presence_changed(handle.user_id);
    tracing::debug!(conn = handle.conn_id, reason, "websocket closed");
}

struct Reader {
    state: AppState,
    caller: Caller,
    handle: Arc<SessionHandle>,
    control: mpsc::Sender<Control>,
}

impl Reader {
    async fn run(self, mut stream: SplitStream<WebSocket>) {
        let limits = &self.state.config.limits;
        let per_second =
            NonZeroU32::new(limits.ws_frames_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let frames: DefaultDirectRateLimiter = RateLimiter::direct(
            Quota::per_second(per_second)
                .allow_burst(per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
        );
        let idle = limits.ws_idle_timeout();
        let mut started = false;
        loop {
            let next = match timeout(idle, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    self.handle.close(CloseReason::Idle);
                    return;
                }
            };
            let message = match next {
                None => return,
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    // Oversized frames end here: tungstenite refuses them before we see them.
                    if is_capacity_error(&err) {
                        self.handle.close(CloseReason::FrameTooLarge);
                    }
                    tracing::debug!(error = %err, "websocket read failed");
                    return;
                }
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    self.reply_error(
                        None,
                        &ApiError::bad_request("unsupported_frame", "send JSON text frames"),
                    )
                    .await;
                    continue;
                }
                Message::Close(_) => return,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if frames.check().is_err() {
                let err = ApiError::TooManyRequests {
                    code: "rate_limited",
                    message: "too many frames per second on this connection".into(),
                    retry_after_ms: 1000,
                };
                self.reply_error(None, &err).await;
                continue;
            }
            let frame: ClientFrame = match parse_json(text.as_bytes()) {
                Ok(frame) => frame,
                Err(err) => {
                    self.reply_error(None, &err).await;
                    continue;
                }
            };
            if !started {
                started = true;
                if !matches!(frame, ClientFrame::Sync { .. })
                    && self.control.send(Control::Start).await.is_err()
                {
                    return;
                }
            }
            if self.handle_frame(frame).await.is_err() {
                return;
            }
        }
    }

    /// Act on one frame. `Err` only when the writer has gone.
    async fn handle_frame(&self, frame: ClientFrame) -> std::result::Result<(), ()> {
        let req = frame.req().map(str::to_string);
        let user = &self.caller.user;
        let router = &self.state.router;
        let hub = &self.state.hub;
        // Anything but a ping or a catch-up is the user doing something: present again.
        let active = match &frame {
            ClientFrame::Ping { .. } | ClientFrame::Sync { .. } => false,
            ClientFrame::Presence { status, .. } => {
                hub.presence_client_away(&self.handle, *status == ClientPresence::Away);
                true
            }
            _ => hub.presence_activity(&self.handle),
        };
        if active {
            hub.presence_changed(user.id);
        }
        let ack_frame = |ack: crate::protocol::Ack| {
            Some(
                ServerFrame::Ack {
                    req: req.as_deref(),
                    ack: &ack,
                }
                .to_json(),
            )
        };
        let outcome: Result<Option<String>> = match frame {
            ClientFrame::Send {
                room,
                client_msg_id,
                body,
                metadata,
                files,
                thread_root,
                also_to_room,
                ..
            } => async {
                let thread = crate::router::thread_reply(thread_root, also_to_room)?;
                router
                    .send_message_with_files(
                        user,
                        room,
                        client_msg_id,
                        body,
                        metadata,
                        files,
                        thread,
                        0,
                    )
                    .await
            }
            .await
            .map(ack_frame),
            ClientFrame::Edit {
                room,
                message,
                body,
                ..
            } => router
                .edit_message(user, room, message, body)
                .await
                .map(ack_frame),
            ClientFrame::Delete { room, message, .. } => router
                .delete_message(user, room, message)
                .await
                .map(ack_frame),
            ClientFrame::React {
                room,
                message,
                emoji,
                ..
            } => router
                .react(user, room, message, emoji)
                .await
                .map(ack_frame),
            ClientFrame::Unreact {
                room,
                message,
                emoji,
                ..
            } => router
                .unreact(user, room, message, emoji)
                .await
                .map(ack_frame),
            ClientFrame::Pin { room, message, .. } => {
                router.pin(user, room, message).await.map(ack_frame)
            }
            ClientFrame::Unpin { room, message, .. } => {
                router.unpin(user, room, message).await.map(ack_frame)
            }
            ClientFrame::Read { room, seq, .. } => {
                router.mark_read(user, room, seq).await.map(|_| None)
            }
            ClientFrame::Presence { .. } => Ok(None),
            ClientFrame::Typing { room, active, .. } => router
                .typing(user, room, active, self.handle.conn_id)
                .await
                .map(|()| None),
            ClientFrame::Ping { .. } => Ok(Some(
                ServerFrame::Pong {
                    req: req.as_deref(),
                }
                .to_json(),
            )),
            ClientFrame::Sync { rooms, .. }
                if rooms.len() > self.state.config.limits.max_sync_rooms =>
            {
                let max = self.state.config.limits.max_sync_rooms;
                Err(ApiError::bad_request(
                    "too_many_rooms",
                    format!("a sync frame may name at most {max} rooms; send several"),
                ))
            }
            ClientFrame::Sync { req, rooms } => {
                return self
                    .control
                    .send(Control::Sync { req, rooms })
                    .await
                    .map_err(|_| ());
            }
        };
        match outcome {
            Ok(Some(reply)) => self
                .control
                .send(Control::Reply(reply))
                .await
                .map_err(|_| ()),
            Ok(None) => Ok(()),
            Err(err) => {
                self.reply_error(req.as_deref(), &err).await;
                Ok(())
            }
        }
    }

    async fn reply_error(&self, req: Option<&str>, err: &ApiError) {
        err.log();
        crate::metrics::Metrics::count(&self.state.metrics.errors, err.code());
        let frame = ServerFrame::Error {
            req,
            error: &err.body(),
        }
        .to_json();
        let _ = self.control.send(Control::Reply(frame)).await;
    }
}

fn is_capacity_error(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
}

struct Writer {
    state: AppState,
    handle: Arc<SessionHandle>,
    sink: SplitSink<WebSocket, Message>,
    /// The last `seq` sent to this client, per room.
    sent: HashMap<RoomId, i64>,
    /// Whether live events flow yet (see `Control::Sync`).
    live: bool,
}

/// At most this many queued frames share one flush, so a socket that is never idle still
/// sees its frames leave promptly.
const MAX_FRAMES_PER_WRITE: usize = 64;

type SendResult = std::result::Result<(), ()>;

impl Writer {
    async fn run(
        mut self,
        mut outbound: mpsc::Receiver<Outbound>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let limits = self.state.config.limits.clone();
        let hello = ServerFrame::Hello {
            user: self.handle.user_id,
            session: &self.handle.session_id,
            heartbeat_secs: limits.ws_heartbeat_secs,
        }
        .to_json();
        if self.text(hello).await.is_err() {
            return;
        }
        let mut heartbeat = interval_at(
            Instant::now() + limits.ws_heartbeat(),
            limits.ws_heartbeat(),
        );
        let grace = sleep_until(Instant::now() + Duration::from_millis(limits.ws_sync_grace_ms));
        tokio::pin!(grace);
        // The session's liveness is re-read now and then: the safety net for an end-of-session
        // message from another node that the bus lost.
        let recheck_every = Duration::from_secs(limits.ws_session_recheck_secs.max(1));
        let mut recheck = interval_at(Instant::now() + recheck_every, recheck_every);
        // Steps since the socket was last flushed.
        let mut unflushed = 0usize;
        loop {
            let step = tokio::select! {
                biased;
                reason = self.handle.closed() => {
                    self.close(reason_frame(reason)).await;
                    return;
                }
                Some(item) = control.recv() => self.on_control(item).await,
                Some(item) = outbound.recv(), if self.live => self.on_outbound(item).await,
                () = &mut grace, if !self.live => {
                    self.live = true;
                    Ok(())
                }
                _ = heartbeat.tick() => self.sink.send(Message::Ping(bytes::Bytes::new())).await.map_err(|_| ()),
                _ = recheck.tick(), if limits.ws_session_recheck_secs > 0 => {
                    match self.state.auth.session_is_live(&self.handle.session_id).await {
                        Ok(false) => self.handle.close(CloseReason::SessionEnded),
                        Ok(true) => {}
                        Err(err) => err.log(), // the store is down: keep the socket
                    }
                    Ok(())
                }
            };
            if step.is_err() {
                return;
            }
            // Frames are fed into the socket's buffer; write them out once nothing more is
            // queued right now (or after a bounded run), so a burst of acks and events for
            // this socket costs one write, not one each.
            unflushed += 1;
            let more_queued = !control.is_empty() || (self.live && !outbound.is_empty());
            if !more_queued || unflushed >= MAX_FRAMES_PER_WRITE {
                unflushed = 0;
                if self.sink.flush().await.is_err() {
                    return;
                }
            }
        }
    }

    async fn on_control(&mut self, item: Control) -> SendResult {
        match item {
            Control::Reply(frame) => self.text(frame).await,
            Control::Start => {
                self.live = true;
                Ok(())
            }
            Control::Sync { req, rooms } => {
                self.sync(req.as_deref(), &rooms).await?;
                self.live = true;
                Ok(())
            }
        }
    }

    async fn on_outbound(&mut self, item: Outbound) -> SendResult {
        match item {
            Outbound::Ephemeral(frame) => self.text_shared(&frame).await,
            Outbound::Event {
                room,
                seq,
                frame,
                left,
            } => {
                if let Some(&last) = self.sent.get(&room) {
                    if seq <= last {
                        return Ok(()); // already sent (catch-up overlapped live delivery)
                    }
                    if seq > last + 1 {
                        // A hole (e.g. events committed on another node arrived out of
                        // order): fill it from the store before going on.
                        self.catch_up(
                            room,
                            last,
                            u32::try_from(seq - last - 1).unwrap_or(u32::MAX),
                        )
                        .await?;
                    }
                }
                self.text_shared(&frame).await?;
                self.sent.insert(room, seq);
                if left == Some(self.handle.user_id) {
                    // Left the room: forget it, so a later re-join does not "fill the gap"
                    // with events from while this user was not a member.
                    self.sent.remove(&room);
                }
                Ok(())
            }
        }
    }

    /// Send every event after the client's `last seq` per room, then `synced`.
    async fn sync(&mut self, req: Option<&str>, rooms: &BTreeMap<RoomId, i64>) -> SendResult {
        let max = self.state.config.limits.resume_max_events;
        let mut reached = BTreeMap::new();
        let mut truncated = Vec::new();
        for (&room, &after) in rooms {
            if let Err(err) = self
                .state
                .router
                .require_member(self.handle.user_id, room)
                .await
            {
                let frame = ServerFrame::Error {
                    req,
                    error: &err.body(),
                }
                .to_json();
                self.text(frame).await?;
                continue;
            }
            // Never go back before what this connection already sent live.
            let from = self.sent.get(&room).map_or(after, |&sent| sent.max(after));
            let sent_now = self.catch_up(room, from, max).await?;
            if sent_now >= max {
                truncated.push(room);
            }
            let mut last = self.sent.get(&room).copied().unwrap_or(from);
            if sent_now == 0 {
                // A cursor past the room's end would make every live event look already
                // sent: clamp it to the end, and tell the client where that is.
                let end = match self.state.router.last_seq(room).await {
                    Ok(end) => end,
                    Err(err) => {
                        err.log();
                        return Err(());
                    }
                };
                last = last.min(end).max(0);
            }
            self.sent.insert(room, last);
            reached.insert(room, last);
        }
        self.text(
            ServerFrame::Synced {
                req,
                rooms: &reached,
                truncated: &truncated,
            }
            .to_json(),
        )
        .await
    }

    /// Send up to `max` stored events of `room` after `after`, in order. Returns how many.
    async fn catch_up(
        &mut self,
        room: RoomId,
        after: i64,
        max: u32,
    ) -> std::result::Result<u32, ()> {
        const PAGE: u32 = 200;
        let mut cursor = after;
        let mut sent = 0;
        while sent < max {
            let want = PAGE.min(max - sent);
            let events: Vec<Event> = match self.state.router.events_after(room, cursor, want).await
            {
                Ok(events) => events,
                Err(err) => {
                    err.log();
                    return Err(());
                }
            };
            let got = u32::try_from(events.len()).unwrap_or(u32::MAX);
            for event in &events {
                self.text(ServerFrame::Event { event }.to_json()).await?;
                cursor = event.seq;
                self.sent.insert(room, event.seq);
            }
            sent += got;
            if got < want {
                break;
            }
        }
        Ok(sent)
    }

    /// Queue a frame in the socket's write buffer; the loop in [`Self::run`] flushes it.
    /// (A catch-up of many events writes whenever the buffer fills.)
    async fn text(&mut self, frame: String) -> SendResult {
        self.sink
            .feed(Message::Text(frame.into()))
            .await
            .map_err(|_| ())
    }

    async fn text_shared(&mut self, frame: &Arc<str>) -> SendResult {
        // One copy per recipient into the socket buffer is unavoidable with axum's API.
        self.sink
            .feed(Message::Text(Utf8Bytes::from(&**frame)))
            .await
            .map_err(|_| ())
    }

    async fn close(&mut self, frame: CloseFrame) {
        let _ = timeout(
            Duration::from_secs(1),
            self.sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

fn reason_frame(reason: CloseReason) -> CloseFrame {
    let code = match reason {
        CloseReason::Shutdown => 1001,
        CloseReason::SlowConsumer => 4008,
        CloseReason::Idle => 4002,
        CloseReason::SessionEnded => 4001,
        CloseReason::Closed => 1000,
        CloseReason::FrameTooLarge => 1009,
    };
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason.code()),
    }
}
