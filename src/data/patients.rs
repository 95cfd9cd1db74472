//! Which patient each image comes from. An id comes from, in this order: a CSV table
//! `file,patient` (`--groups`), a file-name pattern with one capture group (`--group-pattern`),
//! an `.npz` archive's `*_groups` array, or the folder layout `root/<class>/<patient>/<image>`.
//! An image without an id is its own patient. Every split is made by patient (`split.rs`).
//!
//! A patient is kept as a 64-bit key that depends on its own id alone, never on the other files:
//! a hash of the id for a named patient, of the file's path for an image without one (its top
//! bit says which). So adding or removing one patient's files leaves every other patient's key,
//! and with it its side of every split, as it was; and two data sets (training and a separate
//! test set) can be checked for the named patients they share.

use std::collections::{BTreeMap, HashMap};

use regex_lite::Regex;

use super::{fnv1a, FNV_OFFSET};
use crate::error::{Error, Result};

/// How patient ids are read from file names; `Grouping::default()` reads none (only the folder
/// layout and `.npz` groups give ids then).
#[derive(Clone, Debug, Default)]
pub struct Grouping {
    pattern: Option<Regex>,
    table: Option<Table>,
}

/// A `file,patient` table.
#[derive(Clone, Debug)]
struct Table {
    /// Name of the table for messages, e.g. `groups.csv`.
    source: String,
    /// Normalised file path → patient id.
    rows: BTreeMap<String, String>,
}

impl Grouping {
    /// A grouping from a pattern (a regular expression with exactly one capture group, searched
    /// in each file's path below the data root) and a CSV table (`source` names it in messages).
    pub fn new(pattern: Option<&str>, csv: Option<(&str, &str)>) -> Result<Self> {
        let pattern = pattern
            .map(|p| {
                let re = Regex::new(p).map_err(|e| Error::Config(format!("the patient pattern '{p}' is not a regular expression: {e}")))?;
                if re.captures_len() != 2 {
                    return Err(Error::Config(format!(
                        "the patient pattern '{p}' has {} capture groups; it needs exactly one, around the patient id (e.g. 'person(\\d+)_')",
                        re.captures_len() - 1
                    )));
                }
                Ok(re)
            })
            .transpose()?;
        let table = csv.map(|(source, text)| Table::parse(source, text)).transpose()?;
        Ok(Self { pattern, table })
    }

    /// A fresh assignment of ids to files.
    pub(crate) fn assigner(&self) -> Assigner<'_> {
        Assigner { grouping: self, files: 0, pattern_hits: 0, unmatched_example: None, table_hits: HashMap::new() }
    }

    /// The same pattern without the table: for a separate test set, whose files a table of the
    /// training data does not list.
    pub fn pattern_only(&self) -> Self {
        Self { pattern: self.pattern.clone(), table: None }
    }
}

/// The top bit of a patient key: set for a named patient (an id from a table, a pattern, a
/// folder or an `.npz` group), clear for an image that is its own patient.
pub const NAMED: u64 = 1 << 63;

/// 64-bit FNV-1a of `tag` and `text`, with a final avalanche (murmur3's) so that every bit
/// depends on every byte.
fn key_hash(tag: &[u8], text: &str) -> u64 {
    mix(fnv1a(fnv1a(FNV_OFFSET, tag), text.as_bytes()))
}

/// murmur3's 64-bit finaliser: a bijection whose output bits each depend on every input bit.
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The key of the patient named `id`.
fn named_key(id: &str) -> u64 {
    key_hash(b"patient\0", id) | NAMED
}

/// The key of an image without a patient id, from its path (or any name unique in the data).
fn image_key(path: &str) -> u64 {
    key_hash(b"image\0", path) & !NAMED
}

