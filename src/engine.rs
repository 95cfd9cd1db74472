//! How the engine computes: choices that change the speed and never the result (every
//! combination gives the same values up to float rounding, `tests/hypergradient.rs`). They are
//! the engine's, not the user's: not in [`crate::config::Config`], not in the archive's manifest
//! or the session file, so a session saved with one resumes with another. The defaults are the
//! fastest measured (bench/HISTORY.md); tests and benchmarks pick others with
//! [`crate::distill::Distiller::with_engine`] and [`crate::net::Network::with_engine`].

/// The engine's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Engine {
    /// How convolutions are computed.
    pub conv: ConvImpl,
    /// How inner gradients are computed (`Manual`, the faster on flex: bench/HISTORY.md, change 11).
    pub inner_grad: InnerGrad,
    /// Which operations of manual inner gradients are differentiated once with the backend's kernels.
    pub once_ops: OnceImpl,
}

/// How convolutions are computed (the same function either way; only the speed differs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvImpl {
    /// im2col on burn-ndarray (whose `conv_transpose2d` is a plain loop: 2–6× faster there, see
    /// `bench/HISTORY.md`), burn's `conv2d` on every other backend.
    #[default]
    Auto,
    /// burn's `conv2d` (its backward and double backward use the backend's `conv_transpose2d`).
    Direct,
    /// Shifted slices stacked into columns and one matrix product (im2col): both levels of
    /// differentiation run on matmul, slicing and reshapes.
    Im2col,
}

/// How each inner step's gradient is computed (the same values either way; only the speed
/// differs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InnerGrad {
    /// burn's autodiff nested in itself (`Autodiff<Autodiff<B>>`).
    Nested,
    /// Written out layer by layer (`grad.rs`), differentiated once by the outer backward.
    #[default]
    Manual,
}

/// Which operations of the manual inner gradient are custom operations differentiated once with
/// the backend's own kernels (`once.rs`) instead of burn's generic ones (the same values either
/// way; only the speed differs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnceImpl {
    /// Pooling on the CPU backends (flex, ndarray), convolutions too on flex with `conv2d`
    /// convolutions (the fastest measured, bench/HISTORY.md, change 15); burn's on the GPU.
    #[default]
    Auto,
    /// burn's operations everywhere.
    Off,
    /// Pooling on every backend.
    Pooling,
    /// Pooling, and convolutions wherever they are not im2col, on every backend.
    All,
}

