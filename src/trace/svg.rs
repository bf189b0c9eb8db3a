//! A trace as an SVG sequence diagram: one lane per socket, time flowing
//! down (one row per event, in stamp order; rows, not microseconds, so
//! the picture of a run is the same every run), an arrow per message from
//! the write that sent it to the read that received it, each socket's
//! states (the names of docs/socket-states.md) drawn on its lane, and the
//! table and cache after each step beside it. Self-contained: no script,
//! no fonts or images to fetch. Pure code.

use super::diagram::{Arrow, Diagram, Lane};
use std::fmt::Write;
use std::ops::Range;

const LANE_W: usize = 230;
const LEFT: usize = 20;
const TOP: usize = 70;
const ROW_H: usize = 20;
const STEP_H: usize = 34;
const NOTES_W: usize = 460;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Shortens `s` to `max` characters (with an ellipsis).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The state a socket is in after `event` (`detail` for `STATE`), by the
/// names of docs/socket-states.md; `None` when the event changes none.
pub fn state_after(event: &str, detail: &str) -> Option<String> {
    match event {
        "LISTEN" => Some("Listening".into()),
        "CONNECT_START" => Some("Connecting".into()),
        "ACCEPT" => Some("Open".into()),
        "STATE" => {
            let to = detail.split_once("-> ")?.1;
            Some(to.split([' ', '(']).next()?.to_string())
        }
        _ => None,
    }
}

/// What a lane's header says under its node name.
fn lane_role(conn: &str) -> String {
    match conn {
        "L" => "listener".into(),
        "U" => "upstream (to the server)".into(),
        "D" => "old upstream, draining".into(),
        "C" => "its socket".into(),
        "F" => "its log file (not a socket)".into(),
        n => format!("accepted connection {n}"),
    }
}

/// Draws `events[range]` of `d` (all of it by default), with the steps
/// that start inside the range.
pub fn render(d: &Diagram, range: Option<Range<usize>>, title: &str) -> String {
    let range = range.unwrap_or(0..d.events.len());
    let (arrows, _) = d.arrows();
    let arrows: Vec<&Arrow> = arrows
        .iter()
        .filter(|a| range.contains(&a.from) && range.contains(&a.to))
        .collect();
    let at = Layout::new(d, range.clone());
    let mut s = String::new();
    at.head(&mut s, title);
    at.lanes(&mut s);
    at.steps(&mut s);
    at.handovers(&mut s, d, range.clone());
    let sides = at.arrow_sides(d, &arrows);
    for k in range {
        at.event(&mut s, d, k, sides.get(&k) == Some(&true));
    }
    for a in arrows {
        at.arrow(&mut s, d, a);
    }
    s.push_str("</svg>\n");
    s
}

