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

/// Draws the curves.
pub fn svg(title: &str, curves: &[Curve]) -> String {
    let (w, h, left, right, top, bottom) = (860.0, 480.0, 70.0, 40.0, 40.0, 60.0);
    // Nines shown: enough for the deepest percentile below 100%.
    let deepest = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(p, _)| p))
        .filter(|&p| p < 1.0)
        .fold(0.0f64, f64::max);
    let nines = x_of(deepest, 7.0).ceil().clamp(2.0, 7.0);
    let ymax = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(_, v)| v))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let px = |x: f64| left + x / nines * (w - left - right);
    let py = |v: f64| h - bottom - v / ymax * (h - top - bottom);
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
    // Axes, and a grid line per nine.
    for k in 0..=(nines as i32) {
        let x = px(k as f64);
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
    for k in 0..=4 {
        let v = ymax / 1.1 * k as f64 / 4.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.3}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"##,
        (left + w - right) / 2.0,
        h - 16.0,
        (top + h - bottom) / 2.0
    );
    for (k, c) in curves.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", px(x_of(p, nines)), py(v)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline class="curve" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
        let ly = top + 16.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            r##"<g class="legend"><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text></g>"##,
            left + 14.0,
            ly - 4.0,
            left + 38.0,
            ly - 4.0,
            left + 44.0,
            ly,
            esc(&c.name)
        );
    }
    s.push_str("</svg>\n");
    s
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
        assert!(s.contains(">99%</text>") && s.contains(">latency (ms)</text>"));
    }
}
