//! MedMNIST-style `.npz` archives: `train_images` (uint8 or uint16, `[n, h, w]`) with
//! `train_labels` (any integer type, `[n]` or `[n, 1]`), and the same for `val_` and `test_`.

use std::io::{Cursor, Read};

use image::ImageBuffer;

use super::decode::resize_grey;
use super::Dataset;
use crate::error::{Error, Result};

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

/// Reads an archive from its bytes; images are resized to `size` when they differ (`None` keeps
/// their own size, which must then be square).
pub fn load_npz(bytes: &[u8], size: Option<usize>) -> Result<NpzSplits> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::Data(format!("not an .npz archive: {e}")))?;
    let mut read = |name: &str| -> Result<Option<Array>> {
        let mut file = match zip.by_name(&format!("{name}.npy")) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(Error::Data(format!("{name}.npy: {e}"))),
        };
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| Error::Data(format!("{name}.npy: {e}")))?;
        Array::parse(&buf).map(Some).map_err(|e| Error::Data(format!("{name}.npy: {e}")))
    };
    let class_names = match read("class_names")? {
        Some(a) => Some(a.strings().map_err(Error::Data)?),
        None => None,
    };
    let mut split = |prefix: &str| -> Result<Option<(Vec<f32>, Vec<usize>, usize, usize)>> {
        let images = read(&format!("{prefix}_images"))?;
        let labels = read(&format!("{prefix}_labels"))?;
        match (images, labels) {
            (Some(i), Some(l)) => {
                let (h, w) = match i.shape[..] {
                    [n, h, w] if n == l.shape[0] && (size.is_some() || h == w) => (h, w),
                    _ => {
                        return Err(Error::Data(format!(
                            "{prefix}_images has shape {:?} for {} labels; expected [n, h, w] (square unless resized)",
                            i.shape, l.shape[0]
                        )))
                    }
                };
                Ok(Some((i.unit_values().map_err(Error::Data)?, l.indices().map_err(Error::Data)?, h, w)))
            }
            (None, None) => Ok(None),
            _ => Err(Error::Data(format!("{prefix}_images and {prefix}_labels must come together"))),
        }
    };
    let train = split("train")?.ok_or_else(|| Error::Data("no train_images/train_labels".into()))?;
    let val = split("val")?;
    let test = split("test")?;
    let classes = [Some(&train), val.as_ref(), test.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|s| s.1.iter().copied())
        .max()
        .unwrap_or(0)
        + 1;
    let classes: Vec<String> = match class_names {
        Some(names) if names.len() >= classes => names,
        _ => (0..classes).map(|c| c.to_string()).collect(),
    };
    let make = |(pixels, labels, h, w): (Vec<f32>, Vec<usize>, usize, usize)| {
        let size = size.unwrap_or(h);
        let pixels = if h == size && w == size {
            pixels
        } else {
            pixels
                .chunks(h * w)
                .flat_map(|img| {
                    let buf = ImageBuffer::from_raw(w as u32, h as u32, img.to_vec()).expect("h*w values");
                    resize_grey(buf, size)
                })
                .collect()
        };
        Dataset { size, pixels, labels, classes: classes.clone() }
    };
    Ok(NpzSplits { train: make(train), val: val.map(make), test: test.map(make) })
}

/// One `.npy` array: its dtype descriptor, shape and raw little-endian data.
struct Array {
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
            1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10),
            2 | 3 if buf.len() >= 12 => (u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize, 12),
            v => return Err(format!("unsupported .npy version {v}")),
        };
        let header = buf
            .get(start..start + header_len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("truncated header")?;
        let field = |key: &str| -> std::result::Result<&str, String> {
            let at = header.find(&format!("'{key}':")).ok_or(format!("header lacks '{key}'"))?;
            Ok(header[at + key.len() + 3..].trim_start())
        };
        let descr = field("descr")?.trim_start_matches('\'').split('\'').next().unwrap_or("").to_string();
        if field("fortran_order")?.starts_with("True") {
            return Err("Fortran-ordered arrays are not supported".into());
        }
        let shape_text = field("shape")?;
        let shape_text = &shape_text[1..shape_text.find(')').ok_or("bad shape")?];
        let shape = shape_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|e| format!("bad shape: {e}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let data = buf[start + header_len..].to_vec();
        let array = Array { descr, shape, data };
        let need = array.count() * array.item_size()?;
        if array.data.len() < need {
            return Err(format!("truncated data: {} of {need} bytes", array.data.len()));
        }
        Ok(array)
    }

    fn count(&self) -> usize {
        self.shape.iter().product()
    }

    fn item_size(&self) -> std::result::Result<usize, String> {
        let digits: String = self.descr.chars().skip_while(|c| !c.is_ascii_digit()).collect();
        digits.parse().map_err(|_| format!("unsupported dtype {}", self.descr))
    }

    fn check_endian(&self) -> std::result::Result<(), String> {
        if self.descr.starts_with('>') {
            Err(format!("big-endian dtype {} is not supported", self.descr))
        } else {
            Ok(())
        }
    }

    /// Pixel values scaled to [0, 1] from uint8 or uint16.
    fn unit_values(&self) -> std::result::Result<Vec<f32>, String> {
        self.check_endian()?;
        let n = self.count();
        match &self.descr[1..] {
            "u1" => Ok(self.data[..n].iter().map(|&v| v as f32 / 255.0).collect()),
            "u2" => Ok(self.data[..2 * n]
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0)
                .collect()),
            d => Err(format!("images must be uint8 or uint16, found {d}")),
        }
    }

    /// Non-negative integer labels of any integer dtype.
    fn indices(&self) -> std::result::Result<Vec<usize>, String> {
        self.check_endian()?;
        let size = self.item_size()?;
        let kind = self.descr.chars().nth(1).unwrap_or(' ');
        if !matches!(kind, 'u' | 'i') || ![1, 2, 4, 8].contains(&size) {
            return Err(format!("labels must be integers, found {}", self.descr));
        }
        self.data[..self.count() * size]
            .chunks_exact(size)
            .map(|b| {
                let mut le = [0u8; 8];
                le[..size].copy_from_slice(b);
                if kind == 'i' && b[size - 1] & 0x80 != 0 {
                    return Err("negative label".to_string());
                }
                Ok(u64::from_le_bytes(le) as usize)
            })
            .collect()
    }

    /// Unicode (`<U`) strings.
    fn strings(&self) -> std::result::Result<Vec<String>, String> {
        if !self.descr.starts_with("<U") {
            return Err(format!("class_names must be unicode strings, found {}", self.descr));
        }
        let chars = self.item_size()?;
        Ok(self.data[..self.count() * chars * 4]
            .chunks_exact(chars * 4)
            .map(|s| {
                s.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .take_while(|&c| c != 0)
                    .filter_map(char::from_u32)
                    .collect()
            })
            .collect())
    }
}
