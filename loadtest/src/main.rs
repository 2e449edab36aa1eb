//! `switchboard-bench`: the load tool. Opens real WebSocket connections on loopback, sets
//! up users and rooms through the public API, runs one scenario, and reports throughput,
//! latency percentiles and the server's CPU and memory.
//!
//! ```sh
//! cargo build --release -p switchboard -p switchboard-bench
//! target/release/switchboard-bench --spawn target/release/switchboard chat --rooms 50
//! ```
//! Every run is bounded (`--duration`, counts) and only ever targets loopback. Every run ends
//! with its report as one `json {…}` line and a one-line `summary`; `--save FILE` keeps the
//! report and `--compare FILE` prints this run's ratios to a saved one.

mod client;
mod compare;
mod mixed;
mod scenarios;
mod search;
mod server;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::server::Server;
use crate::stats::{Report, round};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-bench",
    about = "Load tool for Switchboard (loopback only)"
)]
struct Cli {
    /// Start this `switchboard` binary with a fresh data directory (recommended).
    #[arg(long, conflicts_with = "server")]
    spawn: Option<PathBuf>,
    /// Use a server already running on loopback, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: Option<String>,
    /// With --spawn: load the plugins in this directory (e.g. the DLP plugin).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// With --spawn: extra `KEY=VALUE` environment for the server (repeatable).
    #[arg(long = "server-env", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// With --spawn: start this many nodes as one cluster (needs a shared PostgreSQL
    /// database and NATS through --server-env); clients are spread over the nodes.
    #[arg(long, default_value_t = 1, requires = "spawn")]
    nodes: usize,
    /// Write this run's report (the `json` line's object) to FILE, as a later baseline.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Print this run's figures beside a saved report's (`--save`, or a captured output's
    /// `json` line), with the ratio this run ÷ baseline.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Steady chat in many small rooms.
    Chat {
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        /// Members per room; 2 is one-to-one chat.
        #[arg(long, default_value_t = 2)]
        room_size: usize,
        /// Total messages per second; 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Unacknowledged sends per connection.
        #[arg(long, default_value_t = 16)]
        window: usize,
        #[arg(long, default_value_t = 128)]
        body_bytes: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// One large room, every member online.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages per second in total.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Everything at once: one-to-one chat, one large room fanning out, clients dropping
    /// and resuming (every resume checked for gaps), and history reads over HTTP.
    Mixed {
        /// One-to-one chat rooms.
        #[arg(long, default_value_t = 25)]
        chat_rooms: usize,
        /// Chat messages per second in total.
        #[arg(long, default_value_t = 1000)]
        chat_rate: u64,
        /// Members of the large room, all online.
        #[arg(long, default_value_t = 500)]
        fanout_members: usize,
        /// Messages per second into the large room.
        #[arg(long, default_value_t = 20)]
        fanout_rate: u64,
        /// Members of the large room that drop and resume over and over.
        #[arg(long, default_value_t = 20)]
        reconnectors: usize,
        /// Milliseconds a reconnecting client stays online between resumes.
        #[arg(long, default_value_t = 500)]
        reconnect_every_ms: u64,
        /// Clients paging back through the large room's history over HTTP.
        #[arg(long, default_value_t = 4)]
        readers: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Search at scale: load MESSAGES messages, then time searches of several kinds (common,
    /// rare and partial words, phrases, filters, CJK, no match, two letters) over HTTP.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Searches timed per kind.
        #[arg(long, default_value_t = 50)]
        queries: usize,
    },
    /// Idle connections held open.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
    /// One large file uploaded and downloaded, streamed both ways: MB/s and the server's
    /// memory while it runs.
    Files {
        /// File size in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Send printable CSV-like text (no DLP findings), which a DLP plugin scans whole,
        /// instead of binary noise.
        #[arg(long)]
        text: bool,
        /// Upload through the resumable API, in chunks of this many MiB.
        #[arg(long)]
        chunk_mib: Option<u64>,
    },
    /// Many clients resuming at once.
    Reconnect {
        #[arg(long, default_value_t = 500)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        missed: usize,
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected KEY=VALUE".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Read the baseline first: a typo in its path should not cost a whole run.
    let baseline = cli.compare.as_deref().map(compare::load).transpose()?;
    let server = match (&cli.spawn, &cli.server) {
        (Some(binary), _) => {
            Server::spawn(binary, cli.plugins.as_ref(), &cli.server_env, cli.nodes).await?
        }
        (None, Some(url)) => Server::existing(url).await?,
        (None, None) => bail!("give --spawn PATH_TO_SWITCHBOARD or --server http://127.0.0.1:PORT"),
    };
    let server = Arc::new(server);
    let api = client::Api::new(&server).await?;
    let plugins = cli.plugins.is_some();
    let sample = || server.sample();

    // Each scenario prints its human-readable lines and yields its report, and a reason to
    // fail the run once the report is out.
    let (mut report, failed): (serde_json::Value, Option<&str>) = match cli.scenario {
        Scenario::Chat {
            rooms,
            room_size,
            rate,
            window,
            body_bytes,
            duration,
        } => {
            let (tally, measured, proc) = scenarios::chat(
                server.clone(),
                &api,
                scenarios::ChatPlan {
                    rooms,
                    room_size,
                    rate,
                    window,
                    body_bytes,
                    duration: Duration::from_secs(duration),
                },
            )
            .await?;
            let report = Report::new("chat", plugins, measured, &tally, proc);
            report.print();
            (report.json(), None)
        }
        Scenario::Fanout {
            members,
            senders,
            rate,
            duration,
        } => {
            let (tally, measured, proc) = scenarios::fanout(
                server.clone(),
                &api,
                members,
                senders,
                rate,
                Duration::from_secs(duration),
            )
            .await?;
            let report = Report::new("fanout", plugins, measured, &tally, proc);
            report.print();
            (report.json(), None)
        }
        Scenario::Mixed {
            chat_rooms,
            chat_rate,
            fanout_members,
            fanout_rate,
            reconnectors,
            reconnect_every_ms,
            readers,
            duration,
        } => {
            let ((tally, measured, proc), extras) = mixed::mixed(
                server.clone(),
                &api,
                mixed::MixedPlan {
                    chat_rooms,
                    chat_rate,
                    fanout_members,
                    fanout_rate,
                    reconnectors,
                    reconnect_every: Duration::from_millis(reconnect_every_ms),
                    readers,
                    duration: Duration::from_secs(duration),
                },
            )
            .await?;
            let report = Report::new("mixed", plugins, measured, &tally, proc);
            report.print();
            let secs = measured.as_secs_f64().max(1e-9);
            println!(
                "resumes         {} ({} gaps, {} duplicates)",
                extras.resumes, extras.gaps, extras.duplicates
            );
            #[allow(clippy::cast_precision_loss)]
            let pages_per_sec = round(extras.history_pages as f64 / secs, 1);
            println!(
                "history         {} pages ({pages_per_sec}/s), {} failed",
                extras.history_pages, extras.history_errors
            );
            for (name, p) in [
                ("connect→synced", &extras.resume),
                ("history page", &extras.history),
            ] {
                if let Some(p) = p {
                    println!(
                        "{name:<15} p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
                        p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
                    );
                }
            }
            let mut json = report.json();
            json["resumes"] = json!(extras.resumes);
            json["resume_gaps"] = json!(extras.gaps);
            json["resume_duplicates"] = json!(extras.duplicates);
            json["resume_latency"] = json!(extras.resume);
            json["history_pages_per_sec"] = json!(pages_per_sec);
            json["history_errors"] = json!(extras.history_errors);
            json["history_latency"] = json!(extras.history);
            let exact = extras.gaps + extras.duplicates == 0;
            (json, (!exact).then_some("a resume was not exact"))
        }
        Scenario::Search {
            messages,
            rooms,
            queries,
        } => {
            let run = search::search(
                server.clone(),
                &api,
                search::SearchPlan {
                    messages,
                    rooms,
                    queries,
                },
            )
            .await?;
            #[allow(clippy::cast_precision_loss)]
            let size_mib = run.size_bytes.map(|b| round(b as f64 / 1_048_576.0, 1));
            if let Some(mib) = size_mib {
                println!("database        {mib} MiB");
            }
            let worst = run.kinds.iter().map(|k| k.p95_ms).fold(0.0, f64::max);
            #[allow(clippy::cast_precision_loss)]
            let report = json!({
                "scenario": "search",
                "messages": run.loaded,
                "load_msg_per_sec": round(run.loaded as f64 / run.load_secs.max(1e-9), 1),
                "database_mib": size_mib,
                "worst_p95_ms": round(worst, 2),
                "kinds": run.kinds.iter().map(|k| (k.kind.replace(' ', "_"), json!({
                    "p95_ms": round(k.p95_ms, 2),
                    "latency": k.latency,
                    "mean_results": round(k.mean_results, 1),
                }))).collect::<serde_json::Map<_, _>>(),
            });
            (report, None)
        }
        Scenario::Idle {
            connections,
            users,
            hold,
        } => {
            let before = sample();
            let (open, alive) = scenarios::idle(
                server.clone(),
                &api,
                users,
                connections,
                Duration::from_secs(hold),
            )
            .await?;
            let after = sample();
            println!("scenario        idle");
            println!("connections     {open} opened, {alive} still open after {hold} s");
            let mut report =
                json!({ "scenario": "idle", "connections": open, "still_open": alive });
            if let (Some(a), Some(b)) = (before, after) {
                #[allow(clippy::cast_precision_loss)]
                let per_conn =
                    (b.rss_bytes.saturating_sub(a.rss_bytes)) as f64 / open.max(1) as f64 / 1024.0;
                #[allow(clippy::cast_precision_loss)]
                let mib = b.rss_bytes as f64 / 1_048_576.0;
                println!("server          RSS {mib:.1} MiB, {per_conn:.1} KiB per connection");
                report["kib_per_connection"] = json!(round(per_conn, 2));
                report["rss_mib"] = json!(round(mib, 1));
            }
            (report, None)
        }
        Scenario::Files {
            mib,
            text,
            chunk_mib,
        } => {
            let before = sample();
            let run = scenarios::files(&api, mib, text, chunk_mib).await?;
            let after = sample();
            let mbps = |secs: f64| (mib as f64) * 1.048_576 / secs;
            println!(
                "scenario        files ({mib} MiB, {}, {})",
                if text { "text" } else { "binary" },
                chunk_mib.map_or("one request".to_string(), |c| format!("{c} MiB chunks"))
            );
            println!(
                "upload          {:.2} s, {:.0} MB/s",
                run.upload_secs,
                mbps(run.upload_secs)
            );
            println!(
                "download        {:.2} s, {:.0} MB/s (byte-exact: {})",
                run.download_secs,
                mbps(run.download_secs),
                run.exact
            );
            let mut report = json!({
                "scenario": "files",
                "mib": mib,
                "upload_mb_s": round(mbps(run.upload_secs), 1),
                "download_mb_s": round(mbps(run.download_secs), 1),
            });
            if let (Some(a), Some(b)) = (before, after) {
                #[allow(clippy::cast_precision_loss)]
                let (start, peak) = (
                    a.rss_bytes as f64 / 1_048_576.0,
                    b.peak_rss_bytes as f64 / 1_048_576.0,
                );
                println!(
                    "server          RSS {start:.1} MiB before, peak {peak:.1} MiB (+{:.1} MiB)",
                    peak - start
                );
                report["rss_before_mib"] = json!(round(start, 1));
                report["peak_rss_mib"] = json!(round(peak, 1));
            }
            (
                report,
                (!run.exact).then_some("the download differed from the upload"),
            )
        }
        Scenario::Reconnect { clients, missed } => {
            let (took, gaps, dups) =
                scenarios::reconnect_storm(server.clone(), &api, clients, missed).await?;
            println!("scenario        reconnect storm");
            println!(
                "clients         {clients} resumed {missed} missed messages in {:.3} s",
                took.as_secs_f64()
            );
            println!("gaps            {gaps}");
            println!("duplicates      {dups}");
            let report = json!({
                "scenario": "reconnect",
                "clients": clients,
                "missed": missed,
                "seconds": round(took.as_secs_f64(), 3),
                "gaps": gaps,
                "duplicates": dups,
            });
            (report, (gaps + dups > 0).then_some("resume was not exact"))
        }
    };

    if cli.nodes > 1 {
        report["nodes"] = json!(cli.nodes);
        println!(
            "nodes           {} (a cluster: PostgreSQL + NATS)",
            cli.nodes
        );
    }
    println!("json {report}");
    println!("{}", compare::summary(&report));
    if let Some(path) = &cli.save {
        std::fs::write(path, format!("{report}\n"))
            .map_err(|e| anyhow::anyhow!("saving the report to {}: {e}", path.display()))?;
    }
    if let Some(baseline) = &baseline {
        for line in compare::compare(&report, baseline)? {
            println!("{line}");
        }
    }
    if let Some(reason) = failed {
        bail!("{reason}");
    }
    Ok(())
}
