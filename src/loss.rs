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

/// The label values as they enter the inner loss.
pub fn label_targets<B: Backend>(labels: Tensor<B, 2>, mode: LabelMode) -> Tensor<B, 2> {
    match mode {
        LabelMode::Raw => labels,
        LabelMode::Softmax => softmax(labels, 1),
    }
}
