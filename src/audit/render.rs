//! `audit.png`: the audit's verdict and three charts drawn from the report alone (no image
//! data reaches this module): the membership attack's ROC curves, the distances of the
//! distilled images to their nearest member against the members' own nearest-neighbour
//! distances, and the entropy of each learned label. Text uses a built-in 3 × 5 pixel font.

use std::io::Cursor;

use image::{ImageBuffer, Rgb};

use super::Audit;
use crate::error::{Error, Result};

type Color = [u8; 3];
const WHITE: Color = [255, 255, 255];
const BLACK: Color = [20, 20, 20];
const GREY: Color = [170, 170, 170];
const BLUE: Color = [31, 100, 200];
const ORANGE: Color = [230, 130, 20];
const RED: Color = [210, 30, 30];
const GREEN: Color = [20, 140, 60];

/// Glyphs of the font: five rows of three pixels, `#` on.
const GLYPHS: &[(char, &str)] = &[
    ('A', ".#.#.#####.##.#"), ('B', "##.#.###.#.###."), ('C', ".###..#..#...##"), ('D', "##.#.##.##.###."),
    ('E', "####..##.#..###"), ('F', "####..##.#..#.."), ('G', ".###..#.##.#.##"), ('H', "#.##.#####.##.#"),
    ('I', "###.#..#..#.###"), ('J', "..#..#..##.#.#."), ('K', "#.##.###.#.##.#"), ('L', "#..#..#..#..###"),
    ('M', "#.########.##.#"), ('N', "##.#.##.##.##.#"), ('O', ".#.#.##.##.#.#."), ('P', "##.#.###.#..#.."),
    ('Q', ".#.#.##.###..##"), ('R', "##.#.###.#.##.#"), ('S', ".###...#...###."), ('T', "###.#..#..#..#."),
    ('U', "#.##.##.##.####"), ('V', "#.##.##.##.#.#."), ('W', "#.##.########.#"), ('X', "#.##.#.#.#.##.#"),
    ('Y', "#.##.#.#..#..#."), ('Z', "###..#.#.#..###"), ('0', "####.##.##.####"), ('1', ".#.##..#..#.###"),
    ('2', "##...#.#.#..###"), ('3', "##...#.#...###."), ('4', "#.##.####..#..#"), ('5', "####..##...###."),
    ('6', ".###..####.####"), ('7', "###..#.#..#..#."), ('8', "####.#####.####"), ('9', "####.####..###."),
    ('.', ".............#."), (',', "..........#.#.."), (':', "....#.....#...."), (';', "....#.....#.#.."), ('%', "#.#..#.#.#..#.#"),
    ('/', "..#..#.#.#..#.."), ('-', "......###......"), ('+', "....#.###.#...."), ('(', ".#.#..#..#...#."),
    (')', ".#...#..#..#.#."), ('[', "##.#..#..#..##."), (']', ".##..#..#..#.##"), ('=', "...###...###..."),
    ('<', "..#.#.#...#...#"), ('>', "#...#...#.#.#.."), ('?', "##...#.#.....#."), ('\'', ".#..#.........."),
    (' ', "..............."),
];

