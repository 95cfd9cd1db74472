//! The ImageFolder loader: `root/<class>/<image>` or `root/<class>/<patient>/<image>`, class
//! names sorted to indices. The same code takes in-memory files, which is how the browser feeds
//! it.

use std::collections::BTreeMap;
use std::path::Path;

use super::decode::{decode_image, too_large, MAX_FILE_BYTES};
use super::patients::{Assigner, Grouping};
use super::{Dataset, Loaded, Skipped};
use crate::error::{Error, Result};

/// One file handed over in memory: its name (for messages and patient ids), its bytes, its class
/// and, when its folder gives one, its patient.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Name shown in messages, e.g. `normal/img_001.png`.
    pub name: String,
    /// Class name.
    pub class: String,
    /// Patient folder name (`root/<class>/<patient>/<image>`), if any.
    pub patient: Option<String>,
    /// The file's contents.
    pub bytes: Vec<u8>,
}

/// Decoded images of each class, with their patient keys.
type ByClass = BTreeMap<String, Vec<(Vec<f32>, u64)>>;

/// Decodes in-memory files. Unusable files are skipped and listed; the classes are the sorted
/// distinct class names. Fails when fewer than two classes or an empty class remain, or when
/// `grouping` does not fit the files.
pub fn load_files(files: impl IntoIterator<Item = InputFile>, size: usize, grouping: &Grouping) -> Result<Loaded> {
    let mut decoded = ByClass::new();
    let mut skipped = Vec::new();
    let mut patients = grouping.assigner();
    for file in files {
        let patient = patients.patient(&file.name, file.patient.as_deref());
        let images = decoded.entry(file.class.clone()).or_default();
        match decode_image(&file.bytes, size) {
            Ok(pixels) => images.push((pixels, patient)),
            Err(reason) => skipped.push(Skipped { file: file.name, reason }),
        }
    }
    patients.finish()?;
    assemble(decoded, skipped, size)
}

/// Reads `root/<class>/<image>` and `root/<class>/<patient>/<image>` (a folder below a class is
/// one patient; the same name under two classes is the same patient). Hidden files are ignored;
/// other unusable files (non-images, corrupt, too large, outside a class folder) are skipped
/// and listed with the reason. A folder inside a patient folder is refused.
pub fn load_folder(root: &Path, size: usize, grouping: &Grouping) -> Result<Loaded> {
    let entries = sorted_entries(root)?;
    let mut decoded = ByClass::new();
    let mut skipped = Vec::new();
    let mut patients = grouping.assigner();
    for entry in entries {
        let name = file_name(&entry);
        if entry.is_dir() {
            let mut images = Vec::new();
            for file in sorted_entries(&entry)? {
                let shown = format!("{name}/{}", file_name(&file));
                if !file.is_dir() {
                    read_into(&file, shown, None, size, &mut patients, &mut images, &mut skipped);
                    continue;
                }
                let folder = file_name(&file);
                for inner in sorted_entries(&file)? {
                    let shown = format!("{shown}/{}", file_name(&inner));
                    if inner.is_dir() {
                        return Err(Error::Data(format!(
                            "{shown} is a folder inside the patient folder {name}/{folder}; expected root/<class>/<image> or root/<class>/<patient>/<image>"
                        )));
                    }
                    read_into(&inner, shown, Some(&folder), size, &mut patients, &mut images, &mut skipped);
                }
            }
            decoded.insert(name, images);
        } else {
            skipped.push(Skipped {
                file: name,
                reason: "not inside a class folder (expected root/<class>/<image>)".into(),
            });
        }
    }
    if decoded.is_empty() {
        return Err(Error::Data(format!(
            "{} holds no class folders (expected root/<class>/<image>)",
            root.display()
        )));
    }
    patients.finish()?;
    assemble(decoded, skipped, size)
}

/// Reads one file into `images` with its patient, or lists it as skipped.
fn read_into(
    path: &Path,
    shown: String,
    folder: Option<&str>,
    size: usize,
    patients: &mut Assigner,
    images: &mut Vec<(Vec<f32>, u64)>,
    skipped: &mut Vec<Skipped>,
) {
    let patient = patients.patient(&shown, folder);
    match read_and_decode(path, size) {
        Ok(pixels) => images.push((pixels, patient)),
        Err(reason) => skipped.push(Skipped { file: shown, reason }),
    }
}

fn read_and_decode(path: &Path, size: usize) -> std::result::Result<Vec<f32>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    decode_image(&bytes, size)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Entries of a folder, sorted by name, hidden ones left out.
fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !file_name(&path).starts_with('.') {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn assemble(decoded: ByClass, skipped: Vec<Skipped>, size: usize) -> Result<Loaded> {
    let empty: Vec<&String> = decoded.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| k).collect();
    if !empty.is_empty() {
        let why: Vec<String> = skipped.iter().take(5).map(|s| format!("{}: {}", s.file, s.reason)).collect();
        return Err(Error::Data(format!(
            "class(es) {} have no usable image{}",
            empty.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", "),
            if why.is_empty() { String::new() } else { format!(" (skipped: {})", why.join("; ")) }
        )));
    }
    let mut dataset = Dataset::new(size, Vec::new(), Vec::new(), Vec::new());
    for (label, (class, images)) in decoded.into_iter().enumerate() {
        dataset.classes.push(class);
        for (pixels, patient) in images {
            dataset.pixels.extend(pixels);
            dataset.labels.push(label);
            dataset.patients.push(patient);
        }
    }
    dataset.check_classes(1)?;
    Ok(Loaded { dataset, skipped })
}
