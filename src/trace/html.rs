//! A trace as one self-contained HTML page that plays it event by event:
//! every socket's state and buffer bytes, the messages, each node's table
//! or cache, the trace line and the function that logged it. No network,
//! no framework: the replayed trace is embedded as JSON data, and a small
//! hand-written script (player.js, beside this file) draws it. Pure code.
//!
//! The page is a snapshot per event computed here ([`super::replay`]); the
//! script only shows the one the URL asks for (`#event=57`, numbered from
//! 1 like the lines of the trace), so what the page shows is what the
//! trace says, and a test reads it back from the browser's DOM.

use super::diagram::Diagram;
use super::emitters::emitter;
use super::replay::Replay;
use std::fmt::Write;

const SCRIPT: &str = include_str!("player.js");
const STYLE: &str = include_str!("player.css");

/// A JSON string literal, safe inside a `<script>` element (`</` is
/// written `<\/`, so the data cannot close its element).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The states in the order of docs/socket-states.md; `-` is "no state
/// yet" (not created, a listener before `LISTEN`, a file).
const STATES: &[&str] = &[
    "-",
    "Connecting",
    "Listening",
    "Open",
    "ReadClosed",
    "Closing",
    "Lingering",
    "Closed",
];

/// The replayed trace as the JSON the script reads.
fn data(d: &Diagram, title: &str) -> String {
    let r = Replay::new(d);
    let mut s = String::new();
    let _ = write!(s, "{{\"title\":{},\"states\":[", json_str(title));
    s.push_str(&STATES.iter().map(|x| json_str(x)).collect::<Vec<_>>().join(","));
    s.push_str("],\"lanes\":[");
    let lanes: Vec<String> = r
        .lanes
        .iter()
        .map(|(n, c)| format!("[{},{},{}]", json_str(n), json_str(c), json_str(&super::lanes::role(c))))
        .collect();
    s.push_str(&lanes.join(","));
    s.push_str("],\"events\":[\n");
    let origin = d.events.first().map_or(0, |e| e.at);
    let events: Vec<String> = d
        .events
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let lane = r.lanes.iter().position(|(n, c)| *n == e.node && *c == e.conn);
            let (function, file) = emitter(e).map_or(("", ""), |m| (m.function, m.file));
            let sockets: Vec<String> = r.sockets[k]
                .iter()
                .map(|x| {
                    let st = STATES.iter().position(|s| Some(*s) == x.state.as_deref()).unwrap_or(0);
                    format!("{st},{},{}", x.input, x.output)
                })
                .collect();
            format!(
                "[{},{},{},{},{},{},[{}]]",
                json_str(&e.display_from(origin).to_string()),
                lane.map_or("-1".to_string(), |l| l.to_string()),
                json_str(&e.event),
                json_str(&e.detail),
                json_str(function),
                json_str(file),
                sockets.join(",")
            )
        })
        .collect();
    s.push_str(&events.join(",\n"));
    s.push_str("],\n\"arrows\":[");
    let arrows: Vec<String> = d
        .arrows()
        .0
        .iter()
        .map(|a| format!("[{},{},{}]", a.from, a.to, json_str(&a.label)))
        .collect();
    s.push_str(&arrows.join(","));
    s.push_str("],\n\"steps\":[");
    let steps: Vec<String> = d
        .steps
        .iter()
        .map(|st| format!("[{},{}]", st.first, json_str(&st.title)))
        .collect();
    s.push_str(&steps.join(","));
    s.push_str("],\n\"tables\":[");
    let tables: Vec<String> = r
        .tables
        .iter()
        .map(|(k, n, t)| format!("[{k},{},{}]", json_str(n), json_str(t)))
        .collect();
    s.push_str(&tables.join(","));
    s.push_str("]}");
    s
}

/// The player page for `d`.
pub fn render(d: &Diagram, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{STYLE}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<nav>
<button id="back" type="button" title="previous event (left arrow)">&#9664; Back</button>
<button id="next" type="button" title="next event (right arrow)">Next &#9654;</button>
<span id="where"></span>
<label>step <select id="steps"></select></label>
<span class="keys">keys: &larr; &rarr; (event), PgUp PgDn (step), Home End</span>
</nav>
</header>
<main>
<section id="now" aria-live="polite"><div id="step"></div><pre id="line"></pre><div id="emitter"></div><div id="flight"></div></section>
<section id="sockets"></section>
<section id="seq"></section>
<section id="tables"></section>
</main>
<noscript><p>The player needs JavaScript; the trace itself is in the page's data, and `tablecache trace-view` draws it as an SVG.</p></noscript>
<script type="application/json" id="trace">{}</script>
<script>
{SCRIPT}</script>
</body>
</html>
"#,
        data(d, title),
        title = esc(title),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_for_a_script_element() {
        assert_eq!(json_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_str("</script>"), r#""<\/script>""#);
        assert_eq!(json_str("x\ny\u{1}"), r#""x\ny\u0001""#);
    }

    #[test]
    fn the_page_carries_the_replay_and_no_link_out() {
        let text = "\
== hello
         1.000 client  C   CONNECT_START  connect() in progress (EINPROGRESS)
         2.000 server  0   ACCEPT         local 127.0.0.1:8080, peer 127.0.0.1:5000
         3.000 client  C   CONNECTED      local 127.0.0.1:5000, peer 127.0.0.1:8080
         3.500 client  C   STATE          Connecting -> Open (connect completed)
         3.700 client  C   QUEUED         request queued, 13 bytes to write
         4.000 client  C   WRITABLE       wrote=13 left=0
         5.000 server  0   READABLE       read=13 then WouldBlock
         6.000 server  0   DECODED        OP=GET;IND=1 (13 bytes)
";
        let d = Diagram::parse(text);
        let page = render(&d, "a <test>");
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<title>a &lt;test&gt;</title>"));
        // Lanes, and the snapshot after the read: client Open, server 0
        // Open with 13 bytes in.
        assert!(page.contains(r#""lanes":[["client","C","its socket"],["server","0","accepted connection 0"]]"#));
        assert!(
            page.contains(r#""READABLE","read=13 then WouldBlock","Conn::fill","src\/conn\/read.rs",[3,0,0,3,13,0]]"#),
            "{page}"
        );
        assert!(page.contains(r#"[3,0,0,3,0,0]]"#), "the DECODED takes the 13 bytes");
        assert!(page.contains(r#""arrows":[[5,6,"OP=GET;IND=1"]]"#));
        assert!(page.contains(r#""steps":[[0,"hello"]]"#));
        // Nothing fetched: no link, no source, no import, no request; the
        // one URL is the SVG namespace's name.
        for bad in ["src=\"", "<link", "@import", "url(http", "fetch(", "XMLHttpRequest"] {
            assert!(!page.contains(bad), "{bad}");
        }
        assert_eq!(page.matches("http").count(), 1);
    }
}
