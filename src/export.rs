//! The result archive: `distilled.safetensors`, one PNG preview per distilled image, `labels.csv`
//! and `manifest.json`. It holds nothing derived from an individual real image beyond the
//! distilled images themselves: no real images, no file names. Written byte-for-byte
//! reproducibly (fixed timestamps, fixed order).

use std::collections::HashMap;
use std::io::{Cursor, Write};

use image::{ImageBuffer, Luma};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use zip::{write::SimpleFileOptions, CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::audit::{render_png, Audit};
use crate::config::Config;
use crate::data::{read_at_most, Normalization};
use crate::distill::{initial_classes, Distilled};
use crate::error::{Error, Result};
use crate::eval::Evaluation;
use crate::net::Network;

/// Identifies the archive layout.
pub const FORMAT: &str = "anondistill/2";

/// The most bytes an entry of an archive may decompress to when read back.
const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// The layout before the outer decay's fields changed; read with its configuration upgraded.
const FORMAT_1: &str = "anondistill/1";

/// What `manifest.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Version of the crate that wrote the archive.
    pub crate_version: String,
    /// The full configuration (seed, network, init, label mode, …).
    pub config: Config,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// The normalisation the images live in: pixel = image · std + mean.
    pub normalization: Normalization,
    /// Images per class in the training split the set was distilled from: the audit's members
    /// (counts only).
    pub train_counts: Vec<usize>,
    /// Images per class kept back from training as the audit's holdout (counts only).
    #[serde(default)]
    pub holdout_counts: Vec<usize>,
    /// Patients per class and in all in the training, holdout and test splits (counts only,
    /// never ids or names); absent in archives written before patients were counted.
    #[serde(default)]
    pub patients: Option<crate::data::SplitPatients>,
    /// Outer iterations that were run.
    pub iterations_run: usize,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
    /// The evaluation, when one was run.
    pub metrics: Option<Evaluation>,
    /// Images per distilled step.
    pub images_per_step: usize,
    /// How the preview PNGs map values to grey levels.
    pub preview_scaling: String,
    /// What each entry of the archive holds.
    pub files: Vec<String>,
    /// What a reader must know before sharing the archive: images started from real training
    /// images, near copies the audit flagged, an audit that did not run.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Differential privacy's record, when the run was private (`crate::privacy`). A private
    /// archive holds no count of training or holdout images or patients, no baseline trained on
    /// them (`metrics` is absent) and no audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<crate::privacy::Privacy>,
    /// How a network is meant to be trained on a matching set, the way its evaluation trained
    /// them: an ordinary loop on all the images with these settings (absent for the unrolled
    /// objective, whose set is replayed step by step with `lrs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<crate::train::Recipe>,
    /// A private run's evaluation: the distilled program on the test patients only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_metrics: Option<crate::eval::Accuracy>,
}

/// Everything the archive is made from.
pub struct Export<'a> {
    /// The distilled data.
    pub distilled: &'a Distilled,
    /// The manifest (its `files` list is filled in).
    pub manifest: Manifest,
    /// The fixed initial weights when `known_init` was used (random, not derived from data).
    pub fixed_init: Option<Vec<Vec<f32>>>,
    /// The privacy audit, when one was run (distances and statistics, no image).
    pub audit: Option<&'a Audit>,
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn preview_png(values: &[f32], size: usize) -> Result<Vec<u8>> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let grey: Vec<u8> = values.iter().map(|&v| (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    let img = ImageBuffer::<Luma<u8>, _>::from_raw(size as u32, size as u32, grey).expect("size×size values");
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| Error::Archive(e.to_string()))?;
    Ok(out.into_inner())
}

