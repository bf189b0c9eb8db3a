//! Where people type: one command run and its result printed, the loop
//! over a pipe's lines, and the interactive prompt (rustyline) with its
//! history. A node that closed the connection gets a new one, once.

use super::command::{parse_command, render, Command, COMMANDS_HELP};
use super::Client;
use crate::buffer::Buffer;
use crate::proto::{Op, Reply};
use std::io::{self, BufRead, IsTerminal};
use std::time::Instant;

/// How one command went.
#[derive(Debug)]
pub enum Step {
    /// A success reply (or a local command).
    Ok,
    /// An error reply.
    ErrorReply,
    /// `quit`.
    Quit,
    /// The connection failed.
    Lost(io::Error),
}

/// Sends one command and prints its result (and the round trip with
/// `timing`).
pub fn run_command(client: &mut Client, cmd: &Command, timing: bool) -> Step {
    let (op, body) = match cmd {
        Command::Help => {
            crate::outln!("{COMMANDS_HELP}");
            return Step::Ok;
        }
        Command::Quit => return Step::Quit,
        Command::Raw(s) => (None, s.clone()),
        Command::Request(r) => {
            let mut b = Buffer::new();
            r.encode(&mut b);
            (Some(r.op), String::from_utf8_lossy(b.data()).into_owned())
        }
    };
    // A server that closed the connection while the prompt sat idle (an
    // idle timeout, a restart) gets a new one, once, before anything is
    // sent on the dead one.
    if client.broken || client.peer_left() {
        if let Err(e) = client.reconnect() {
            client.broken = true;
            return Step::Lost(e);
        }
        eprintln!("(the node had closed the connection; connected again)");
    }
    let start = Instant::now();
    let line = match client.request_raw(body.as_bytes()) {
        Ok(l) => l,
        Err(e) => match again(client, op.or_else(|| crate::proto::peek_op(body.as_bytes())), &body, e) {
            Again::Reply(l) => l,
            Again::NotResent => return Step::ErrorReply,
            Again::Lost(e) => {
                client.broken = true;
                return Step::Lost(e);
            }
        },
    };
    let rtt = start.elapsed();
    let (ok, text) = match op {
        Some(op) => render(op, &line),
        None => {
            let mut r = Reply::default();
            let ok = r.parse(line.as_bytes()).is_ok() && r.is_ok();
            (ok, line)
        }
    };
    if timing {
        crate::outln!("{text}  ({} us)", rtt.as_micros());
    } else {
        crate::outln!("{text}");
    }
    if ok {
        Step::Ok
    } else {
        Step::ErrorReply
    }
}

/// What became of a request whose connection was lost.
enum Again {
    /// It only reads: sent again on a new connection, answered.
    Reply(String),
    /// A write: connected again, but not sent twice (it may have taken
    /// effect).
    NotResent,
    /// No new connection (or the second try failed too).
    Lost(io::Error),
}

/// After a request of `op` found the connection lost: connects again,
/// once, and sends it again only if it only reads.
fn again(client: &mut Client, op: Option<Op>, body: &str, lost: io::Error) -> Again {
    if let Err(e) = client.reconnect() {
        return Again::Lost(io::Error::new(e.kind(), format!("{lost}; connecting again: {e}")));
    }
    // GET, ADD (a sum), STS and DMP only read.
    if op.is_none_or(|op| op.is_write()) {
        eprintln!("({lost}; connected again. The command was not sent twice: it may or may not have taken effect)");
        return Again::NotResent;
    }
    eprintln!("({lost}; connected again, and sent it again: it only reads)");
    match client.request_raw(body.as_bytes()) {
        Ok(l) => Again::Reply(l),
        Err(e) => Again::Lost(e),
    }
}

/// Reads commands, one a line, until EOF or `quit`: at a prompt with line
/// editing and history on a terminal, plainly from a pipe. Returns the
/// exit status: 0, or 1 if the last command got an error reply (or was
/// not understood), or 2 if the connection was lost.
pub fn repl(client: &mut Client, timing: bool) -> u8 {
    if io::stdin().is_terminal() {
        return prompt(client, timing);
    }
    let mut last = 0u8;
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match one_line(client, &line, timing) {
            Some(Flow::Go(status)) => last = status,
            Some(Flow::Stop(status)) => return status.unwrap_or(last),
            Some(Flow::Lost) => return 2,
            None => {}
        }
    }
    last
}

/// What a line did: the status it leaves, or the end (with the status
/// that ends the program, if it sets one).
enum Flow {
    Go(u8),
    Stop(Option<u8>),
    /// The connection was lost and could not be had again (status 2): a
    /// pipe ends there, the prompt goes on.
    Lost,
}

/// Runs one line; `None` for a blank line or a comment.
fn one_line(client: &mut Client, line: &str, timing: bool) -> Option<Flow> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() || words[0].starts_with('#') {
        return None;
    }
    let cmd = match parse_command(&words) {
        Ok(c) => c,
        Err(e) => {
            crate::outln!("error: {e}");
            return Some(Flow::Go(1));
        }
    };
    Some(match run_command(client, &cmd, timing) {
        Step::Ok => Flow::Go(0),
        Step::ErrorReply => Flow::Go(1),
        Step::Quit => Flow::Stop(None),
        Step::Lost(e) => {
            eprintln!("tablecache client: {e}");
            Flow::Lost
        }
    })
}

/// Where the prompt keeps its history: `~/.tablecache_history`, or none
/// without a home.
fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".tablecache_history"))
}

/// Most lines of history kept.
const HISTORY_MAX: usize = 1000;

/// The interactive prompt (rustyline): line editing and history; Ctrl-C
/// clears the line, Ctrl-D ends like `quit`.
fn prompt(client: &mut Client, timing: bool) -> u8 {
    use rustyline::error::ReadlineError;
    let mut rl = match rustyline::DefaultEditor::new() {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("tablecache client: no line editing ({e})");
            return 2;
        }
    };
    let file = history_file();
    // History is a convenience: a missing or unreadable file means none.
    let mut kept: Vec<String> = Vec::new();
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let _ = rl.add_history_entry(line);
            kept.push(line.to_string());
        }
    }
    let mut last = 0u8;
    let status = loop {
        match rl.readline("tablecache> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                    kept.push(line.clone());
                }
                match one_line(client, &line, timing) {
                    Some(Flow::Go(s)) => last = s,
                    Some(Flow::Stop(s)) => break s.unwrap_or(last),
                    // At the prompt a node that is down is no reason to
                    // leave: the next command connects again.
                    Some(Flow::Lost) => last = 2,
                    None => {}
                }
            }
            Err(ReadlineError::Interrupted) => continue, // Ctrl-C: a fresh line
            Err(ReadlineError::Eof) => {
                crate::outln!(); // Ctrl-D: leave the shell's prompt on its own line
                break last;
            }
            Err(e) => {
                eprintln!("tablecache client: {e}");
                break 2;
            }
        }
    };
    if let Some(f) = file {
        let keep = &kept[kept.len().saturating_sub(HISTORY_MAX)..];
        let _ = std::fs::write(f, keep.join("\n") + "\n");
    }
    status
}
