//! Patients: ids from patient folders, a file-name pattern and a `file,patient` table, every
//! split by patient, a separate test set, and what the command line and the manifest say.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anondistill::{
    config::Config,
    data::{load_folder, Dataset, Grouping},
    export::read_archive,
    pipeline::Prepared,
};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/pneumonia-xray");

/// The demo's real X-ray patches of `class`, as files.
fn demo_pngs(class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(DEMO).join(class)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Copies demo patches to `root/<rel>` for each `(class of the patch, rel)`, patch after patch.
fn lay_out(root: &Path, files: impl IntoIterator<Item = (&'static str, String)>) {
    let (mut next_normal, mut next_pneumonia) = (demo_pngs("normal").into_iter(), demo_pngs("pneumonia").into_iter());
    for (class, rel) in files {
        let src = if class == "normal" { next_normal.next() } else { next_pneumonia.next() }.expect("enough demo patches");
        let dst = root.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, dst).unwrap();
    }
}

/// `root/<class>/p<k>/<j>.png`: 12 patients a class with 4 images each; patients p10 and p11
/// have images in both classes (22 patients in all).
fn patient_folders(root: &Path) {
    let mut files = Vec::new();
    for (class, first) in [("normal", 0), ("pneumonia", 10)] {
        for k in first..first + 12 {
            files.extend((0..4).map(|j| (class, format!("{class}/p{k}/{j}.png"))));
        }
    }
    lay_out(root, files);
}

fn patients_of(d: &Dataset) -> HashSet<u64> {
    d.patients.iter().copied().collect()
}

#[test]
fn patient_folders_keep_each_patient_on_one_side_of_every_split() {
    let dir = tempfile::tempdir().unwrap();
    patient_folders(dir.path());
    let loaded = load_folder(dir.path(), 28, &Grouping::default()).unwrap();
    let counts = loaded.dataset.patient_counts();
    assert_eq!((counts.per_class, counts.total), (vec![12, 12], 22));
    for seed in 0..5 {
        let p = Prepared::from_loaded(loaded.clone(), &Config { seed, ..Config::default() }).unwrap();
        let parts = [patients_of(&p.train), patients_of(&p.holdout), patients_of(&p.test)];
        assert!(parts.iter().all(|s| !s.is_empty()));
        assert!(parts[0].is_disjoint(&parts[1]) && parts[0].is_disjoint(&parts[2]) && parts[1].is_disjoint(&parts[2]), "seed {seed}: a patient crosses a split");
        // A patient's images of both classes go together: p10 and p11 have 8 images each.
        let s = p.patients();
        assert_eq!(s.train.total + s.holdout.total + s.test.total, 22, "seed {seed}");
        assert_eq!(p.train.len() + p.holdout.len() + p.test.len(), 96);
    }
    // Planted fault, run once: without the patient folders (every image its own patient) the same
    // split puts some patient's images on two sides, which the check above would catch.
    let mut flat = loaded.dataset.clone();
    let truth = flat.patients.clone();
    flat.patients = (0..flat.len() as u64).collect();
    let (train, test) = flat.split(0.2, 0, false).unwrap();
    let patient_of = |d: &Dataset| d.patients.iter().map(|&i| truth[i as usize]).collect::<HashSet<_>>();
    assert!(!patient_of(&train).is_disjoint(&patient_of(&test)));
}

#[test]
fn a_folder_inside_a_patient_folder_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    patient_folders(dir.path());
    lay_out(dir.path(), [("normal", "normal/p3/left/x.png".to_string())]);
    let msg = load_folder(dir.path(), 28, &Grouping::default()).unwrap_err().to_string();
    assert!(msg.contains("normal/p3/left is a folder inside the patient folder normal/p3"), "{msg}");
}

