//! The `.npz` reader on files numpy wrote (`tests/fixtures/npz/make.py` made them): good archives
//! read with the right values, and every bad one is refused with a message naming the member
//! and the cause, never a panic.

use std::path::PathBuf;
use std::process::Command;

use anondistill::data::{load_npz, Grouping};

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/npz", name].iter().collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn error(name: &str, size: Option<usize>) -> String {
    match load_npz(&fixture(name), size, &Grouping::default()) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn medmnist_layout_with_unicode_class_names_reads_exactly() {
    let s = load_npz(&fixture("medmnist.npz"), None, &Grouping::default()).unwrap();
    let (train, test) = (s.train, s.test.unwrap());
    assert!(s.val.is_none());
    assert_eq!((train.len(), test.len(), train.size), (6, 4, 8));
    assert_eq!(train.labels, vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(train.classes, vec!["normal", "neumonía", "肺炎"]);
    // Pixel values are the bytes / 255: every one a multiple of 1/255, spanning the range.
    assert!(train.pixels.iter().all(|&v| ((v * 255.0).round() - v * 255.0).abs() < 1e-4 && (0.0..=1.0).contains(&v)));
    assert!(train.pixels.iter().any(|&v| v > 0.9) && train.pixels.iter().any(|&v| v < 0.1));
}

#[test]
fn uint16_images_int64_labels_and_a_val_split_read() {
    let s = load_npz(&fixture("uint16_int64.npz"), Some(8), &Grouping::default()).unwrap();
    assert_eq!(s.train.labels, vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(s.val.as_ref().unwrap().labels, vec![0, 1]);
    assert_eq!(s.train.classes, vec!["0", "1"]);
    assert!(s.train.pixels.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // Resizing to another size keeps every value in range.
    let r = load_npz(&fixture("uint16_int64.npz"), Some(12), &Grouping::default()).unwrap();
    assert_eq!((r.train.size, r.train.pixels.len()), (12, 6 * 144));
}

#[test]
fn non_square_images_need_resizing() {
    assert!(error("wide.npz", None).contains("train_images are 8 × 12; without resizing they must be square"));
    assert_eq!(load_npz(&fixture("wide.npz"), Some(10), &Grouping::default()).unwrap().train.pixels.len(), 4 * 100);
}

#[test]
fn every_bad_archive_names_the_member_and_the_cause() {
    let cases = [
        ("labels_one_hot.npz", "train_labels has shape [6, 3]; expected [n] or [n, 1]"),
        ("labels_0d.npz", "train_labels has shape []; expected [n] or [n, 1]"),
        ("images_empty.npz", "train_images has shape [6, 0, 0] for 6 labels"),
        ("images_colour.npz", "train_images has shape [4, 8, 8, 3] for 4 labels"),
        ("count_mismatch.npz", "train_images has shape [5, 8, 8] for 6 labels"),
        ("images_float.npz", "train_images: must be uint8 or uint16, found <f4"),
        ("labels_float.npz", "train_labels: must be integers, found <f8"),
        ("labels_negative.npz", "train_labels: a label is negative"),
        ("label_huge.npz", "a label is 1000000000; at most 1000 classes"),
        ("big_endian.npz", "big-endian dtype >u2 is not supported"),
        ("fortran.npz", "train_images.npy: Fortran-ordered arrays are not supported"),
        ("class_names_bytes.npz", "class_names.npy: must be little-endian unicode strings"),
        ("no_train.npz", "no train_images/train_labels"),
        ("images_only.npz", "train_images and train_labels must come together"),
        ("truncated.npz", "train_images.npy: truncated data: 246 of 256 bytes"),
        ("class_names_truncated.npz", "class_names.npy: truncated data"),
        ("shape_overflow.npz", "train_images.npy: shape [4294967296, 4294967296, 4294967296] is too large"),
        ("shape_unclosed.npz", "train_images.npy: the header's shape is not a tuple"),
        ("descr_unicode.npz", "train_images.npy: unsupported dtype \"éu1\""),
        ("header_short.npz", "train_images.npy: truncated header"),
    ];
    for (file, expected) in cases {
        let msg = error(file, Some(8));
        assert!(msg.contains(expected), "{file}: {msg}");
    }
}

#[test]
fn npz_to_folder_writes_pngs_and_refuses_class_names_that_leave_the_folder() {
    let exe = env!("CARGO_BIN_EXE_anondistill");
    let dir = tempfile::tempdir().unwrap();
    let npz = |name: &str| PathBuf::from_iter([env!("CARGO_MANIFEST_DIR"), "tests/fixtures/npz", name]);
    let out = dir.path().join("out");
    let o = Command::new(exe).arg("npz-to-folder").arg(npz("class_names_path.npz")).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("class name \"../escape\" cannot be a folder name"), "{err}");
    assert!(!dir.path().join("escape").exists() && !out.exists());
    let o = Command::new(exe).arg("npz-to-folder").arg(npz("medmnist.npz")).arg(&out).args(["--split", "test"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut written: Vec<String> = walk(&out);
    written.sort();
    assert_eq!(written, ["neumonía/test_00001.png", "neumonía/test_00003.png", "normal/test_00000.png", "normal/test_00002.png"]);
    // What was written reads back as the same pixels.
    let back = anondistill::data::load_folder(&out, 8, &Grouping::default()).unwrap().dataset;
    let test = load_npz(&std::fs::read(npz("medmnist.npz")).unwrap(), None, &Grouping::default()).unwrap().test.unwrap();
    assert_eq!(back.pixels, test.subset(&[1, 3, 0, 2]).pixels);
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for class in std::fs::read_dir(root).unwrap() {
        let class = class.unwrap().path();
        for f in std::fs::read_dir(&class).unwrap() {
            out.push(format!("{}/{}", class.file_name().unwrap().to_string_lossy(), f.unwrap().file_name().to_string_lossy()));
        }
    }
    out
}