fn glyph(c: char) -> &'static str {
    let c = c.to_ascii_uppercase();
    GLYPHS.iter().find(|g| g.0 == c).or_else(|| GLYPHS.iter().find(|g| g.0 == '?')).map(|g| g.1).expect("? is in the font")
}

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self { w, h, rgb: WHITE.repeat(w * h) }
    }

    fn set(&mut self, x: i64, y: i64, c: Color) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let k = 3 * (y as usize * self.w + x as usize);
            self.rgb[k..k + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Color) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Color) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for k in 0..=n {
            let t = k as f64 / n as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            self.rect(x.round() as i64, y.round() as i64, 2, 2, c);
        }
    }

    /// Text at (x, y), each font pixel `scale` pixels; returns the width drawn.
    fn text(&mut self, x: i64, y: i64, scale: i64, s: &str, c: Color) -> i64 {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (p, b) in g.bytes().enumerate() {
                if b == b'#' {
                    let (gx, gy) = ((p % 3) as i64, (p / 3) as i64);
                    self.rect(x + (k as i64 * 4 + gx) * scale, y + gy * scale, scale, scale, c);
                }
            }
        }
        s.chars().count() as i64 * 4 * scale
    }

    fn frame(&mut self, x: i64, y: i64, w: i64, h: i64) {
        self.rect(x, y, w, 1, BLACK);
        self.rect(x, y + h, w + 1, 1, BLACK);
        self.rect(x, y, 1, h, BLACK);
        self.rect(x + w, y, 1, h, BLACK);
    }

    fn png(self) -> Result<Vec<u8>> {
        let img = ImageBuffer::<Rgb<u8>, _>::from_raw(self.w as u32, self.h as u32, self.rgb).expect("w×h×3 values");
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| Error::Archive(e.to_string()))?;
        Ok(out.into_inner())
    }
}

/// Log-scaled position of a rate in [1e-3, 1] on an axis of `len` pixels.
fn log_pos(v: f64, len: f64) -> f64 {
    (v.max(1e-3).log10() + 3.0) / 3.0 * len
}

fn roc_panel(c: &mut Canvas, a: &Audit, x: i64, y: i64, s: i64) {
    c.text(x, y - 16, 2, "MEMBERSHIP ATTACK ROC (LOG-LOG)", BLACK);
    c.frame(x, y, s, s);
    let sf = s as f64;
    let at = |fpr: f64, tpr: f64| (x as f64 + log_pos(fpr, sf), (y + s) as f64 - log_pos(tpr, sf));
    c.line(at(1e-3, 1e-3), at(1.0, 1.0), GREY);
    for (attack, color) in [(&a.membership.random_subset, ORANGE), (&a.membership.distilled, BLUE)] {
        let pts: Vec<(f64, f64)> = attack.roc.iter().map(|p| at(p[0], p[1])).collect();
        for w in pts.windows(2) {
            c.line(w[0], w[1], color);
        }
    }
    for (k, label) in ["0.001", "0.01", "0.1", "1"].iter().enumerate() {
        let px = x + (k as i64 * s) / 3;
        c.rect(px, y + s, 1, 5, BLACK);
        c.text(px - 6, y + s + 8, 1, label, BLACK);
    }
    c.text(x, y + s + 18, 1, "FALSE POSITIVE RATE; UP: TRUE POSITIVE RATE", BLACK);
    let m = &a.membership;
    c.text(x, y + s + 30, 2, &format!("DISTILLED AUC {:.3} [{:.3}, {:.3}]", m.distilled.auc.value, m.distilled.auc.lo, m.distilled.auc.hi), BLUE);
    c.text(x, y + s + 46, 2, &format!("RANDOM SUBSET AUC {:.3} [{:.3}, {:.3}]", m.random_subset.auc.value, m.random_subset.auc.lo, m.random_subset.auc.hi), ORANGE);
}

