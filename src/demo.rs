//! The built-in demo dataset: real chest X-ray patches (PneumoniaMNIST, MedMNIST v2, CC BY 4.0;
//! Yang et al. 2023, from Kermany et al. 2018), 200 per class, as PNG files. See
//! `demo/pneumonia-xray/README.md` for the attribution.

use crate::data::InputFile;

include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));

/// Attribution to show wherever the demo data are used.
pub const ATTRIBUTION: &str = "Demo data: PneumoniaMNIST (MedMNIST v2, Yang et al., Scientific Data 2023), \
from chest X-rays of Kermany et al., Cell 2018; CC BY 4.0.";

/// The demo files, as the in-memory loader takes them.
pub fn demo_files() -> Vec<InputFile> {
    DEMO_FILES
        .iter()
        .map(|(class, name, bytes)| InputFile { name: format!("{class}/{name}"), class: class.to_string(), patient: None, bytes: bytes.to_vec() })
        .collect()
}