fn cli(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anondistill")).args(args).args(paths).output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

fn failure(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.code() == Some(1) && err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    err
}

const QUICK: &[&str] = &["distill", "--max-iterations", "1", "--no-eval", "--no-audit", "--out"];

#[test]
fn the_command_line_groups_by_pattern_table_and_folder_and_takes_a_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("r.zip"));
    // Kermany-style names: person<k>_<n>.png, 10 persons a class with 3 images each; person9
    // has images in both classes.
    let mut files = Vec::new();
    for (class, first) in [("normal", 0), ("pneumonia", 9)] {
        for k in first..first + 10 {
            files.extend((0..3).map(|j| (class, format!("{class}/person{k}_{j}.png"))));
        }
    }
    lay_out(&data, files);

    let err = ok(&cli(&[&["distill", "--group-pattern", r"person(\d+)_"], &QUICK[1..]].concat(), &[&out, &data]));
    assert!(err.contains("found 60 images of 19 patients: normal 30 images of 10 patients, pneumonia 30 images of 10 patients"), "{err}");
    let m = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest;
    let p = m.patients.expect("the manifest counts patients");
    assert_eq!(p.train.total + p.holdout.total + p.test.total, 19, "{p:?}");
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("person"), "the manifest names no patient: {text}");
    // Without the pattern every image is its own patient.
    ok(&cli(QUICK, &[&out, &data]));
    let p = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest.patients.unwrap();
    assert_eq!(p.train.total + p.holdout.total + p.test.total, 60);

    // A table, with paths from the class folder: 4 patients (sites), each with images of both
    // classes, which travel together.
    let table = dir.path().join("groups.csv");
    let rows: Vec<String> = (0..10)
        .flat_map(|k| (0..3).flat_map(move |j| [format!("normal/person{k}_{j}.png,site{}", k % 4), format!("pneumonia/person{}_{j}.png,site{}", k + 9, (k + 9) % 4)]))
        .collect();
    std::fs::write(&table, format!("file,patient\n{}\n", rows.join("\n"))).unwrap();
    let with_table = |extra: &[&str]| cli(&[&["distill", "--max-iterations", "1", "--no-eval", "--no-audit"], extra, &["--groups"]].concat(), &[&table, Path::new("--out"), &out, &data]);
    // Each of the 4 goes to the test part with probability 0.2 on its own; a class left on one
    // side gets its patient nearest the threshold moved across, except in a private run, which
    // refuses with the reason for some seeds.
    ok(&with_table(&[]));
    let p = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest.patients.unwrap();
    assert!(p.train.total >= 1 && p.test.total >= 1 && p.train.total + p.holdout.total + p.test.total == 4, "{p:?}");
    let refused = (0..20)
        .map(|s| with_table(&["--seed", &s.to_string(), "--dp-epsilon", "8"]))
        .find(|o| !o.status.success())
        .expect("a seed whose private split leaves a side empty");
    let err = failure(&refused);
    assert!(err.contains("part of the split by patient") && err.contains("a private run moves no patient across"), "{err}");
    // The table wins over the pattern.
    ok(&with_table(&["--group-pattern", r"person(\d+)_"]));
    let p = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest.patients.unwrap();
    assert_eq!(p.train.total + p.holdout.total + p.test.total, 4);
    // A row naming no file, and a file given two patients, are named.
    std::fs::write(&table, format!("file,patient\n{}\nnormal/person99_0.png,site1\n", rows.join("\n"))).unwrap();
    let err = failure(&with_table(&[]));
    assert!(err.contains("groups.csv names 1 file(s) that are not in the data: 'normal/person99_0.png'"), "{err}");
    std::fs::write(&table, format!("file,patient\n{}\nnormal/person0_0.png,site2\n", rows.join("\n"))).unwrap();
    let err = failure(&with_table(&[]));
    assert!(err.contains("groups.csv line 62: 'normal/person0_0.png' is given two patients, 'site0' and 'site2'"), "{err}");
    // Bare file names that fit files of two classes are refused, not guessed.
    std::fs::write(&table, "file,patient\nperson9_0.png,a\n").unwrap();
    let err = failure(&with_table(&[]));
    assert!(err.contains("'person9_0.png' fits 2 files"), "{err}");

    // Bad patterns are named.
    let err = failure(&cli(&["distill", "--group-pattern", r"patient(\d+)"], &[&data]));
    assert!(err.contains(r"the patient pattern 'patient(\d+)' matches none of the 60 files"), "{err}");
    let err = failure(&cli(&["distill", "--group-pattern", r"person\d+"], &[&data]));
    assert!(err.contains("it needs exactly one"), "{err}");

    // A separate test set: nothing of DATA is held out for testing.
    let test = dir.path().join("test");
    lay_out(&test, (0..5).flat_map(|j| [("normal", format!("normal/t{j}.png")), ("pneumonia", format!("pneumonia/t{j}.png"))]));
    ok(&cli(QUICK, &[&out, &data, Path::new("--test"), &test]));
    let m = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest;
    let p = m.patients.unwrap();
    assert_eq!((m.train_counts.iter().sum::<usize>() + m.holdout_counts.iter().sum::<usize>(), p.test.total), (60, 10));
    // A test set that holds a patient of the training data (the pattern finds person3 in both)
    // is refused with the number of shared patients, not their ids.
    lay_out(&test, [("normal", "normal/person3_7.png".to_string())]);
    let err = failure(&cli(&[&["distill", "--group-pattern", r"person(\d+)_"], &QUICK[1..]].concat(), &[&out, &data, Path::new("--test"), &test]));
    assert!(err.contains("share 1 patient(s)") && !err.contains("person3"), "{err}");
    std::fs::remove_file(test.join("normal/person3_7.png")).unwrap();
    std::fs::rename(test.join("pneumonia"), test.join("viral")).unwrap();
    let err = failure(&cli(QUICK, &[&out, &data, Path::new("--test"), &test]));
    assert!(err.contains("the test data has classes [normal, viral] but the training data has [normal, pneumonia]"), "{err}");
}
