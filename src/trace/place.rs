//! Where a message's label goes in the sequence diagram so that no arrow
//! crosses it: a few places beside its own arrow, tried in order, the
//! first that no arrow and no label placed before it touches. Pure
//! geometry; [`super::svg`] draws the result.

/// A straight arrow, from its write to its read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seg {
    /// Start (the write).
    pub x1: f64,
    /// Start.
    pub y1: f64,
    /// End (the read).
    pub x2: f64,
    /// End.
    pub y2: f64,
}

/// An axis-aligned box: a label's extent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left.
    pub x0: f64,
    /// Top.
    pub y0: f64,
    /// Right.
    pub x1: f64,
    /// Bottom.
    pub y1: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn contains(&self, x: f64, y: f64) -> bool {
        (self.x0..=self.x1).contains(&x) && (self.y0..=self.y1).contains(&y)
    }
}

/// True if the segment touches the box.
pub fn crosses(s: &Seg, r: &Rect) -> bool {
    if r.contains(s.x1, s.y1) || r.contains(s.x2, s.y2) {
        return true;
    }
    let edges = [
        (r.x0, r.y0, r.x1, r.y0),
        (r.x1, r.y0, r.x1, r.y1),
        (r.x1, r.y1, r.x0, r.y1),
        (r.x0, r.y1, r.x0, r.y0),
    ];
    edges
        .iter()
        .any(|&(a, b, c, d)| segments_meet((s.x1, s.y1, s.x2, s.y2), (a, b, c, d)))
}

fn segments_meet(p: (f64, f64, f64, f64), q: (f64, f64, f64, f64)) -> bool {
    let side = |ax: f64, ay: f64, bx: f64, by: f64, cx: f64, cy: f64| (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
    let d1 = side(q.0, q.1, q.2, q.3, p.0, p.1);
    let d2 = side(q.0, q.1, q.2, q.3, p.2, p.3);
    let d3 = side(p.0, p.1, p.2, p.3, q.0, q.1);
    let d4 = side(p.0, p.1, p.2, p.3, q.2, q.3);
    (d1 * d2 <= 0.0) && (d3 * d4 <= 0.0)
}

/// A placed label: where its text starts or ends, its baseline, and which
/// end `x` is (`end`: the text's right end, SVG's `text-anchor="end"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// The anchor's x.
    pub x: f64,
    /// The baseline.
    pub y: f64,
    /// True when `x` is the text's right end.
    pub end: bool,
    /// The box it takes.
    pub rect: Rect,
}

/// Glyph advance and height of the labels' font (10 px monospace: 0.6 em
/// advance, with a margin).
pub const CHAR_W: f64 = 6.2;
const ASCENT: f64 = 9.0;
const DESCENT: f64 = 3.0;

/// The box of a label of `chars` characters anchored at `x` (start or end)
/// on baseline `y`.
pub fn label_rect(x: f64, y: f64, chars: usize, end: bool) -> Rect {
    let w = chars as f64 * CHAR_W;
    let (x0, x1) = if end { (x - w, x) } else { (x, x + w) };
    Rect {
        x0,
        y0: y - ASCENT,
        x1,
        y1: y + DESCENT,
    }
}