fn distance_panel(c: &mut Canvas, a: &Audit, x: i64, y: i64, w: i64, h: i64) {
    c.text(x, y - 16, 2, "L2 TO NEAREST MEMBER", BLACK);
    c.frame(x, y, w, h);
    let nn = &a.near_copy.member_nn_l2;
    let hi = nn.iter().chain(a.images.iter().map(|i| &i.member_l2)).cloned().fold(1e-9, f64::max) * 1.05;
    let bins = 40usize;
    let mut counts = vec![0usize; bins];
    for &d in nn {
        counts[((d / hi * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().cloned().max().unwrap_or(1).max(1) as f64;
    let bw = w as f64 / bins as f64;
    for (k, &n) in counts.iter().enumerate() {
        let bh = (n as f64 / top * (h - 30) as f64) as i64;
        c.rect(x + (k as f64 * bw) as i64 + 1, y + h - bh, bw.max(1.0) as i64 - 1, bh, GREY);
    }
    let px = |d: f64| x + (d / hi * w as f64) as i64;
    c.rect(px(a.near_copy.l2_threshold), y + 1, 2, h - 1, RED);
    for i in &a.images {
        c.rect(px(i.member_l2), y + 4, 2, 20, if i.near_copy { RED } else { BLUE });
    }
    c.text(x, y + h + 8, 1, &format!("0 TO {hi:.1}; GREY: MEMBERS' OWN NEAREST MEMBER ({} SAMPLED)", nn.len()), BLACK);
    c.text(x, y + h + 20, 1, &format!("TICKS: DISTILLED IMAGES; RED LINE: NEAR-COPY THRESHOLD {:.2}", a.near_copy.l2_threshold), BLACK);
}

fn label_panel(c: &mut Canvas, a: &Audit, x: i64, y: i64, w: i64, h: i64) {
    c.text(x, y - 16, 2, "LABEL ENTROPY PER IMAGE (RED: LARGEST ENTRY NOT ITS CLASS)", BLACK);
    c.frame(x, y, w, h);
    let max_bits = (a.members.len().max(2) as f64).log2();
    let n = a.images.len().max(1) as f64;
    let bw = w as f64 / n;
    for (k, i) in a.images.iter().enumerate() {
        let bits = i.label_entropy_bits.unwrap_or(0.0);
        let bh = ((bits / max_bits).clamp(0.0, 1.0) * (h - 2) as f64) as i64;
        let color = if i.label_not_own_class { RED } else { GREEN };
        c.rect(x + (k as f64 * bw) as i64 + 1, y + h - bh, (bw as i64 - 1).max(1), bh.max(1), color);
    }
    c.text(x, y + h + 8, 1, &format!("{} IMAGES; FULL HEIGHT = {max_bits:.2} BITS (UNIFORM OVER {} CLASSES)", a.images.len(), a.members.len()), BLACK);
}

/// `audit.png` of `a`.
pub fn render_png(a: &Audit) -> Result<Vec<u8>> {
    let mut c = Canvas::new(900, 700);
    let verdict_color = match a.verdict.as_str() {
        super::NO_EVIDENCE => GREEN,
        super::LEAKAGE => RED,
        _ => BLACK,
    };
    c.text(20, 16, 3, &format!("PRIVACY AUDIT: {}", a.verdict), verdict_color);
    let sh = &a.share;
    c.text(
        20,
        44,
        2,
        &format!(
            "MEMBERS {}  HOLDOUT {}  NEAR COPIES {}  NEARER A MEMBER: {}/{} IMAGES, {}/{} DISTINCT [{:.2}, {:.2}]",
            a.members.iter().sum::<usize>(),
            a.holdout.iter().sum::<usize>(),
            a.near_copy.flagged.len(),
            sh.closer_to_member,
            sh.images,
            sh.distinct_nearest_members,
            sh.distinct_nearest,
            sh.distinct_share.lo,
            sh.distinct_share.hi
        ),
        BLACK,
    );
    roc_panel(&mut c, a, 20, 100, 300);
    distance_panel(&mut c, a, 400, 100, 480, 300);
    label_panel(&mut c, a, 20, 520, 860, 120);
    c.text(20, 676, 1, "NOT A GUARANTEE OF ANONYMITY: THESE TESTS AT THIS SAMPLE SIZE. NO REAL IMAGE IS DRAWN HERE.", BLACK);
    c.png()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_has_fifteen_cells() {
        for (ch, g) in GLYPHS {
            assert_eq!(g.len(), 15, "glyph {ch:?}");
            assert!(g.bytes().all(|b| b == b'#' || b == b'.'), "glyph {ch:?}");
        }
        assert_eq!(glyph('a'), glyph('A'));
        assert_eq!(glyph('~'), glyph('?'));
    }
}
