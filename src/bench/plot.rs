//! Latency distributions as a picture: latency against percentile on the
//! usual 1/(1-p) axis (so 99%, 99.9%, 99.99% are evenly spaced), one curve
//! per run, from HdrHistogram percentile-distribution files (`bench
//! --hdr-out`, or any tool that writes that format). Self-contained SVG.
//! Pure code.

use std::fmt::Write;

/// One run's curve: (percentile 0..1, latency in ms), in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The legend's text.
    pub name: String,
    /// Points, percentile rising.
    pub points: Vec<(f64, f64)>,
}

/// Reads a percentile-distribution text: the rows of
/// `Value Percentile TotalCount 1/(1-Percentile)`; headers, blank lines and
/// `#[...]` footers are skipped.
pub fn parse_hdr(name: &str, text: &str) -> Result<Curve, String> {
    let mut points = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || line.trim_start().starts_with('#') {
            continue;
        }
        let (Ok(v), Ok(p)) = (f[0].parse::<f64>(), f[1].parse::<f64>()) else {
            continue; // the header
        };
        if !(0.0..=1.0).contains(&p) || !v.is_finite() {
            return Err(format!("{name}: not a percentile distribution: {line:?}"));
        }
        points.push((p, v));
    }
    if points.is_empty() {
        return Err(format!("{name}: no percentile rows (write one with bench --hdr-out)"));
    }
    Ok(Curve {
        name: name.to_string(),
        points,
    })
}

/// Where percentile `p` sits on the x axis: log10(1/(1-p)), capped at
/// `max` nines.
fn x_of(p: f64, max: f64) -> f64 {
    if p >= 1.0 {
        max
    } else {
        (1.0 / (1.0 - p)).log10().min(max)
    }
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// Latency ticks from `lo` to `hi` (ms): 1, 2 and 5 of each decade, or
/// only the 1s when that would be too many to read.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let steps: &[f64] = if last - first > 4 { &[1.0] } else { &[1.0, 2.0, 5.0] };
    let mut t = Vec::new();
    for e in first..=last {
        for &m in steps {
            let v = m * 10f64.powi(e);
            if v >= lo * 0.999 && v <= hi * 1.001 {
                t.push(v);
            }
        }
    }
    t
}

/// The nearest 1-2-5 value at or below `v` (`up`: at or above).
fn round125(v: f64, up: bool) -> f64 {
    let e = v.log10().floor();
    let base = 10f64.powf(e);
    let steps = [1.0, 2.0, 5.0, 10.0];
    let m = v / base;
    let pick = if up {
        steps.iter().copied().find(|&s| s >= m * 0.999).unwrap_or(10.0)
    } else {
        steps.iter().rev().copied().find(|&s| s <= m * 1.001).unwrap_or(1.0)
    };
    pick * base
}

/// A latency in ms, said in the unit that reads best (µs below 1 ms, s
/// from 1 s).
pub fn label(ms: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if ms < 1.0 {
        format!("{} µs", trim(ms * 1000.0))
    } else if ms < 1000.0 {
        format!("{} ms", trim(ms))
    } else {
        format!("{} s", trim(ms / 1000.0))
    }
}

/// Draws the curves: latency on a log axis (ticks at 1, 2, 5 of each
/// decade, labelled in µs, ms or s), percentile on HdrHistogram's
/// 1/(1-p) axis. A log axis keeps one slow maximum from flattening every
/// other curve, as HdrHistogram's own plotter does.
pub fn svg(title: &str, curves: &[Curve]) -> String {
    let ax = Axes::fit(curves);
    let (w, h, left) = (W, H, LEFT);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
<title>{}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="24" font-size="15" font-weight="bold">{}</text>"##,
        esc(title),
        esc(title)
    );
    ax.grid(&mut s);
    ax.curves(&mut s, curves);
    s.push_str("</svg>\n");
    s
}

/// The chart's size and margins.
const W: f64 = 860.0;
const H: f64 = 480.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// The chart's scales: `nines` of percentile across, latencies `ylo..yhi`
/// (ms) up a log axis.
struct Axes {
    nines: f64,
    ylo: f64,
    yhi: f64,
}

