//! Decoding one image file (PNG, JPEG, BMP, TIFF, PGM; 8 or 16 bit; grey or colour) into a square
//! grayscale image of the configured size.

use std::io::Cursor;

use image::{imageops::FilterType, DynamicImage, ImageBuffer, ImageReader, Limits, Luma};

/// Files larger than this are not read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Decoded images wider or taller than this are refused.
pub const MAX_SIDE: u32 = 16_384;
/// Decoded images of more pixels than this are refused, before decoding (64 MP: a 16-bit grey
/// image of that size is 128 MiB; full-field mammograms are about 30 MP).
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// Decoded images narrower or shorter than this are refused: the smallest size the networks take
/// (`image_size`'s minimum in `config::LIMITS`); a 2 × 2 file is not a patch.
pub const MIN_SIDE: u32 = 8;

/// Decodes `bytes` into `size × size` grey values in [0, 1]; the error says why the file is
/// unusable, in words for the user.
pub fn decode_image(bytes: &[u8], size: usize) -> Result<Vec<f32>, String> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image (expected PNG, JPEG, BMP, TIFF or PGM)".into());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    // The reader hands its limits to the decoder, which checks the size before decoding.
    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(format!("image too large ({w} × {h} pixels, above the {} MP limit)", MAX_PIXELS / 1_000_000));
    }
    if w.min(h) < MIN_SIDE {
        return Err(format!("image too small ({w} × {h} pixels; a patch needs at least {MIN_SIDE} a side, the smallest size the networks take)"));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok(to_square_grey(img, size))
}

fn decode_error(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => format!("image too large (over {MAX_SIDE} pixels a side or 1 GiB decoded)"),
        image::ImageError::Unsupported(u) => format!("unsupported image: {u}"),
        other => format!("corrupt or truncated image: {other}"),
    }
}

pub(crate) fn too_large(bytes: u64) -> String {
    format!(
        "file is {:.1} MiB, above the {} MiB limit",
        bytes as f64 / (1u64 << 20) as f64,
        MAX_FILE_BYTES >> 20
    )
}

/// Grey (luma) values in [0, 1], resized to `size × size` with a Lanczos filter. An image of
/// another size is made grey at 16 bits and resized before it becomes f32, so a large image
/// costs 2 bytes a pixel beside its decoded form, not 4; the decoded form is dropped first.
fn to_square_grey(img: DynamicImage, size: usize) -> Vec<f32> {
    let s = size as u32;
    if img.width() == s && img.height() == s {
        return resize_grey(img.to_luma32f(), size);
    }
    let grey = img.into_luma16();
    let small = image::imageops::resize(&grey, s, s, FilterType::Lanczos3);
    small.into_raw().into_iter().map(|v| v as f32 / 65535.0).collect()
}

/// Resizes grey values in [0, 1] to `size × size` (Lanczos3, whose support widens with the
/// reduction, so downscaling is anti-aliased); the overshoot is clamped back to [0, 1].
pub(crate) fn resize_grey(grey: ImageBuffer<Luma<f32>, Vec<f32>>, size: usize) -> Vec<f32> {
    let s = size as u32;
    let out = if grey.width() == s && grey.height() == s {
        grey
    } else {
        image::imageops::resize(&grey, s, s, FilterType::Lanczos3)
    };
    out.into_raw().into_iter().map(|v| v.clamp(0.0, 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Luma, Rgb};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn gradient8(w: u32, h: u32) -> ImageBuffer<Luma<u8>, Vec<u8>> {
        ImageBuffer::from_fn(w, h, |x, _| Luma([(x * 255 / (w - 1)) as u8]))
    }

    #[test]
    fn every_format_decodes_to_the_same_grey_values() {
        let grey = DynamicImage::ImageLuma8(gradient8(28, 28));
        let reference = decode_image(&encode(grey.clone(), ImageFormat::Png), 28).unwrap();
        assert_eq!(reference.len(), 28 * 28);
        assert_eq!(reference[0], 0.0);
        assert_eq!(reference[27], 1.0);
        let max_err = |v: &[f32]| v.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        for format in [ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::Pnm] {
            let got = decode_image(&encode(grey.clone(), format), 28).unwrap();
            assert!(max_err(&got) < 1e-5, "{format:?}: {}", max_err(&got));
        }
        let jpeg = decode_image(&encode(grey.clone(), ImageFormat::Jpeg), 28).unwrap();
        assert!(max_err(&jpeg) < 0.1, "jpeg error {}", max_err(&jpeg));
    }

    #[test]
    fn sixteen_bit_and_colour_become_grey_in_unit_range() {
        let img16 = ImageBuffer::from_fn(10, 10, |x, _| Luma([(x as u16) * 7000]));
        let v = decode_image(&encode(DynamicImage::ImageLuma16(img16), ImageFormat::Png), 10).unwrap();
        assert!((v[9] - 63000.0 / 65535.0).abs() < 1e-4, "{}", v[9]);
        let rgb = ImageBuffer::from_fn(10, 10, |_, _| Rgb([255u8, 255, 255]));
        let v = decode_image(&encode(DynamicImage::ImageRgb8(rgb), ImageFormat::Png), 10).unwrap();
        assert!(v.iter().all(|&p| (p - 1.0).abs() < 1e-3));
    }

    #[test]
    fn resizing_keeps_the_picture() {
        let big = DynamicImage::ImageLuma8(gradient8(280, 140));
        let v = decode_image(&encode(big, ImageFormat::Png), 28).unwrap();
        assert_eq!(v.len(), 28 * 28);
        assert!(v[0] < 0.05 && v[27] > 0.95 && (v[14] - 0.5).abs() < 0.05, "{:?}", &v[..28]);
    }

    #[test]
    fn an_image_of_too_many_pixels_is_refused_before_it_is_decoded() {
        // 9000 × 9000 (81 MP) of black compresses to about 80 KB; decoded it would be 81 MB of
        // bytes and, before the cap, 324 MB more as f32.
        let big = encode(DynamicImage::ImageLuma8(ImageBuffer::new(9000, 9000)), ImageFormat::Png);
        assert!(big.len() < 1 << 20, "{}", big.len());
        let msg = decode_image(&big, 28).unwrap_err();
        assert_eq!(msg, "image too large (9000 × 9000 pixels, above the 67 MP limit)");
        // Just under the cap it decodes (and resizes to 28 × 28 black).
        let ok = encode(DynamicImage::ImageLuma8(ImageBuffer::new(8192, 8000)), ImageFormat::Png);
        assert!(decode_image(&ok, 28).unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_smallest_patch_is_the_smallest_image_size() {
        assert_eq!(MIN_SIDE as f64, crate::config::limit("image_size").min);
        let ok = encode(DynamicImage::ImageLuma8(gradient8(8, 40)), ImageFormat::Png);
        assert_eq!(decode_image(&ok, 28).unwrap().len(), 28 * 28);
        let thin = encode(DynamicImage::ImageLuma8(gradient8(40, 7)), ImageFormat::Png);
        assert!(decode_image(&thin, 28).unwrap_err().starts_with("image too small (40 × 7 pixels"));
    }

    #[test]
    fn bad_bytes_say_why() {
        assert_eq!(decode_image(b"", 28).unwrap_err(), "empty file");
        assert!(decode_image(b"hello, not an image", 28).unwrap_err().contains("not an image"));
        let png = encode(DynamicImage::ImageLuma8(gradient8(28, 28)), ImageFormat::Png);
        let msg = decode_image(&png[..png.len() / 2], 28).unwrap_err();
        assert!(msg.contains("corrupt or truncated"), "{msg}");
    }
}
