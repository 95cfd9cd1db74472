//! Labelled grayscale images in memory: loading (image folders, in-memory files, `.npz`), the
//! stratified split, normalisation and conversion to tensors.

mod decode;
mod folder;
mod npz;
mod patients;
mod split;

pub use decode::{decode_image, MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, MIN_SIDE};
pub use folder::{load_files, load_folder, InputFile};
pub use npz::{load_npz, NpzSplits};
pub use patients::{Grouping, NAMED};
pub use split::{PatientCounts, SplitPatients};

use std::io::Read;

use burn_tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// All of `reader`, or `None` when it holds more than `cap` bytes (reading stops at `cap + 1`, so
/// a zip bomb is never inflated whole). Untrusted archives are read through it.
pub(crate) fn read_at_most(reader: impl Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    reader.take(cap + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

/// The 64-bit FNV-1a hash's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: the hash `h` continued over `bytes`.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Square grayscale images with class labels; pixel values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Side of every image.
    pub size: usize,
    /// `len × size × size` pixel values, image after image, row-major.
    pub pixels: Vec<f32>,
    /// Class index of every image.
    pub labels: Vec<usize>,
    /// Class names; `labels` index into them.
    pub classes: Vec<String>,
    /// The patient of every image, as a key that depends on that patient's id alone
    /// (`patients.rs`; no name is kept). An image without an id is its own patient.
    pub patients: Vec<u64>,
}

/// A file that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The file's name (path relative to the data root where there is one).
    pub file: String,
    /// Why it was left out.
    pub reason: String,
}

/// A loaded dataset and the files that could not be used.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The usable images.
    pub dataset: Dataset,
    /// Files left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Mean and standard deviation of the training pixels; inputs are `(x − mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean pixel value in [0, 1] units.
    pub mean: f32,
    /// Standard deviation in [0, 1] units.
    pub std: f32,
}

impl Normalization {
    /// Statistics of all pixels of `data` (a constant image set gets std 1).
    pub fn of(data: &Dataset) -> Self {
        let n = data.pixels.len().max(1) as f64;
        let mean = data.pixels.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = data.pixels.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt();
        Self { mean: mean as f32, std: if std > 1e-6 { std as f32 } else { 1.0 } }
    }

    /// A pixel value in the networks' normalised space.
    pub fn normalise(&self, pixel: f32) -> f32 {
        (pixel - self.mean) / self.std
    }

    /// A normalised value back in pixel units.
    pub fn pixel(&self, value: f32) -> f32 {
        value * self.std + self.mean
    }
}