/// Places one label per arrow (`chars` long): above its start, heading
/// toward the reader (the arrow falls away below it); else below its end,
/// heading back; else one line further out, or past the reader's dot.
/// The first that no arrow crosses and no earlier label overlaps wins;
/// with none free, the one with the fewest conflicts.
pub fn labels(arrows: &[(Seg, usize)]) -> Vec<Placed> {
    let mut placed: Vec<Placed> = Vec::with_capacity(arrows.len());
    for (s, chars) in arrows {
        let dir = if s.x2 >= s.x1 { 1.0 } else { -1.0 };
        let toward = dir < 0.0; // anchored at its right end when heading left
        let candidates = [
            (s.x1 + dir * 8.0, s.y1 - 4.0, toward),
            (s.x2 - dir * 10.0, s.y2 + 12.0, !toward),
            (s.x1 + dir * 8.0, s.y1 - 15.0, toward),
            (s.x2 - dir * 10.0, s.y2 + 23.0, !toward),
            (s.x2 + dir * 10.0, s.y2 + 12.0, toward),
        ];
        let conflicts = |x: f64, y: f64, end: bool| {
            let r = label_rect(x, y, *chars, end);
            let by_arrows = arrows.iter().filter(|(o, _)| crosses(o, &r)).count();
            let by_labels = placed.iter().filter(|p| p.rect.overlaps(&r)).count();
            (by_arrows + by_labels, r)
        };
        let mut best: Option<(usize, Placed)> = None;
        for (x, y, end) in candidates {
            let (n, rect) = conflicts(x, y, end);
            if best.as_ref().is_none_or(|(b, _)| n < *b) {
                best = Some((n, Placed { x, y, end, rect }));
            }
            if n == 0 {
                break;
            }
        }
        if let Some((_, p)) = best {
            placed.push(p);
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(x1: f64, y1: f64, x2: f64, y2: f64) -> Seg {
        Seg { x1, y1, x2, y2 }
    }

    #[test]
    fn a_segment_crosses_a_box_it_passes_through_or_ends_in() {
        let r = Rect {
            x0: 10.0,
            y0: 10.0,
            x1: 20.0,
            y1: 20.0,
        };
        assert!(crosses(&seg(0.0, 0.0, 30.0, 30.0), &r), "through");
        assert!(crosses(&seg(15.0, 15.0, 100.0, 0.0), &r), "from inside");
        assert!(!crosses(&seg(0.0, 0.0, 30.0, 5.0), &r), "above");
        assert!(!crosses(&seg(0.0, 25.0, 9.0, 0.0), &r), "beside");
    }

    #[test]
    fn boxes_overlap_only_when_they_share_area() {
        let r = |x0, y0, x1, y1| Rect { x0, y0, x1, y1 };
        let a = r(0.0, 0.0, 10.0, 10.0);
        assert!(a.overlaps(&r(5.0, 5.0, 15.0, 15.0)));
        assert!(r(5.0, 5.0, 15.0, 15.0).overlaps(&a));
        assert!(a.overlaps(&r(2.0, 2.0, 3.0, 3.0)), "inside");
        for other in [
            r(10.0, 0.0, 20.0, 10.0), // touching on the right edge
            r(-10.0, 0.0, 0.0, 10.0), // on the left edge
            r(0.0, 10.0, 10.0, 20.0), // below
            r(0.0, -10.0, 10.0, 0.0), // above
            r(20.0, 20.0, 30.0, 30.0),
        ] {
            assert!(!a.overlaps(&other) && !other.overlaps(&a), "{other:?}");
        }
        assert!(a.contains(0.0, 10.0) && a.contains(5.0, 5.0));
        assert!(!a.contains(5.0, 11.0) && !a.contains(11.0, 5.0) && !a.contains(-1.0, 5.0) && !a.contains(5.0, -1.0));
    }

    #[test]
    fn a_segment_inside_a_box_or_at_odd_angles_is_seen() {
        let r = Rect {
            x0: 100.0,
            y0: 40.0,
            x1: 180.0,
            y1: 52.0,
        };
        assert!(crosses(&seg(110.0, 45.0, 170.0, 50.0), &r), "wholly inside");
        // Shallow and steep lines passing near the box's corners.
        assert!(crosses(&seg(90.0, 60.0, 200.0, 35.0), &r));
        assert!(!crosses(&seg(90.0, 60.0, 200.0, 58.0), &r));
        assert!(crosses(&seg(185.0, 0.0, 175.0, 100.0), &r));
        assert!(!crosses(&seg(195.0, 0.0, 185.0, 100.0), &r));
        assert!(!crosses(&seg(0.0, 0.0, 99.0, 200.0), &r));
        assert!(segments_meet((0.0, 0.0, 10.0, 3.0), (5.0, -1.0, 5.0, 7.0)));
        assert!(!segments_meet((0.0, 0.0, 10.0, 3.0), (5.0, 2.0, 5.0, 7.0)));
        assert!(!segments_meet((0.0, 0.0, 10.0, 3.0), (11.0, -1.0, 11.0, 7.0)));
    }

    #[test]
    fn a_label_takes_its_width_to_the_right_or_the_left_of_its_anchor() {
        let r = label_rect(100.0, 50.0, 10, false);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (100.0, 41.0, 162.0, 53.0));
        let r = label_rect(100.0, 50.0, 10, true);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (38.0, 41.0, 100.0, 53.0));
    }

    #[test]
    fn segments_that_only_touch_meet() {
        // An end on the other segment, from either side.
        assert!(segments_meet((0.0, 0.0, 5.0, 0.0), (5.0, -1.0, 5.0, 1.0)));
        assert!(segments_meet((5.0, -1.0, 5.0, 1.0), (0.0, 0.0, 5.0, 0.0)));
        assert!(segments_meet((10.0, 0.0, 5.0, 0.0), (5.0, 1.0, 5.0, -1.0)));
        assert!(
            segments_meet((0.0, 0.0, 4.0, 4.0), (4.0, 4.0, 8.0, 0.0)),
            "a shared end"
        );
        assert!(!segments_meet((0.0, 0.0, 4.9, 0.0), (5.0, -1.0, 5.0, 1.0)));
    }

    #[test]
    fn a_label_sits_clear_of_its_own_arrow() {
        for s in [seg(100.0, 100.0, 400.0, 160.0), seg(400.0, 100.0, 100.0, 160.0)] {
            let p = labels(&[(s, 30)]);
            assert!(!crosses(&s, &p[0].rect), "{s:?}: {p:?}");
            // The first choice: above the start.
            assert!(p[0].rect.y1 <= s.y1, "{p:?}");
        }
    }

    #[test]
    fn a_label_moves_off_another_arrow() {
        // A second arrow runs right through the first one's first choice.
        let a = seg(100.0, 100.0, 400.0, 160.0);
        let b = seg(120.0, 80.0, 140.0, 120.0);
        let p = labels(&[(a, 20), (b, 2)]);
        assert!(!crosses(&b, &p[0].rect) && !crosses(&a, &p[0].rect), "{p:?}");
        assert!(!p[0].rect.overlaps(&p[1].rect));
    }
}
