//! How the benchmarks run their PyTorch references (`bench/torch_*.py`): one Python process,
//! whose standard output is one JSON object.

use std::process::Command;

/// The JSON object `python3 args…` prints; `None` when it cannot run (why, from the last line
/// of its standard error, on stderr) or prints something else.
pub fn json(args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new("python3").args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("PyTorch reference not run: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
