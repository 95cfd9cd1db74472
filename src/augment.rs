//! Differentiable augmentation (DSA: Zhao & Bilen, "Dataset Condensation with Differentiable
//! Siamese Augmentation", ICML 2021), written as tensor operations so that a gradient flows back
//! to the images it transforms.
//!
//! A draw picks one kind of transform at random (DSA's single mode) and one transform of that
//! kind per image: a colour change (brightness ± 0.5, contrast × 0.5 to 1.5 around the image's
//! mean; saturation does nothing to grey images), a shift of up to an eighth of the side
//! (zero-padded), a cutout of half the side (zeroed), a scale of each axis by 1/1.2 to 1.2, or a
//! rotation of up to 15°, DSA's parameters. Horizontal flips are left out: chest X-rays have a
//! side, and digits are not symmetric. Geometric transforms resample bilinearly (align corners,
//! zeros outside), as `grid_sample` does in DSA's code; shifts land on whole pixels exactly.
//!
//! Used twice: matching applies one draw to a class's real and distilled images alike (the
//! "Siamese" part: image `i` of both gets the same transform), and a recipe may augment each
//! minibatch of an ordinary training loop ([`crate::train::Recipe`]).

use burn_tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// DSA's parameters.
const SCALE: f64 = 1.2;
const ROTATE_DEGREES: f64 = 15.0;
const SHIFT: f64 = 0.125;
const CUTOUT: f64 = 0.5;
const BRIGHTNESS: f64 = 1.0;
const CONTRAST: f64 = 0.5;

/// The kinds a draw picks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Brightness and contrast.
    Color,
    /// A whole-pixel shift.
    Shift,
    /// A zeroed square.
    Cutout,
    /// Each axis scaled.
    Scale,
    /// A rotation about the centre.
    Rotate,
}

/// Every kind, in the order a draw picks from.
pub const KINDS: [Kind; 5] = [Kind::Color, Kind::Shift, Kind::Cutout, Kind::Scale, Kind::Rotate];

/// One image's transform: a resampling (`affine`: the source pixel of output pixel (row i,
/// column j) is (column a·j + b·i + c, row d·j + e·i + f)), then brightness added and contrast
/// around the image's mean, then a zeroed rectangle (rows, columns; half-open).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    affine: Option<[f64; 6]>,
    brightness: f64,
    contrast: f64,
    cutout: Option<[usize; 4]>,
}

impl Transform {
    /// The transform that changes nothing.
    pub const IDENTITY: Transform = Transform { affine: None, brightness: 0.0, contrast: 1.0, cutout: None };
}

/// One kind drawn from `rng`, then `n` transforms of that kind for `size × size` images.
pub fn draw(rng: &mut ChaCha8Rng, n: usize, size: usize) -> Vec<Transform> {
    let kind = KINDS[rng.random_range(0..KINDS.len())];
    (0..n).map(|_| transform(rng, kind, size)).collect()
}

/// One transform of `kind` for `size × size` images.
pub fn transform(rng: &mut ChaCha8Rng, kind: Kind, size: usize) -> Transform {
    let c = (size as f64 - 1.0) / 2.0;
    // The affine map about the centre: source = c + m · (output − c) + t.
    let about_centre = |m: [f64; 4], t: [f64; 2]| [m[0], m[1], c - m[0] * c - m[1] * c + t[0], m[2], m[3], c - m[2] * c - m[3] * c + t[1]];
    let mut t = Transform::IDENTITY;
    match kind {
        Kind::Color => {
            t.brightness = (rng.random::<f64>() - 0.5) * BRIGHTNESS;
            t.contrast = rng.random::<f64>() + CONTRAST;
        }
        Kind::Shift => {
            let s = (size as f64 * SHIFT + 0.5) as i64;
            let (dx, dy) = (rng.random_range(-s..=s) as f64, rng.random_range(-s..=s) as f64);
            t.affine = Some(about_centre([1.0, 0.0, 0.0, 1.0], [dx, dy]));
        }
        Kind::Cutout => {
            let side = (size as f64 * CUTOUT + 0.5) as usize;
            let span = size + 1 - side % 2;
            let (r, col) = (rng.random_range(0..span), rng.random_range(0..span));
            // DSA's rows offset − side/2 to offset − side/2 + side − 1, clamped to the image.
            let first = |o: usize| o.saturating_sub(side / 2);
            let end = |o: usize| (o + side - side / 2).min(size);
            t.cutout = Some([first(r), end(r), first(col), end(col)]);
        }
        Kind::Scale => {
            let mut s = || 1.0 / SCALE + rng.random::<f64>() * (SCALE - 1.0 / SCALE);
            let (sx, sy) = (s(), s());
            t.affine = Some(about_centre([sx, 0.0, 0.0, sy], [0.0, 0.0]));
        }
        Kind::Rotate => {
            let a = (rng.random::<f64>() - 0.5) * 2.0 * ROTATE_DEGREES.to_radians();
            let (sin, cos) = a.sin_cos();
            t.affine = Some(about_centre([cos, -sin, sin, cos], [0.0, 0.0]));
        }
    }
    t
}

