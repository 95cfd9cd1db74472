//! MedMNIST-style `.npz` archives: `train_images` (uint8 or uint16, `[n, h, w]`) with
//! `train_labels` (any integer type, `[n]` or `[n, 1]`), the same for `val_` and `test_`, and
//! optional `class_names` (unicode strings). Each split may carry `*_files` (unicode file names,
//! which patient patterns and tables are matched against) and `*_groups` (patient ids, integers
//! or strings). The archive is untrusted input: every shape, size
//! and value is checked before use, and what a member may decompress to is capped.

use std::io::Cursor;

use image::ImageBuffer;

use super::decode::resize_grey;
use super::patients::Grouping;
use super::{read_at_most, Dataset};
use crate::error::{Error, Result};

/// The most bytes one member of an archive may decompress to (MNIST's 60,000 training images
/// are 47 MB); a larger member, or a zip bomb, is refused.
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;
/// The most classes an archive's labels may name.
pub const MAX_CLASSES: usize = 1000;

/// The splits found in an archive.
#[derive(Clone, Debug)]
pub struct NpzSplits {
    /// `train_*`.
    pub train: Dataset,
    /// `val_*`, when present.
    pub val: Option<Dataset>,
    /// `test_*`, when present.
    pub test: Option<Dataset>,
}

/// One split as read: pixels in [0, 1], labels, the images' height and width, and the patient of
/// each image.
struct RawSplit {
    pixels: Vec<f32>,
    labels: Vec<usize>,
    h: usize,
    w: usize,
    patients: Vec<u64>,
}

/// Reads an archive from its bytes; images are resized to `size` when they differ (`None` keeps
/// their own size, which must then be square). `grouping` reads patient ids from `*_files`.
pub fn load_npz(bytes: &[u8], size: Option<usize>, grouping: &Grouping) -> Result<NpzSplits> {
    load_capped(bytes, size, grouping, MAX_MEMBER_BYTES)
}

fn load_capped(bytes: &[u8], size: Option<usize>, grouping: &Grouping, cap: u64) -> Result<NpzSplits> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| Error::Data(format!("not an .npz archive: {e}")))?;
    let mut read = |name: &str| -> Result<Option<Array>> {
        let member = format!("{name}.npy");
        let file = match zip.by_name(&member) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(Error::Data(format!("{member}: {e}"))),
        };
        let buf = read_at_most(file, cap)
            .map_err(|e| Error::Data(format!("{member}: {e}")))?
            .ok_or_else(|| Error::Data(format!("{member} decompresses to more than {} MiB; refused", cap >> 20)))?;
        Array::parse(&buf).map(Some).map_err(|e| Error::Data(format!("{member}: {e}")))
    };
    let class_names = read("class_names")?.map(|a| a.strings().map_err(|e| Error::Data(format!("class_names.npy: {e}")))).transpose()?;
    let mut assigner = grouping.assigner();
    let mut split = |prefix: &str| -> Result<Option<RawSplit>> {
        let mut raw = match (read(&format!("{prefix}_images"))?, read(&format!("{prefix}_labels"))?) {
            (Some(images), Some(labels)) => raw_split(prefix, &images, &labels, size.is_some())?,
            (None, None) => return Ok(None),
            _ => return Err(Error::Data(format!("{prefix}_images and {prefix}_labels must come together"))),
        };
        let n = raw.labels.len();
        let mut per_image = |name: &str| -> Result<Option<Vec<String>>> {
            let Some(a) = read(&format!("{prefix}_{name}"))? else { return Ok(None) };
            let values = a.ids().map_err(|e| Error::Data(format!("{prefix}_{name}.npy: {e}")))?;
            if values.len() != n {
                return Err(Error::Data(format!("{prefix}_{name}.npy has {} entries for {n} images", values.len())));
            }
            Ok(Some(values))
        };
        let files = per_image("files")?;
        let groups = per_image("groups")?;
        raw.patients = (0..n)
            .map(|i| {
                let name = files.as_ref().map_or_else(|| format!("{prefix}/{i}"), |f| f[i].clone());
                // The same group id in two splits is the same patient (a test split that shares
                // patients with the training split is refused, `Prepared::with_test`).
                let given = groups.as_ref().map(|g| g[i].clone());
                assigner.patient(&name, given.as_deref())
            })
            .collect();
        Ok(Some(raw))
    };
    let train = split("train")?.ok_or_else(|| Error::Data("the archive has no train_images/train_labels".into()))?;
    let val = split("val")?;
    let test = split("test")?;
    assigner.finish()?;
    let top = [Some(&train), val.as_ref(), test.as_ref()].into_iter().flatten().flat_map(|s| s.labels.iter().copied()).max();
    let classes = top.map_or(0, |t| t + 1);
    if classes > MAX_CLASSES {
        return Err(Error::Data(format!("a label is {}; at most {MAX_CLASSES} classes are supported", classes - 1)));
    }
    let classes: Vec<String> = match class_names {
        Some(names) if names.len() >= classes => names,
        _ => (0..classes).map(|c| c.to_string()).collect(),
    };
    let make = |s: RawSplit| {
        let size = size.unwrap_or(s.h);
        let pixels = if s.h == size && s.w == size {
            s.pixels
        } else {
            // raw_split made sure that h × w > 0 and pixels holds n whole images.
            s.pixels
                .chunks_exact(s.h * s.w)
                .flat_map(|img| {
                    let buf = ImageBuffer::from_raw(s.w as u32, s.h as u32, img.to_vec()).expect("h × w values");
                    resize_grey(buf, size)
                })
                .collect()
        };
        Dataset { size, pixels, labels: s.labels, classes: classes.clone(), patients: s.patients }
    };
    Ok(NpzSplits { train: make(train), val: val.map(make), test: test.map(make) })
}

