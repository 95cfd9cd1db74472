//! Every kind of bad input gets a clear message naming the file or the cause, never a panic.

use std::io::Cursor;
use std::path::Path;

use anondistill::{
    config::Config,
    data::{load_files, load_folder, load_npz, Grouping, InputFile},
    distill::Distiller,
    pipeline::{export, run_to_end, Prepared},
    Error,
};
use burn_ndarray::NdArray;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma};

fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageLuma8(img).write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn png16(w: u32, h: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(w, h, |x, y| Luma([(x * 2000 + y * 300) as u16]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageLuma16(img).write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn unusable_files_are_skipped_and_listed_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..3 {
        write(root, &format!("a/ok{i}.png"), &png(28, 28, i));
        write(root, &format!("b/ok{i}.png"), &png(40, 32, i)); // another size: resized
    }
    write(root, "b/deep16.png", &png16(50, 50)); // 16-bit: fine
    write(root, "a/notes.txt", b"clinical notes, not an image");
    let good = png(28, 28, 9);
    write(root, "a/truncated.png", &good[..good.len() / 2]);
    write(root, "b/empty.png", b"");
    write(root, "stray.png", &good);
    write(root, "a/.DS_Store", b"\0\0");
    // Too many pixels: 20000 x 1 exceeds the side limit.
    write(root, "b/wide.png", &png(20000, 1, 0));
    // Too small to be a patch: 1 x 1 and 2 x 2 (taken as patches once, with no notice).
    write(root, "a/dot.png", &png(1, 1, 0));
    write(root, "b/speck.png", &png(2, 2, 0));
    // Too many bytes: a sparse 65 MiB file is refused before it is read.
    let huge = root.join("a/huge.png");
    std::fs::File::create(&huge).unwrap().set_len(65 << 20).unwrap();

    let loaded = load_folder(root, 28, &Grouping::default()).unwrap();
    assert_eq!(loaded.dataset.classes, vec!["a", "b"]);
    assert_eq!(loaded.dataset.class_counts(), vec![3, 4]);
    let reason = |f: &str| loaded.skipped.iter().find(|s| s.file == f).map(|s| s.reason.clone()).unwrap_or_else(|| panic!("{f} not listed: {:?}", loaded.skipped));
    assert!(reason("a/notes.txt").contains("not an image"));
    assert!(reason("a/truncated.png").contains("corrupt or truncated"));
    assert_eq!(reason("b/empty.png"), "empty file");
    assert!(reason("stray.png").contains("not inside a class folder"));
    assert!(reason("b/wide.png").contains("too large"), "{}", reason("b/wide.png"));
    assert!(reason("a/huge.png").contains("above the 64 MiB limit"), "{}", reason("a/huge.png"));
    assert_eq!(reason("a/dot.png"), "image too small (1 × 1 pixels; a patch needs at least 8 a side, the smallest size the networks take)");
    assert!(reason("b/speck.png").starts_with("image too small (2 × 2 pixels"), "{}", reason("b/speck.png"));
    assert_eq!(loaded.skipped.len(), 8, "{:?}", loaded.skipped);
}

#[test]
fn a_class_left_empty_or_a_single_class_stops_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "normal/x.png", &png(28, 28, 1));
    write(dir.path(), "pneumonia/broken.png", b"\x89PNG\r\n\x1a\n garbage");
    let msg = load_folder(dir.path(), 28, &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("'pneumonia'") && msg.contains("no usable image") && msg.contains("broken.png"), "{msg}");

    let one = vec![InputFile { name: "only/x.png".into(), class: "only".into(), patient: None, bytes: png(28, 28, 1) }];
    let msg = load_files(one, 28, &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("at least two classes"), "{msg}");

    let empty = tempfile::tempdir().unwrap();
    let msg = load_folder(empty.path(), 28, &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("no class folders"), "{msg}");

    let msg = load_folder(Path::new("/no/such/folder"), 28, &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("/no/such/folder"), "{msg}");
}

