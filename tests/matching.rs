//! Distribution matching's loss (`src/distill/matching.rs`) against finite differences, in f64,
//! and the engine's batched form of it (`image_gradient`, `class_means`) against the class-by-class one.
//! Here rather than beside the code: burn-ndarray's f64 and f32 tensors in one process's parallel
//! tests disturbed each other (an f64 gradient read back as f32), and the library's own tests
//! run in f32.

use anondistill::augment::{apply, transform, Kind, Transform};
use anondistill::distill::matching::{class_means, image_gradient, matching_loss, Embedder};
use anondistill::rng::normal;
use burn_autodiff::Autodiff;
use burn_ndarray::NdArray;
use burn_tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type B = Autodiff<NdArray<f64>>;

/// The loss of synthetic images `syn` (2 classes × 2 images of 8 × 8) against the means of
/// fixed "real" images, under one random embedder.
/// With `unit`, every embedding divided by its norm (private matching's form); with `aug`,
/// class c's images transformed by `aug[c]` first, image i of the real and synthetic ones
/// alike (DSA's Siamese form).
fn loss(
    syn: Tensor<B, 4>,
    real: &Tensor<B, 4>,
    params: &[(Tensor<B, 4>, Tensor<B, 1>)],
    e: &Embedder,
    unit: bool,
    aug: Option<&[Vec<Transform>]>,
) -> Tensor<B, 1> {
    let moved = |x: Tensor<B, 4>, c: usize| match aug {
        Some(a) => {
            let n = x.dims()[0];
            apply(x, &a[c][..n])
        }
        None => x,
    };
    let embed = |x: Tensor<B, 4>| {
        if unit {
            e.embed_unit(params, x)
        } else {
            e.embed(params, x)
        }
    };
    let targets: Vec<Tensor<B, 1>> = (0..2)
        .map(|c| {
            embed(moved(real.clone().narrow(0, 3 * c, 3), c))
                .mean_dim(0)
                .squeeze::<1>()
                .detach()
        })
        .collect();
    let synthetic: Vec<Tensor<B, 2>> = (0..2)
        .map(|c| embed(moved(syn.clone().narrow(0, 2 * c, 2), c)))
        .collect();
    matching_loss(&targets, &synthetic)
}

/// The real images of class c (three each), transformed by `aug[c]` when given, off the graph.
fn real_of(real: &Tensor<B, 4>, c: usize, aug: Option<&[Vec<Transform>]>) -> Tensor<NdArray<f64>, 4> {
    let x = real.clone().narrow(0, 3 * c, 3).inner();
    match aug {
        Some(a) => apply(x, &a[c][..3]),
        None => x,
    }
}

/// A random embedder of `width` and `depth` and six "real" 8 × 8 images (two classes of three),
/// from `seed`; the stream, to draw more.
fn setup(seed: u64, width: usize, depth: usize) -> (Embedder, Vec<(Tensor<B, 4>, Tensor<B, 1>)>, Tensor<B, 4>, ChaCha8Rng) {
    let device = Default::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let e = Embedder { width, depth };
    let params = e.init::<B>(&mut rng, &device);
    let values: Vec<f64> = normal(&mut rng, 6 * 64, 1.0).into_iter().map(f64::from).collect();
    let real = Tensor::<B, 1>::from_data(TensorData::new(values, [6 * 64]), &device).reshape([6, 1, 8, 8]);
    (e, params, real, rng)
}