/// Where everything goes: the lanes shown, each event's row, the step
/// bands and their notes, the picture's size.
struct Layout<'a> {
    lanes: Vec<Lane>,
    row_y: Vec<Option<usize>>,
    bands: Vec<(usize, &'a str)>,
    notes: Vec<(usize, &'a [String])>,
    width: usize,
    height: usize,
    notes_x: usize,
}

impl<'a> Layout<'a> {
    fn new(d: &'a Diagram, range: Range<usize>) -> Layout<'a> {
        let shown = Diagram {
            events: d.events[range.clone()].to_vec(),
            steps: Vec::new(),
        };
        // Drawing order from the whole trace, kept only where the range
        // has events.
        let here = shown.lanes();
        let lanes: Vec<Lane> = d.lanes().into_iter().filter(|l| here.contains(l)).collect();
        // Rows: a step header takes a band; DECODED rides on its arrow.
        let mut y = TOP + 30;
        let mut row_y = vec![None; d.events.len()];
        let (mut bands, mut notes) = (Vec::new(), Vec::new());
        for k in range {
            for st in d.steps.iter().filter(|st| st.first == k) {
                // The table after the step, beside the step's own rows.
                bands.push((y, st.title.as_str()));
                notes.push((y + STEP_H, &st.notes[..]));
                y += STEP_H;
            }
            if d.events[k].event != "DECODED" {
                y += ROW_H;
                row_y[k] = Some(y);
            }
        }
        Layout {
            width: LEFT * 2 + lanes.len() * LANE_W + NOTES_W,
            height: y + 40,
            notes_x: LEFT + lanes.len() * LANE_W + 20,
            lanes,
            row_y,
            bands,
            notes,
        }
    }

    /// The middle of a socket's lane, if it is shown.
    fn x_of(&self, node: &str, conn: &str) -> Option<usize> {
        self.lanes
            .iter()
            .position(|(n, c)| n == node && c == conn)
            .map(|i| LEFT + LANE_W / 2 + i * LANE_W)
    }

    /// The document's head: size, fonts, arrowheads, the title.
    fn head(&self, s: &mut String, title: &str) {
        let (width, height) = (self.width, self.height);
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">
<title>{}</title>
<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f5fbf"/></marker>
<marker id="fin" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b03030"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>
"##,
            esc(title),
            esc(title)
        );
    }

    /// One lane per socket: its name, its role, a dashed line down.
    fn lanes(&self, s: &mut String) {
        s.push_str("<g class=\"lanes\">\n");
        for (i, (node, conn)) in self.lanes.iter().enumerate() {
            let x = LEFT + LANE_W / 2 + i * LANE_W;
            let _ = writeln!(
                s,
                r##"<g class="lane" data-lane="{} {}"><rect x="{}" y="{}" width="{}" height="34" rx="4" fill="#eef2f8" stroke="#8899aa"/><text x="{x}" y="{}" text-anchor="middle" font-weight="bold">{} {}</text><text x="{x}" y="{}" text-anchor="middle" fill="#555" font-size="10">{}</text><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#99a" stroke-dasharray="3,3"/></g>"##,
                esc(node),
                esc(conn),
                x - LANE_W / 2 + 8,
                TOP - 30,
                LANE_W - 16,
                TOP - 15,
                esc(node),
                esc(conn),
                TOP - 2,
                esc(&lane_role(conn)),
                TOP + 4,
                self.height - 20
            );
        }
        s.push_str("</g>\n");
    }

    /// Step bands, and the notes (table and cache) beside each step.
    fn steps(&self, s: &mut String) {
        for (y, title) in &self.bands {
            let _ = writeln!(
                s,
                r##"<g class="step"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#444"/><text x="{LEFT}" y="{}" font-weight="bold" font-size="12">{}</text></g>"##,
                y + 6,
                self.width - LEFT,
                y + 6,
                y + 22,
                esc(&clip(title, 150))
            );
        }
        for (y, lines) in &self.notes {
            for (j, line) in lines.iter().enumerate() {
                let _ = writeln!(
                    s,
                    r##"<text class="note" x="{}" y="{}" fill="#333">{}</text>"##,
                    self.notes_x,
                    y + 14 + j * 15,
                    esc(&clip(line, 64))
                );
            }
        }
    }

    /// Inside a node: a dotted line where its work moves from one socket
    /// to another (the proxy's client side handing a miss to its upstream).
    fn handovers(&self, s: &mut String, d: &Diagram, range: Range<usize>) {
        let mut last_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for k in range {
            let Some(y) = self.row_y[k] else { continue };
            let e = &d.events[k];
            if let Some(&p) = last_of.get(e.node.as_str()) {
                let prev = &d.events[p];
                // Only a hand-over: the next thing the node did, rows apart.
                let near = prev.conn != e.conn && k - p <= 4;
                if let (true, Some(x1), Some(x2), Some(y1)) = (
                    near,
                    self.x_of(&prev.node, &prev.conn),
                    self.x_of(&e.node, &e.conn),
                    self.row_y[p],
                ) {
                    let _ = writeln!(
                        s,
                        r##"<line class="inside" x1="{x1}" y1="{}" x2="{x2}" y2="{}" stroke="#aaa" stroke-width="1" stroke-dasharray="1,3"/>"##,
                        y1 - 4,
                        y - 4
                    );
                }
            }
            last_of.insert(&e.node, k);
        }
    }

    /// Which side of its dot an I/O event's arrow leaves or arrives on
    /// (true: the left): its label goes on the other side.
    fn arrow_sides(&self, d: &Diagram, arrows: &[&Arrow]) -> std::collections::HashMap<usize, bool> {
        let mut side = std::collections::HashMap::new();
        for a in arrows {
            let (f, t) = (&d.events[a.from], &d.events[a.to]);
            if let (Some(x1), Some(x2)) = (self.x_of(&f.node, &f.conn), self.x_of(&t.node, &t.conn)) {
                side.insert(a.from, x2 > x1);
                side.insert(a.to, x1 > x2);
            }
        }
        side
    }

    /// Event `k` on its lane: a state it enters, an I/O dot, or its name.
    fn event(&self, s: &mut String, d: &Diagram, k: usize, arrow_left: bool) {
        let (Some(y), e) = (self.row_y[k], &d.events[k]) else {
            return;
        };
        let Some(x) = self.x_of(&e.node, &e.conn) else { return };
        match (e.event.as_str(), state_after(&e.event, &e.detail)) {
            (_, Some(state)) => {
                let w = 14 + state.len() * 7;
                let _ = writeln!(
                    s,
                    r##"<g class="state" data-state="{}"><rect x="{}" y="{}" width="{w}" height="16" rx="8" fill="#fff4cc" stroke="#b8860b"/><text x="{x}" y="{}" text-anchor="middle" font-size="10">{}</text><text x="{}" y="{}" fill="#7a5c00" font-size="9">{}</text></g>"##,
                    esc(&state),
                    x - w / 2,
                    y - 12,
                    y - 1,
                    esc(&state),
                    x + w / 2 + 4,
                    y - 1,
                    esc(&e.event)
                );
            }
            ("READABLE" | "WRITABLE", None) => {
                let what = match e.bytes() {
                    Some(0) if e.detail.ends_with("EOF") => "read 0: EOF".to_string(),
                    Some(n) if e.event == "READABLE" => format!("read {n}"),
                    Some(n) => format!("write {n}"),
                    None => e.event.to_lowercase(),
                };
                let (tx, anchor) = if arrow_left { (x - 6, "end") } else { (x + 6, "start") };
                let _ = writeln!(
                    s,
                    r##"<g class="io"><circle cx="{x}" cy="{}" r="3.5" fill="#1f5fbf"/><text x="{tx}" y="{}" text-anchor="{anchor}" fill="#1f5fbf" font-size="9">{}</text></g>"##,
                    y - 4,
                    y - 1,
                    esc(&what)
                );
            }
            (ev, None) => {
                let bold = matches!(
                    ev,
                    "SOCKET" | "BIND" | "CONNECTED" | "PEER_FIN" | "SHUTDOWN" | "CLOSE" | "CONNECT_FAILED"
                );
                let text = if e.detail.is_empty() || bold {
                    ev.to_string()
                } else {
                    format!("{ev} {}", e.detail)
                };
                let _ = writeln!(
                    s,
                    r##"<text class="event" x="{}" y="{}" fill="{}" font-size="9"{}>{}</text>"##,
                    x + 6,
                    y - 1,
                    if bold { "#7a5c00" } else { "#666" },
                    if bold { " font-weight=\"bold\"" } else { "" },
                    esc(&clip(&text, 38))
                );
            }
        }
    }

    /// A message: from the write that sent it to the read that took it.
    fn arrow(&self, s: &mut String, d: &Diagram, a: &Arrow) {
        let (f, t) = (&d.events[a.from], &d.events[a.to]);
        let (Some(x1), Some(x2), Some(y1), Some(y2)) = (
            self.x_of(&f.node, &f.conn),
            self.x_of(&t.node, &t.conn),
            self.row_y[a.from],
            self.row_y[a.to],
        ) else {
            return;
        };
        let fin = a.label == "FIN";
        let (y1, y2) = (y1 - 4, y2 - 4);
        let _ = writeln!(
            s,
            r##"<g class="arrow" data-from="{} {}" data-to="{} {}"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{}" stroke-width="1.4" marker-end="url(#{})"/><text x="{}" y="{}" text-anchor="middle" font-size="10" fill="{}" stroke="white" stroke-width="3" paint-order="stroke">{}</text></g>"##,
            esc(&f.node),
            esc(&f.conn),
            esc(&t.node),
            esc(&t.conn),
            if fin { "#b03030" } else { "#1f5fbf" },
            if fin { "fin" } else { "head" },
            (x1 + x2) / 2,
            (y1 + y2) / 2 - 6,
            if fin { "#b03030" } else { "#0b3d91" },
            esc(&clip(&a.label, 44))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::line::Event;

    #[test]
    fn state_names_come_from_the_events() {
        assert_eq!(
            state_after("STATE", "Open -> ReadClosed (peer sent FIN)").as_deref(),
            Some("ReadClosed")
        );
        assert_eq!(state_after("STATE", "ReadClosed -> Closed").as_deref(), Some("Closed"));
        assert_eq!(state_after("ACCEPT", "local x, peer y").as_deref(), Some("Open"));
        assert_eq!(state_after("READABLE", "read=1"), None);
    }

    #[test]
    fn text_is_escaped_and_clipped() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn a_small_exchange_draws_lanes_states_and_arrows() {
        let text = "\
== hello
         1.000 client  C   CONNECT_START  connect() in progress (EINPROGRESS)
         2.000 server  0   ACCEPT         local 127.0.0.1:8080, peer 127.0.0.1:5000
         3.000 client  C   CONNECTED      local 127.0.0.1:5000, peer 127.0.0.1:8080
         3.500 client  C   STATE          Connecting -> Open (connect completed)
         4.000 client  C   WRITABLE       wrote=9 left=0
         5.000 server  0   READABLE       read=9 then WouldBlock
         6.000 server  0   DECODED        OP=GET;IND=1
    server table: 0:0 1:<0>
";
        let d = Diagram::parse(text);
        assert_eq!(d.events.len(), 7);
        assert!(Event::parse("         1.000 client  C   CONNECT_START  x").is_some());
        let svg = render(&d, None, "a <test>");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("<title>a &lt;test&gt;</title>"));
        assert_eq!(svg.matches("class=\"lane\"").count(), 2);
        assert_eq!(svg.matches("class=\"arrow\"").count(), 1);
        assert!(svg.contains(">OP=GET;IND=1</text>"));
        for st in ["Connecting", "Open"] {
            assert!(svg.contains(&format!("data-state=\"{st}\"")), "{st}");
        }
        assert!(svg.contains("server table: 0:0 1:&lt;0&gt;"));
        assert!(!svg.contains("<script"));
    }
}
