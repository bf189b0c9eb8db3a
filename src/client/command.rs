//! The client's little language: the command words (`get 1 2`,
//! `put 1=10`, `raw 'OP=..'`...), parsed into requests, with a "did you
//! mean" for a mistyped word; and replies rendered for people. Pure code.

use crate::proto::{Op, Reply, Request};

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
    fn edits_count_inserts_deletes_replacements_and_swaps() {
        assert_eq!(edits("get", "get"), 0);
        assert_eq!(edits("gte", "get"), 1); // a swap of neighbours
        assert_eq!(edits("ge", "get"), 1);
        assert_eq!(edits("gett", "get"), 1);
        assert_eq!(edits("pat", "put"), 1);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("", "dump"), 4);
        assert_eq!(closest("dmup"), Some("dump"));
        assert_eq!(closest("xyz"), None);
    }

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
