//! Cross-node fan-out. With one node there is no bus; with several, each node publishes the
//! events it commits to NATS once, and delivers what the others publish to its own sessions.
//!
//! The bus carries only *live delivery*. Storage is shared (PostgreSQL), so a node that misses
//! something on the bus — NATS down, a message dropped — loses nothing: its sessions fill any
//! hole from the store (see `api::ws`) and resuming clients read from the store anyway. That
//! is why publishing never blocks the commit path: a full outbound queue drops and counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::protocol::PresenceStatus;
use crate::store::{Event, RoomId, StoreResult, UserId};

/// What a node tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BusMessage {
    /// A committed room event.
    Event { origin: String, event: Box<Event> },
    /// A typing indicator or read receipt, already serialized for clients.
    Ephemeral {
        origin: String,
        room: RoomId,
        frame: String,
    },
    /// Sessions of a user that were revoked: close their connections.
    EndSessions {
        origin: String,
        user: UserId,
        sessions: Vec<String>,
    },
    /// Users' presence as the origin node sees it from its own sockets: a change as it
    /// happens (`offline`: the node has no socket of the user left), and every present user
    /// again at each heartbeat. What a node said expires after three heartbeats without
    /// news, so a node that dies takes its users' presence with it.
    Presence {
        origin: String,
        users: Vec<(UserId, PresenceStatus)>,
    },
    /// A user hid their presence (or showed it again).
    PresenceHidden {
        origin: String,
        user: UserId,
        hidden: bool,
    },
}

/// Where a node hands what the other nodes sent: its hub. A trait here (rather than the
/// hub's type) keeps the dependency one-way: the hub knows the bus, the bus knows only this.
#[async_trait::async_trait]
pub trait Inbound: Send + Sync + 'static {
    /// A room event another node committed.
    async fn remote_event(&self, event: &Event) -> StoreResult<()>;
    /// A typing indicator or read receipt from another node, already serialized.
    async fn remote_ephemeral(&self, room: RoomId, frame: Arc<str>) -> StoreResult<()>;
    /// Sessions another node ended: close their connections here.
    fn remote_end_sessions(&self, user: UserId, sessions: &[String]);
    /// Presence as another node sees it (see [`BusMessage::Presence`]).
    async fn remote_presence(&self, origin: &str, users: &[(UserId, PresenceStatus)]);
    /// A user hid or showed their presence through another node.
    async fn remote_presence_hidden(&self, user: UserId, hidden: bool);
}

/// The publishing side, as the hub sees it.
pub trait Bus: Send + Sync + 'static {
    /// Queue a message for the other nodes; never waits.
    fn publish(&self, message: BusMessage);
    /// This node's id (the `origin` of what it publishes).
    fn node_id(&self) -> &str;
    /// `connected`, or `disconnected` while NATS is unreachable.
    fn status(&self) -> &'static str;
}

/// NATS-backed bus.
pub struct NatsBus {
    node_id: String,
    outbound: mpsc::Sender<BusMessage>,
    connected: Arc<AtomicBool>,
    dropped: Counter,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connect (retrying in the background if NATS is not up yet), subscribe, and start the
    /// publisher and receiver tasks. What other nodes send goes to `inbound`.
    pub async fn start(
        config: &ClusterConfig,
        url: &str,
        inbound: Arc<dyn Inbound>,
        registry: &mut Registry,
    ) -> anyhow::Result<Arc<Self>> {
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| crate::ids::random_token(9));
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        // The same state for monitoring (alert on 0): `switchboard_bus_connected`.
        let connected_gauge: Gauge = Gauge::default();
        let gauge = connected_gauge.clone();
        let node = node_id.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("switchboard-{node_id}"))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let flag = flag.clone();
                let gauge = gauge.clone();
                let node = node.clone();
                async move {
                    match event {
                        // Log, then change the state readiness reports: whoever sees the
                        // new state finds the reason already in the log.
                        async_nats::Event::Connected => {
                            tracing::info!(node = %node, "cluster bus connected to NATS");
                            flag.store(true, Ordering::SeqCst);
                            gauge.set(1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(node = %node, "cluster bus lost NATS: cross-node live delivery degraded (clients still catch up from the store)");
                            flag.store(false, Ordering::SeqCst);
                            gauge.set(0);
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(url)
            .await?;
        let subject = format!("{}.v1.room", config.subject_prefix);
        let mut subscriber = client.subscribe(subject.clone()).await?;

        let dropped: Counter = Counter::default();
        let received: Counter = Counter::default();
        let sb = registry.sub_registry_with_prefix("switchboard_bus");
        sb.register(
            "dropped",
            "Bus messages dropped because the publish queue was full",
            dropped.clone(),
        );
        sb.register(
            "received",
            "Bus messages received from other nodes",
            received.clone(),
        );
        sb.register(
            "connected",
            "1 while this node is connected to NATS, 0 while cross-node delivery is degraded",
            connected_gauge,
        );

        let (outbound, mut queue) = mpsc::channel::<BusMessage>(config.publish_queue.max(1));
        let publisher = client.clone();
        let publish_subject = subject.clone();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let payload = match serde_json::to_vec(&message) {
                    Ok(payload) => Bytes::from(payload),
                    Err(_) => continue,
                };
                if let Err(err) = publisher.publish(publish_subject.clone(), payload).await {
                    tracing::warn!(error = %err, "publishing to NATS failed");
                }
            }
        });

        let me = node_id.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Ok(message) = serde_json::from_slice::<BusMessage>(&message.payload) else {
                    tracing::warn!("ignoring a malformed bus message");
                    continue;
                };
                match message {
                    BusMessage::Event { origin, event } if origin != me => {
                        received.inc();
                        if let Err(err) = inbound.remote_event(&event).await {
                            tracing::warn!(error = %err, "delivering a remote event failed");
                        }
                    }
                    BusMessage::Ephemeral {
                        origin,
                        room,
                        frame,
                    } if origin != me => {
                        received.inc();
                        if let Err(err) = inbound.remote_ephemeral(room, frame.into()).await {
                            tracing::warn!(error = %err, "delivering a remote frame failed");
                        }
                    }
                    BusMessage::EndSessions {
                        origin,
                        user,
                        sessions,
                    } if origin != me => {
                        received.inc();
                        inbound.remote_end_sessions(user, &sessions);
                    }
                    BusMessage::Presence { origin, users } if origin != me => {
                        received.inc();
                        inbound.remote_presence(&origin, &users).await;
                    }
                    BusMessage::PresenceHidden {
                        origin,
                        user,
                        hidden,
                    } if origin != me => {
                        received.inc();
                        inbound.remote_presence_hidden(user, hidden).await;
                    }
                    _ => {} // our own message, echoed back
                }
            }
        });
        Ok(Arc::new(Self {
            node_id,
            outbound,
            connected,
            dropped,
        }))
    }
}

impl Bus for NatsBus {
    fn publish(&self, message: BusMessage) {
        if self.outbound.try_send(message).is_err() {
            self.dropped.inc();
        }
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn status(&self) -> &'static str {
        if self.connected.load(Ordering::SeqCst) {
            "connected"
        } else {
            "disconnected"
        }
    }
}
