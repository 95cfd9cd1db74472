//! f32 kernels on plain slices for a stride-1 convolution, its gradients, 2×2 average and max
//! pooling and the average's adjoint: what burn-flex runs slowly for the meta-step
//! (bench/HISTORY.md, change 20).
//!
//! flex's transposed convolution walks the batch serially and scatters its columns one element at
//! a time with a bounds check per element; its weight gradient needs the batch and channel
//! dimensions swapped (copies); its average pooling's backward is a generic 3-d loop. Here:
//! - [`conv`]: the convolution itself: per chunk of images, their im2col by row segments side
//!   by side and one matrix product (flex's im2col copies element by element).
//! - [`input_grad`]: per chunk of images, one matrix product `Wᵀ·dy` into columns and a col2im
//!   that adds whole row segments.
//! - [`weight_grad`]: per fixed chunk of images, the chunk's im2col and output gradient laid side
//!   by side and one matrix product; the chunks' sums added in chunk order, so the result does
//!   not depend on the number of threads.
//! - [`avg_pool`], [`avg_unpool`], [`max_pool`]: 2×2 pooling plane by plane (flex's run in
//!   parallel closures that cost more than the arithmetic).
//!
//! Chunks run in parallel natively. A product per chunk rather than per image: a layer with
//! small planes (the ConvNet's 7×7) otherwise pays gemm's packing and dispatch once per image.
//!
//! Layouts are burn's: `[n, c, h, w]` row-major, weights `[out, in, k, k]`.

use std::mem::MaybeUninit;

/// Shapes of a stride-1 convolution with `padding` on every side and a square kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out(&self) -> (usize, usize) {
        (self.h + 2 * self.padding + 1 - self.k, self.w + 2 * self.padding + 1 - self.k)
    }

    /// Rows of the column matrix (`c_in · k · k`), an input plane and an output plane, after
    /// checking the lengths of what `kernel` is given (`None`: not one of its inputs).
    fn sizes(&self, kernel: &str, x: Option<usize>, weight: Option<usize>, dy: Option<usize>) -> (usize, usize, usize) {
        let (ho, wo) = self.out();
        let (rows, plane, out_plane) = (self.c_in * self.k * self.k, self.h * self.w, ho * wo);
        for (name, len, want) in [("input", x, self.n * self.c_in * plane), ("weight", weight, self.c_out * rows), ("output gradient", dy, self.n * self.c_out * out_plane)] {
            assert!(len.is_none_or(|len| len == want), "{kernel}: {name} size {len:?}, expected {want}");
        }
        (rows, plane, out_plane)
    }

    /// For kernel offset `kk` along an axis of input length `len` and output length `out`: the
    /// output range whose input index `o + kk − padding` lies in `[0, len)`, and that index's
    /// value at the range's start.
    fn valid(&self, kk: usize, len: usize, out: usize) -> (usize, usize, usize) {
        let lo = self.padding.saturating_sub(kk);
        let hi = (len + self.padding).saturating_sub(kk).min(out);
        (lo, hi.max(lo), lo + kk - self.padding)
    }
}

/// `dst[m×n] (+)= lhs[m×k]·rhs[k×n]`, each matrix given by its pointer, column stride and row
/// stride (one thread: callers parallelise over images).
///
/// # Safety
/// The strides must address valid, non-overlapping memory for the given sizes.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(m: usize, n: usize, k: usize, dst: *mut f32, (dst_cs, dst_rs): (isize, isize), accumulate: bool, lhs: *const f32, (lhs_cs, lhs_rs): (isize, isize), rhs: *const f32, (rhs_cs, rhs_rs): (isize, isize)) {
    gemm::gemm(m, n, k, dst, dst_cs, dst_rs, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
}

