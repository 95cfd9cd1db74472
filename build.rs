//! Embeds the demo dataset (`demo/pneumonia-xray/<class>/<image>.png`) into the crate, so that the
//! command line and the browser have it without touching the network or the disk.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("demo/pneumonia-xray");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = String::from("/// The demo files: (class, file name, bytes).\npub static DEMO_FILES: &[(&str, &str, &[u8])] = &[\n");
    let mut classes: Vec<_> = std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    classes.sort();
    for class in classes {
        println!("cargo:rerun-if-changed={}", class.display());
        let mut files: Vec<_> = std::fs::read_dir(&class).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
        files.sort();
        let cname = class.file_name().unwrap().to_string_lossy().into_owned();
        for f in files {
            let fname = f.file_name().unwrap().to_string_lossy().into_owned();
            writeln!(out, "    ({cname:?}, {fname:?}, include_bytes!({:?})),", f.display().to_string()).unwrap();
        }
    }
    out.push_str("];\n");
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("demo_files.rs"), out).unwrap();
}
