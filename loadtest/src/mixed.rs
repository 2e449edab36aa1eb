//! The `mixed` scenario: the loads a real deployment sees, all at once — steady one-to-one
//! chat, one large room fanning out, clients that drop and resume, and people scrolling
//! back through history — so a change that speeds one path at another's cost shows.
//!
//! Chat and fan-out senders are the ordinary [`member`](crate::scenarios::member) clients;
//! reconnecting clients check that every resume is exact (no gap, no duplicate), and
//! history readers page backwards over HTTP and time each page.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Api, User, open};
use crate::scenarios::{Measured, SendPlan, collect, member};
use crate::server::Server;
use crate::stats::{Clock, Percentiles, percentiles};

/// The shape of a mixed run.
#[derive(Debug, Clone, Copy)]
pub struct MixedPlan {
    /// One-to-one chat rooms (two senders each).
    pub chat_rooms: usize,
    /// Chat messages per second in total.
    pub chat_rate: u64,
    /// Members of the one large room, all online.
    pub fanout_members: usize,
    /// Messages per second into the large room (from 4 of its members).
    pub fanout_rate: u64,
    /// Further members of the large room that drop and resume, over and over.
    pub reconnectors: usize,
    /// How long a reconnecting client stays online between resumes.
    pub reconnect_every: Duration,
    /// Clients paging back through the large room's history over HTTP.
    pub readers: usize,
    pub duration: Duration,
}

/// What the reconnecting clients and history readers saw, beside the senders' tally.
#[derive(Debug)]
pub struct MixedExtras {
    pub resumes: u64,
    pub gaps: u64,
    pub duplicates: u64,
    /// Connect → `synced`, per resume.
    pub resume: Option<Percentiles>,
    pub history_pages: u64,
    pub history_errors: u64,
    pub history: Option<Percentiles>,
}

/// How many of the large room's members send into it.
const FANOUT_SENDERS: usize = 4;
/// Events per history page.
const HISTORY_PAGE: u32 = 50;

pub async fn mixed(
    server: Arc<Server>,
    api: &Api,
    plan: MixedPlan,
) -> anyhow::Result<(Measured, MixedExtras)> {
    // Setup through the public API: chat pairs, then the large room with its senders,
    // listeners, reconnecting clients and readers all as members.
    let chat_users = api.users("mixed-chat", plan.chat_rooms * 2).await?;
    let mut plans: Vec<(User, Option<SendPlan>)> = Vec::new();
    let chat_senders = u32::try_from(chat_users.len()).unwrap_or(u32::MAX).max(1);
    #[allow(clippy::cast_precision_loss)]
    let chat_interval =
        Duration::from_secs_f64(f64::from(chat_senders) / plan.chat_rate.max(1) as f64);
    for (r, pair) in chat_users.chunks(2).enumerate() {
        let ids: Vec<i64> = pair.iter().map(|u| u.id).collect();
        let room = api
            .group(&pair[0], &format!("mixed-chat-{r}"), &ids)
            .await?;
        for user in pair {
            plans.push((
                user.clone(),
                Some(SendPlan {
                    room,
                    interval: Some(chat_interval),
                    window: 16,
                    body_bytes: 128,
                }),
            ));
        }
    }
    let big_users = api
        .users(
            "mixed-big",
            plan.fanout_members.max(FANOUT_SENDERS) + plan.reconnectors + plan.readers,
        )
        .await?;
    let ids: Vec<i64> = big_users.iter().map(|u| u.id).collect();
    let big_room = api.group(&big_users[0], "mixed-big", &ids).await?;
    let (online, rest) = big_users.split_at(plan.fanout_members.max(FANOUT_SENDERS));
    let (reconnecting, readers) = rest.split_at(plan.reconnectors);
    #[allow(clippy::cast_precision_loss)]
    let fanout_interval =
        Duration::from_secs_f64(FANOUT_SENDERS as f64 / plan.fanout_rate.max(1) as f64);
    for (i, user) in online.iter().enumerate() {
        plans.push((
            user.clone(),
            (i < FANOUT_SENDERS).then_some(SendPlan {
                room: big_room,
                interval: Some(fanout_interval),
                window: 64,
                body_bytes: 64,
            }),
        ));
    }

    let clock = Arc::new(Clock::new());
    let connect_slack = Duration::from_secs(2) + Duration::from_millis(plans.len() as u64 * 2);
    let start = Instant::now() + connect_slack;
    let stop_at = start + plan.duration;
    let mut senders = JoinSet::new();
    for (user, send) in plans {
        let (server, clock) = (server.clone(), clock.clone());
        senders.spawn(async move {
            tokio::time::sleep_until(start.checked_sub(connect_slack / 2).unwrap_or(start)).await;
            member(
                server,
                user,
                send,
                clock,
                (start, stop_at),
                Duration::from_secs(10),
            )
            .await
        });
    }
    let mut resumers = JoinSet::new();
    for user in reconnecting {
        let (server, user) = (server.clone(), user.clone());
        resumers.spawn(async move {
            tokio::time::sleep_until(start).await;
            resume_loop(&server, &user, big_room, plan.reconnect_every, stop_at).await
        });
    }
    let mut pagers = JoinSet::new();
    for user in readers {
        let (http, base, user) = (api.http.clone(), api.base.clone(), user.clone());
        pagers.spawn(async move {
            tokio::time::sleep_until(start).await;
            read_history(&http, &base, &user, big_room, stop_at).await
        });
    }
    let watched = server.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start).await;
        let first = watched.sample();
        tokio::time::sleep_until(stop_at).await;
        first.zip(watched.sample())
    });

    let tally = collect(senders).await;
    let proc = sampler.await.ok().flatten();
    let mut resume = ResumeTally::default();
    while let Some(done) = resumers.join_next().await {
        match done {
            Ok(Ok(t)) => resume.merge(&t),
            Ok(Err(err)) => {
                eprintln!("reconnecting client failed: {err:#}");
                resume.errors += 1;
            }
            Err(err) => {
                eprintln!("reconnecting client panicked: {err}");
                resume.errors += 1;
            }
        }
    }
    let mut history = latency_histogram();
    let mut history_errors = 0;
    while let Some(done) = pagers.join_next().await {
        match done {
            Ok((h, errors)) => {
                let _ = history.add(&h);
                history_errors += errors;
            }
            Err(err) => {
                eprintln!("history reader panicked: {err}");
                history_errors += 1;
            }
        }
    }
    let extras = MixedExtras {
        resumes: resume.resumes,
        // A client that failed outright cannot vouch for its resumes: count it as a gap.
        gaps: resume.gaps + resume.errors,
        duplicates: resume.duplicates,
        resume: percentiles(&resume.latency_us),
        history_pages: history.len(),
        history_errors,
        history: percentiles(&history),
    };
    Ok(((tally, plan.duration, proc), extras))
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000)
}