#[test]
fn the_gradient_of_the_matching_loss_is_its_finite_difference() {
    let (e, params, real, mut rng) = setup(3, 4, 2);
    let device = Default::default();
    let x0: Vec<f64> = normal(&mut rng, 4 * 64, 1.0)
        .into_iter()
        .map(f64::from)
        .collect();
    let at = |x: &[f64]| {
        Tensor::<B, 1>::from_data(TensorData::new(x.to_vec(), [4 * 64]), &device)
            .reshape([4, 1, 8, 8])
    };
    // DSA: per class, three transforms (a rotation, a scale and a colour change for class 0;
    // a shift, a cutout and a rotation for class 1), the synthetic images taking the first two.
    let kinds = [[Kind::Rotate, Kind::Scale, Kind::Color], [Kind::Shift, Kind::Cutout, Kind::Rotate]];
    let aug: Vec<Vec<Transform>> = kinds.iter().map(|ks| ks.iter().map(|&k| transform(&mut rng, k, 8)).collect()).collect();
    for (unit, aug) in [(false, None), (true, None), (false, Some(&aug[..])), (true, Some(&aug[..]))] {
        let syn = at(&x0).require_grad();
        let l = loss(syn.clone(), &real, &params, &e, unit, aug);
        let grads = l.backward();
        let g: Vec<f64> = syn.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let value = |x: &[f64]| -> f64 { loss(at(x), &real, &params, &e, unit, aug).into_scalar() };
        let h = 1e-5;
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-6, "a gradient of zero checks nothing");
        // The engine's form, every class in one batch: the same loss and gradient as the
        // class-by-class composition above (and the same targets, for plain embeddings).
        let inner: Vec<(Tensor<NdArray<f64>, 4>, Tensor<NdArray<f64>, 1>)> = params.iter().map(|(w, b)| (w.clone().inner(), b.clone().inner())).collect();
        let reals: Vec<Tensor<NdArray<f64>, 4>> = (0..2).map(|c| real_of(&real, c, aug)).collect();
        let targets: Vec<Tensor<NdArray<f64>, 1>> = reals.iter().map(|x| if unit { e.embed_unit(&inner, x.clone()) } else { e.embed(&inner, x.clone()) }.mean_dim(0).squeeze::<1>()).collect();
        if !unit {
            for (a, b) in class_means(&e, &inner, &reals).into_iter().zip(&targets) {
                let gap: f64 = (a - b.clone()).abs().max().into_scalar();
                assert!(gap < 1e-12, "class_means, in one batch, is {gap} from the class-by-class means");
            }
        }
        let (batched, g_batched) = image_gradient(&e, &inner, &at(&x0).inner(), &[vec![0, 1], vec![2, 3]], &targets, unit, aug);
        let (l0, l1): (f64, f64) = (value(&x0), batched.into_scalar());
        assert!((l0 - l1).abs() <= 1e-12 * l0.abs(), "unit {unit}: image_gradient's loss {l1} against {l0}");
        let g_batched: Vec<f64> = g_batched.into_data().to_vec().unwrap();
        for (i, (a, b)) in g_batched.iter().zip(&g).enumerate() {
            assert!((a - b).abs() <= 1e-9 * scale.max(1.0), "unit {unit}, augmented {}, pixel {i}: image_gradient {a} vs {b}", aug.is_some());
        }
        for i in (0..x0.len()).step_by(7) {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (value(&up) - value(&down)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * scale.max(1.0),
                "unit {unit}, augmented {}, pixel {i}: autodiff {} vs finite difference {fd}",
                aug.is_some(),
                g[i]
            );
        }
    }
}

#[test]
fn identical_sets_match_exactly() {
    let (e, params, real, _) = setup(5, 3, 3);
    // The first two real images of each class, repeated so the means agree: use the whole
    // class as the synthetic set.
    let targets: Vec<Tensor<B, 1>> = (0..2)
        .map(|c| {
            e.embed(&params, real.clone().narrow(0, 3 * c, 3))
                .mean_dim(0)
                .squeeze::<1>()
        })
        .collect();
    let synthetic: Vec<Tensor<B, 2>> = (0..2)
        .map(|c| e.embed(&params, real.clone().narrow(0, 3 * c, 3)))
        .collect();
    let l: f64 = matching_loss(&targets, &synthetic).into_scalar();
    assert!(l.abs() < 1e-20, "{l}");
    assert_eq!(e.embed(&params, real).dims(), [6, 3]);
}
