//! The binary's commands for the fault tools: `link` (a node, announced
//! like the others), `soak` and `check` (a run under faults and the check
//! of its history). `main.rs` dispatches to them.

use std::io::{self, Write};
use std::process::ExitCode;

/// `tablecache soak`: exit 0 when the history checks, 1 when it does not.
pub fn cmd_soak(a: tablecache::cli::SoakArgs) -> ExitCode {
    tablecache::trace::init_logging(log::LevelFilter::Warn);
    let opts = tablecache::soak::SoakOptions {
        ops: a.ops,
        seed: a.seed,
        proxies: a.proxies as usize,
        clients: a.clients as usize,
        faults: a.faults.unwrap_or((a.ops / 200).max(1)),
        size: a.size as usize,
        out: a.out.unwrap_or_else(|| format!("target/soak-{}", a.seed).into()),
        budget: a.budget,
    };
    match tablecache::soak::run(&opts) {
        Ok(s) => {
            tablecache::outln!("{}", s.render(&opts));
            ExitCode::from(u8::from(!s.passed()))
        }
        Err(e) => {
            eprintln!("tablecache soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// `tablecache check`: exit 0 when the history is linearizable and lost
/// no acknowledged write, 1 when not, 2 when it cannot be read or decided.
pub fn cmd_check(a: tablecache::cli::CheckArgs) -> ExitCode {
    use tablecache::check::{linear, lost, parse_history};
    let history = match std::fs::read_to_string(&a.history)
        .map_err(|e| e.to_string())
        .and_then(|t| parse_history(&t))
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tablecache check: {}: {e}", a.history.display());
            return ExitCode::from(2);
        }
    };
    let t = std::time::Instant::now();
    let report = linear::check(&history, a.size as usize, a.budget);
    let lost = lost::lost_writes(&history);
    for (r, w) in &lost {
        tablecache::outln!("LOST: {} missed {}", history[*r].describe(), history[*w].describe());
    }
    let verdict = match &report.verdict {
        linear::Verdict::Linearizable => "linearizable".to_string(),
        linear::Verdict::Violation { stuck, window } => {
            tablecache::outln!("no order places {}; around it:", history[*stuck].describe());
            for &i in window {
                tablecache::outln!("  {}", history[i].describe());
            }
            "NOT linearizable".to_string()
        }
        linear::Verdict::Undecided => "UNDECIDED within the budget (not a pass)".to_string(),
    };
    tablecache::outln!(
        "{} operations ({} checked): {verdict}; {} lost acknowledged writes; {} moves in {:.1} s",
        history.len(),
        report.checked,
        lost.len(),
        report.steps,
        t.elapsed().as_secs_f64()
    );
    match (&report.verdict, lost.is_empty()) {
        (linear::Verdict::Linearizable, true) => ExitCode::SUCCESS,
        (linear::Verdict::Undecided, _) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// `tablecache link`: like the other nodes, it announces `listening on
/// ADDR` first; then `control on ADDR` when it has a control listener.
pub fn cmd_link(a: tablecache::cli::LinkArgs) -> ExitCode {
    tablecache::trace::init_logging(a.log.level(log::LevelFilter::Info));
    let cfg = a.config();
    let (mut node, control) = match tablecache::link::LinkNode::bind(cfg.clone()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "tablecache link: cannot start on {} (control {:?}): {e}",
                cfg.listen, cfg.control
            );
            return ExitCode::from(1);
        }
    };
    if let Err(e) = node.handle_signals() {
        log::warn!("signals: {e}");
    }
    super::announce(node.local_addr());
    if let Some(c) = control {
        tablecache::outln!("control on {c}");
        let _ = io::stdout().flush();
    }
    log::info!("link: {} -> {}", node.local_addr(), cfg.upstream);
    match node.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tablecache link: {e}");
            ExitCode::from(1)
        }
    }
}
