//! A trace as an SVG sequence diagram: one lane per socket, time flowing
//! down (one row per event, in stamp order; rows, not microseconds, so
//! the picture of a run is the same every run), an arrow per message from
//! the write that sent it to the read that received it, each socket's
//! states (the names of docs/socket-states.md) drawn on its lane, and the
//! table and cache after each step beside it. Self-contained: no script,
//! no fonts or images to fetch. Pure code.

use super::diagram::{Arrow, Diagram, Lane};
use super::place::{self, Placed, Seg};
use super::replay::state_after;
use std::fmt::Write;
use std::ops::Range;

const LANE_W: usize = 230;
const LEFT: usize = 20;
const TOP: usize = 70;
const ROW_H: usize = 20;
const STEP_H: usize = 34;
const NOTES_W: usize = 460;
/// Characters of a note's line, of an event's text, of a message label,
/// of a step's title (the rest in a `<title>`, or wrapped for notes).
const NOTE_CHARS: usize = 64;
const EVENT_CHARS: usize = 38;
const LABEL_CHARS: usize = 44;
const TITLE_CHARS: usize = 150;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Shortens `s` to `max` characters (with an ellipsis); the full text
/// too when cut, for a `<title>`.
fn clipped(s: &str, max: usize) -> (String, Option<&str>) {
    if s.chars().count() <= max {
        (s.to_string(), None)
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        (t, Some(s))
    }
}

/// Splits `s` into lines of at most `width` characters at spaces (a
/// longer word gets a line of its own).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split(' ') {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
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
    let drawn: Vec<(&Arrow, Seg)> = arrows.iter().filter_map(|&a| Some((a, at.segment(d, a)?))).collect();
    let texts: Vec<(String, Option<&str>)> = drawn.iter().map(|(a, _)| clipped(&a.label, LABEL_CHARS)).collect();
    let spots = place::labels(
        &drawn
            .iter()
            .zip(&texts)
            .map(|((_, seg), (t, _))| (*seg, t.chars().count()))
            .collect::<Vec<_>>(),
    );
    for (((a, seg), text), spot) in drawn.iter().zip(&texts).zip(&spots) {
        arrow(&mut s, d, a, seg, text, spot);
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
        // Rows: a step header takes a band; DECODED rides on its arrow;
        // TABLE and CACHE lines are the player's (the notes show tables).
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
            if !matches!(d.events[k].event.as_str(), "DECODED" | "TABLE" | "CACHE") {
                y += ROW_H;
                row_y[k] = Some(y);
            }
        }
        Layout {
            width: LEFT * 2 + lanes.len() * LANE_W + NOTES_W + 90,
            height: y + 40,
            // Clear of the last lane's event texts, which run right of it.
            notes_x: LEFT + lanes.len() * LANE_W + 110,
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
                esc(&super::lanes::role(conn)),
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
                {
                    let (shown, full) = clipped(title, TITLE_CHARS);
                    format!("{}{}", esc(&shown), self::title(full))
                }
            );
        }
        for (y, notes) in &self.notes {
            let lines = notes.iter().flat_map(|n| {
                // A wrapped note's next lines are indented under its first.
                wrap(n, NOTE_CHARS)
                    .into_iter()
                    .enumerate()
                    .map(|(j, l)| if j == 0 { l } else { format!("  {l}") })
            });
            for (j, line) in lines.enumerate() {
                let _ = writeln!(
                    s,
                    r##"<text class="note" x="{}" y="{}" fill="#333">{}</text>"##,
                    self.notes_x,
                    y + 14 + j * 15,
                    esc(&line)
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
        // CLOSE and CONNECT_FAILED end in `Closed` too, but are drawn as
        // the events they are (a STATE line drew the state).
        let state =
            state_after(&e.event, &e.detail).filter(|_| !matches!(e.event.as_str(), "CLOSE" | "CONNECT_FAILED"));
        match (e.event.as_str(), state) {
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
                let full = if e.detail.is_empty() {
                    ev.to_string()
                } else {
                    format!("{ev} {}", e.detail)
                };
                // A bold event shows its name; its detail is in the title.
                let (shown, cut) = if bold {
                    (ev.to_string(), None)
                } else {
                    clipped(&full, EVENT_CHARS)
                };
                let whole = (shown != full).then_some(cut.unwrap_or(&full));
                let _ = writeln!(
                    s,
                    r##"<text class="event" x="{}" y="{}" fill="{}" font-size="9"{}>{}{}</text>"##,
                    x + 6,
                    y - 1,
                    if bold { "#7a5c00" } else { "#666" },
                    if bold { " font-weight=\"bold\"" } else { "" },
                    esc(&shown),
                    title(whole)
                );
            }
        }
    }

    /// Where a message's arrow runs, when both its ends are shown.
    fn segment(&self, d: &Diagram, a: &Arrow) -> Option<Seg> {
        let (f, t) = (&d.events[a.from], &d.events[a.to]);
        let (x1, x2) = (self.x_of(&f.node, &f.conn)?, self.x_of(&t.node, &t.conn)?);
        let (y1, y2) = (self.row_y[a.from]? - 4, self.row_y[a.to]? - 4);
        Some(Seg {
            x1: x1 as f64,
            y1: y1 as f64,
            x2: x2 as f64,
            y2: y2 as f64,
        })
    }
}

/// A message: from the write that sent it to the read that took it, its
/// label where [`place::labels`] put it.
fn arrow(s: &mut String, d: &Diagram, a: &Arrow, seg: &Seg, (text, full): &(String, Option<&str>), spot: &Placed) {
    let (f, t) = (&d.events[a.from], &d.events[a.to]);
    let fin = a.label == "FIN";
    let _ = writeln!(
        s,
        r##"<g class="arrow" data-from="{} {}" data-to="{} {}"><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="1.4" marker-end="url(#{})"/><text class="label" x="{:.0}" y="{:.0}" text-anchor="{}" font-size="10" fill="{}">{}{}</text></g>"##,
        esc(&f.node),
        esc(&f.conn),
        esc(&t.node),
        esc(&t.conn),
        seg.x1,
        seg.y1,
        seg.x2,
        seg.y2,
        if fin { "#b03030" } else { "#1f5fbf" },
        if fin { "fin" } else { "head" },
        spot.x,
        spot.y,
        if spot.end { "end" } else { "start" },
        if fin { "#b03030" } else { "#0b3d91" },
        esc(text),
        title(*full)
    );
}

/// A `<title>` with the full text of something shown cut (a tooltip, and
/// what a screen reader says), or nothing.
fn title(full: Option<&str>) -> String {
    full.map_or(String::new(), |t| format!("<title>{}</title>", esc(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::line::Event;

    #[test]
    fn text_is_escaped_clipped_and_wrapped() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
        assert_eq!(clipped("abcdef", 4), ("abc…".to_string(), Some("abcdef")));
        assert_eq!(clipped("abc", 4), ("abc".to_string(), None));
        assert_eq!(wrap("aa bb cc dddddd e", 5), ["aa bb", "cc", "dddddd", "e"]);
        assert_eq!(title(Some("a<b")), "<title>a&lt;b</title>");
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
