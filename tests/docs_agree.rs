//! Every number the README and the page both state is the engine's: the file and image limits,
//! privacy mode's range of epsilon and its iterations, the page's defaults.

use std::path::Path;

use anondistill::config::{EPSILON_MAX, EPSILON_MIN};
use anondistill::data::{MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE, MIN_SIDE};
use anondistill::privacy::DEFAULT_ITERATIONS;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Asserts that `text` (the file `name`) holds `needle`, line breaks and indents read as spaces.
fn says(name: &str, text: &str, needle: &str) {
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat(text).contains(&flat(needle)), "{name} does not say {needle:?}");
}

/// `1234567` as "1,234,567".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_readme_and_the_page_state_the_engines_numbers() {
    let readme = read("README.md");
    let html = read("www/index.html");
    let data_js = read("www/data.js");
    let mib = MAX_FILE_BYTES >> 20;
    says("README.md", &readme, &format!("over {mib} MiB"));
    says("www/data.js", &data_js, &format!("const MAX_FILE_BYTES = {mib} << 20;"));
    says("www/data.js", &data_js, &format!("above the {mib} MiB limit"));
    says("README.md", &readme, &format!("under {MIN_SIDE} or over {} pixels a side", grouped(MAX_SIDE as u64)));
    says("README.md", &readme, &format!("over {} megapixels", MAX_PIXELS / 1_000_000));
    says("README.md", &readme, &format!("ε from {EPSILON_MIN} to {EPSILON_MAX}"));
    says("www/index.html", &html, &format!("another epsilon ({EPSILON_MIN} to {EPSILON_MAX})"));
    says("README.md", &readme, &format!("runs {DEFAULT_ITERATIONS} iterations unless"));
    // The page's defaults, as its fields hold them and the README gives them.
    says("www/index.html", &html, r#"name="max_iterations" type="number" min="1" max="100000000" value="200""#);
    says("README.md", &readme, "the page runs its \"iterations\" field (200 by default)");
    says("README.md", &readme, "The demo's default run (20 images, 200 iterations, LeNet width 2)");
    says("www/index.html", &html, r#"name="lenet_width" type="number" min="1" max="16" value="2""#);
}
