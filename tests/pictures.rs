//! The demo's pictures, checked the way a reader sees them: the SVG's
//! geometry (an arrow crosses only the lanes of the two nodes it joins, no
//! label under an arrow, nothing cut without its full text), and the
//! step-through player in a real browser (headless Chromium), whose DOM
//! must show, at each event asked for, the states and buffer sizes the
//! trace lines themselves say.

mod common;
use common::*;
use std::process::Command;

/// The value of `name="..."` in an element's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[start..].split('"').next()
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// True if segment (x1,y1)-(x2,y2) touches the box [x0,x1']×[y0,y1'].
/// Sampled finely rather than solved: independent of the code's geometry.
fn touches(seg: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    let steps = 2000;
    (0..=steps).any(|i| {
        let t = i as f64 / steps as f64;
        let (x, y) = (seg.0 + (seg.2 - seg.0) * t, seg.1 + (seg.3 - seg.1) * t);
        x >= b.0 && x <= b.2 && y >= b.1 && y <= b.3
    })
}

#[test]
fn the_full_demo_svg_is_laid_out_like_the_network_and_hides_nothing() {
    let dir = TempDir::new("pictures-svg");
    let file = dir.join("demo.svg");
    demo(&["--svg", file.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&file).unwrap();
    // Lanes: (node, conn) → x of the lane's middle, in order.
    let mut lanes: Vec<(String, String, f64)> = Vec::new();
    for part in svg.split("<g class=\"lane\" ").skip(1) {
        let name = attr(&format!(" {part}"), "data-lane").unwrap().to_string();
        let text = part.split("<text ").nth(1).unwrap();
        let (node, conn) = name.split_once(' ').unwrap();
        lanes.push((node.into(), conn.into(), num(&format!(" {text}"), "x")));
    }
    let order: Vec<String> = lanes.iter().map(|(n, c, _)| format!("{n} {c}")).collect();
    assert_eq!(
        order,
        [
            "client C",
            "proxy L",
            "proxy 0",
            "proxy U",
            "server L",
            "server 0",
            "server 1",
            "server F",
            "link U0",
            "link 0",
            "link L",
            "proxy2 U",
            "proxy2 0",
            "proxy2 L",
            "client2 C"
        ],
        "the network's order: client | proxy | server | link | proxy2 | client2"
    );
    // Arrows: their line and their label's box.
    let mut arrows = Vec::new();
    for part in svg.split("<g class=\"arrow\" ").skip(1) {
        let part = part.split("</g>").next().unwrap();
        let line = part.split("<line ").nth(1).unwrap().split("/>").next().unwrap();
        let line = format!(" {line}");
        let seg = (num(&line, "x1"), num(&line, "y1"), num(&line, "x2"), num(&line, "y2"));
        let label = part.split("<text ").nth(1).unwrap();
        let (head, body) = label.split_once('>').unwrap();
        let head = format!(" {head}");
        let shown = unescape(body.split('<').next().unwrap());
        // 10 px monospace: 0.6 em per character, ascent 8, descent 2.
        let (x, y, w) = (num(&head, "x"), num(&head, "y"), shown.chars().count() as f64 * 6.0);
        let x0 = if attr(&head, "text-anchor") == Some("end") {
            x - w
        } else {
            x
        };
        let from = attr(&format!(" {part}"), "data-from")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        let to = attr(&format!(" {part}"), "data-to")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        arrows.push((from, to, seg, (x0, y - 8.0, x0 + w, y + 2.0), shown));
    }
    assert!(arrows.len() > 40, "{} arrows", arrows.len());
    for (from, to, seg, _, label) in &arrows {
        let (lo, hi) = (seg.0.min(seg.2), seg.0.max(seg.2));
        for (node, conn, x) in &lanes {
            assert!(
                !(lo < *x && *x < hi) || node == from || node == to,
                "{from} -> {to} ({label}) crosses the lane {node} {conn}"
            );
        }
    }
    for (_, _, _, b, label) in &arrows {
        for (f, t, seg, _, other) in &arrows {
            assert!(
                !touches(*seg, *b),
                "the label {label:?} is under the arrow {f} -> {t} ({other})"
            );
        }
    }
    // Nothing cut without its full text: every "…" is followed by a
    // <title> holding the whole, which starts with what is shown.
    for (i, _) in svg.match_indices('…') {
        let before = &svg[..i];
        let shown = unescape(&before[before.rfind('>').unwrap() + 1..]);
        let rest = &svg[i + '…'.len_utf8()..];
        assert!(rest.starts_with("<title>"), "cut with no full text: {shown:?}");
        let full = unescape(rest["<title>".len()..].split("</title>").next().unwrap());
        assert!(
            full.starts_with(&shown) && full.len() > shown.len(),
            "{shown:?} vs {full:?}"
        );
    }
    // Notes are wrapped, never cut.
    for part in svg.split("class=\"note\"").skip(1) {
        assert!(!part.split("</text>").next().unwrap().contains('…'));
    }
    // The server speaks of itself; client2 is named.
    assert!(!svg.contains("server 1 PENDING reply waits for the upstream"));
    let text = demo(&[]);
    assert!(text.contains("client2 shows: ok"), "{text}");
    assert!(!text
        .lines()
        .any(|l| l.contains(" server ") && l.contains("waits for the upstream")));
}

/// The browser: `TABLECACHE_CHROMIUM`, else the first of Debian's and
/// others' names on the PATH.
fn chromium() -> Option<String> {
    if let Ok(c) = std::env::var("TABLECACHE_CHROMIUM") {
        return Some(c);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .map(String::from)
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Headless, as root, and quiet: no background connections (this
/// machine's network is closed; Chromium would try at every start).
const BROWSER_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// The page's DOM after its script ran, opened at `#event=N`.
fn dom_at(browser: &str, page: &std::path::Path, event: usize, profile: &std::path::Path) -> String {
    let url = format!("file://{}#event={event}", page.display());
    let out = Command::new(browser)
        .args(BROWSER_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("data-event="),
        "{browser} gave no DOM for {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// A lane's (state, in, out) as the DOM shows them.
fn lane_in_dom(dom: &str, lane: &str) -> (String, usize, usize) {
    let at = dom
        .find(&format!("data-lane=\"{lane}\""))
        .unwrap_or_else(|| panic!("no lane {lane}"));
    let tag = &dom[dom[..at].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let n = |k: &str| attr(tag, k).unwrap().parse::<usize>().unwrap();
    (
        attr(tag, "data-state").unwrap().to_string(),
        n("data-in"),
        n("data-out"),
    )
}

/// The number in `detail` after `key` (`read=15 ...` → 15).
fn after(detail: &str, key: &str) -> Option<usize> {
    let rest = &detail[detail.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A look at one event: its line (from 0), a lane, and the state, input
/// and output bytes the trace says it has then (`None`: not said there).
type Check<'a> = (usize, &'a str, Option<&'a str>, Option<usize>, Option<usize>);

#[test]
fn the_player_shows_in_a_browser_what_the_trace_says() {
    let Some(browser) = chromium() else {
        if std::env::var("TABLECACHE_SKIP_BROWSER").is_ok() {
            eprintln!("\n*** SKIPPED: no Chromium on this machine, and TABLECACHE_SKIP_BROWSER is set: the player was NOT checked in a browser ***\n");
            return;
        }
        panic!(
            "this test needs headless Chromium (Debian: apt-get install chromium; or set TABLECACHE_CHROMIUM to a browser); \
             .ci/run installs it. Set TABLECACHE_SKIP_BROWSER=1 to skip it knowingly"
        );
    };
    let dir = TempDir::new("player");
    let page = dir.join("demo.html");
    let text = demo(&["--html", page.to_str().unwrap()]);
    // The player numbers events as the trace prints them, from 1.
    let lines: Vec<(String, String, String, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[0].contains('.') && f[0].replace('.', "").bytes().all(|b| b.is_ascii_digit()))
                .then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string(), f[4..].join(" ")))
        })
        .collect();
    let find = |from: usize, node: &str, conn: &str, event: &str, detail: &str| -> usize {
        from + lines[from..]
            .iter()
            .position(|(n, c, e, d)| n == node && c == conn && e == event && d.starts_with(detail))
            .unwrap_or_else(|| panic!("no {node} {conn} {event} {detail} after line {from}"))
    };
    // Each check: the line (0-based), the lane, and what the trace line
    // itself says the lane holds then (None: not said by this line).
    let miss = find(0, "proxy", "0", "READABLE", "read=15");
    let mut checks: Vec<Check> = vec![
        (0, "server L", Some("-"), Some(0), Some(0)),
        (
            find(0, "server", "L", "LISTEN", ""),
            "server L",
            Some("Listening"),
            None,
            None,
        ),
        (
            find(0, "proxy", "U", "CONNECT_START", ""),
            "proxy U",
            Some("Connecting"),
            None,
            None,
        ),
        (miss, "proxy 0", Some("Open"), after(&lines[miss].3, "read="), Some(0)),
        (find(miss, "proxy", "0", "DECODED", ""), "proxy 0", None, Some(0), None),
    ];
    // Lines that queue output say how much the buffer holds after them.
    let to_write = |d: &str| {
        let head = &d[..d.find(" bytes to write").unwrap()];
        head.rsplit([' ', '(']).next().unwrap().parse::<usize>().ok()
    };
    for (lane, event, detail) in [
        ("proxy U", "SEND", "GET (fetch)"),
        ("server 0", "QUEUED", "reply queued"),
        ("proxy 0", "QUEUED", "reply queued (the server answered)"),
        ("server 0", "QUEUED", "OP=INV"),
    ] {
        let (node, conn) = lane.split_once(' ').unwrap();
        let k = find(miss, node, conn, event, detail);
        checks.push((k, lane, Some("Open"), None, to_write(&lines[k].3)));
    }
    let w = find(miss, "server", "0", "WRITABLE", "wrote=");
    checks.push((w, "server 0", Some("Open"), None, after(&lines[w].3, "left=")));
    let half = find(0, "proxy", "0", "STATE", "Open -> ReadClosed");
    checks.push((half, "proxy 0", Some("ReadClosed"), Some(0), None));
    checks.push((
        find(half, "proxy", "0", "CLOSE", ""),
        "proxy 0",
        Some("Closed"),
        Some(0),
        Some(0),
    ));
    checks.push((
        find(0, "client", "C", "STATE", "Open -> Lingering"),
        "client C",
        Some("Lingering"),
        None,
        None,
    ));
    checks.push((lines.len() - 1, "client C", Some("Closed"), Some(0), Some(0)));
    assert!(checks.len() >= 10);
    let profile = dir.join("profile");
    for (k, lane, state, input, output) in checks {
        let dom = dom_at(&browser, &page, k + 1, &profile);
        assert!(dom.contains(&format!("data-event=\"{}\"", k + 1)), "event {}", k + 1);
        let (s, i, o) = lane_in_dom(&dom, lane);
        let what = format!("event {} ({:?}): {lane} shows {s} in={i} out={o}", k + 1, lines[k]);
        if let Some(want) = state {
            assert_eq!(s, want, "{what}");
        }
        if let Some(want) = input {
            assert_eq!(i, want, "{what}");
        }
        if let Some(want) = output {
            assert_eq!(o, want, "{what}");
        }
        // The line shown is the trace's, whole, with the function named.
        let (node, conn, event, detail) = &lines[k];
        let shown = dom
            .split("id=\"line\">")
            .nth(1)
            .unwrap()
            .split("</pre>")
            .next()
            .unwrap();
        let shown = unescape(shown);
        let f: Vec<&str> = shown.split_whitespace().collect();
        assert_eq!(
            (f[1], f[2], f[3], f[4..].join(" ")),
            (node.as_str(), conn.as_str(), event.as_str(), detail.clone()),
            "{what}"
        );
        assert!(dom.contains("class=\"fn\""), "{what}: no function named");
    }
    // The tables as of an event: the cache after the first miss, the
    // server's table after the PUT through proxy2 applied.
    let cached = find(miss, "proxy", "U", "CACHE", "");
    let dom = dom_at(&browser, &page, cached + 1, &profile);
    assert!(
        dom.contains(&format!("data-node=\"proxy\" data-contents=\"{}\"", lines[cached].3)),
        "{}",
        lines[cached].3
    );
    let applied = find(find(0, "server", "0", "QUEUED", "OP=INV"), "server", "1", "TABLE", "");
    let dom = dom_at(&browser, &page, applied + 1, &profile);
    assert!(
        dom.contains("data-contents=\"0:0 1:10 2:20 3:33 4:40"),
        "{}",
        lines[applied].3
    );
    let dom = dom_at(&browser, &page, applied, &profile);
    assert!(
        dom.contains("data-contents=\"0:0 1:10 2:20 3:30 4:40"),
        "one event earlier, 3 is still 30"
    );
}

#[test]
fn merged_traces_of_separate_processes_give_each_client_connection_its_lane() {
    let dir = TempDir::new("merged");
    let traced = |args: &[&str], log: &std::path::Path| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--trace");
        spawn_command_logged(cmd, log)
    };
    let (slog, plog) = (dir.join("server.log"), dir.join("proxy.log"));
    let server = traced(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"], &slog);
    let proxy = traced(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &server.addr], &plog);
    // Two one-shot clients one after the other (the same name, and the
    // same slab key at the proxy once the first closed), then a named one.
    let mut logs = vec![slog, plog];
    for (i, name) in ["client", "client", "client-b"].into_iter().enumerate() {
        let log = dir.join(&format!("client{i}.log"));
        let out = Command::new(BIN)
            .args([
                "client",
                "--trace",
                "--name",
                name,
                "--connect",
                &proxy.addr,
                "get",
                "1",
            ])
            .stderr(std::fs::File::create(&log).unwrap())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1=0\n");
        logs.push(log);
    }
    for p in [proxy, server] {
        p.signal("TERM");
        let mut p = p;
        p.child.wait().unwrap();
    }
    let merged: String = logs.iter().map(|l| std::fs::read_to_string(l).unwrap()).collect();
    let view = |extra: &[&str]| {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .arg("trace-view")
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(merged.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let svg = view(&[]);
    let lanes: Vec<&str> = svg
        .split("<g class=\"lane\" data-lane=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap())
        .collect();
    for want in [
        "client C",
        "client C.2",
        "client-b C",
        "proxy 0",
        "proxy 0.2",
        "proxy 0.3",
    ] {
        assert!(lanes.contains(&want), "no lane {want}: {lanes:?}");
    }
    // Each client connection's request goes to its own accepted socket.
    for (c, p) in [
        ("client C", "proxy 0"),
        ("client C.2", "proxy 0.2"),
        ("client-b C", "proxy 0.3"),
    ] {
        assert!(
            svg.contains(&format!("data-from=\"{c}\" data-to=\"{p}\"")),
            "{c} -> {p}"
        );
    }
    // The player of the same trace has the same lanes.
    let page = view(&["--html"]);
    assert!(
        page.contains(r#"["client","C.2","its socket"]"#),
        "{}",
        &page[..2000.min(page.len())]
    );
}

/// A player page's embedded run with every digit run as `#` and every
/// run of spaces as one: times, ports and durations (and the width of
/// the time column) and the server's random lease id change from run to
/// run; the events, their words and their order do not.
fn masked_run(page: &str) -> String {
    let data = page
        .split("id=\"trace\">")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let mut parts = data.split("ID=");
    let mut data = parts.next().unwrap_or("").to_string();
    for p in parts {
        data.push_str("ID=#");
        data.push_str(&p[p.find(';').unwrap_or(p.len())..]);
    }
    let mut out = String::with_capacity(data.len());
    for c in data.chars() {
        let c = if c.is_ascii_digit() { '#' } else { c };
        if !((c == '#' || c == ' ') && out.ends_with(c)) {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_committed_player_is_what_the_demo_plays_now() {
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/demo-player.html");
    let dir = TempDir::new("player-now");
    let page = dir.join("demo.html");
    demo(&["--html", page.to_str().unwrap()]);
    let now = std::fs::read_to_string(&page).unwrap();
    let old = std::fs::read_to_string(committed).unwrap();
    // The page around the data (style, script) must be the same too.
    let around = |p: &str| {
        let (head, rest) = p.split_once("id=\"trace\">").unwrap();
        (head.to_string(), rest.split_once("</script>").unwrap().1.to_string())
    };
    assert!(
        masked_run(&old) == masked_run(&now) && around(&old) == around(&now),
        "docs/demo-player.html is not what the demo plays now; regenerate it with\n  cargo run --release -- demo --html docs/demo-player.html"
    );
    // The walkthrough's link opens it at the GET miss's first event.
    let walk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/walkthrough.md")).unwrap();
    let link: usize = walk
        .split("demo-player.html#event=")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let steps = old.split("\"steps\":[").nth(1).unwrap();
    let first: usize = steps
        .split('[')
        .find(|s| s.contains("\"GET 1 2: a miss"))
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(
        link,
        first + 1,
        "docs/walkthrough.md links event {link}; the GET miss starts at {}",
        first + 1
    );
}