impl Table {
    fn parse(source: &str, text: &str) -> Result<Self> {
        let bad = |line: usize, why: String| Error::Data(format!("{source} line {line}: {why}"));
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r'))).filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| Error::Data(format!("{source} is empty; expected a header 'file,patient' and one row per image")))?;
        let header = fields(header).map_err(|why| bad(1, why))?;
        let column = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (Some(file_col), Some(patient_col)) = (column("file"), column("patient")) else {
            return Err(Error::Data(format!("{source}: the first line must name the columns 'file' and 'patient' (found {header:?})")));
        };
        let mut rows = BTreeMap::new();
        for (n, line) in lines {
            let f = fields(line).map_err(|why| bad(n, why))?;
            if f.len() != header.len() {
                return Err(bad(n, format!("{} fields, the header has {}", f.len(), header.len())));
            }
            let (file, patient) = (normalise(&f[file_col]), f[patient_col].trim().to_string());
            if file.is_empty() || patient.is_empty() {
                return Err(bad(n, "an empty file or patient".into()));
            }
            if let Some(before) = rows.insert(file.clone(), patient.clone()).filter(|before| *before != patient) {
                return Err(bad(n, format!("'{file}' is given two patients, '{before}' and '{patient}'")));
            }
        }
        if rows.is_empty() {
            return Err(Error::Data(format!("{source} has a header but no rows")));
        }
        Ok(Self { source: source.to_string(), rows })
    }

    /// The table's row for a file: its whole path, or the longest tail of it that the table
    /// names (so a table may give paths from the root, from the class, or bare file names).
    fn row_of(&self, path: &str) -> Option<(&str, &str)> {
        let mut rest = path;
        loop {
            if let Some((k, v)) = self.rows.get_key_value(rest) {
                return Some((k, v));
            }
            rest = &rest[rest.find('/')? + 1..];
        }
    }
}

/// Fields of one CSV line: separated by commas, optionally in double quotes (`""` is a quote).
fn fields(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().expect("one field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().expect("one field").push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    Ok(out)
}

/// A path with `/` separators and no leading `./` or `/`.
fn normalise(path: &str) -> String {
    let p = path.trim().replace('\\', "/");
    p.trim_start_matches("./").trim_start_matches('/').to_string()
}

/// Gives each file a patient key; `finish` checks that the pattern and the table fit the files.
pub(crate) struct Assigner<'a> {
    grouping: &'a Grouping,
    files: usize,
    pattern_hits: usize,
    unmatched_example: Option<String>,
    /// Table rows used, with the files that used them.
    table_hits: HashMap<String, Vec<String>>,
}

impl Assigner<'_> {
    /// The patient key of the file at `path` (below the data root). `given` is the id the
    /// layout or the archive gives, used when neither the table nor the pattern does.
    pub fn patient(&mut self, path: &str, given: Option<&str>) -> u64 {
        self.files += 1;
        let path = normalise(path);
        let from_table = self.grouping.table.as_ref().and_then(|t| t.row_of(&path)).map(|(k, v)| {
            self.table_hits.entry(k.to_string()).or_default().push(path.clone());
            v.to_string()
        });
        let from_pattern = self.grouping.pattern.as_ref().and_then(|re| {
            let id = re.captures(&path).and_then(|c| c.get(1)).map(|m| m.as_str().to_string());
            match &id {
                Some(_) => self.pattern_hits += 1,
                None => {
                    self.unmatched_example.get_or_insert_with(|| path.clone());
                }
            }
            id
        });
        match from_table.or(from_pattern).or(given.map(str::to_string)) {
            Some(id) => named_key(&id),
            None => image_key(&path),
        }
    }

    /// Fails when the pattern matched no file, or a table row named no file or several.
    pub fn finish(self) -> Result<()> {
        if let (Some(re), 0, true) = (&self.grouping.pattern, self.pattern_hits, self.files > 0) {
            return Err(Error::Data(format!(
                "the patient pattern '{}' matches none of the {} files (e.g. '{}'); it is searched in the path below the data folder",
                re.as_str(),
                self.files,
                self.unmatched_example.unwrap_or_default()
            )));
        }
        if let Some(t) = &self.grouping.table {
            let missing: Vec<&String> = t.rows.keys().filter(|k| !self.table_hits.contains_key(*k)).collect();
            if !missing.is_empty() {
                let shown: Vec<String> = missing.iter().take(5).map(|k| format!("'{k}'")).collect();
                return Err(Error::Data(format!(
                    "{} names {} file(s) that are not in the data: {}{}",
                    t.source,
                    missing.len(),
                    shown.join(", "),
                    if missing.len() > 5 { ", …" } else { "" }
                )));
            }
            if let Some((k, files)) = self.table_hits.iter().filter(|(_, f)| f.len() > 1).min_by_key(|(k, _)| k.as_str()) {
                return Err(Error::Data(format!(
                    "{}: '{k}' fits {} files ('{}', '{}'{}); give each file's path below the data folder",
                    t.source,
                    files.len(),
                    files[0],
                    files[1],
                    if files.len() > 2 { ", …" } else { "" }
                )));
            }
        }
        Ok(())
    }
}

