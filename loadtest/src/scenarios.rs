//! The load scenarios. Each client is a real WebSocket connection on loopback; each run is
//! bounded in time and count and stops by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Api, User, connect};
use crate::server::{ProcSample, Server};
use crate::stats::{Clock, Tally};

/// How one connection sends.
#[derive(Debug, Clone, Copy)]
pub struct SendPlan {
    pub room: i64,
    /// Time between sends; `None` = as fast as the window allows.
    pub interval: Option<Duration>,
    /// Sends in flight (unacked) at most.
    pub window: usize,
    pub body_bytes: usize,
}

/// Drive one connection: connect, wait for `window.0` (so every client is online and only
/// the measured window's sends are counted), send per `plan` until `window.1`, count acks
/// and deliveries, then drain (wait for outstanding acks and in-flight deliveries) for at
/// most `drain`.
pub async fn member(
    server: Arc<Server>,
    user: User,
    plan: Option<SendPlan>,
    clock: Arc<Clock>,
    (start, stop_at): (Instant, Instant),
    drain: Duration,
) -> anyhow::Result<Tally> {
    let (mut sink, mut stream) = connect(&server, &user).await?;
    tokio::time::sleep_until(start).await;
    let mut tally = Tally::default();
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    let mut next_id = 0u64;
    let mut ticker = plan.and_then(|p| p.interval).map(|every| {
        // Spread the senders' phases over one interval, so a fixed rate is a steady stream
        // rather than every connection firing in the same instant.
        #[allow(clippy::cast_precision_loss)]
        let phase = every.mul_f64((user.id.rem_euclid(97)) as f64 / 97.0);
        let mut t = tokio::time::interval_at(Instant::now() + phase, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let padding = plan
        .map(|p| "x".repeat(p.body_bytes.saturating_sub(24)))
        .unwrap_or_default();
    let hard_stop = stop_at + drain;
    loop {
        let sending = plan.is_some() && Instant::now() < stop_at;
        if !sending && in_flight.is_empty() && Instant::now() >= stop_at {
            // Keep reading briefly for deliveries from other senders still in flight.
            let quiet = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
            match quiet {
                Ok(Some(Ok(Message::Text(text)))) => {
                    on_frame(&text, &clock, &mut tally, &mut in_flight);
                    if Instant::now() < hard_stop {
                        continue;
                    }
                }
                Ok(Some(Ok(_))) if Instant::now() < hard_stop => continue,
                _ => {}
            }
            break;
        }
        if Instant::now() >= hard_stop {
            tally.errors += u64::try_from(in_flight.len()).unwrap_or(0);
            break;
        }
        let can_send = sending && plan.is_some_and(|p| in_flight.len() < p.window);
        let tick = async {
            match (&mut ticker, can_send) {
                (Some(t), true) => {
                    t.tick().await;
                }
                (None, true) => {}
                (_, false) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            frame = stream.next() => {
                match frame {
                    Some(Ok(Message::Text(text))) => on_frame(&text, &clock, &mut tally, &mut in_flight),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        tally.errors += 1;
                        break;
                    }
                }
            }
            () = tick => {
                let Some(p) = plan else { continue };
                next_id += 1;
                let stamp = clock.now_us();
                let frame = json!({
                    "type": "send", "req": next_id.to_string(), "room": p.room,
                    "client_msg_id": format!("{}-{next_id}", user.id),
                    "body": format!("t={stamp};{padding}"),
                });
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    tally.errors += 1;
                    break;
                }
                in_flight.insert(next_id, stamp);
                tally.sent += 1;
            }
            () = tokio::time::sleep_until(stop_at), if sending => {}
            () = tokio::time::sleep_until(hard_stop) => {}
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(tally)
}

fn on_frame(text: &str, clock: &Clock, tally: &mut Tally, in_flight: &mut HashMap<u64, u64>) {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let req = frame["req"].as_str().and_then(|r| r.parse::<u64>().ok());
    match frame["type"].as_str() {
        Some("ack") => {
            if let Some(stamp) = req.and_then(|r| in_flight.remove(&r)) {
                tally.record_ack(clock.since_us(stamp));
            }
        }
        Some("error") => {
            tally.errors += 1;
            if let Some(r) = req {
                in_flight.remove(&r);
            }
        }
        Some("event") if frame["kind"] == "message" => {
            let stamp = frame["body"]
                .as_str()
                .and_then(|b| b.strip_prefix("t="))
                .and_then(|b| b.split(';').next())
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(stamp) = stamp {
                tally.record_delivery(clock.since_us(stamp));
            }
        }
        _ => {}
    }
}

/// Wait for every member task and add up what they counted.
pub async fn collect(mut tasks: JoinSet<anyhow::Result<Tally>>) -> Tally {
    let mut total = Tally::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(tally)) => total.merge(&tally),
            Ok(Err(err)) => {
                eprintln!("client failed: {err:#}");
                total.errors += 1;
            }
            Err(err) => {
                eprintln!("client task panicked: {err}");
                total.errors += 1;
            }
        }
    }
    total
}

/// The shape of a chat run.
#[derive(Debug, Clone, Copy)]
pub struct ChatPlan {
    pub rooms: usize,
    /// Members per room; 2 is one-to-one.
    pub room_size: usize,
    /// Messages per second in total; 0 = as fast as `window` allows.
    pub rate: u64,
    pub window: usize,
    pub body_bytes: usize,
    pub duration: Duration,
}

/// Steady chat: every member of every room sends at `rate / senders` per second.
pub async fn chat(server: Arc<Server>, api: &Api, plan: ChatPlan) -> anyhow::Result<Measured> {
    let ChatPlan {
        rooms,
        room_size,
        rate,
        window,
        body_bytes,
        duration,
    } = plan;
    let users = api.users("chat", rooms * room_size.max(2)).await?;
    let mut plans = Vec::new();
    for (r, group) in users.chunks(room_size.max(2)).enumerate() {
        let ids: Vec<i64> = group.iter().map(|u| u.id).collect();
        let room = api.group(&group[0], &format!("chat-{r}"), &ids).await?;
        for user in group {
            plans.push((user.clone(), room));
        }
    }
    let senders = u32::try_from(plans.len()).unwrap_or(u32::MAX).max(1);
    let interval = (rate > 0).then(|| Duration::from_secs_f64(f64::from(senders) / rate as f64));
    run_members(
        server,
        plans
            .into_iter()
            .map(|(u, room)| {
                (
                    u,
                    Some(SendPlan {
                        room,
                        interval,
                        window,
                        body_bytes,
                    }),
                )
            })
            .collect(),
        duration,
    )
    .await
}

/// Fan-out: one room of `members`, `senders` of them sending at `rate` per second in total.
pub async fn fanout(
    server: Arc<Server>,
    api: &Api,
    members: usize,
    senders: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let users = api.users("fan", members.max(2)).await?;
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let room = api.group(&users[0], "fanout", &ids).await?;
    let senders = senders.clamp(1, users.len());
    let interval = Some(Duration::from_secs_f64(senders as f64 / rate.max(1) as f64));
    let plans = users
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            (
                u,
                (i < senders).then_some(SendPlan {
                    room,
                    interval,
                    window: 64,
                    body_bytes: 64,
                }),
            )
        })
        .collect();
    run_members(server, plans, duration).await
}