/// A class name as one CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, and kept from being read as a formula by a spreadsheet (a leading `=`, `+`, `-`, `@`,
/// tab or carriage return gets a `'` before it).
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn labels_csv(d: &Distilled, classes: &[String]) -> String {
    let mut s = format!("image,step,initial_class,{}\n", classes.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
    for i in 0..d.len() {
        let row = &d.labels[i * d.classes..(i + 1) * d.classes];
        let values: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        s += &format!("{i},{},{},{}\n", i / d.per_step, csv_field(&classes[d.classes_of[i]]), values.join(","));
    }
    s
}

/// Writes the archive into memory.
pub fn write_archive(export: Export<'_>) -> Result<Vec<u8>> {
    let d = export.distilled;
    let mut manifest = export.manifest;
    let n = d.len();
    let images = f32_bytes(&d.images);
    let labels = f32_bytes(&d.labels);
    let lrs = f32_bytes(&d.lrs);
    let init: Vec<Vec<u8>> = export.fixed_init.iter().flatten().map(|p| f32_bytes(p)).collect();
    let err = |e: safetensors::SafeTensorError| Error::Archive(e.to_string());
    let mut tensors = vec![
        ("images".to_string(), TensorView::new(Dtype::F32, vec![n, 1, d.size, d.size], &images).map_err(err)?),
        ("labels".to_string(), TensorView::new(Dtype::F32, vec![n, d.classes], &labels).map_err(err)?),
        ("lrs".to_string(), TensorView::new(Dtype::F32, vec![d.lrs.len()], &lrs).map_err(err)?),
    ];
    for (k, bytes) in init.iter().enumerate() {
        tensors.push((format!("init.{k:02}"), TensorView::new(Dtype::F32, vec![bytes.len() / 4], bytes).map_err(err)?));
    }
    let info: HashMap<String, String> = [("format".to_string(), FORMAT.to_string())].into();
    let safetensors = safetensors::serialize(tensors, &Some(info)).map_err(err)?;

    let mut files: Vec<(String, Vec<u8>)> = vec![("distilled.safetensors".into(), safetensors)];
    for i in 0..n {
        let pixels = &d.images[i * d.size * d.size..(i + 1) * d.size * d.size];
        files.push((format!("previews/image_{i:04}.png"), preview_png(pixels, d.size)?));
    }
    files.push(("labels.csv".into(), labels_csv(d, &manifest.classes).into_bytes()));
    if let Some(a) = export.audit {
        files.push(("audit.json".into(), serde_json::to_vec_pretty(a).map_err(|e| Error::Archive(e.to_string()))?));
        files.push(("audit.png".into(), render_png(a)?));
    }
    manifest.files = vec![
        "distilled.safetensors: images [n,1,H,W] f32 (normalised space), labels [n,C] f32, lrs [steps×epochs] f32 (the replay's; a matching set is trained by `recipe` instead), init.* (fixed initial weights, known_init only)".into(),
        "previews/image_NNNN.png: one preview per distilled image".into(),
        "labels.csv: the learned label values of each image".into(),
        "audit.json, audit.png: the privacy audit (distances, statistics and charts; no real image), when it was run".into(),
        "manifest.json: this file".into(),
    ];
    manifest.preview_scaling = "each preview is min–max scaled on its own to 0–255".into();
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Archive(e.to_string()))?;
    files.push(("manifest.json".into(), json));

    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in files {
        zip.start_file(name, options).map_err(|e| Error::Archive(e.to_string()))?;
        zip.write_all(&bytes).map_err(|e| Error::Archive(e.to_string()))?;
    }
    Ok(zip.finish().map_err(|e| Error::Archive(e.to_string()))?.into_inner())
}

/// What an archive holds.
pub struct Archive {
    /// The distilled data.
    pub distilled: Distilled,
    /// The manifest.
    pub manifest: Manifest,
    /// Fixed initial weights, when present.
    pub fixed_init: Option<Vec<Vec<f32>>>,
    /// Names of the archive's entries.
    pub entries: Vec<String>,
}

