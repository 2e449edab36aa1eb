//! Comparing runs: a one-line summary of a run's report, the report saved as a baseline
//! (`--save FILE`), and the ratios of a run to a saved baseline (`--compare FILE`).
//!
//! A report is the JSON object every scenario prints on its `json …` line. Comparing works
//! on its numeric fields, nested ones named with dots (`ack_latency.p99_ms`), so a new field
//! in a report is compared without changes here.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// The fields a summary line shows, in this order, where the report has them.
const HEADLINE: &[(&str, &str)] = &[
    ("acked_per_sec", "msg/s"),
    ("delivered_per_sec", "deliveries/s"),
    ("server_cpu_us_per_msg", "server_µs/msg"),
    ("server_cpu_us_per_delivery", "server_µs/delivery"),
    ("ack_latency.p99_ms", "ack_p99_ms"),
    ("deliver_latency.p99_ms", "deliver_p99_ms"),
    ("kib_per_connection", "KiB/conn"),
    ("still_open", "still_open"),
    ("upload_mb_s", "upload_MB/s"),
    ("download_mb_s", "download_MB/s"),
    ("seconds", "s"),
    ("errors", "errors"),
    ("gaps", "gaps"),
    ("duplicates", "duplicates"),
    ("load_msg_per_sec", "load_msg/s"),
    ("database_mib", "db_MiB"),
    ("worst_p95_ms", "worst_search_p95_ms"),
    ("resumes", "resumes"),
    ("resume_gaps", "resume_gaps"),
    ("resume_latency.p99_ms", "resume_p99_ms"),
    ("history_pages_per_sec", "history_pages/s"),
    ("history_latency.p99_ms", "history_p99_ms"),
];

/// Every numeric field of a report, nested objects flattened into dotted names.
pub fn numbers(report: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_string(), x);
                }
            }
            Value::Object(fields) => {
                for (key, value) in fields {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, value, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", report, &mut out);
    out
}

/// One line naming the scenario and its headline figures, for pasting into notes.
pub fn summary(report: &Value) -> String {
    let numbers = numbers(report);
    let scenario = report["scenario"].as_str().unwrap_or("?");
    let mut line = format!("summary {scenario}");
    if report["plugins"] == Value::Bool(true) {
        line.push_str(" (plugins)");
    }
    for (field, label) in HEADLINE {
        if let Some(x) = numbers.get(*field) {
            line.push_str(&format!(" {label}={}", short(*x)));
        }
    }
    line
}

/// Read a baseline: a file holding the report object, or a captured `json {…}` line (the
/// last one, if the whole output was saved).
pub fn load(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let object = text
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("json "))
        .unwrap_or(text.trim());
    let report: Value = serde_json::from_str(object)
        .with_context(|| format!("{}: not a report (JSON object)", path.display()))?;
    if !report.is_object() {
        bail!("{}: not a report (JSON object)", path.display());
    }
    Ok(report)
}

/// The lines comparing `now` with `baseline`: each numeric field both have, with the ratio
/// now ÷ baseline, headline fields first. Refuses reports of different scenarios.
pub fn compare(now: &Value, baseline: &Value) -> anyhow::Result<Vec<String>> {
    if now["scenario"] != baseline["scenario"] {
        bail!(
            "the baseline is a {} run, this is a {} run",
            baseline["scenario"],
            now["scenario"]
        );
    }
    let (now, base) = (numbers(now), numbers(baseline));
    let headline: Vec<&str> = HEADLINE.iter().map(|(field, _)| *field).collect();
    let mut fields: Vec<&String> = now.keys().filter(|k| base.contains_key(*k)).collect();
    // Headline fields in their order, then the rest alphabetically.
    fields.sort_by_key(|k| {
        (
            headline
                .iter()
                .position(|h| h == k)
                .unwrap_or(headline.len()),
            (*k).clone(),
        )
    });
    Ok(fields
        .into_iter()
        .map(|field| {
            let (x, b) = (now[field], base[field]);
            let ratio = if b == 0.0 {
                if x == 0.0 {
                    "=".to_string()
                } else {
                    "new".to_string()
                }
            } else {
                format!("{:.2}×", x / b)
            };
            format!(
                "compare {field:<28} {:>12} vs {:>12}  {ratio}",
                short(x),
                short(b)
            )
        })
        .collect())
}

/// A number as a person would write it in a table: integers plain, others to 3 significant
/// decimals at most.
fn short(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn chat(msgs: f64, cpu: f64, p99: f64) -> Value {
        json!({
            "scenario": "chat", "plugins": false, "acked_per_sec": msgs, "errors": 0,
            "server_cpu_us_per_msg": cpu, "ack_latency": { "p50_ms": 1.5, "p99_ms": p99 },
            "note": "text is ignored"
        })
    }

    #[test]
    fn nested_numbers_are_flattened_and_text_is_ignored() {
        let numbers = numbers(&chat(100.0, 50.0, 4.0));
        assert_eq!(numbers.get("ack_latency.p99_ms"), Some(&4.0));
        assert_eq!(numbers.get("acked_per_sec"), Some(&100.0));
        assert!(!numbers.contains_key("note") && !numbers.contains_key("scenario"));
    }

    #[test]
    fn the_summary_is_one_line_of_headline_figures() {
        let line = summary(&chat(10_788.0, 84.3, 214.271));
        assert_eq!(
            line,
            "summary chat msg/s=10788 server_µs/msg=84.3 ack_p99_ms=214.271 errors=0"
        );
    }

    #[test]
    fn ratios_are_now_over_baseline_headline_first() {
        let lines = compare(&chat(200.0, 25.0, 4.0), &chat(100.0, 100.0, 4.0)).unwrap();
        assert!(lines[0].starts_with("compare acked_per_sec"), "{lines:?}");
        assert!(lines[0].ends_with("2.00×"), "{lines:?}");
        assert!(lines[1].contains("server_cpu_us_per_msg") && lines[1].ends_with("0.25×"));
        assert!(lines[2].contains("ack_latency.p99_ms") && lines[2].ends_with("1.00×"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("errors") && l.ends_with('='))
        );
    }

    #[test]
    fn different_scenarios_are_refused() {
        let mut fanout = chat(1.0, 1.0, 1.0);
        fanout["scenario"] = json!("fanout");
        assert!(compare(&fanout, &chat(1.0, 1.0, 1.0)).is_err());
    }

    #[test]
    fn a_baseline_is_an_object_or_the_last_json_line_of_a_saved_output() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("base.json");
        std::fs::write(&object, chat(1.0, 2.0, 3.0).to_string()).unwrap();
        assert_eq!(load(&object).unwrap()["server_cpu_us_per_msg"], 2.0);
        let output = dir.path().join("run.txt");
        std::fs::write(
            &output,
            format!(
                "scenario chat\njson {}\njson {}\n",
                chat(1.0, 1.0, 1.0),
                chat(1.0, 9.0, 1.0)
            ),
        )
        .unwrap();
        assert_eq!(load(&output).unwrap()["server_cpu_us_per_msg"], 9.0);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "[1, 2]").unwrap();
        assert!(load(&bad).is_err());
    }
}
