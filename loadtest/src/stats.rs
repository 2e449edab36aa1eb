//! Counting and timing: per-task histograms (no shared lock on the hot path), merged at the
//! end into one report.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::server::ProcSample;

/// What one client task measured. Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub ack_us: Histogram<u64>,
    pub deliver_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            sent: 0,
            acked: 0,
            delivered: 0,
            errors: 0,
            // 1 µs .. 60 s at 3 significant digits.
            ack_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            deliver_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Tally {
    pub fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.delivered += other.delivered;
        self.errors += other.errors;
        let _ = self.ack_us.add(&other.ack_us);
        let _ = self.deliver_us.add(&other.deliver_us);
    }

    pub fn record_ack(&mut self, latency: Duration) {
        self.acked += 1;
        let _ = self.ack_us.record(micros(latency));
    }

    pub fn record_delivery(&mut self, latency: Duration) {
        self.delivered += 1;
        let _ = self.deliver_us.record(micros(latency));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000)
}

/// The run's clock: message bodies carry microseconds since `EPOCH` so a receiver in this
/// process can compute send→deliver latency.
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Self(Instant::now())
    }
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
    pub fn since_us(&self, stamp: u64) -> Duration {
        Duration::from_micros(self.now_us().saturating_sub(stamp))
    }
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    #[allow(clippy::cast_precision_loss)] // microsecond counts far below 2^52
    let ms = |v: u64| v as f64 / 1000.0;
    (!h.is_empty()).then(|| Percentiles {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    })
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub plugins: bool,
    pub seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub errors: u64,
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    pub ack_latency: Option<Percentiles>,
    pub deliver_latency: Option<Percentiles>,
    pub server_cpu_percent: Option<f64>,
    /// Server CPU time per acknowledged message (all threads), in microseconds: the figure
    /// that does not depend on how much of the machine the load tool itself takes.
    pub server_cpu_us_per_msg: Option<f64>,
    /// Server CPU time per delivered event (the fan-out figure), in microseconds.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The share of the server's CPU time spent in the kernel (sockets, disk, scheduling).
    pub server_kernel_share: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub server_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `x` to `places` decimals, as the reports' figures are written.
pub fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

impl Report {
    pub fn new(
        scenario: &str,
        plugins: bool,
        elapsed: Duration,
        tally: &Tally,
        proc: Option<(ProcSample, ProcSample)>,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let rate = |n: u64| round(n as f64 / secs, 1);
        #[allow(clippy::cast_precision_loss)]
        let mib = |b: u64| round(b as f64 / 1_048_576.0, 1);
        Self {
            scenario: scenario.into(),
            plugins,
            seconds: round(secs, 2),
            sent: tally.sent,
            acked: tally.acked,
            delivered: tally.delivered,
            errors: tally.errors,
            sent_per_sec: rate(tally.sent),
            acked_per_sec: rate(tally.acked),
            delivered_per_sec: rate(tally.delivered),
            ack_latency: percentiles(&tally.ack_us),
            deliver_latency: percentiles(&tally.deliver_us),
            server_cpu_percent: proc
                .map(|(a, b)| ((b.cpu_secs - a.cpu_secs) / secs * 1000.0).round() / 10.0),
            server_cpu_us_per_msg: proc.filter(|_| tally.acked > 0).map(|(a, b)| {
                #[allow(clippy::cast_precision_loss)]
                let per = (b.cpu_secs - a.cpu_secs) * 1e6 / tally.acked as f64;
                round(per, 1)
            }),
            server_cpu_us_per_delivery: proc.filter(|_| tally.delivered > 0).map(|(a, b)| {
                #[allow(clippy::cast_precision_loss)]
                let per = (b.cpu_secs - a.cpu_secs) * 1e6 / tally.delivered as f64;
                round(per, 2)
            }),
            server_kernel_share: proc
                .filter(|(a, b)| b.cpu_secs > a.cpu_secs)
                .map(|(a, b)| round((b.sys_secs - a.sys_secs) / (b.cpu_secs - a.cpu_secs), 2)),
            server_peak_rss_mib: proc.map(|(_, b)| mib(b.peak_rss_bytes)),
            server_rss_mib: proc.map(|(_, b)| mib(b.rss_bytes)),
            note: None,
        }
    }

    pub fn print(&self) {
        println!(
            "scenario        {} (plugins: {})",
            self.scenario, self.plugins
        );
        println!("duration        {:.2} s", self.seconds);
        println!("sent            {} ({}/s)", self.sent, self.sent_per_sec);
        println!("acked           {} ({}/s)", self.acked, self.acked_per_sec);
        println!(
            "delivered       {} ({}/s)",
            self.delivered, self.delivered_per_sec
        );
        println!("errors          {}", self.errors);
        for (name, p) in [
            ("send→ack", &self.ack_latency),
            ("send→deliver", &self.deliver_latency),
        ] {
            if let Some(p) = p {
                println!(
                    "{name:<15} p50 {:.3} ms  p99 {:.3} ms  p999 {:.3} ms  max {:.3} ms",
                    p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
                );
            }
        }
        if let (Some(cpu), Some(peak)) = (self.server_cpu_percent, self.server_peak_rss_mib) {
            println!("server          {cpu}% CPU (of one core), peak RSS {peak} MiB");
            if let Some(us) = self.server_cpu_us_per_msg {
                println!("server cost     {us} µs CPU per acknowledged message");
            }
            if let Some(us) = self.server_cpu_us_per_delivery {
                println!("server cost     {us} µs CPU per delivered event");
            }
            if let Some(share) = self.server_kernel_share {
                println!("server kernel   {:.0}% of its CPU time", share * 100.0);
            }
        }
        if let Some(note) = &self.note {
            println!("note            {note}");
        }
    }

    /// The report as the run's JSON object (printed on the `json` line by `main`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
