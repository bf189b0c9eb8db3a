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
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Replies can be long (DMP of a big table); this bounds them.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A connected client.
pub struct Client {
    poll: Poll,
    events: Events,
    conn: Conn<()>,
    scratch: Buffer,
    timeout: Duration,
    /// The silence that ends a bare reply.
    bare_idle: Duration,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Client {
    /// Connects without blocking: `connect()` starts it (EINPROGRESS), the
    /// socket turns WRITABLE when it is settled, and `take_error()` /
    /// `peer_addr()` say how.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let conn = Conn::connect(addr, CLIENT, 1, "client", poll.registry(), now, ())?;
        let mut c = Client {
            poll,
            events: Events::with_capacity(16),
            conn,
            scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
            timeout,
            bare_idle: Duration::from_millis(15),
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

    /// The server's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.conn.peer
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

/// Takes one whole reply from the input, if there is one.
fn take_reply(c: &mut Conn<()>) -> Option<io::Result<String>> {
    match c.next_message(MAX_REPLY_BYTES) {
        Frame::Complete { body, total } => {
            let s = String::from_utf8_lossy(&c.input.data()[..body]).trim().to_string();
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
  help, quit";

fn number(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|_| format!("not a number: {s:?}"))
}

/// Parses one command from its words.
pub fn parse_command(words: &[&str]) -> Result<Command, String> {
    let Some((&verb, args)) = words.split_first() else {
        return Err("empty command".into());
    };
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
    let req = |op, ind: Vec<i64>, data: Vec<i64>| Command::Request(Request { op, ind, data, seq: 0 });
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
            Ok(Command::Raw(args.join(" ")))
        }
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        other => Err(format!("unknown command {other:?} (try help)")),
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
    let start = Instant::now();
    let line = match client.request_raw(body.as_bytes()) {
        Ok(l) => l,
        Err(e) => return Step::Lost(e),
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

/// Reads commands from stdin, one a line (a prompt on a terminal, none when
/// piped), until EOF or `quit`. Returns the exit status: 0, 1 if any
/// command got an error reply, 2 if the connection was lost.
pub fn repl(client: &mut Client, timing: bool) -> u8 {
    let interactive = io::stdin().is_terminal();
    let mut worst = 0u8;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            crate::out!("tablecache> ");
            let _ = io::stdout().flush();
        }
        let Some(Ok(line)) = lines.next() else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let cmd = match parse_command(&words) {
            Ok(c) => c,
            Err(e) => {
                crate::outln!("error: {e}");
                worst = worst.max(1);
                continue;
            }
        };
        match run_command(client, &cmd, timing) {
            Step::Ok => {}
            Step::ErrorReply => worst = worst.max(1),
            Step::Quit => break,
            Step::Lost(e) => {
                eprintln!("tablecache client: {e}");
                return 2;
            }
        }
    }
    worst
}
