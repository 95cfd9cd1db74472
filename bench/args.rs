//! Command-line helpers shared by the bench examples: `--name value` options and `field=value`
//! overrides of a configuration.
#![allow(dead_code)] // each example uses some of them

use anondistill::config::Config;

/// The value after the first `name`.
pub fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// Whether `name` was given.
pub fn has_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The value after every `name`.
pub fn args(name: &str) -> Vec<String> {
    let all: Vec<String> = std::env::args().collect();
    all.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

/// Applies `field=value` overrides (values in JSON, bare words taken as strings). A dotted
/// field sets a member of an object field (`privacy.clip=0.1`, on a configuration whose
/// `privacy` is set), so that `--tune` can list a nested value without JSON's commas.
pub fn apply(config: &Config, overrides: &str) -> Config {
    let mut v = serde_json::to_value(config).unwrap();
    for kv in overrides.split_whitespace() {
        let (k, val) = kv.split_once('=').unwrap_or_else(|| panic!("{kv}: expected field=value"));
        let parsed = serde_json::from_str(val).unwrap_or_else(|_| serde_json::Value::String(val.into()));
        let mut at = &mut v;
        for part in k.split('.') {
            assert!(at.is_object(), "{kv}: {part} is not within an object (is its parent set?)");
            at = &mut at[part];
        }
        *at = parsed;
    }
    let c: Config = serde_json::from_value(v).unwrap_or_else(|e| panic!("{overrides}: {e}"));
    c.validate().unwrap();
    c
}
