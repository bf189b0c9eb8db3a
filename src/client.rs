//! The client: one connection driven by its own small reactor, used by the
//! `tablecache client` command (one-shot or line by line from stdin), by
//! `tablecache demo`, and by tests.
//!
//! Run it: `tablecache client get 1 2`, or `tablecache client` for a prompt.
//!
//! A request is sent whole, then the poll loop runs until one whole reply
//! is in (or the timeout passes); reading stdin happens between requests,
//! so `--timing` measures the network round trip only.

use crate::buffer::Buffer;
use crate::conn::{read_limit, Conn, ConnectOutcome, ReadOutcome, WriteOutcome};
use crate::framing::{Frame, Framing};
use crate::proto::{encode_request, Op, Reply, Request};
use crate::reactor::CLIENT;
use mio::{Events, Poll};
use std::io::{self, BufRead, IsTerminal};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Replies can be long (DMP of a big table); this bounds them.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A connected client.
pub struct Client {
    poll: Poll,
    events: Events,
    conn: Conn<()>,
    /// Where it connects (again, after [`Client::reconnect`]), and the
    /// node name of its trace lines.
    target: SocketAddr,
    name: &'static str,
    scratch: Buffer,
    timeout: Duration,
    /// The silence that ends a bare reply.
    bare_idle: Duration,
    /// Called after each reply is taken, before it is returned (the demo
    /// prints the hops the request made there).
    on_reply: Option<Box<dyn FnMut()>>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Client {
    /// Connects without blocking: `connect()` starts it (EINPROGRESS), the
    /// socket turns WRITABLE when it is settled, and `take_error()` /
    /// `peer_addr()` say how.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        Client::connect_named(addr, timeout, "client")
    }

    /// [`Client::connect`], with `name` as the node name of its trace lines.
    pub fn connect_named(addr: SocketAddr, timeout: Duration, name: &'static str) -> io::Result<Client> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let conn = Conn::connect(addr, CLIENT, 1, name, poll.registry(), now, ())?;
        let mut c = Client {
            poll,
            events: Events::with_capacity(16),
            conn,
            target: addr,
            name,
            scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
            timeout,
            bare_idle: Duration::from_millis(15),
            on_reply: None,
        };
        let deadline = now + timeout;
        loop {
            c.wait(deadline, "connect")?;
            match c.conn.on_connect_event(c.poll.registry()) {
                ConnectOutcome::Pending => continue,
                ConnectOutcome::Connected => return Ok(c),
                ConnectOutcome::Failed(e) => return Err(e),
            }
        }
    }

    /// Sends messages without a terminator and takes a reply as whole
    /// after `idle` of silence (for bare servers).
    pub fn set_bare(&mut self, idle: Duration) {
        self.conn.framer.set_framing(Framing::Bare);
        self.bare_idle = idle;
    }

    /// True when the server closed the connection while it sat idle (an
    /// idle timeout, a restart): its FIN or reset is already in, seen
    /// without blocking.
    pub fn peer_left(&mut self) -> bool {
        if crate::reactor::poll(&mut self.poll, &mut self.events, Some(Duration::ZERO)).is_err() {
            return false;
        }
        self.events.iter().any(|e| e.is_read_closed() || e.is_error())
    }

    /// Opens a new connection to the same address, with the same framing,
    /// timeout and hook; the old one is closed.
    pub fn reconnect(&mut self) -> io::Result<()> {
        let mut fresh = Client::connect_named(self.target, self.timeout, self.name)?;
        fresh.conn.framer.set_framing(self.conn.framer.framing());
        fresh.bare_idle = self.bare_idle;
        fresh.on_reply = self.on_reply.take();
        *self = fresh;
        Ok(())
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.sock.local_addr()
    }

    /// Runs `hook` after every reply, before it is returned.
    pub fn set_on_reply(&mut self, hook: Box<dyn FnMut()>) {
        self.on_reply = Some(hook);
    }

