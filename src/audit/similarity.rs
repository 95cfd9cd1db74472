//! How close two images are: Euclidean distance in the normalised space the network sees, and
//! the structural similarity index (SSIM, Wang et al. 2004) on pixel values in [0, 1], with a
//! 7 × 7 uniform window and sample covariances (scikit-image's defaults).

/// Side of the SSIM window (smaller when the image is).
const WINDOW: usize = 7;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// Euclidean distance between two images of the same size.
pub fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

/// Sums of every `w × w` window of a `size × size` map, via its summed-area table.
fn window_sums(values: &[f64], size: usize, w: usize) -> Vec<f64> {
    let s = size + 1;
    let mut table = vec![0.0; s * s];
    for y in 0..size {
        let mut row = 0.0;
        for x in 0..size {
            row += values[y * size + x];
            table[(y + 1) * s + x + 1] = table[y * s + x + 1] + row;
        }
    }
    let out = size - w + 1;
    let mut sums = Vec::with_capacity(out * out);
    for y in 0..out {
        for x in 0..out {
            sums.push(table[(y + w) * s + x + w] - table[y * s + x + w] - table[(y + w) * s + x] + table[y * s + x]);
        }
    }
    sums
}

/// An image prepared for SSIM: its pixels and the mean and variance of every window.
pub struct SsimImage {
    size: usize,
    w: usize,
    pixels: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl SsimImage {
    /// A `size × size` image of pixel values (clamped to [0, 1]).
    pub fn new(pixels: &[f32], size: usize) -> Self {
        let w = WINDOW.min(size);
        let n = (w * w) as f64;
        let pixels: Vec<f64> = pixels.iter().map(|&v| (v as f64).clamp(0.0, 1.0)).collect();
        let sums = window_sums(&pixels, size, w);
        let squares = window_sums(&pixels.iter().map(|v| v * v).collect::<Vec<_>>(), size, w);
        let mean: Vec<f64> = sums.iter().map(|s| s / n).collect();
        let var = squares.iter().zip(&mean).map(|(q, m)| (q / n - m * m) * n / (n - 1.0)).collect();
        Self { size, w, pixels, mean, var }
    }

    /// SSIM with `other` (same size): the mean over windows of the SSIM map.
    pub fn ssim(&self, other: &SsimImage) -> f64 {
        let n = (self.w * self.w) as f64;
        let products: Vec<f64> = self.pixels.iter().zip(&other.pixels).map(|(a, b)| a * b).collect();
        let cross = window_sums(&products, self.size, self.w);
        let mut total = 0.0;
        for (k, c) in cross.iter().enumerate() {
            let (mx, my) = (self.mean[k], other.mean[k]);
            let cov = (c / n - mx * my) * n / (n - 1.0);
            total += ((2.0 * mx * my + C1) * (2.0 * cov + C2)) / ((mx * mx + my * my + C1) * (self.var[k] + other.var[k] + C2));
        }
        total / cross.len() as f64
    }
}

/// The closest image of a set: its index and its distance (L2) or similarity (SSIM).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nearest {
    /// Index of the closest image by L2.
    pub l2_index: usize,
    /// Its L2 distance.
    pub l2: f64,
    /// Index of the most similar image by SSIM.
    pub ssim_index: usize,
    /// Its SSIM.
    pub ssim: f64,
}

/// A set of images to search, in both forms: normalised for L2, pixels for SSIM.
pub struct Gallery {
    normalised: Vec<Vec<f32>>,
    ssim: Vec<SsimImage>,
}

impl Gallery {
    /// Images given as pixel values in [0, 1], each `size × size`; `to_normalised` maps a pixel
    /// value into the network's space.
    pub fn new(images: Vec<&[f32]>, size: usize, to_normalised: impl Fn(f32) -> f32) -> Self {
        let normalised = images.iter().map(|im| im.iter().map(|&v| to_normalised(v)).collect()).collect();
        let ssim = images.iter().map(|im| SsimImage::new(im, size)).collect();
        Self { normalised, ssim }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.ssim.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.ssim.is_empty()
    }

    /// The closest image to (`normalised`, `pixels`) by each measure, leaving out index `skip`.
    pub fn nearest(&self, normalised: &[f32], pixels: &SsimImage, skip: Option<usize>) -> Option<Nearest> {
        self.nearest_except(normalised, pixels, |k| Some(k) == skip)
    }

