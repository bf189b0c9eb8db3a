//! The one-line JSON summary of a run (`--json`), built by hand: the
//! fields docs/benchmarks.md lists, stable for scripts.

use super::report::{dist_text, mix_text, targets_text, Report};
use super::BenchConfig;
use std::fmt::Write as _;

/// The one-line JSON summary (`--json`).
pub fn json(cfg: &BenchConfig, r: &Report) -> String {
    let l = r.latency_us;
    let errs: Vec<String> = r.errors.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect();
    let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.4}"));
    format!(
        concat!(
            "{{\"requests\":{},\"replies\":{},\"errors\":{},\"errors_by_kind\":{{{}}},\"stopped\":{},\"foreign\":{},\"reconnects\":{},\"throughput\":{:.1},",
            "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"p9999\":{},\"max\":{},\"mean\":{:.1}}},",
            "\"hit_ratio\":{},\"up_gets_per_fetch\":{},\"generator_cpu\":{},\"generator_us_per_reply\":{},\"send_lag_p99_us\":{},\"backlogged\":{},",
            "\"target\":\"{}\",\"mode\":\"{}\",\"rate\":{},\"send_interval_us\":{},\"duration_s\":{},\"warmup_s\":{},",
            "\"connections\":{},\"pipeline\":{},\"keys\":{},\"mix\":\"{}\",\"batch\":{},\"dist\":\"{}\",",
            "\"by_op\":{{{}}}}}"
        ),
        r.requests,
        r.replies,
        r.error_count(),
        errs.join(","),
        json_string(r.stopped.as_deref()),
        json_string(r.foreign.as_deref()),
        r.reconnects,
        r.throughput(),
        l[0],
        l[1],
        l[2],
        l[3],
        l[4],
        l[5],
        r.mean_us,
        opt(r.hit_ratio),
        opt(r.up_gets_per_fetch),
        opt(r.cpu),
        opt(r.cpu_us_per_reply),
        r.send_lag_p99_us.map_or("null".to_string(), |v| v.to_string()),
        r.backlogged,
        targets_text(&cfg.connect),
        if cfg.rate.is_some() { "open" } else { "closed" },
        cfg.rate.map_or("null".to_string(), |v| v.to_string()),
        cfg.rate
            .map_or("null".to_string(), |_| cfg.send_interval.as_micros().to_string()),
        r.elapsed,
        cfg.warmup.as_secs_f64(),
        cfg.connections,
        cfg.pipeline,
        cfg.keys,
        mix_text(&cfg.mix),
        cfg.batch,
        dist_text(&cfg.dist),
        r.by_op
            .iter()
            .map(|o| {
                let l = o.latency_us;
                format!(
                    "\"{}\":{{\"requests\":{},\"errors\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
                    o.op, o.requests, o.errors, l[0], l[2], l[3], l[5]
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// A JSON string (or null), escaped.
fn json_string(s: Option<&str>) -> String {
    let Some(s) = s else { return "null".into() };
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