    /// Ends the connection the polite way: `shutdown(SHUT_WR)` sends FIN
    /// (the server sees `PEER_FIN` and closes once it owes nothing), then
    /// reads until the server's FIN arrives, then closes. Replies still
    /// owed are read and dropped.
    pub fn finish(mut self) -> io::Result<()> {
        self.conn
            .linger("shutdown(SHUT_WR): FIN sent, still reading", "done sending")?;
        let deadline = Instant::now() + self.timeout;
        loop {
            // Wait first: reading before the FIN is in would show a read
            // of nothing (WouldBlock), or not, as timing has it.
            self.wait(deadline, "the server's FIN")?;
            let (_, outcome) = self.conn.discard_input(&mut self.scratch, usize::MAX);
            match outcome {
                ReadOutcome::Eof => break,
                ReadOutcome::Error(e) => return Err(e),
                _ => {}
            }
        }
        self.conn.close(self.poll.registry(), "both directions closed");
        Ok(())
    }

    /// Waits for an event, or until `wake` (an error once `deadline` is
    /// past).
    fn wait_until(&mut self, wake: Instant, deadline: Instant, what: &str) -> io::Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(what));
        }
        crate::reactor::poll(&mut self.poll, &mut self.events, Some(wake.min(deadline) - now))
    }

    fn wait(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        self.wait_until(deadline, deadline, what)
    }

    /// Sends one request body and returns the body of its reply.
    pub fn request_raw(&mut self, body: &[u8]) -> io::Result<String> {
        self.conn.output.extend(body);
        self.conn.end_message();
        self.roundtrip()
    }

    /// Sends a request and parses its reply.
    pub fn request(&mut self, op: Op, ind: &[i64], data: &[i64]) -> io::Result<Reply> {
        encode_request(&mut self.conn.output, op, ind, data);
        self.conn.end_message();
        let line = self.roundtrip()?;
        let mut r = Reply::default();
        r.parse(line.as_bytes())
            .map_err(|p| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}: {p}")))?;
        Ok(r)
    }

    /// Sends a parsed request and parses its reply.
    pub fn send(&mut self, req: &Request) -> io::Result<Reply> {
        self.request(req.op, &req.ind, &req.data)
    }

    fn roundtrip(&mut self) -> io::Result<String> {
        let r = self.exchange();
        if let Some(hook) = self.on_reply.as_mut() {
            hook();
        }
        r
    }

    /// Writes the request in the output and reads one reply.
    fn exchange(&mut self) -> io::Result<String> {
        let deadline = Instant::now() + self.timeout;
        // Write the request (partial writes continue on WRITABLE).
        loop {
            match self.conn.flush() {
                WriteOutcome::Done => break,
                WriteOutcome::WouldBlock => {
                    self.conn.update_interest(self.poll.registry())?;
                    self.wait(deadline, "send")?;
                }
                WriteOutcome::Error(e) => return Err(e),
            }
        }
        self.conn.update_interest(self.poll.registry())?;
        // A reply already buffered (the server answered ahead)?
        if let Some(r) = take_reply(&mut self.conn) {
            return r;
        }
        // Wait for the socket, then read until one whole reply is in.
        loop {
            // A bare reply ends when the server pauses.
            let quiet = self.conn.last_bytes + self.bare_idle;
            let bare = self.conn.framer.waits_for_pause(&self.conn.input);
            if bare && Instant::now() >= quiet {
                self.conn.framer.end_burst();
                if let Some(r) = take_reply(&mut self.conn) {
                    return r;
                }
            }
            let wake = if bare { quiet } else { deadline };
            self.wait_until(wake, deadline, "reply")?;
            if self.events.is_empty() {
                continue; // the pause timer, not the socket
            }
            let mut reply = None;
            let outcome = self.conn.read_pass(
                &mut self.scratch,
                read_limit(MAX_REPLY_BYTES),
                usize::MAX,
                Instant::now(),
                |c| {
                    reply = take_reply(c);
                    reply.is_none()
                },
            );
            if matches!(outcome, ReadOutcome::Eof) && reply.is_none() {
                reply = take_reply(&mut self.conn);
            }
            match (reply, outcome) {
                (Some(r), _) => return r,
                (None, ReadOutcome::Eof) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                (None, ReadOutcome::Error(e)) => return Err(e),
                _ => {}
            }
        }
    }
}

impl Drop for Client {
    /// Closing is a socket event too: traced like any other (a no-op
    /// after [`Client::finish`]).
    fn drop(&mut self) {
        self.conn.close(self.poll.registry(), "client done");
    }
}