/// What a timed scenario measured: the clients' tally, the measured window, and the
/// server's `/proc` samples at its start and end (when the tool spawned the server).
pub type Measured = (Tally, Duration, Option<(ProcSample, ProcSample)>);

async fn run_members(
    server: Arc<Server>,
    plans: Vec<(User, Option<SendPlan>)>,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let clock = Arc::new(Clock::new());
    // Everyone connects first; the clock for the run starts when all are online.
    let connect_slack = Duration::from_secs(2) + Duration::from_millis(plans.len() as u64 * 2);
    let start = Instant::now() + connect_slack;
    let stop_at = start + duration;
    let mut tasks = JoinSet::new();
    for (user, plan) in plans {
        let (server, clock) = (server.clone(), clock.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(start.checked_sub(connect_slack / 2).unwrap_or(start)).await;
            member(
                server,
                user,
                plan,
                clock,
                (start, stop_at),
                Duration::from_secs(10),
            )
            .await
        });
    }
    // Sample the server's CPU and memory over exactly the measured window.
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start).await;
        let first = server.sample();
        tokio::time::sleep_until(stop_at).await;
        first.zip(server.sample())
    });
    let tally = collect(tasks).await;
    let proc = sampler.await.ok().flatten();
    Ok((tally, duration, proc))
}