/// Checks one split's shapes and reads its values.
fn raw_split(prefix: &str, images: &Array, labels: &Array, resized: bool) -> Result<RawSplit> {
    let bad = |msg: String| Error::Data(format!("{prefix}_{msg}"));
    let n = match labels.shape[..] {
        [n] | [n, 1] => n,
        _ => return Err(bad(format!("labels has shape {:?}; expected [n] or [n, 1] class indices", labels.shape))),
    };
    let (h, w) = match images.shape[..] {
        [m, h, w] if m == n && h > 0 && w > 0 && (resized || h == w) => (h, w),
        [m, h, w] if m == n && h > 0 && w > 0 => {
            return Err(bad(format!("images are {h} × {w}; without resizing they must be square")))
        }
        _ => {
            return Err(bad(format!(
                "images has shape {:?} for {n} labels; expected [{n}, h, w] grey images with h, w > 0",
                images.shape
            )))
        }
    };
    if h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(bad(format!("images are {h} × {w}: too large")));
    }
    let pixels = images.unit_values().map_err(|e| bad(format!("images: {e}")))?;
    let labels = labels.indices().map_err(|e| bad(format!("labels: {e}")))?;
    Ok(RawSplit { pixels, labels, h, w, patients: Vec::new() })
}

/// One `.npy` array: its dtype, shape and raw data (exactly `count × item size` bytes).
struct Array {
    /// Byte order: `<` little, `>` big, `|` not applicable, `=` native.
    order: char,
    /// Kind: `u`, `i`, `f`, `U`, `S`, `b`, ….
    kind: char,
    /// Bytes per item (for `U`, four per character).
    item: usize,
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Array {
    fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        if buf.len() < 10 || &buf[..6] != b"\x93NUMPY" {
            return Err("not a .npy array".into());
        }
        let (header_len, start) = match buf[6] {
            1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10usize),
            2 | 3 if buf.len() >= 12 => (u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize, 12),
            v => return Err(format!("unsupported .npy version {v}")),
        };
        // Versions 1 and 2 write the header in Latin-1 (version 3 in UTF-8, which only matters
        // for field names this reader does not look at).
        let header: String = start
            .checked_add(header_len)
            .and_then(|end| buf.get(start..end))
            .ok_or("truncated header")?
            .iter()
            .map(|&b| b as char)
            .collect();
        let field = |key: &str| -> std::result::Result<&str, String> {
            let at = header.find(&format!("'{key}':")).ok_or(format!("header lacks '{key}'"))?;
            Ok(header[at + key.len() + 3..].trim_start())
        };
        let descr = quoted(field("descr")?).ok_or("the header's descr is not a quoted string")?;
        if !descr.is_ascii() || descr.len() < 3 {
            return Err(format!("unsupported dtype {descr:?}"));
        }
        let mut chars = descr.chars();
        let (order, kind) = (chars.next().unwrap_or(' '), chars.next().unwrap_or(' '));
        let digits: usize = descr[2..].parse().map_err(|_| format!("unsupported dtype {descr}"))?;
        let item = if kind == 'U' { digits.checked_mul(4) } else { Some(digits) }.ok_or("dtype too wide")?;
        if field("fortran_order")?.starts_with("True") {
            return Err("Fortran-ordered arrays are not supported (save with numpy.ascontiguousarray)".into());
        }
        let shape_text = field("shape")?.strip_prefix('(').ok_or("the header's shape is not a tuple")?;
        let shape_text = &shape_text[..shape_text.find(')').ok_or("the header's shape is not a tuple")?];
        let shape = shape_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|e| format!("bad shape ({s}): {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let need = shape
            .iter()
            .try_fold(item, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("shape {shape:?} is too large"))?;
        let data = &buf[start + header_len..];
        if data.len() < need {
            return Err(format!("truncated data: {} of {need} bytes", data.len()));
        }
        Ok(Array { order, kind, item, descr: descr.to_string(), shape, data: data[..need].to_vec() })
    }