/// `x` `[n, 1, size, size]` transformed image by image by `t` (one transform each, or one for
/// all); differentiable with respect to `x`.
pub fn apply<B: Backend>(x: Tensor<B, 4>, t: &[Transform]) -> Tensor<B, 4> {
    let [n, ch, h, w] = x.dims();
    assert!(ch == 1 && h == w && (t.len() == 1 || t.len() == n), "apply: {} transforms for {n} grey square images", t.len());
    let device = x.device();
    let rows = t.len();
    let mut x = x;
    if t.iter().any(|t| t.affine.is_some()) {
        x = resample(x, t);
    }
    if t.iter().any(|t| t.brightness != 0.0 || t.contrast != 1.0) {
        let column = |f: fn(&Transform) -> f64| Tensor::<B, 1>::from_data(TensorData::new(t.iter().map(|t| f(t) as f32).collect::<Vec<_>>(), [rows]), &device).reshape([rows, 1, 1, 1]);
        let y = x + column(|t| t.brightness);
        let mean = y.clone().reshape([n, h * w]).mean_dim(1).reshape([n, 1, 1, 1]);
        x = (y - mean.clone()) * column(|t| t.contrast) + mean;
    }
    if t.iter().any(|t| t.cutout.is_some()) {
        let mut mask = vec![1.0f32; rows * h * w];
        for (k, t) in t.iter().enumerate() {
            if let Some([r0, r1, c0, c1]) = t.cutout {
                for r in r0..r1 {
                    mask[k * h * w + r * w + c0..k * h * w + r * w + c1].iter_mut().for_each(|v| *v = 0.0);
                }
            }
        }
        x = x * Tensor::<B, 1>::from_data(TensorData::new(mask, [rows * h * w]), &device).reshape([rows, 1, h, w]);
    }
    x
}