/// Idle connections: open `connections` sockets spread over `users` accounts (64 handshakes
/// at a time), keep each one reading — so it answers the server's heartbeat pings like a
/// real idle client — hold them for `hold`, then count how many are still open.
pub async fn idle(
    server: Arc<Server>,
    api: &Api,
    users: usize,
    connections: usize,
    hold: Duration,
) -> anyhow::Result<(usize, usize)> {
    let accounts = api.users("idle", users.max(1)).await?;
    let alive = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let opened: Vec<bool> = futures_util::stream::iter(0..connections)
        .map(|i| {
            let (server, alive) = (server.clone(), alive.clone());
            let user = accounts[i % accounts.len()].clone();
            async move {
                let Ok((sink, mut stream)) = connect(&server, &user).await else {
                    return false;
                };
                alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let _sink = sink; // dropping it would close the connection
                    while let Some(Ok(_)) = stream.next().await {}
                    alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
                true
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let open = opened.iter().filter(|ok| **ok).count();
    if open < connections {
        eprintln!(
            "{} connections failed (raise `ulimit -n`?)",
            connections - open
        );
    }
    tokio::time::sleep(hold).await;
    Ok((open, alive.load(std::sync::atomic::Ordering::SeqCst)))
}

async fn next_text(stream: &mut crate::client::WsStream) -> Option<String> {
    while let Some(Ok(frame)) = stream.next().await {
        if let Message::Text(text) = frame {
            return Some(text.to_string());
        }
    }
    None
}

/// Reconnect storm: `clients` members of one room disconnect, `missed` messages are sent,
/// then all reconnect at once with `sync`. Returns how long until every client had caught up
/// and how many gaps or duplicates were seen (must be 0).
pub async fn reconnect_storm(
    server: Arc<Server>,
    api: &Api,
    clients: usize,
    missed: usize,
) -> anyhow::Result<(Duration, usize, usize)> {
    let users = api.users("storm", clients.max(1) + 1).await?;
    let (sender, members) = users.split_first().expect("at least two users");
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let room = api.group(sender, "storm", &ids).await?;
    for i in 0..missed {
        api.http
            .post(format!("{}/api/v1/rooms/{room}/messages", api.base))
            .bearer_auth(&sender.token)
            .json(&json!({ "client_msg_id": format!("storm-{i}"), "body": format!("missed {i}") }))
            .send()
            .await?
            .error_for_status()?;
    }
    let started = std::time::Instant::now();
    let mut tasks = JoinSet::new();
    for member in members {
        let (server, member) = (server.clone(), member.clone());
        tasks.spawn(async move {
            let (mut sink, mut stream) = client::open_url(&server.ws_url(member.id, &member.token))
                .await?
                .split();
            let sync = json!({ "type": "sync", "rooms": { room.to_string(): 0 } });
            sink.send(Message::Text(sync.to_string().into())).await?;
            let mut seqs = Vec::new();
            while let Some(text) = next_text(&mut stream).await {
                let frame: Value = serde_json::from_str(&text)?;
                match frame["type"].as_str() {
                    Some("event") => seqs.push(frame["seq"].as_i64().unwrap_or(-1)),
                    Some("synced") => break,
                    _ => {}
                }
            }
            anyhow::Ok(seqs)
        });
    }
    let mut gaps = 0;
    let mut dups = 0;
    while let Some(done) = tasks.join_next().await {
        let seqs = done??;
        let unique: HashSet<i64> = seqs.iter().copied().collect();
        dups += seqs.len() - unique.len();
        // The log holds the joins of every member first, then the missed messages.
        let last = seqs.last().copied().unwrap_or(0);
        gaps += usize::try_from(last)
            .unwrap_or(0)
            .saturating_sub(unique.len());
        if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
            gaps += 1;
        }
    }
    Ok((started.elapsed(), gaps, dups))
}

/// What the files scenario measured.
pub struct FilesRun {
    pub upload_secs: f64,
    pub download_secs: f64,
    pub exact: bool,
}

/// Upload `mib` MiB generated on the fly (never whole in this process either) — binary
/// noise, or with `text` printable CSV rows without anything a DLP filter acts on — as
/// one request or, with `chunk_mib`, through the resumable API; then download it and
/// compare digests.
pub async fn files(
    api: &Api,
    mib: u64,
    text: bool,
    chunk_mib: Option<u64>,
) -> anyhow::Result<FilesRun> {
    let owner = api.users("files", 1).await?.remove(0);
    let room = api.group(&owner, "files", &[]).await?;
    // A deterministic pattern: MiB n is generated from n.
    let chunk = move |n: u64| -> Vec<u8> {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        if text {
            // Rows such as `row-12345,team-7,alpha beta gamma\n`: words and short numbers.
            const WORDS: [&str; 8] = [
                "alpha", "beta", "gamma", "delta", "north", "south", "review", "budget",
            ];
            let mut out = Vec::with_capacity(1024 * 1024 + 64);
            while out.len() < 1024 * 1024 {
                let r = next();
                out.extend_from_slice(
                    format!(
                        "row-{},team-{},{} {} {}\n",
                        r % 100_000,
                        (r >> 20) % 10,
                        WORDS[(r >> 8) as usize % 8],
                        WORDS[(r >> 12) as usize % 8],
                        WORDS[(r >> 16) as usize % 8]
                    )
                    .as_bytes(),
                );
            }
            out.truncate(1024 * 1024);
            out
        } else {
            (0..1024 * 1024).map(|_| next() as u8).collect()
        }
    };
    let mut sent = Digest::default();
    for n in 0..mib {
        sent.add(&chunk(n));
    }
    let started = Instant::now();
    let response = match chunk_mib {
        None => {
            let body = futures_util::stream::iter(
                (0..mib).map(move |n| Ok::<_, std::io::Error>(chunk(n))),
            );
            api.http
                .post(format!("{}/api/v1/rooms/{room}/files", api.base))
                .query(&[("name", if text { "large.csv" } else { "large.bin" })])
                .bearer_auth(&owner.token)
                .header("content-length", (mib * 1024 * 1024).to_string())
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await?
        }
        Some(per) => {
            let per = per.max(1);
            let opened: serde_json::Value = api
                .http
                .post(format!("{}/api/v1/rooms/{room}/uploads", api.base))
                .bearer_auth(&owner.token)
                .json(&serde_json::json!({ "name": "large.bin", "size": mib * 1024 * 1024 }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id = opened["file_id"].as_i64().unwrap_or_default();
            let mut first = 0;
            loop {
                let last = (first + per).min(mib);
                let body = futures_util::stream::iter(
                    (first..last).map(move |n| Ok::<_, std::io::Error>(chunk(n))),
                );
                let response = api
                    .http
                    .put(format!("{}/api/v1/uploads/{id}", api.base))
                    .query(&[("offset", first * 1024 * 1024)])
                    .bearer_auth(&owner.token)
                    .header("content-length", ((last - first) * 1024 * 1024).to_string())
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await?;
                if last == mib || !response.status().is_success() {
                    break response;
                }
                first = last;
            }
        }
    };
    let upload_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        response.status().is_success(),
        "upload: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let file: serde_json::Value = response.json().await?;
    let id = file["id"].as_i64().unwrap_or_default();
    let started = Instant::now();
    let mut stream = api
        .http
        .get(format!("{}/api/v1/files/{id}", api.base))
        .bearer_auth(&owner.token)
        .send()
        .await?
        .error_for_status()?
        .bytes_stream();
    let mut received = Digest::default();
    while let Some(bytes) = stream.next().await {
        received.add(&bytes?);
    }
    let download_secs = started.elapsed().as_secs_f64();
    Ok(FilesRun {
        upload_secs,
        download_secs,
        exact: sent == received,
    })
}

/// A cheap running digest (length and FNV-1a over every byte) to compare two streams.
#[derive(Debug, PartialEq, Eq)]
struct Digest {
    len: u64,
    hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    fn add(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