#[test]
fn bad_configurations_and_sizes_name_the_cause() {
    let files: Vec<InputFile> = (0..6)
        .map(|i| InputFile { name: format!("{i}.png"), class: ["x", "y"][i % 2].into(), patient: None, bytes: png(28, 28, i as u32) })
        .collect();
    let loaded = load_files(files.clone(), 10, &Grouping::default()).unwrap();
    let prepared = Prepared::from_loaded(loaded, &Config::default()).unwrap();
    let small = Config { image_size: 10, ..Config::default() };
    let msg = Distiller::<NdArray>::new(small, &prepared.train, prepared.norm, &Default::default()).err().unwrap().to_string();
    assert!(msg.contains("too small for LeNet"), "{msg}");

    let loaded = load_files(files, 28, &Grouping::default()).unwrap();
    let prepared = Prepared::from_loaded(loaded, &Config::default()).unwrap();
    let bad = Config { steps: 0, ..Config::default() };
    let msg = Distiller::<NdArray>::new(bad, &prepared.train, prepared.norm, &Default::default()).err().unwrap().to_string();
    assert!(msg.contains("steps = 0"), "{msg}");
    let mismatch = Config { image_size: 32, ..Config::default() };
    let msg = Distiller::<NdArray>::new(mismatch, &prepared.train, prepared.norm, &Default::default()).err().unwrap().to_string();
    assert!(msg.contains("28×28") && msg.contains("32×32"), "{msg}");
}

#[test]
fn a_bad_npz_says_what_is_wrong() {
    let msg = load_npz(b"not a zip", Some(28), &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("not an .npz"), "{msg}");
}

#[test]
fn divergence_stops_the_run_and_keeps_the_last_good_state() {
    let files: Vec<InputFile> = (0..16)
        .map(|i| InputFile { name: format!("{i}.png"), class: ["x", "y"][i % 2].into(), patient: None, bytes: png(28, 28, i as u32) })
        .collect();
    let config = Config { steps: 2, epochs: 1, max_iterations: Some(50), nets_per_iteration: 1, ..Config::default() };
    let prepared = Prepared::from_loaded(load_files(files, 28, &Grouping::default()).unwrap(), &config).unwrap();
    let mut d = Distiller::<NdArray>::new(config, &prepared.train, prepared.norm, &Default::default()).unwrap();
    // Two sane iterations, then a learning rate so large that the inner steps overflow.
    pollster::block_on(d.step()).unwrap();
    pollster::block_on(d.step()).unwrap();
    let good = pollster::block_on(d.distilled()).unwrap();
    let mut state = d.state().clone();
    state.raw_lrs = state.raw_lrs.add_scalar(1e30);
    d.set_state(state.clone());
    let before = pollster::block_on(d.distilled()).unwrap();
    match pollster::block_on(d.step()) {
        Err(Error::Diverged { iteration: 3, last_good: 2, cause }) => assert!(cause.contains("inf") || cause.contains("NaN"), "{cause}"),
        other => panic!("expected a divergence at iteration 3, got {other:?}"),
    }
    assert_eq!(pollster::block_on(d.distilled()).unwrap(), before, "the state must be left as it was");
    assert_eq!(d.iteration(), 2);
    assert_eq!(before.images, good.images);
    let outcome = pollster::block_on(run_to_end(&mut d, |_| {}));
    assert_eq!(outcome.iterations, 2);
    assert!(outcome.stopped_early.as_deref().unwrap().contains("diverged at iteration 3"));
    // The kept state can still be exported.
    let zip = pollster::block_on(export(&d, &prepared, &outcome, None, None)).unwrap();
    let archive = anondistill::export::read_archive(&zip).unwrap();
    assert_eq!(archive.distilled.images, before.images);
    assert!(archive.manifest.stopped_early.unwrap().contains("diverged"));
}