/// Bilinear resampling of each image by its affine map (zeros outside the image): four gathers
/// of the flattened pixels, weighted.
fn resample<B: Backend>(x: Tensor<B, 4>, t: &[Transform]) -> Tensor<B, 4> {
    let [n, _, h, w] = x.dims();
    let (rows, hw) = (t.len(), h * w);
    let mut idx = vec![vec![0i64; rows * hw]; 4];
    let mut wt = vec![vec![0f32; rows * hw]; 4];
    for (k, t) in t.iter().enumerate() {
        let a = t.affine.unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        for i in 0..h {
            for j in 0..w {
                let (sx, sy) = (a[0] * j as f64 + a[1] * i as f64 + a[2], a[3] * j as f64 + a[4] * i as f64 + a[5]);
                // Whole-pixel sources (shifts) within rounding land on one pixel exactly.
                let snap = |v: f64| if (v - v.round()).abs() < 1e-9 { v.round() } else { v };
                let (sx, sy) = (snap(sx), snap(sy));
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let corners = [(x0, y0, (1.0 - fx) * (1.0 - fy)), (x0 + 1.0, y0, fx * (1.0 - fy)), (x0, y0 + 1.0, (1.0 - fx) * fy), (x0 + 1.0, y0 + 1.0, fx * fy)];
                let at = k * hw + i * w + j;
                for (q, &(cx, cy, weight)) in corners.iter().enumerate() {
                    if weight > 0.0 && cx >= 0.0 && cy >= 0.0 && cx < w as f64 && cy < h as f64 {
                        idx[q][at] = cy as i64 * w as i64 + cx as i64;
                        wt[q][at] = weight as f32;
                    }
                }
            }
        }
    }
    let device = x.device();
    let flat = x.reshape([n, hw]);
    let mut out: Option<Tensor<B, 2>> = None;
    for (idx, wt) in idx.into_iter().zip(wt) {
        let weights = Tensor::<B, 1>::from_data(TensorData::new(wt, [rows * hw]), &device).reshape([rows, hw]);
        let taken = if rows == 1 {
            flat.clone().select(1, Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [hw]), &device))
        } else {
            flat.clone().gather(1, Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [rows * hw]), &device).reshape([rows, hw]))
        };
        let term = taken * weights;
        out = Some(match out {
            Some(o) => o + term,
            None => term,
        });
    }
    out.expect("four corners").reshape([n, 1, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_ndarray::NdArray;
    use rand::SeedableRng;

    type F = NdArray<f32>;

    fn image(size: usize) -> Vec<f32> {
        (0..size * size).map(|k| ((k * 7919) % 101) as f32 / 100.0).collect()
    }

    fn run(pixels: &[f32], size: usize, t: &[Transform]) -> Vec<f32> {
        let n = pixels.len() / (size * size);
        let x = Tensor::<F, 1>::from_data(TensorData::new(pixels.to_vec(), [pixels.len()]), &Default::default()).reshape([n, 1, size, size]);
        apply(x, t).reshape([-1]).into_data().to_vec().unwrap()
    }

    #[test]
    fn shifts_move_whole_pixels_and_pad_with_zeros() {
        let size = 8;
        let x = image(size);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            let t = transform(&mut rng, Kind::Shift, size);
            let a = t.affine.unwrap();
            let (dx, dy) = (a[2].round() as i64, a[5].round() as i64);
            let y = run(&x, size, &[t]);
            for i in 0..size as i64 {
                for j in 0..size as i64 {
                    let (si, sj) = (i + dy, j + dx);
                    let want = if (0..size as i64).contains(&si) && (0..size as i64).contains(&sj) { x[(si * size as i64 + sj) as usize] } else { 0.0 };
                    assert_eq!(y[(i * size as i64 + j) as usize], want, "shift ({dx}, {dy}) at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn a_quarter_turn_and_a_scale_resample_as_expected() {
        // A rotation by 90° maps pixel (i, j) to (j, size − 1 − i) exactly; a scale of 2 about
        // the centre reads the pixel halfway to the centre, bilinearly.
        let size = 5;
        let x = image(size);
        let c = 2.0;
        let quarter = Transform { affine: Some([0.0, 1.0, 0.0, -1.0, 0.0, 2.0 * c]), ..Transform::IDENTITY };
        let y = run(&x, size, &[quarter]);
        for i in 0..size {
            for j in 0..size {
                assert!((y[i * size + j] - x[(size - 1 - j) * size + i]).abs() < 1e-6, "({i}, {j})");
            }
        }
        let double = Transform { affine: Some([2.0, 0.0, c - 2.0 * c, 0.0, 2.0, c - 2.0 * c]), ..Transform::IDENTITY };
        let y = run(&x, size, &[double]);
        // Output (2, 3) reads source (2, 4); output (1, 1) reads (0, 0); output (0, 0) reads (−2, −2): zero.
        assert!((y[2 * size + 3] - x[2 * size + 4]).abs() < 1e-6);
        assert!((y[size + 1] - x[0]).abs() < 1e-6);
        assert_eq!(y[0], 0.0);
        let half = Transform { affine: Some([0.5, 0.0, c - 0.5 * c, 0.0, 1.0, 0.0]), ..Transform::IDENTITY };
        let y = run(&x, size, &[half]);
        // Output column 1 reads source column 1.5: the mean of columns 1 and 2.
        assert!((y[size + 1] - (x[size + 1] + x[size + 2]) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn each_image_gets_its_own_transform_and_colour_and_cutout_act_per_image() {
        let size = 6;
        let one = image(size);
        let x: Vec<f32> = one.iter().chain(one.iter()).copied().collect();
        let ts = [
            Transform { brightness: 0.25, contrast: 1.5, ..Transform::IDENTITY },
            Transform { cutout: Some([1, 4, 2, 5]), ..Transform::IDENTITY },
        ];
        let y = run(&x, size, &ts);
        let mean = one.iter().sum::<f32>() / one.len() as f32 + 0.25;
        for k in 0..size * size {
            assert!((y[k] - ((one[k] + 0.25 - mean) * 1.5 + mean)).abs() < 1e-5, "colour at {k}");
            let (r, c) = (k / size, k % size);
            let zeroed = (1..4).contains(&r) && (2..5).contains(&c);
            let want = if zeroed { 0.0 } else { one[k] };
            assert!((y[size * size + k] - want).abs() < 1e-6, "cutout at {k}: {} against {want}", y[size * size + k]);
        }
    }

    #[test]
    fn the_gradient_reaches_the_images() {
        use burn_autodiff::Autodiff;
        type A = Autodiff<F>;
        let size = 6;
        let x = Tensor::<A, 1>::from_data(TensorData::new(image(size), [size * size]), &Default::default()).reshape([1, 1, size, size]).require_grad();
        let rotate = transform(&mut ChaCha8Rng::seed_from_u64(3), Kind::Rotate, size);
        let y = apply(x.clone(), &[rotate]);
        let g = x.grad(&y.sum().backward()).unwrap().reshape([size * size]).into_data().to_vec::<f32>().unwrap();
        // d(Σ output)/d(pixel) is the total bilinear weight each source pixel receives: about one
        // inside, less near the corners the rotation turns out of the frame.
        let total: f32 = g.iter().sum();
        assert!(g.iter().all(|v| (0.0..=1.5).contains(v)) && total > 0.7 * (size * size) as f32 && total < 1.01 * (size * size) as f32, "{g:?}");
    }
}
