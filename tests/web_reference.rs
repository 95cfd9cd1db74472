//! Keeps `tests/fixtures/web_reference.json` (what the browser tests in `tests/web.rs` compare
//! against) equal to what the native engine computes. `ANONDISTILL_WRITE_FIXTURE=1` rewrites it.

#[path = "common/reference.rs"]
mod reference;

use burn_ndarray::NdArray;
use reference::{assert_agrees, assert_descends, reference, Reference};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/web_reference.json");

#[test]
fn the_browser_fixture_is_what_the_native_engine_computes() {
    let native = pollster::block_on(reference::<NdArray>(&Default::default()));
    assert_descends(&native);
    if std::env::var("ANONDISTILL_WRITE_FIXTURE").as_deref() == Ok("1") {
        // Rewriting makes this comparison trivially pass: a developer's step, never CI's.
        assert!(std::env::var_os("CI").is_none(), "ANONDISTILL_WRITE_FIXTURE=1 is refused where CI is set");
        std::fs::write(FIXTURE, serde_json::to_string(&native).unwrap()).unwrap();
    }
    let fixture: Reference = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let errors = assert_agrees(&native, &fixture, 1e-5);
    println!("native vs fixture: {errors:?}");
}