impl Axes {
    /// Scales that fit the curves.
    fn fit(curves: &[Curve]) -> Axes {
        // Nines shown: enough for the deepest percentile below 100%.
        let deepest = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|&(p, _)| p))
            .filter(|&p| p < 1.0)
            .fold(0.0f64, f64::max);
        let nines = x_of(deepest, 7.0).ceil().clamp(2.0, 7.0);
        let values = || curves.iter().flat_map(|c| c.points.iter().map(|&(_, v)| v));
        // The axis spans the values, from a 1-2-5 value below the least
        // (a microsecond at least) to one above the greatest.
        let least = values().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
        let least = if least.is_finite() { least.max(0.001) } else { 0.001 };
        let most = values().fold(0.0f64, f64::max).max(least * 2.0);
        Axes {
            nines,
            ylo: round125(least, false),
            yhi: round125(most, true),
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + x / self.nines * (W - LEFT - RIGHT)
    }

    fn py(&self, v: f64) -> f64 {
        let (llo, lhi) = (self.ylo.log10(), self.yhi.log10());
        H - BOTTOM - (v.max(self.ylo).log10() - llo) / (lhi - llo) * (H - TOP - BOTTOM)
    }

    /// Axes, a grid line per nine, latency ticks, the axes' names.
    fn grid(&self, s: &mut String) {
        let (w, h, left, right, top, bottom) = (W, H, LEFT, RIGHT, TOP, BOTTOM);
        for k in 0..=(self.nines as i32) {
            let x = self.px(k as f64);
            let label = match k {
                0 => "0%".to_string(),
                k => format!("{}%", 100.0 - 100.0 / 10f64.powi(k)),
            };
            let _ = writeln!(
                s,
                r##"<line class="grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                h - bottom,
                h - bottom + 18.0
            );
        }
        for v in ticks(self.ylo, self.yhi) {
            let y = self.py(v);
            let _ = writeln!(
                s,
                r##"<line class="tick" x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                w - right,
                left - 6.0,
                y + 4.0,
                label(v)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"##,
            (left + w - right) / 2.0,
            h - 16.0,
            (top + h - bottom) / 2.0
        );
    }

    /// One line per curve, and its key.
    fn curves(&self, s: &mut String, curves: &[Curve]) {
        for (k, c) in curves.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let pts: Vec<String> = c
                .points
                .iter()
                .map(|&(p, v)| format!("{:.1},{:.1}", self.px(x_of(p, self.nines)), self.py(v)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline class="curve" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
                pts.join(" ")
            );
            let ly = TOP + 16.0 + 18.0 * k as f64;
            let _ = writeln!(
                s,
                r##"<g class="legend"><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text></g>"##,
                LEFT + 14.0,
                ly - 4.0,
                LEFT + 38.0,
                ly - 4.0,
                LEFT + 44.0,
                ly,
                esc(&c.name)
            );
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HGRM: &str = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
       0.013 0.000000000000          6           1.00\n\
       0.027 0.500000000000       3751           2.00\n\
       0.100 0.990000000000       7906         100.00\n\
       1.172 1.000000000000      36370\n\
#[Mean    =        0.052, StdDeviation   =        0.029]\n";

    #[test]
    fn a_distribution_file_parses_into_points() {
        let c = parse_hdr("run", HGRM).unwrap();
        assert_eq!(c.points, vec![(0.0, 0.013), (0.5, 0.027), (0.99, 0.1), (1.0, 1.172)]);
        assert!(parse_hdr("x", "hello\n").unwrap_err().contains("no percentile rows"));
        assert!(parse_hdr("x", "1.0 7.5 3 4\n").is_err());
    }

    #[test]
    fn the_axis_spaces_the_nines_evenly() {
        assert_eq!(x_of(0.0, 6.0), 0.0);
        assert!((x_of(0.9, 6.0) - 1.0).abs() < 1e-9);
        assert!((x_of(0.999, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(x_of(1.0, 6.0), 6.0);
    }

    #[test]
    fn curves_overlay_with_a_legend() {
        let a = parse_hdr("before", HGRM).unwrap();
        let b = Curve {
            name: "after <fast>".into(),
            ..a.clone()
        };
        let s = svg("two runs", &[a, b]);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(s.matches("class=\"curve\"").count(), 2);
        assert!(s.contains(">before</text>") && s.contains(">after &lt;fast&gt;</text>"));
        assert!(s.contains(">99%</text>") && s.contains(">latency (log scale)</text>"));
        // 13 µs to 1.172 ms: ticks at 10, 20, 50... µs up to 2 ms.
        for t in [
            ">10 µs<",
            ">20 µs<",
            ">50 µs<",
            ">100 µs<",
            ">500 µs<",
            ">1 ms<",
            ">2 ms<",
        ] {
            assert!(s.contains(t), "{t}");
        }
        assert!(!s.contains(">5 ms<") && !s.contains(">5 µs<"));
    }

    #[test]
    fn latency_ticks_are_1_2_5_and_labels_name_their_unit() {
        assert_eq!(ticks(0.01, 1.0), vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        // Many decades: the 1s only.
        assert_eq!(ticks(0.001, 1000.0), vec![0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!((round125(0.013, false), round125(1.172, true)), (0.01, 2.0));
        assert_eq!((round125(0.05, false), round125(0.05, true)), (0.05, 0.05));
        assert_eq!((round125(7.0, false), round125(7.0, true)), (5.0, 10.0));
        assert_eq!(label(0.0125), "12.5 µs");
        assert_eq!(label(2.0), "2 ms");
        assert_eq!(label(56.25), "56.25 ms");
        assert_eq!(label(1500.0), "1.5 s");
    }

    #[test]
    fn one_slow_maximum_does_not_flatten_the_rest() {
        // p50 20 µs, p99 100 µs, max 56 ms: on a linear axis p50 and p99
        // would sit within 1 px of each other; on the log axis they are
        // far apart.
        let c = Curve {
            name: "run".into(),
            points: vec![(0.5, 0.02), (0.99, 0.1), (1.0, 56.0)],
        };
        let s = svg("t", &[c]);
        let pts = s.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        let ys: Vec<f64> = pts
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys[0] - ys[1] > 50.0, "{ys:?}");
    }
}