/// Reads an archive written by [`write_archive`].
pub fn read_archive(bytes: &[u8]) -> Result<Archive> {
    let bad = |e: &dyn std::fmt::Display| Error::Archive(e.to_string());
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let entries: Vec<String> = zip.file_names().map(String::from).collect();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let f = zip.by_name(name).map_err(|e| Error::Archive(format!("{name}: {e}")))?;
        read_at_most(f, MAX_ENTRY_BYTES).map_err(|e| bad(&e))?.ok_or_else(|| {
            Error::Archive(format!("{name} decompresses to more than {} MiB; not an archive of this tool", MAX_ENTRY_BYTES >> 20))
        })
    };
    let mut value: serde_json::Value = serde_json::from_slice(&read("manifest.json")?).map_err(|e| bad(&e))?;
    crate::config::upgrade_document(&mut value, FORMAT_1, FORMAT);
    // Metrics in their form before 2026-12-03 (accuracy alone: mean, std, per_class) are not read.
    if value["metrics"]["distilled"].get("mean").is_some() {
        value["metrics"] = serde_json::Value::Null;
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(&e))?;
    if manifest.format != FORMAT {
        return Err(Error::Archive(format!("format {} is not {FORMAT}", manifest.format)));
    }
    let st_bytes = read("distilled.safetensors")?;
    let st = SafeTensors::deserialize(&st_bytes).map_err(|e| bad(&e))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st.tensor(name).map_err(|e| Error::Archive(format!("{name}: {e}")))?;
        if t.dtype() != Dtype::F32 {
            return Err(Error::Archive(format!("{name} is not f32")));
        }
        let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok((t.shape().to_vec(), values))
    };
    let (ishape, images) = get("images")?;
    let (lshape, labels) = get("labels")?;
    let (_, lrs) = get("lrs")?;
    let cfg = &manifest.config;
    cfg.validate().map_err(|e| Error::Archive(format!("manifest.json: {e}")))?;
    let classes = manifest.classes.len();
    let per_step = manifest.images_per_step;
    let size = cfg.image_size;
    let shapes_agree = ishape.len() == 4
        && ishape[0] > 0
        && ishape[1..] == [1, size, size]
        && lshape == [ishape[0], classes]
        && classes >= 2
        && per_step > 0
        && ishape[0] % per_step == 0
        && lrs.len() == ishape[0] / per_step * cfg.epochs;
    if !shapes_agree {
        return Err(Error::Archive(format!(
            "tensor shapes disagree with the manifest: images {ishape:?}, labels {lshape:?}, {} learning rates for {classes} classes, {per_step} images a step, {} epochs, {size} × {size} images",
            lrs.len(),
            cfg.epochs
        )));
    }
    let mut names: Vec<&str> = st.names().into_iter().map(|s| s.as_str()).filter(|n| n.starts_with("init.")).collect();
    names.sort();
    let fixed_init = if names.is_empty() { None } else { Some(names.iter().map(|n| get(n).map(|t| t.1)).collect::<Result<Vec<_>>>()?) };
    if let Some(init) = &fixed_init {
        let net = Network::new(cfg, classes).map_err(|e| Error::Archive(format!("manifest.json: {e}")))?;
        let expected: Vec<usize> = net.params().iter().map(|p| p.numel()).collect();
        let found: Vec<usize> = init.iter().map(Vec::len).collect();
        if found != expected {
            return Err(Error::Archive(format!("the fixed initial weights have sizes {found:?}; this network needs {expected:?}")));
        }
    }
    let distilled = Distilled {
        per_step,
        size: ishape[2],
        classes,
        epochs: cfg.epochs,
        classes_of: initial_classes(ishape[0], classes),
        images,
        labels,
        lrs,
    };
    Ok(Archive { distilled, manifest, fixed_init, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_quoted_and_never_formulas_in_labels_csv() {
        assert_eq!(csv_field("normal"), "normal");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("neumonía"), "neumonía");
    }
}
