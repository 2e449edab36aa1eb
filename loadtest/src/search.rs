//! The `search` scenario: load many messages through the WebSocket (pipelined, as fast as
//! the server acknowledges), then time searches of several kinds over HTTP, one at a time, as
//! a user who is a member of a share of the rooms — what a person typing into the search box
//! waits for once the history is large.
//!
//! Message text is generated deterministically: words from a vocabulary drawn with a skewed
//! (Zipf-like) frequency, so some words are in a large share of messages and most are rare,
//! plus ticket ids (`INC-123456`) and, now and then, CJK text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Api, User, connect};
use crate::server::Server;
use crate::stats::{Percentiles, percentiles};

/// The shape of a search run.
#[derive(Debug, Clone, Copy)]
pub struct SearchPlan {
    pub messages: u64,
    pub rooms: usize,
    /// Searches timed per kind.
    pub queries: usize,
}

/// What one kind of query measured.
#[derive(Debug, serde::Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    pub example: String,
    pub latency: Option<Percentiles>,
    pub p95_ms: f64,
    /// Results on the first page, averaged.
    pub mean_results: f64,
}

#[derive(Debug)]
pub struct SearchRun {
    pub loaded: u64,
    pub load_secs: f64,
    pub size_bytes: Option<u64>,
    pub kinds: Vec<KindReport>,
}

/// Makes the next query of one kind.
type QueryMaker = Box<dyn FnMut(&mut Rng) -> String>;

const VOCABULARY: usize = 5_000;
/// Senders loading messages at once, each with this many sends unacknowledged.
const LOADERS: usize = 50;
const WINDOW: usize = 64;
/// Members of each room (loaders; each message is delivered to every one of them).
const MEMBERS_PER_ROOM: usize = 3;
/// Rooms the searching user is a member of (spread over all of them).
const READER_ROOMS: usize = 10;

/// A small deterministic generator (xorshift), so every run loads the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A word index with a skewed frequency: low indices are common.
    fn word(&mut self) -> usize {
        // The square of a uniform number leans towards 0; good enough for a Zipf-like mix.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let index = (u * u * u * VOCABULARY as f64) as usize;
        index.min(VOCABULARY - 1)
    }
}

/// Word `i` of the vocabulary: pronounceable, distinct, 4 to 9 letters.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "bri", "dan", "fel", "gor", "hul", "jin",
        "pax", "qui",
    ];
    let mut out = String::new();
    let mut n = i + 17;
    for _ in 0..3 {
        out.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    out
}

fn message_text(rng: &mut Rng) -> String {
    let words = 6 + rng.below(12) as usize;
    let mut text: Vec<String> = (0..words).map(|_| word(rng.word())).collect();
    if rng.below(100) == 0 {
        text.push(format!("INC-{:06}", rng.below(1_000_000)));
    }
    if rng.below(200) == 0 {
        text.push("数据库迁移明天开始".into());
    }
    text.join(" ")
}

pub async fn search(server: Arc<Server>, api: &Api, plan: SearchPlan) -> anyhow::Result<SearchRun> {
    let users = api.users("search", LOADERS + 1).await?;
    let (reader, loaders) = users.split_last().expect("users");
    if plan.messages == 0 {
        // Only the searches, over what an earlier run loaded into this database.
        return query_phase(api, reader, plan, 0, 0.0).await;
    }
    // Rooms of MEMBERS_PER_ROOM loaders each; the reader (never online, so it costs no
    // deliveries) is in READER_ROOMS of them, spread over the range.
    let mut rooms_of: Vec<Vec<i64>> = vec![Vec::new(); loaders.len()];
    let mut reader_rooms = 0;
    let rooms = plan.rooms.max(1);
    for r in 0..rooms {
        let in_room: Vec<usize> = (0..MEMBERS_PER_ROOM.min(loaders.len()))
            .map(|k| (r + k * 7) % loaders.len())
            .collect();
        let mut members: Vec<i64> = in_room[1..].iter().map(|&i| loaders[i].id).collect();
        if r % (rooms / READER_ROOMS).max(1) == 0 && reader_rooms < READER_ROOMS {
            members.push(reader.id);
            reader_rooms += 1;
        }
        let room = api
            .group(&loaders[in_room[0]], &format!("search-{r}"), &members)
            .await?;
        for &i in &in_room {
            rooms_of[i].push(room);
        }
    }

    let started = Instant::now();
    let per_loader = plan.messages / loaders.len() as u64;
    let mut tasks = JoinSet::new();
    for (i, loader) in loaders.iter().enumerate() {
        let (server, loader, rooms) = (server.clone(), loader.clone(), rooms_of[i].clone());
        tasks.spawn(async move { load(&server, &loader, &rooms, per_loader, i as u64).await });
    }
    let mut loaded = 0;
    while let Some(done) = tasks.join_next().await {
        loaded += done??;
    }
    let load_secs = started.elapsed().as_secs_f64();
    println!(
        "loaded          {loaded} messages in {load_secs:.0} s ({:.0}/s)",
        loaded as f64 / load_secs
    );

    query_phase(api, reader, plan, loaded, load_secs).await
}