/// Patient keys renumbered 0, 1, … in order of first appearance.
#[cfg(test)]
pub(crate) fn renumber(patients: &[u64]) -> Vec<usize> {
    let mut seen = HashMap::new();
    patients
        .iter()
        .map(|&p| {
            let n = seen.len();
            *seen.entry(p).or_insert(n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(g: &Grouping, files: &[(&str, Option<&str>)]) -> Result<Vec<u64>> {
        let mut a = g.assigner();
        let ids = files.iter().map(|(f, given)| a.patient(f, *given)).collect();
        a.finish().map(|_| ids)
    }

    #[test]
    fn a_pattern_groups_files_and_leaves_the_rest_alone() {
        let g = Grouping::new(Some(r"person(\d+)_"), None).unwrap();
        let ids = assign(&g, &[("b/person1_bacteria_1.jpeg", None), ("v/person1_virus_2.jpeg", None), ("n/IM-0001.jpeg", None), ("b/person2_bacteria_3.jpeg", None)]).unwrap();
        assert_eq!(renumber(&ids), vec![0, 0, 1, 2]);
        assert_eq!(ids[0], named_key("1"), "a named patient's key is its id's alone");
        assert_eq!((ids[0] & NAMED, ids[2] & NAMED), (NAMED, 0), "the top bit tells a named patient");
        assert_eq!(ids[2], image_key("n/IM-0001.jpeg"), "an image without an id is keyed by its path");
        let none = assign(&g, &[("a/x.png", None), ("b/y.png", None)]).unwrap_err().to_string();
        assert!(none.contains("matches none of the 2 files") && none.contains("'a/x.png'"), "{none}");
        let two = Grouping::new(Some(r"(p)(\d+)"), None).unwrap_err().to_string();
        assert!(two.contains("2 capture groups"), "{two}");
        assert!(Grouping::new(Some("(unclosed"), None).unwrap_err().to_string().contains("not a regular expression"));
    }

    #[test]
    fn a_table_matches_path_tails_and_names_what_does_not_fit() {
        let csv = "file,patient\nnormal/p1/a.png,7\n\"b.png\",7\nc.png,8\n";
        let g = Grouping::new(None, Some(("groups.csv", csv))).unwrap();
        let ids = assign(&g, &[("root/normal/p1/a.png", None), ("root/sick/b.png", None), ("root/sick/c.png", None), ("root/sick/d.png", Some("p9"))]).unwrap();
        assert_eq!(renumber(&ids), vec![0, 0, 1, 2]);
        // A row that names no file, and one that fits two.
        let missing = assign(&g, &[("normal/p1/a.png", None), ("b.png", None)]).unwrap_err().to_string();
        assert!(missing.contains("groups.csv names 1 file(s) that are not in the data: 'c.png'"), "{missing}");
        let twice = assign(&g, &[("normal/p1/a.png", None), ("x/b.png", None), ("y/b.png", None), ("c.png", None)]).unwrap_err().to_string();
        assert!(twice.contains("'b.png' fits 2 files"), "{twice}");
    }

    #[test]
    fn bad_tables_are_refused_with_the_line() {
        let err = |text: &str| Grouping::new(None, Some(("g.csv", text))).unwrap_err().to_string();
        assert!(err("").contains("g.csv is empty"));
        assert!(err("name,id\na,1\n").contains("must name the columns 'file' and 'patient'"));
        assert!(err("file,patient\na.png,1\na.png,2\n").contains("g.csv line 3: 'a.png' is given two patients, '1' and '2'"));
        assert!(err("file,patient\na.png\n").contains("line 2: 1 fields"));
        assert!(err("file,patient\n\"a.png,1\n").contains("line 2: a quote is not closed"));
        assert!(err("file,patient\n").contains("no rows"));
        // The same row twice is fine; columns may come in any order, with others beside them.
        assert!(Grouping::new(None, Some(("g.csv", "patient,site,file\r\n1,x,a.png\r\n1,x,a.png\r\n"))).is_ok());
    }
}
