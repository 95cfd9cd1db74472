//! Adam (Kingma & Ba; PyTorch's form, eps outside the square root) on plain tensors.

use burn_tensor::{backend::Backend, Tensor};

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

/// The moments of one tensor.
#[derive(Clone, Debug)]
pub struct Adam<B: Backend, const D: usize> {
    m: Tensor<B, D>,
    v: Tensor<B, D>,
    t: i32,
}

impl<B: Backend, const D: usize> Adam<B, D> {
    /// Zero moments shaped like `param`.
    pub fn new(param: &Tensor<B, D>) -> Self {
        Self { m: param.zeros_like(), v: param.zeros_like(), t: 0 }
    }

    /// The first and second moments and the number of steps taken.
    pub fn moments(&self) -> (&Tensor<B, D>, &Tensor<B, D>, i32) {
        (&self.m, &self.v, self.t)
    }

    /// Moments saved by [`Adam::moments`].
    pub fn from_moments(m: Tensor<B, D>, v: Tensor<B, D>, t: i32) -> Self {
        Self { m, v, t }
    }

    /// The parameter after one step of size `lr` along `grad`.
    pub fn step(&mut self, cfg: AdamConfig, lr: f64, param: Tensor<B, D>, grad: Tensor<B, D>) -> Tensor<B, D> {
        self.t += 1;
        self.m = self.m.clone().mul_scalar(cfg.beta1) + grad.clone().mul_scalar(1.0 - cfg.beta1);
        self.v = self.v.clone().mul_scalar(cfg.beta2) + (grad.clone() * grad).mul_scalar(1.0 - cfg.beta2);
        let c1 = 1.0 - cfg.beta1.powi(self.t);
        let c2 = 1.0 - cfg.beta2.powi(self.t);
        let denom = self.v.clone().div_scalar(c2).sqrt().add_scalar(cfg.eps);
        param - (self.m.clone().div_scalar(c1) / denom).mul_scalar(lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_ndarray::NdArray;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let p = Tensor::<NdArray, 1>::from_floats([1.0, -2.0, 0.5], &Default::default());
        let g = Tensor::<NdArray, 1>::from_floats([3.0, -0.1, 0.0], &Default::default());
        let mut adam = Adam::new(&p);
        let cfg = AdamConfig { beta1: 0.5, beta2: 0.999, eps: 1e-8 };
        let out = adam.step(cfg, 0.01, p, g).into_data().to_vec::<f32>().unwrap();
        assert!((out[0] - 0.99).abs() < 1e-6 && (out[1] + 1.99).abs() < 1e-6 && out[2] == 0.5, "{out:?}");
    }

    #[test]
    fn minimises_a_quadratic() {
        let mut p = Tensor::<NdArray, 1>::from_floats([3.0, -4.0], &Default::default());
        let mut adam = Adam::new(&p);
        let cfg = AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
        for _ in 0..2000 {
            let g = p.clone().mul_scalar(2.0);
            p = adam.step(cfg, 0.01, p.clone(), g);
        }
        let v = p.into_data().to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.abs() < 1e-2), "{v:?}");
    }
}