/// Time each kind of search, as `reader` (logged in again: loading a million messages
/// outlives an access token).
async fn query_phase(
    api: &Api,
    reader: &User,
    plan: SearchPlan,
    loaded: u64,
    load_secs: f64,
) -> anyhow::Result<SearchRun> {
    let reader = api
        .login(&format!("search-{LOADERS}"))
        .await
        .unwrap_or_else(|_| reader.clone());
    let mut rng = Rng(0x5EED_0BAD_CAFE_F00D);
    let loader_name = "search-3";
    let kinds: Vec<(&'static str, QueryMaker)> = vec![
        (
            "common word",
            Box::new(|r: &mut Rng| word(r.below(5) as usize)),
        ),
        (
            "mid-frequency word",
            Box::new(|r: &mut Rng| word(200 + r.below(200) as usize)),
        ),
        (
            "rare word",
            Box::new(|r: &mut Rng| word(4_000 + r.below(1_000) as usize)),
        ),
        (
            "two words",
            Box::new(|r: &mut Rng| {
                format!(
                    "{} {}",
                    word(r.below(50) as usize),
                    word(100 + r.below(400) as usize)
                )
            }),
        ),
        (
            "phrase",
            Box::new(|r: &mut Rng| {
                format!(
                    "\"{} {}\"",
                    word(r.below(20) as usize),
                    word(r.below(20) as usize)
                )
            }),
        ),
        (
            "partial word",
            Box::new(|r: &mut Rng| word(1_000 + r.below(3_000) as usize)[1..5].to_string()),
        ),
        (
            "ticket prefix",
            Box::new(|r: &mut Rng| format!("INC-{:03}", r.below(1000))),
        ),
        (
            "from: + word",
            Box::new(move |r: &mut Rng| {
                format!("from:{loader_name} {}", word(r.below(100) as usize))
            }),
        ),
        ("CJK", Box::new(|_: &mut Rng| "迁移".to_string())),
        (
            "no match",
            Box::new(|r: &mut Rng| format!("zzq{}", r.below(1_000_000))),
        ),
        (
            "two letters (bounded scan)",
            Box::new(|r: &mut Rng| ["ka", "zq", "xv", "mi"][r.below(4) as usize].to_string()),
        ),
    ];
    let mut reports = Vec::new();
    for (kind, mut make) in kinds {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut results = 0usize;
        let mut example = String::new();
        for i in 0..plan.queries {
            let q = make(&mut rng);
            if i == 0 {
                example = q.clone();
            }
            let began = Instant::now();
            let page: Value = api
                .http
                .get(format!("{}/api/v1/search", api.base))
                .query(&[("q", q.as_str()), ("limit", "20")])
                .bearer_auth(&reader.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let _ = latency.record(
                u64::try_from(began.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            results += page["results"].as_array().map_or(0, Vec::len);
        }
        #[allow(clippy::cast_precision_loss)]
        let report = KindReport {
            kind,
            example,
            p95_ms: latency.value_at_quantile(0.95) as f64 / 1000.0,
            latency: percentiles(&latency),
            mean_results: results as f64 / plan.queries.max(1) as f64,
        };
        println!(
            "{:<28} p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  ({:.1} results, e.g. {:?})",
            report.kind,
            report.latency.as_ref().map_or(0.0, |p| p.p50_ms),
            report.p95_ms,
            report.latency.as_ref().map_or(0.0, |p| p.p99_ms),
            report.mean_results,
            report.example
        );
        reports.push(report);
    }
    Ok(SearchRun {
        loaded,
        load_secs,
        size_bytes: api.store_size().await.ok().flatten(),
        kinds: reports,
    })
}

/// Send `count` messages from `user` round-robin into `rooms`, with [`WINDOW`] unacknowledged.
async fn load(
    server: &Server,
    user: &User,
    rooms: &[i64],
    count: u64,
    seed: u64,
) -> anyhow::Result<u64> {
    let (mut sink, mut stream) = connect(server, user).await?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0x0100_0000_01B3));
    let (mut sent, mut acked, mut in_flight) = (0u64, 0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(3_600);
    while acked < count {
        while in_flight < WINDOW && sent < count {
            let room = rooms[(sent as usize) % rooms.len().max(1)];
            let frame = json!({
                "type": "send", "req": sent.to_string(), "room": room,
                "client_msg_id": format!("s{seed}-{sent}"), "body": message_text(&mut rng),
            });
            sink.feed(Message::Text(frame.to_string().into())).await?;
            sent += 1;
            in_flight += 1;
        }
        sink.flush().await?;
        let Some(frame) = stream.next().await else {
            anyhow::bail!("the server closed a loading connection");
        };
        if let Message::Text(text) = frame? {
            let frame: Value = serde_json::from_str(&text)?;
            match frame["type"].as_str() {
                Some("ack") => {
                    acked += 1;
                    in_flight -= 1;
                }
                Some("error") => anyhow::bail!("a send was refused: {frame}"),
                _ => {}
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "loading took over an hour");
    }
    let _ = sink.send(Message::Close(None)).await;
    Ok(acked)
}