/// Takes one whole reply from the input, if there is one.
fn take_reply(c: &mut Conn<()>) -> Option<io::Result<String>> {
    match c.next_message(MAX_REPLY_BYTES) {
        Frame::Complete { body, total } => {
            let s = String::from_utf8_lossy(&c.input.data()[..body]).trim().to_string();
            crate::trace_event!(c.role, c.token, "DECODED", "{s}");
            c.consume(total);
            Some(Ok(s))
        }
        Frame::Oversize(_) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"))),
        Frame::Incomplete => None,
    }
}

/// A command of the client's little language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A protocol request.
    Request(Request),
    /// A raw message body, sent as is.
    Raw(String),
    /// Print help.
    Help,
    /// Leave.
    Quit,
}

/// The client's command help.
pub const COMMANDS_HELP: &str = "\
commands:
  get I [I ...]         read entries                 get 1 2
  put I=V [I=V ...]     write entries                put 1=10 2=-3
  add I [I ...]         sum entries                  add 0 4 7
  clr                   set every entry to 0
  stats                 the node's counters (OP=STS)
  dump                  the table, or the proxy's cache in eviction order (OP=DMP)
  raw MESSAGE           send a message as is         raw 'OP=GET;IND=1'
  OP=...                a line that starts with OP= is sent as is
  help, quit

At the prompt: line editing, history (~/.tablecache_history), Ctrl-C
clears the line, Ctrl-D or quit leaves. The exit status is 0, or 1 when
the last command got an error reply, or 2 when the connection was lost.";

fn number(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|_| format!("not a number: {s:?}"))
}

/// `s` without one pair of quotes around it (`'OP=GET;IND=1'`, as typed
/// at the prompt, where no shell takes them off).
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// The command word nearest to a mistyped one (at most two edits away).
fn closest(word: &str) -> Option<&'static str> {
    const WORDS: [&str; 9] = ["get", "put", "add", "clr", "stats", "dump", "raw", "help", "quit"];
    let w = word.to_ascii_lowercase();
    WORDS
        .iter()
        .map(|&c| (edits(&w, c), c))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// Edits (insert, delete, replace, swap two neighbours) from `a` to `b`.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Parses one command from its words. A line that starts with `OP=` (any
/// case) is a protocol message, sent as is.
pub fn parse_command(words: &[&str]) -> Result<Command, String> {
    let Some((&verb, args)) = words.split_first() else {
        return Err("empty command".into());
    };
    if verb.len() >= 3 && verb[..3].eq_ignore_ascii_case("op=") {
        return Ok(Command::Raw(words.join(" ")));
    }
    let need_args = |what: &str| {
        if args.is_empty() {
            Err(format!("{verb} needs {what}"))
        } else {
            Ok(())
        }
    };
    let no_args = || {
        if args.is_empty() {
            Ok(())
        } else {
            Err(format!("{verb} takes no arguments"))
        }
    };
    let req = |op, ind: Vec<i64>, data: Vec<i64>| {
        Command::Request(Request {
            ind,
            data,
            ..Request::new(op, &[], &[])
        })
    };
    match verb.to_ascii_lowercase().as_str() {
        "get" | "add" => {
            need_args("at least one index")?;
            let ind = args.iter().map(|a| number(a)).collect::<Result<Vec<_>, _>>()?;
            let op = if verb.eq_ignore_ascii_case("get") {
                Op::Get
            } else {
                Op::Add
            };
            Ok(req(op, ind, vec![]))
        }
        "put" => {
            need_args("INDEX=VALUE pairs")?;
            let mut ind = Vec::new();
            let mut data = Vec::new();
            for a in args {
                let (i, v) = a
                    .split_once('=')
                    .ok_or_else(|| format!("put takes INDEX=VALUE, not {a:?}"))?;
                ind.push(number(i)?);
                data.push(number(v)?);
            }
            Ok(req(Op::Put, ind, data))
        }
        "clr" | "clear" => no_args().map(|_| req(Op::Clr, vec![], vec![])),
        "stats" | "sts" => no_args().map(|_| req(Op::Sts, vec![], vec![])),
        "dump" | "dmp" => no_args().map(|_| req(Op::Dmp, vec![], vec![])),
        "raw" => {
            need_args("a message")?;
            Ok(Command::Raw(unquote(&args.join(" ")).to_string()))
        }
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        other => Err(match closest(other) {
            Some(near) => format!("unknown command {other:?}: did you mean {near}? (try help)"),
            None => format!("unknown command {other:?} (try help)"),
        }),
    }
}