    fn nearest_except(&self, normalised: &[f32], pixels: &SsimImage, skip: impl Fn(usize) -> bool) -> Option<Nearest> {
        let mut best: Option<Nearest> = None;
        for k in 0..self.len() {
            if skip(k) {
                continue;
            }
            let d = l2(normalised, &self.normalised[k]);
            let s = pixels.ssim(&self.ssim[k]);
            let b = best.get_or_insert(Nearest { l2_index: k, l2: d, ssim_index: k, ssim: s });
            if d < b.l2 {
                (b.l2_index, b.l2) = (k, d);
            }
            if s > b.ssim {
                (b.ssim_index, b.ssim) = (k, s);
            }
        }
        best
    }

    /// L2 distance from `normalised` to image `k`.
    pub fn l2_to(&self, normalised: &[f32], k: usize) -> f64 {
        l2(normalised, &self.normalised[k])
    }

    /// The nearest other image of the gallery to its image `k`, leaving out exact copies of it:
    /// patch sets often hold one image several times, and a copy at distance zero says nothing
    /// about how close two different images come. None when every image is a copy of `k`.
    pub fn nearest_other(&self, k: usize) -> Option<Nearest> {
        let own = &self.normalised[k];
        self.nearest_except(own, &self.ssim[k], |j| j == k || self.normalised[j] == *own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: usize, f: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        (0..size * size).map(|i| f(i / size, i % size)).collect()
    }

    #[test]
    fn ssim_is_one_for_equal_images_and_falls_with_noise() {
        let a = image(16, |y, x| ((x * 7 + y * 3) % 11) as f32 / 10.0);
        let same = SsimImage::new(&a, 16);
        assert!((same.ssim(&SsimImage::new(&a, 16)) - 1.0).abs() < 1e-12);
        let noisy: Vec<f32> = a.iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 0.05 } else { -0.05 }).collect();
        let flipped: Vec<f32> = a.iter().map(|v| 1.0 - v).collect();
        let s_noisy = same.ssim(&SsimImage::new(&noisy, 16));
        let s_flipped = same.ssim(&SsimImage::new(&flipped, 16));
        assert!(s_noisy < 1.0 && s_noisy > 0.5, "{s_noisy}");
        assert!(s_flipped < 0.0, "{s_flipped}");
    }

    #[test]
    fn ssim_matches_a_direct_window_loop() {
        let a = image(9, |y, x| ((x * x + y) % 5) as f32 / 4.0);
        let b = image(9, |y, x| ((x + 2 * y) % 7) as f32 / 6.0);
        let (w, n) = (7usize, 49.0f64);
        let mut total = 0.0;
        for y0 in 0..3 {
            for x0 in 0..3 {
                let pts: Vec<(f64, f64)> = (0..w * w).map(|k| (a[(y0 + k / w) * 9 + x0 + k % w] as f64, b[(y0 + k / w) * 9 + x0 + k % w] as f64)).collect();
                let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
                let vx = pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>() / (n - 1.0);
                let vy = pts.iter().map(|p| (p.1 - my).powi(2)).sum::<f64>() / (n - 1.0);
                let c = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / (n - 1.0);
                total += ((2.0 * mx * my + C1) * (2.0 * c + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
            }
        }
        let fast = SsimImage::new(&a, 9).ssim(&SsimImage::new(&b, 9));
        assert!((fast - total / 9.0).abs() < 1e-10, "{fast} vs {}", total / 9.0);
    }

    #[test]
    fn nearest_finds_the_copy_and_skips_itself() {
        let imgs: Vec<Vec<f32>> = (0..4).map(|k| image(8, |y, x| ((x * (k + 1) + y) % 5) as f32 / 4.0)).collect();
        let g = Gallery::new(imgs.iter().map(|v| &v[..]).collect(), 8, |v| v * 2.0);
        let q: Vec<f32> = imgs[2].iter().map(|v| v * 2.0).collect();
        let n = g.nearest(&q, &SsimImage::new(&imgs[2], 8), None).unwrap();
        assert_eq!((n.l2_index, n.ssim_index), (2, 2));
        assert!(n.l2 == 0.0 && (n.ssim - 1.0).abs() < 1e-12);
        let other = g.nearest_other(2).unwrap();
        assert!(other.l2_index != 2 && other.l2 > 0.0);
    }
}