/// Each of the disjoint `len`-long chunks of `out` computed by `f(index, chunk, scratch)`, in
/// parallel natively, with `scratch` floats of the worker's own reused buffer (not zeroed: every
/// kernel writes what it reads).
fn for_each_chunk<T: Send>(out: &mut [T], len: usize, scratch: usize, f: impl Fn(usize, &mut [T], &mut [f32]) + Send + Sync) {
    let run = |(i, chunk): (usize, &mut [T])| with_scratch(scratch, |buf| f(i, chunk, buf));
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len).enumerate().for_each(run);
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(len).enumerate().for_each(run);
}

/// A vector of `len` floats computed as [`for_each_chunk`] computes its chunks, `fill(index,
/// chunk, scratch)` given each `chunk`-long piece of uninitialised storage: for outputs that a
/// kernel writes whole, where zeroing them first cost a `memset` per call (bench/HISTORY.md,
/// change 23).
///
/// # Safety
/// `fill` must write every entry of each chunk it is given.
unsafe fn written(len: usize, chunk: usize, scratch: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut [f32]) + Send + Sync) -> Vec<f32> {
    let mut v = Vec::<f32>::with_capacity(len);
    for_each_chunk(&mut v.spare_capacity_mut()[..len], chunk, scratch, fill);
    // SAFETY: the chunks cover the first `len` entries and `fill` wrote each (the caller's
    // promise).
    unsafe { v.set_len(len) };
    v
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` of this thread's scratch buffer, at least `len` long (grown, never shrunk).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// im2col of one image `x [c_in, h, w]`: row `(c, kh, kw)` of `cols` (rows `span` long) gets,
/// from column `at` on, the image shifted by the kernel offset over the output grid, zeros where
/// the window leaves the image.
fn im2col(x: &[f32], s: ConvShape, cols: &mut [f32], span: usize, at: usize) {
    let (ho, wo) = s.out();
    let plane = s.h * s.w;
    for c in 0..s.c_in {
        let x = &x[c * plane..][..plane];
        for kh in 0..s.k {
            let (oy0, oy1, y0) = s.valid(kh, s.h, ho);
            for kw in 0..s.k {
                let (ox0, ox1, x0) = s.valid(kw, s.w, wo);
                let row = &mut cols[((c * s.k + kh) * s.k + kw) * span + at..][..ho * wo];
                if ox0 == ox1 {
                    row.fill(0.0);
                    continue;
                }
                row[..oy0 * wo].fill(0.0);
                row[oy1 * wo..].fill(0.0);
                if oy0 == oy1 {
                    continue;
                }
                if wo == s.w {
                    // Output as wide as the input: output pixel p takes input pixel p plus one
                    // offset, so the block is one copy; the positions outside [ox0, ox1) of each
                    // line (the neighbouring line's pixels) are then zeroed.
                    let (start, end) = (oy0 * wo + ox0, (oy1 - 1) * wo + ox1);
                    row[start..end].copy_from_slice(&x[y0 * s.w + x0..][..end - start]);
                    for line in row[oy0 * wo..oy1 * wo].chunks_exact_mut(wo) {
                        zero_few(&mut line[..ox0]);
                        zero_few(&mut line[ox1..]);
                    }
                    continue;
                }
                for (i, oy) in (oy0..oy1).enumerate() {
                    let line = &mut row[oy * wo..][..wo];
                    zero_few(&mut line[..ox0]);
                    line[ox0..ox1].copy_from_slice(&x[(y0 + i) * s.w + x0..][..ox1 - ox0]);
                    zero_few(&mut line[ox1..]);
                }
            }
        }
    }
}

/// Zeroes `v`, the few positions of a line that a kernel offset moves past the image's border
/// (up to the padding): by stores for up to two, where `fill` is a call to `memset` per line
/// (4% of a ConvNet meta-step; bench/HISTORY.md, change 23).
#[inline(always)]
fn zero_few(v: &mut [f32]) {
    match v {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        _ => v.fill(0.0),
    }
}

/// Images per product of [`conv`] and [`input_grad`]: about [`COLUMNS`] output pixels, so that a
/// layer with small planes does not pay gemm's packing once per image, and at least four chunks
/// of the batch for the threads.
fn images_per_product(n: usize, out_plane: usize) -> usize {
    (COLUMNS / out_plane.max(1)).clamp(1, n.div_ceil(4).max(1))
}

/// Columns aimed at by one product of [`conv`] and [`input_grad`].
const COLUMNS: usize = 1024;

/// [`im2col`] of `images` images of `x [n, c_in, h, w]` from image `first` on, side by side in
/// `cols` (rows `span` long).
fn im2col_images(x: &[f32], s: ConvShape, first: usize, images: usize, cols: &mut [f32], span: usize) {
    let (ho, wo) = s.out();
    let plane = s.c_in * s.h * s.w;
    for j in 0..images {
        im2col(&x[(first + j) * plane..][..plane], s, cols, span, j * ho * wo);
    }
}

/// The output gradients of `images` images from image `first` on, laid side by side as
/// `dys [c_out, images·ho·wo]` with rows `span` long.
fn gather(dy: &[f32], s: ConvShape, first: usize, images: usize, dys: &mut [f32], span: usize) {
    let (ho, wo) = s.out();
    let out_plane = ho * wo;
    for j in 0..images {
        for o in 0..s.c_out {
            dys[o * span + j * out_plane..][..out_plane].copy_from_slice(&dy[((first + j) * s.c_out + o) * out_plane..][..out_plane]);
        }
    }
}

/// The convolution `[n, c_out, ho, wo]` of `x [n, c_in, h, w]` by `weight [c_out, c_in, k, k]`,
/// plus `bias [c_out]` where given: per chunk of images, their im2col side by side and one
/// matrix product.
pub fn conv(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: ConvShape) -> Vec<f32> {
    let (rows, _, out_plane) = s.sizes("conv", Some(x.len()), Some(weight.len()), None);
    let len = s.n * s.c_out * out_plane;
    if len == 0 {
        return Vec::new();
    }
    let g = images_per_product(s.n, out_plane);
    let span = g * out_plane;
    let per_image = s.c_out * out_plane;
    let fill = |i: usize, y: &mut [MaybeUninit<f32>], buf: &mut [f32]| {
        let images = y.len() / per_image;
        let (cols, out) = buf.split_at_mut(rows * span);
        im2col_images(x, s, i * g, images, cols, span);
        // out [c_out, images·ho·wo] = weight [c_out, rows] · cols [rows, images·ho·wo]
        unsafe {
            matmul(s.c_out, images * out_plane, rows, out.as_mut_ptr(), (1, span as isize), false, weight.as_ptr(), (1, rows as isize), cols.as_ptr(), (1, span as isize));
        }
        for (j, y) in y.chunks_mut(per_image).enumerate() {
            for (o, y) in y.chunks_mut(out_plane).enumerate() {
                let out = &out[o * span + j * out_plane..][..out_plane];
                match bias {
                    Some(bias) => y.iter_mut().zip(out).for_each(|(y, v)| { y.write(v + bias[o]); }),
                    None => y.iter_mut().zip(out).for_each(|(y, v)| { y.write(*v); }),
                }
            }
        }
    };
    // SAFETY: `fill` writes every plane of its chunk's images.
    unsafe { written(len, g * per_image, (rows + s.c_out) * span, fill) }
}

/// The input gradient `[n, c_in, h, w]` of the convolution by `weight [c_out, c_in, k, k]`
/// given the output gradient `dy [n, c_out, ho, wo]`: the transposed convolution, per chunk of
/// images one product `weightᵀ·dy` into columns and a col2im per image.
pub fn input_grad(dy: &[f32], weight: &[f32], s: ConvShape) -> Vec<f32> {
    let (rows, plane, out_plane) = s.sizes("input_grad", None, Some(weight.len()), Some(dy.len()));
    let (ho, wo) = s.out();
    let mut dx = vec![0.0f32; s.n * s.c_in * plane];
    if dx.is_empty() {
        return dx;
    }
    let g = images_per_product(s.n, out_plane);
    let span = g * out_plane;
    let per_image = s.c_in * plane;
    for_each_chunk(&mut dx, g * per_image, (rows + s.c_out) * span, |i, dx, buf| {
        let images = dx.len() / per_image;
        let (cols, dys) = buf.split_at_mut(rows * span);
        gather(dy, s, i * g, images, dys, span);
        // cols [rows, images·ho·wo] = weightᵀ [rows, c_out] · dys [c_out, images·ho·wo]
        unsafe {
            matmul(rows, images * out_plane, s.c_out, cols.as_mut_ptr(), (1, span as isize), false, weight.as_ptr(), (rows as isize, 1), dys.as_ptr(), (1, span as isize));
        }
        for (j, dx) in dx.chunks_mut(per_image).enumerate() {
            for c in 0..s.c_in {
                let dx = &mut dx[c * plane..(c + 1) * plane];
                for kh in 0..s.k {
                    let (oy0, oy1, y0) = s.valid(kh, s.h, ho);
                    for kw in 0..s.k {
                        let (ox0, ox1, x0) = s.valid(kw, s.w, wo);
                        if ox0 == ox1 {
                            continue;
                        }
                        let row = &cols[((c * s.k + kh) * s.k + kw) * span + j * out_plane..][..out_plane];
                        for (i, oy) in (oy0..oy1).enumerate() {
                            let dst = &mut dx[(y0 + i) * s.w + x0..][..ox1 - ox0];
                            for (d, v) in dst.iter_mut().zip(&row[oy * wo + ox0..oy * wo + ox1]) {
                                *d += *v;
                            }
                        }
                    }
                }
            }
        }
    });
    dx
}

/// Images per chunk of [`weight_grad`]: a function of the batch only, so the sum's order (and
/// its rounding) is the same on any number of threads.
fn chunk_images(n: usize) -> usize {
    n.div_ceil(16).clamp(1, 16)
}

/// The weight gradient of each group of consecutive images, `[groups, c_out·c_in·k·k]`: group g
/// holds images `bounds[g]..bounds[g + 1]` (each group non-empty) and its row is the sum of their
/// own weight gradients, one product per image accumulated in place (differential privacy's
/// per-patient gradients, `crate::privacy`). Groups run in parallel natively.
pub fn group_weight_grads(x: &[f32], dy: &[f32], s: ConvShape, bounds: &[usize]) -> Vec<f32> {
    let (rows, _, out_plane) = s.sizes("group_weight_grads", Some(x.len()), None, Some(dy.len()));
    assert!(bounds.first() == Some(&0) && bounds.last() == Some(&s.n) && bounds.windows(2).all(|b| b[0] < b[1]), "group_weight_grads: bounds {bounds:?} for {} images", s.n);
    let size = s.c_out * rows;
    let groups = bounds.len() - 1;
    if groups * size == 0 {
        return vec![0.0; groups * size];
    }
    let fill = |g: usize, dw: &mut [MaybeUninit<f32>], cols: &mut [f32]| {
        for (j, i) in (bounds[g]..bounds[g + 1]).enumerate() {
            im2col_images(x, s, i, 1, cols, out_plane);
            let dyi = &dy[i * s.c_out * out_plane..][..s.c_out * out_plane];
            // dw [c_out, rows] (+)= dy_i [c_out, ho·wo] · colsᵀ [ho·wo, rows]
            unsafe {
                matmul(s.c_out, rows, out_plane, dw.as_mut_ptr().cast(), (1, rows as isize), j > 0, dyi.as_ptr(), (1, out_plane as isize), cols.as_ptr(), (out_plane as isize, 1));
            }
        }
    };
    // SAFETY: each group's first product writes its row whole without reading it; the next
    // ones add to what it wrote.
    unsafe { written(groups * size, size, rows * out_plane, fill) }
}

/// The weight gradient `[c_out, c_in, k, k]` of the convolution from its input `x [n, c_in, h,
/// w]` and output gradient `dy [n, c_out, ho, wo]`.
pub fn weight_grad(x: &[f32], dy: &[f32], s: ConvShape) -> Vec<f32> {
    let (rows, _, out_plane) = s.sizes("weight_grad", Some(x.len()), None, Some(dy.len()));
    let size = s.c_out * rows;
    let g = chunk_images(s.n);
    let chunks = s.n.div_ceil(g);
    if chunks * size == 0 {
        return vec![0.0; size];
    }
    let span = g * out_plane;
    let fill = |i: usize, dw: &mut [MaybeUninit<f32>], buf: &mut [f32]| {
        let images = g.min(s.n - i * g);
        let width = images * out_plane;
        let (cols, dys) = buf.split_at_mut(rows * span);
        gather(dy, s, i * g, images, dys, span);
        im2col_images(x, s, i * g, images, cols, span);
        // dw [c_out, rows] = dys [c_out, width] · colsᵀ [width, rows], written column by
        // column (as dwᵀ): gemm then packs the small `dys`, not the im2col matrix
        // (bench/HISTORY.md, change 25).
        unsafe {
            matmul(s.c_out, rows, width, dw.as_mut_ptr().cast(), (s.c_out as isize, 1), false, dys.as_ptr(), (1, span as isize), cols.as_ptr(), (span as isize, 1));
        }
    };
    // SAFETY: each chunk is the destination of a product that writes it whole without reading
    // it (`matmul` with `accumulate` false).
    let mut partial = unsafe { written(chunks * size, size, (rows + s.c_out) * span, fill) };
    let (first, rest) = partial.split_at_mut(size);
    for chunk in rest.chunks(size) {
        for (a, b) in first.iter_mut().zip(chunk) {
            *a += *b;
        }
    }
    let mut dw = vec![0.0; size];
    for (r, row) in first.chunks(s.c_out).enumerate() {
        for (o, v) in row.iter().enumerate() {
            dw[o * rows + r] = *v;
        }
    }
    dw
}

/// Elements per chunk of the element-wise kernels ([`masked`]).
const ELEMENTS: usize = 1 << 14;

/// `t · [pre > 0]`, element by element: `t` times the ReLU's derivative at `pre` (the ReLU
/// itself where `t` is `pre`), the product the manual gradients' 0/1 masks computed in three
/// passes of burn's element-wise ops, which run on one thread (bench/HISTORY.md, change 24).
pub fn masked(t: &[f32], pre: &[f32]) -> Vec<f32> {
    assert_eq!(t.len(), pre.len(), "masked: sizes");
    let fill = |i: usize, out: &mut [MaybeUninit<f32>], _: &mut [f32]| {
        let (t, pre) = (&t[i * ELEMENTS..][..out.len()], &pre[i * ELEMENTS..][..out.len()]);
        for ((o, t), p) in out.iter_mut().zip(t).zip(pre) {
            o.write(t * if *p > 0.0 { 1.0 } else { 0.0 });
        }
    };
    // SAFETY: `fill` writes every entry of its chunk.
    unsafe { written(t.len(), ELEMENTS, 0, fill) }
}

/// Whole planes of `h × w` per chunk of the pooling kernels: about [`ELEMENTS`] floats.
fn planes_per_chunk(h: usize, w: usize) -> usize {
    (ELEMENTS / (h * w).max(1)).max(1)
}

/// 2×2 average pooling (stride 2, floor mode) of `x [n, c, h, w]`: `[n, c, h/2, w/2]`.
pub fn avg_pool(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(x.len(), n * c * h * w, "avg_pool: input size");
    if ho * wo == 0 {
        return Vec::new();
    }
    let planes = planes_per_chunk(h, w);
    let fill = |i: usize, out: &mut [MaybeUninit<f32>], _: &mut [f32]| {
        for (plane, x) in out.chunks_mut(ho * wo).zip(x[i * planes * h * w..].chunks(h * w)) {
            for (y, row) in plane.chunks_mut(wo).enumerate() {
                let (top, bottom) = (&x[2 * y * w..][..2 * wo], &x[(2 * y + 1) * w..][..2 * wo]);
                for ((v, t), b) in row.iter_mut().zip(top.chunks(2)).zip(bottom.chunks(2)) {
                    v.write((t[0] + t[1] + b[0] + b[1]) / 4.0);
                }
            }
        }
    };
    // SAFETY: `fill` writes every output entry of its chunk's planes.
    unsafe { written(n * c * ho * wo, planes * ho * wo, 0, fill) }
}

/// 2×2 max pooling (stride 2, floor mode) of `x [n, c, h, w]`, and for each output the index
/// within its plane (`y · w + x`) of the first maximal entry of its window in row-major order,
/// the entry burn's kernels choose among ties.
pub fn max_pool(x: &[f32], [n, c, h, w]: [usize; 4]) -> (Vec<f32>, Vec<i64>) {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(x.len(), n * c * h * w, "max_pool: input size");
    let (mut out, mut at) = (vec![0.0f32; n * c * ho * wo], vec![0i64; n * c * ho * wo]);
    if ho * wo == 0 {
        return (out, at);
    }
    for ((plane, at), x) in out.chunks_mut(ho * wo).zip(at.chunks_mut(ho * wo)).zip(x.chunks(h * w)) {
        for y in 0..ho {
            for xo in 0..wo {
                let first = 2 * y * w + 2 * xo;
                let (mut best, mut index) = (x[first], first);
                for i in [first + 1, first + w, first + w + 1] {
                    if x[i] > best {
                        (best, index) = (x[i], i);
                    }
                }
                plane[y * wo + xo] = best;
                at[y * wo + xo] = index as i64;
            }
        }
    }
    (out, at)
}

/// The adjoint of 2×2 average pooling (stride 2, floor mode) of an `[n, c, h, w]` input: each
/// entry of `dy [n, c, h/2, w/2]` spread as a quarter over its window, zeros in a last odd row
/// or column.
pub fn avg_unpool(dy: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (ho, wo) = (h / 2, w / 2);
    assert_eq!(dy.len(), n * c * ho * wo, "avg_unpool: output gradient size");
    if ho * wo == 0 {
        return vec![0.0; n * c * h * w];
    }
    let planes = planes_per_chunk(h, w);
    let fill = |i: usize, out: &mut [MaybeUninit<f32>], _: &mut [f32]| {
        for (plane, dy) in out.chunks_mut(h * w).zip(dy[i * planes * ho * wo..].chunks(ho * wo)) {
            let (pairs, rest) = plane.split_at_mut(2 * ho * w);
            for (lines, dy) in pairs.chunks_mut(2 * w).zip(dy.chunks(wo)) {
                let (first, second) = lines.split_at_mut(w);
                for (pair, v) in first.chunks_mut(2).zip(dy) {
                    pair.iter_mut().for_each(|p| { p.write(0.25 * v); });
                }
                first[2 * wo..].iter_mut().for_each(|p| { p.write(0.0); });
                second.copy_from_slice(first);
            }
            rest.iter_mut().for_each(|p| { p.write(0.0); });
        }
    };
    // SAFETY: `fill` writes every line of its chunk's planes: each pair of lines as quarters (a
    // zero in a last odd column), a last odd line as zeros.
    unsafe { written(n * c * h * w, planes * h * w, 0, fill) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{stride1, transpose1};
    use crate::rng::{normal, rng, Stream};
    use burn_ndarray::NdArray;
    use burn_tensor::{module, Tensor, TensorData};

    type B = NdArray;

    fn draw(seed: u64, n: usize) -> Vec<f32> {
        normal(&mut rng(seed, Stream::Eval), n, 1.0)
    }

    fn tensor(v: &[f32], shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
    }

    fn close(ours: &[f32], burns: Tensor<B, 4>) {
        let burns = burns.into_data().to_vec::<f32>().unwrap();
        assert_eq!(ours.len(), burns.len());
        let scale = burns.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = ours.iter().zip(&burns).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-5 * scale, "{diff} of {scale}");
    }

    /// LeNet's and the ConvNet's layers, odd sizes, one image, and a batch over one chunk.
    const SHAPES: [ConvShape; 6] = [
        ConvShape { n: 3, c_in: 1, c_out: 6, h: 28, w: 28, k: 5, padding: 2 },
        ConvShape { n: 5, c_in: 6, c_out: 16, h: 14, w: 14, k: 5, padding: 0 },
        ConvShape { n: 4, c_in: 3, c_out: 5, h: 7, w: 9, k: 3, padding: 1 },
        ConvShape { n: 1, c_in: 2, c_out: 3, h: 5, w: 6, k: 3, padding: 2 },
        ConvShape { n: 37, c_in: 2, c_out: 4, h: 6, w: 6, k: 3, padding: 1 },
        ConvShape { n: 2, c_in: 4, c_out: 2, h: 3, w: 3, k: 3, padding: 0 },
    ];

    #[test]
    fn input_grad_is_burns_transposed_convolution() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (ho, wo) = s.out();
            let (dy, w) = (draw(i as u64, s.n * s.c_out * ho * wo), draw(100 + i as u64, s.c_out * s.c_in * s.k * s.k));
            let burns = module::conv_transpose2d(tensor(&dy, [s.n, s.c_out, ho, wo]), tensor(&w, [s.c_out, s.c_in, s.k, s.k]), None, transpose1(s.padding));
            assert_eq!(burns.dims(), [s.n, s.c_in, s.h, s.w]);
            close(&input_grad(&dy, &w, s), burns);
        }
    }

    #[test]
    fn conv_is_burns_conv2d() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (x, w, b) = (draw(600 + i as u64, s.n * s.c_in * s.h * s.w), draw(700 + i as u64, s.c_out * s.c_in * s.k * s.k), draw(800 + i as u64, s.c_out));
            let (xt, wt) = (tensor(&x, [s.n, s.c_in, s.h, s.w]), tensor(&w, [s.c_out, s.c_in, s.k, s.k]));
            let bt = Tensor::<B, 1>::from_data(TensorData::new(b.clone(), [s.c_out]), &Default::default());
            close(&conv(&x, &w, Some(&b), s), module::conv2d(xt.clone(), wt.clone(), Some(bt), stride1(s.padding)));
            close(&conv(&x, &w, None, s), module::conv2d(xt, wt, None, stride1(s.padding)));
        }
    }

    #[test]
    fn weight_grad_is_the_convolution_of_swapped_batch_and_channels() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (ho, wo) = s.out();
            let (x, dy) = (draw(200 + i as u64, s.n * s.c_in * s.h * s.w), draw(300 + i as u64, s.n * s.c_out * ho * wo));
            let swapped = |t: Tensor<B, 4>| t.swap_dims(0, 1);
            let burns = swapped(module::conv2d(swapped(tensor(&x, [s.n, s.c_in, s.h, s.w])), swapped(tensor(&dy, [s.n, s.c_out, ho, wo])), None, stride1(s.padding)));
            assert_eq!(burns.dims(), [s.c_out, s.c_in, s.k, s.k]);
            close(&weight_grad(&x, &dy, s), burns);
        }
    }

    #[test]
    fn group_weight_grads_are_each_group_s_weight_gradient() {
        for (i, s) in SHAPES.into_iter().enumerate() {
            let (ho, wo) = s.out();
            let (x, dy) = (draw(1000 + i as u64, s.n * s.c_in * s.h * s.w), draw(1100 + i as u64, s.n * s.c_out * ho * wo));
            // Groups of one, two, one, ... images, the last one taking what is left.
            let mut bounds = vec![0];
            while *bounds.last().unwrap() < s.n {
                let size = if bounds.len() % 2 == 0 { 2 } else { 1 };
                bounds.push((bounds.last().unwrap() + size).min(s.n));
            }
            let got = group_weight_grads(&x, &dy, s, &bounds);
            let size = s.c_out * s.c_in * s.k * s.k;
            assert_eq!(got.len(), (bounds.len() - 1) * size);
            for (g, b) in bounds.windows(2).enumerate() {
                let n = b[1] - b[0];
                let one = ConvShape { n, ..s };
                let (xs, dys) = (&x[b[0] * s.c_in * s.h * s.w..b[1] * s.c_in * s.h * s.w], &dy[b[0] * s.c_out * ho * wo..b[1] * s.c_out * ho * wo]);
                close(&got[g * size..][..size], tensor(&weight_grad(xs, dys, one), [s.c_out, s.c_in, s.k, s.k]));
            }
        }
    }

    #[test]
    fn masked_is_the_product_with_burns_relu_mask() {
        // Over several chunks, with zeros and negative zeros among the gates.
        let n = 3 * ELEMENTS + 17;
        let (t, mut pre) = (draw(1000, n), draw(1001, n));
        pre[..64].iter_mut().enumerate().for_each(|(i, p)| *p = if i % 2 == 0 { 0.0 } else { -0.0 });
        let shape = [1, 1, 1, n];
        let burns = tensor(&t, shape) * tensor(&pre, shape).greater_elem(0.0).float();
        assert_eq!(masked(&t, &pre), burns.into_data().to_vec::<f32>().unwrap());
    }

    /// Pooling shapes: even and odd planes, and more planes than one chunk holds.
    const POOLS: [[usize; 4]; 5] = [[2, 3, 8, 8], [1, 2, 7, 9], [3, 1, 3, 2], [40, 8, 8, 8], [20, 16, 9, 7]];

    #[test]
    fn avg_pool_is_burns() {
        for (i, [n, c, h, w]) in POOLS.into_iter().enumerate() {
            let x = draw(900 + i as u64, n * c * h * w);
            close(&avg_pool(&x, [n, c, h, w]), module::avg_pool2d(tensor(&x, [n, c, h, w]), [2, 2], [2, 2], [0, 0], true, false));
        }
    }

    #[test]
    fn max_pool_is_burns_with_its_indices() {
        for (i, [n, c, h, w]) in [[2, 3, 8, 8], [1, 2, 7, 9], [3, 1, 3, 2]].into_iter().enumerate() {
            // Rounded draws, so that windows hold ties.
            let x: Vec<f32> = draw(950 + i as u64, n * c * h * w).iter().map(|v| v.round()).collect();
            let (values, indices) = module::max_pool2d_with_indices(tensor(&x, [n, c, h, w]), [2, 2], [2, 2], [0, 0], [1, 1], false);
            let ours = max_pool(&x, [n, c, h, w]);
            close(&ours.0, values);
            assert_eq!(ours.1, indices.into_data().convert::<i64>().to_vec::<i64>().unwrap());
        }
    }

    #[test]
    fn avg_unpool_is_the_adjoint_of_burns_average_pooling() {
        for (i, [n, c, h, w]) in POOLS.into_iter().enumerate() {
            // <pool(x), dy> = <x, unpool(dy)> for every x, so the unpooling is the gradient of
            // the pooled sum weighted by dy.
            let dy = draw(400 + i as u64, n * c * (h / 2) * (w / 2));
            let x = Tensor::<burn_autodiff::Autodiff<B>, 4>::from_data(TensorData::new(draw(500 + i as u64, n * c * h * w), [n, c, h, w]), &Default::default()).require_grad();
            let pooled = module::avg_pool2d(x.clone(), [2, 2], [2, 2], [0, 0], true, false);
            let weights = Tensor::from_data(TensorData::new(dy.clone(), [n, c, h / 2, w / 2]), &Default::default());
            let grads = (pooled * weights).sum().backward();
            close(&avg_unpool(&dy, [n, c, h, w]), x.grad(&grads).unwrap());
        }
    }
}