#[derive(Debug)]
struct ResumeTally {
    resumes: u64,
    gaps: u64,
    duplicates: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

impl Default for ResumeTally {
    fn default() -> Self {
        Self {
            resumes: 0,
            gaps: 0,
            duplicates: 0,
            errors: 0,
            latency_us: latency_histogram(),
        }
    }
}

impl ResumeTally {
    fn merge(&mut self, other: &Self) {
        self.resumes += other.resumes;
        self.gaps += other.gaps;
        self.duplicates += other.duplicates;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Check one event's `seq` against the last one seen in the room.
    fn saw(&mut self, last: &mut i64, seq: i64) {
        if seq <= *last {
            self.duplicates += 1;
        } else {
            if seq != *last + 1 {
                self.gaps += 1;
            }
            *last = seq;
        }
    }
}

/// Connect, resume the room from the last `seq` seen, stay live for `online`, drop the
/// connection without a goodbye, and again, until `stop_at`. Every event must follow the
/// previous one exactly, across all the resumes.
async fn resume_loop(
    server: &Server,
    user: &User,
    room: i64,
    online: Duration,
    stop_at: Instant,
) -> anyhow::Result<ResumeTally> {
    let mut tally = ResumeTally::default();
    let mut last = 0i64;
    while Instant::now() < stop_at {
        let began = Instant::now();
        let (mut sink, mut stream) = open(server, user).await?;
        let sync = json!({ "type": "sync", "rooms": { room.to_string(): last } });
        sink.send(Message::Text(sync.to_string().into())).await?;
        let leave_at = (Instant::now() + online).min(stop_at);
        let mut synced = false;
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = tokio::time::sleep_until(leave_at), if synced => break,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.into()),
                None => anyhow::bail!("the server closed a resuming connection"),
            };
            let frame: Value = serde_json::from_str(&text)?;
            match frame["type"].as_str() {
                Some("event") if frame["room_id"].as_i64() == Some(room) => {
                    tally.saw(&mut last, frame["seq"].as_i64().unwrap_or(-1));
                }
                Some("synced") if !synced => {
                    synced = true;
                    tally.resumes += 1;
                    let _ = tally.latency_us.record(micros(began.elapsed()));
                }
                _ => {}
            }
        }
        // Dropping both halves ends the TCP connection without a close frame, as a phone
        // losing its network would.
        drop((sink, stream));
    }
    Ok(tally)
}

/// Page backwards through the room's history from the newest event, over and over, until
/// `stop_at`; return the page latencies and how many pages failed.
async fn read_history(
    http: &reqwest::Client,
    base: &str,
    user: &User,
    room: i64,
    stop_at: Instant,
) -> (Histogram<u64>, u64) {
    let mut latencies = latency_histogram();
    let mut errors = 0;
    let mut before: Option<i64> = None;
    while Instant::now() < stop_at {
        let began = Instant::now();
        let mut query = vec![("limit", i64::from(HISTORY_PAGE))];
        if let Some(b) = before {
            query.push(("before", b));
        }
        let page: anyhow::Result<Value> = async {
            Ok(http
                .get(format!("{base}/api/v1/rooms/{room}/messages"))
                .query(&query)
                .bearer_auth(&user.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?)
        }
        .await;
        match page {
            Ok(page) => {
                let _ = latencies.record(micros(began.elapsed()));
                let oldest = page["events"]
                    .as_array()
                    .and_then(|events| events.first())
                    .and_then(|event| event["seq"].as_i64());
                // At the start of the log, begin again from the newest event.
                before = oldest.filter(|_| page["has_more"] == true);
            }
            Err(err) => {
                errors += 1;
                eprintln!("history page failed: {err:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (latencies, errors)
}
