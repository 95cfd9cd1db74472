//! The losses and label targets: the soft cross-entropy of the inner and outer steps, one-hot
//! rows, and the learned labels as they enter the inner loss. Depends on nothing else of the
//! crate but the configuration's label mode, so the data, the networks' gradients (`grad`) and
//! the training steps (`train`) can all use it.

use burn_tensor::{
    activation::{log_softmax, softmax},
    backend::Backend,
    Tensor,
};

use crate::config::LabelMode;

/// Mean over the batch of `−Σ_c target_c · log softmax(logits)_c`; with one-hot targets this is
/// the ordinary cross-entropy, with learned label values the fork's label-weighted loss.
pub fn soft_cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = logits.dims()[0] as f64;
    (log_softmax(logits, 1) * targets).sum().neg().div_scalar(n)
}

/// One-hot float rows of `labels`, built on the host (burn's `one_hot` checks its input with a
/// blocking read, which WebGPU in a browser cannot do).
pub fn one_hot<B: Backend>(labels: &[usize], classes: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut values = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        values[i * classes + l] = 1.0;
    }
    Tensor::from_data(burn_tensor::TensorData::new(values, [labels.len(), classes]), device)
}

/// One-hot rows `[n, classes]` times each class's weight: with these targets the soft
/// cross-entropy weights each image by its class's weight.
pub fn weighted_rows<B: Backend>(one_hot: Tensor<B, 2>, weights: &[f32]) -> Tensor<B, 2> {
    let device = one_hot.device();
    one_hot * Tensor::<B, 2>::from_data(burn_tensor::TensorData::new(weights.to_vec(), [1, weights.len()]), &device)
}

/// The label values as they enter the inner loss.
pub fn label_targets<B: Backend>(labels: Tensor<B, 2>, mode: LabelMode) -> Tensor<B, 2> {
    match mode {
        LabelMode::Raw => labels,
        LabelMode::Softmax => softmax(labels, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_ndarray::NdArray;

    #[test]
    fn weighted_rows_weight_each_image_by_its_class() {
        let device = Default::default();
        // One image of class 0 and three of class 1: weights 2 and 2/3 make both classes count 2.
        let logits = Tensor::<NdArray, 2>::from_floats([[0.3, -0.2], [1.0, 0.5], [-0.4, 0.1], [0.0, 2.0]], &device);
        let y = one_hot::<NdArray>(&[0, 1, 1, 1], 2, &device);
        let each: Vec<f32> = (log_softmax(logits.clone(), 1) * y.clone()).sum_dim(1).neg().into_data().to_vec().unwrap();
        let want = (2.0 * each[0] + 2.0 / 3.0 * (each[1] + each[2] + each[3])) / 4.0;
        let got = soft_cross_entropy(logits.clone(), weighted_rows(y.clone(), &[2.0, 2.0 / 3.0])).into_scalar();
        assert!((got - want).abs() < 1e-6, "{got} {want}");
        // Weights of 1 change nothing, bit for bit.
        assert_eq!(soft_cross_entropy(logits.clone(), weighted_rows(y.clone(), &[1.0, 1.0])).into_scalar(), soft_cross_entropy(logits, y).into_scalar());
    }
}