impl Dataset {
    /// A dataset in which every image is its own patient.
    pub fn new(size: usize, pixels: Vec<f32>, labels: Vec<usize>, classes: Vec<String>) -> Self {
        let patients = (0..labels.len() as u64).collect();
        Self { size, pixels, labels, classes, patients }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.size * self.size;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// A 64-bit FNV-1a hash of sizes, class names, labels and pixels, as 16 hex digits: tells
    /// whether a saved session is resumed on the same data without storing any of it.
    pub fn fingerprint(&self) -> String {
        let mut h = FNV_OFFSET;
        let mut eat = |bytes: &[u8]| h = fnv1a(h, bytes);
        eat(&(self.size as u64).to_le_bytes());
        for c in &self.classes {
            eat(&(c.len() as u64).to_le_bytes());
            eat(c.as_bytes());
        }
        for &l in &self.labels {
            eat(&(l as u64).to_le_bytes());
        }
        for &p in &self.pixels {
            eat(&p.to_le_bytes());
        }
        format!("{h:016x}")
    }

    /// Images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// Weights that make each class count equally: `n / (classes · n_c)` for class `c` (0 for a
    /// class without images); the images' mean weight is 1.
    pub fn class_weights(&self) -> Vec<f32> {
        let (n, k) = (self.len() as f64, self.num_classes() as f64);
        self.class_counts().iter().map(|&c| if c == 0 { 0.0 } else { (n / (k * c as f64)) as f32 }).collect()
    }

    /// The images at `indices`, in that order, with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(indices.len() * self.size * self.size);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            size: self.size,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            patients: indices.iter().map(|&i| self.patients[i]).collect(),
        }
    }

    /// Fails unless there are at least two classes and every class has at least `min_per_class`
    /// images; the message names the classes that fall short.
    pub fn check_classes(&self, min_per_class: usize) -> Result<()> {
        if self.classes.len() < 2 {
            return Err(Error::Data(format!(
                "found {} class(es) ({}); distillation needs at least two classes, one folder each",
                self.classes.len(),
                self.classes.join(", ")
            )));
        }
        let short: Vec<String> = self
            .class_counts()
            .iter()
            .zip(&self.classes)
            .filter(|(&c, _)| c < min_per_class)
            .map(|(c, name)| format!("'{name}' has {c}"))
            .collect();
        if !short.is_empty() {
            return Err(Error::Data(format!(
                "every class needs at least {min_per_class} usable image(s): {}",
                short.join(", ")
            )));
        }
        Ok(())
    }

    /// Indices of the images of each class, in order.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l].push(i);
        }
        by_class
    }

    /// Images at `indices`, normalised, as a `[n, 1, size, size]` tensor, with their one-hot
    /// labels `[n, classes]`.
    pub fn tensors<B: Backend>(
        &self,
        indices: &[usize],
        norm: Normalization,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 2>) {
        let n = indices.len();
        let mut values = Vec::with_capacity(n * self.size * self.size);
        for &i in indices {
            values.extend(self.image(i).iter().map(|&v| norm.normalise(v)));
        }
        let x = Tensor::from_data(TensorData::new(values, [n, 1, self.size, self.size]), device);
        let labels: Vec<usize> = indices.iter().map(|&i| self.labels[i]).collect();
        (x, crate::loss::one_hot(&labels, self.num_classes(), device))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny dataset: class c has `per_class` images filled with c / classes.
    pub fn toy(classes: usize, per_class: usize, size: usize) -> Dataset {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for c in 0..classes {
            for k in 0..per_class {
                let v = c as f32 / classes as f32 + k as f32 * 1e-3;
                pixels.extend(std::iter::repeat_n(v, size * size));
                labels.push(c);
            }
        }
        Dataset::new(size, pixels, labels, (0..classes).map(|c| format!("c{c}")).collect())
    }

    #[test]
    fn class_weights_make_each_class_count_equally() {
        let mut d = toy(2, 10, 2);
        d.labels[..8].iter_mut().for_each(|l| *l = 1); // 2 of class 0, 18 of class 1
        let w = d.class_weights();
        assert_eq!(w, vec![5.0, 20.0 / 36.0]);
        let per_class: Vec<f32> = d.class_counts().iter().zip(&w).map(|(&n, w)| n as f32 * w).collect();
        assert!((per_class[0] - per_class[1]).abs() < 1e-5 && (per_class[0] - 10.0).abs() < 1e-5, "{per_class:?}");
    }

    #[test]
    fn class_checks_name_the_cause() {
        let one = Dataset { classes: vec!["only".into()], ..toy(1, 3, 4) };
        assert!(one.check_classes(1).unwrap_err().to_string().contains("at least two classes"));
        let mut d = toy(2, 3, 4);
        d.classes[1] = "empty".into();
        d.labels.iter_mut().for_each(|l| *l = 0);
        let msg = d.check_classes(1).unwrap_err().to_string();
        assert!(msg.contains("'empty' has 0"), "{msg}");
    }

    #[test]
    fn normalisation_gives_zero_mean_unit_std() {
        let d = toy(2, 5, 3);
        let norm = Normalization::of(&d);
        let (x, _) = d.tensors::<burn_ndarray::NdArray>(&(0..d.len()).collect::<Vec<_>>(), norm, &Default::default());
        let v = x.into_data().to_vec::<f32>().unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{mean} {var}");
    }
}