/// Renders a reply for people: values for GET, the sum for ADD, `ok` for
/// PUT and CLR, one field a line for STS, `index:value` cells for DMP,
/// `error CODE: MSG` for errors.
pub fn render(op: Op, line: &str) -> (bool, String) {
    let mut r = Reply::default();
    if let Err(p) = r.parse(line.as_bytes()) {
        return (false, format!("error: unreadable reply {line:?} ({p})"));
    }
    if !r.is_ok() {
        let msg = if r.msg.is_empty() { "(no message)" } else { &r.msg };
        return (false, format!("error {}: {msg}", r.code));
    }
    let text = match op {
        Op::Get => r
            .ind
            .iter()
            .zip(&r.data)
            .map(|(i, v)| format!("{i}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        Op::Add => r.data.first().map(|v| v.to_string()).unwrap_or_default(),
        Op::Put | Op::Clr | Op::Ack => "ok".to_string(),
        Op::Lease => format!("lease of {} ms", r.ms.unwrap_or(0)),
        Op::Inv => "invalidation".to_string(),
        Op::Sts => line
            .split(';')
            .filter(|f| !f.starts_with("OP=") && !f.starts_with("CODE="))
            .collect::<Vec<_>>()
            .join("\n"),
        Op::Dmp => {
            let cells: Vec<String> = r.ind.iter().zip(&r.data).map(|(i, v)| format!("{i}:{v}")).collect();
            if cells.is_empty() {
                "(empty)".to_string()
            } else {
                cells.join(" ")
            }
        }
    };
    (true, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_command(&["put", "1=10", "2=-3"]).unwrap(),
            Command::Request(Request::new(Op::Put, &[1, 2], &[10, -3]))
        );
        assert_eq!(
            parse_command(&["GET", "1"]).unwrap(),
            Command::Request(Request::new(Op::Get, &[1], &[]))
        );
        assert!(parse_command(&["get"]).is_err());
        assert!(parse_command(&["put", "1"]).is_err());
        assert!(parse_command(&["get", "x"]).is_err());
        assert!(parse_command(&["clr", "1"]).is_err());
        assert_eq!(
            parse_command(&["raw", "OP=CLR"]).unwrap(),
            Command::Raw("OP=CLR".into())
        );
        // At the prompt no shell takes quotes off: raw does, one pair.
        assert_eq!(
            parse_command(&["raw", "'OP=GET;IND=1'"]).unwrap(),
            Command::Raw("OP=GET;IND=1".into())
        );
        assert_eq!(
            parse_command(&["raw", "\"OP=STS\""]).unwrap(),
            Command::Raw("OP=STS".into())
        );
        assert_eq!(
            parse_command(&["raw", "'OP=STS"]).unwrap(),
            Command::Raw("'OP=STS".into())
        );
        // A mistyped command word gets a suggestion.
        let e = parse_command(&["gte", "1"]).unwrap_err();
        assert!(e.contains("did you mean get?"), "{e}");
        let e = parse_command(&["stast"]).unwrap_err();
        assert!(e.contains("did you mean stats?"), "{e}");
        assert!(!parse_command(&["frobnicate"]).unwrap_err().contains("did you mean"));
        assert_eq!(parse_command(&["CLR"]).unwrap(), parse_command(&["clr"]).unwrap());
    }

    #[test]
    fn replies_render() {
        assert_eq!(
            render(Op::Get, "OP=GET;IND=1,2;DATA=10,-3;CODE=200"),
            (true, "1=10 2=-3".into())
        );
        assert_eq!(render(Op::Add, "OP=ADD;IND=1;DATA=7;CODE=200"), (true, "7".into()));
        assert_eq!(
            render(Op::Get, "OP=GET;CODE=400;MSG=index 12 out of range 0..9"),
            (false, "error 400: index 12 out of range 0..9".into())
        );
    }
}

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
    if client.peer_left() {
        if let Err(e) = client.reconnect() {
            return Step::Lost(e);
        }
        eprintln!("(the server had closed the connection; connected again)");
    }
    let start = Instant::now();
    let line = match client.request_raw(body.as_bytes()) {
        Ok(l) => l,
        Err(e) => match again(client, op.or_else(|| crate::proto::peek_op(body.as_bytes())), &body, e) {
            Again::Reply(l) => l,
            Again::NotResent => return Step::ErrorReply,
            Again::Lost(e) => return Step::Lost(e),
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
            Flow::Stop(Some(2))
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