    fn count(&self) -> usize {
        self.shape.iter().product()
    }

    fn check_endian(&self) -> std::result::Result<(), String> {
        if self.order == '>' && self.item > 1 {
            Err(format!("big-endian dtype {} is not supported (convert with .astype('<{}{}'))", self.descr, self.kind, self.item))
        } else {
            Ok(())
        }
    }

    /// Pixel values scaled to [0, 1] from uint8 or uint16.
    fn unit_values(&self) -> std::result::Result<Vec<f32>, String> {
        self.check_endian()?;
        match (self.kind, self.item) {
            ('u', 1) => Ok(self.data.iter().map(|&v| v as f32 / 255.0).collect()),
            ('u', 2) => Ok(self.data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0).collect()),
            _ => Err(format!("must be uint8 or uint16, found {}", self.descr)),
        }
    }

    /// Non-negative integer labels of any integer dtype.
    fn indices(&self) -> std::result::Result<Vec<usize>, String> {
        self.check_endian()?;
        let size = self.item;
        if !matches!(self.kind, 'u' | 'i') || ![1, 2, 4, 8].contains(&size) {
            return Err(format!("must be integers, found {}", self.descr));
        }
        self.data
            .chunks_exact(size)
            .map(|b| {
                let mut le = [0u8; 8];
                le[..size].copy_from_slice(b);
                if self.kind == 'i' && b[size - 1] & 0x80 != 0 {
                    return Err("a label is negative".to_string());
                }
                usize::try_from(u64::from_le_bytes(le)).map_err(|_| "a label is too large".to_string())
            })
            .collect()
    }

    /// One id per item: integers or unicode strings, as text.
    fn ids(&self) -> std::result::Result<Vec<String>, String> {
        if self.shape.len() != 1 {
            return Err(format!("has shape {:?}; expected one entry per image", self.shape));
        }
        match self.kind {
            'U' => self.strings(),
            'u' | 'i' => Ok(self.indices().map_err(|e| e.replace("label", "patient id"))?.iter().map(usize::to_string).collect()),
            _ => Err(format!("must be integers or unicode strings, found {}", self.descr)),
        }
    }

    /// Unicode (`<U`) strings, one per item.
    fn strings(&self) -> std::result::Result<Vec<String>, String> {
        if self.kind != 'U' || self.order == '>' {
            return Err(format!("must be little-endian unicode strings (numpy's default str), found {}", self.descr));
        }
        if self.shape.len() != 1 {
            return Err(format!("has shape {:?}; expected one name per class", self.shape));
        }
        if self.item == 0 {
            return Ok(vec![String::new(); self.count()]);
        }
        self.data
            .chunks_exact(self.item)
            .map(|s| {
                s.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .take_while(|&c| c != 0)
                    .map(|c| char::from_u32(c).ok_or_else(|| format!("holds an invalid character (U+{c:X})")))
                    .collect()
            })
            .collect()
    }
}

/// The text between the quotes that open `s` (`'…'` or `"…"`).
fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &s[1..];
    rest.find(q).map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_decompresses_past_the_cap_is_refused() {
        // The same bytes pass with the real cap, and fail with one below their size: the reader
        // stops at cap + 1 bytes instead of inflating the whole member.
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/npz/medmnist.npz")).unwrap();
        assert!(load_capped(&bytes, Some(8), &Grouping::default(), MAX_MEMBER_BYTES).is_ok());
        let msg = load_capped(&bytes, Some(8), &Grouping::default(), 100).unwrap_err().to_string();
        assert!(msg.contains(".npy decompresses to more than 0 MiB; refused"), "{msg}");
    }

    #[test]
    fn quoted_text_and_descriptors() {
        assert_eq!(quoted("'<u1', 'x'"), Some("<u1"));
        assert_eq!(quoted("\"|u1\""), Some("|u1"));
        assert_eq!(quoted("<u1"), None);
        assert_eq!(quoted("'unclosed"), None);
    }
}
