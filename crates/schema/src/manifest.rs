//! The embedded schema: one directory per version (`v1.0`, `v1.1`), each with a `manifest.json`
//! in the format of Temporal's schema tool and the SQL files it lists.

use std::sync::OnceLock;

use md5::{Digest as _, Md5};
use serde::Deserialize;
use sha2::Sha256;

use crate::split::{self, Statement};
use crate::version::SchemaVersion;

/// One version directory as compiled into the crate: its name and its files.
#[derive(Debug)]
pub(crate) struct EmbeddedDir {
    pub(crate) name: &'static str,
    pub(crate) files: &'static [(&'static str, &'static str)],
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The SHA-256 of each released version (manifest bytes, then each listed file's name and bytes).
/// A released version never changes: a change to the schema is a new version directory.
const PINNED_CHECKSUMS: &[(&str, &str)] = &[
    ("1.0", "dd440b6fdfc78007a624a1da6182cff6337110c4e960d5ae6e15ecfc29e7a61c"),
    ("1.1", "fd0a7c4c307d1e70b9ebf2ed5b60650e73d3fa4f162aa6c4db422385c1460506"),
];

/// A version directory's `manifest.json`, as Temporal's schema tool defines it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawManifest {
    curr_version: String,
    min_compatible_version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schema_update_cql_files: Vec<String>,
    #[serde(default)]
    allow_no_cql_files: bool,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The version this directory brings the schema to.
    pub curr_version: SchemaVersion,
    /// The oldest version the server may still run against once this one is installed.
    pub min_compatible_version: SchemaVersion,
    /// Free text, written to `schema_update_history.description`.
    pub description: String,
    /// The SQL files of the version, in order.
    pub files: Vec<String>,
}

/// One version of the schema: its manifest and its statements (in the DSQL source dialect).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// The directory name (`v1.0`).
    pub dir: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Hex MD5 of the raw manifest bytes (what `schema_update_history.manifest_md5` stores).
    pub manifest_md5: String,
    /// Hex SHA-256 over the manifest and every file it lists: the version's pinned checksum.
    pub checksum: String,
    /// The statements of every listed file, in order.
    pub statements: Vec<Statement>,
}

impl ChangeSet {
    /// The version this change set installs.
    #[must_use]
    pub fn version(&self) -> SchemaVersion {
        self.manifest.curr_version
    }
}

/// A problem with the schema files themselves (not with a database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A directory has no `manifest.json`.
    #[error("schema directory {dir} has no manifest.json")]
    MissingManifest {
        /// The directory.
        dir: String,
    },
    /// A manifest is not valid JSON of the expected shape, or holds a bad value.
    #[error("{dir}/manifest.json: {reason}")]
    BadManifest {
        /// The directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest lists a file the directory does not have.
    #[error("{dir}/manifest.json lists {file}, which is not in the directory")]
    MissingFile {
        /// The directory.
        dir: String,
        /// The missing file.
        file: String,
    },
    /// A SQL file cannot be split into statements.
    #[error("{dir}/{file}: {source}")]
    Split {
        /// The directory.
        dir: String,
        /// The file.
        file: String,
        /// Why.
        source: split::SplitError,
    },
    /// A version's content no longer matches its pinned checksum.
    #[error(
        "schema {dir} changed after release (checksum {actual}, pinned {pinned}): a released version is \
         immutable, put the change in a new version directory (or, for an unreleased version, update \
         PINNED_CHECKSUMS in crates/schema/src/manifest.rs)"
    )]
    ChecksumMismatch {
        /// The directory.
        dir: String,
        /// The checksum of what is embedded.
        actual: String,
        /// The pinned checksum.
        pinned: String,
    },
    /// A version has no pinned checksum.
    #[error(
        "schema {dir} has no pinned checksum: add (\"{version}\", \"{actual}\") to PINNED_CHECKSUMS in \
         crates/schema/src/manifest.rs"
    )]
    Unpinned {
        /// The directory.
        dir: String,
        /// Its version.
        version: String,
        /// Its checksum.
        actual: String,
    },
    /// Two directories claim the same version.
    #[error("schema version {version} is declared twice")]
    Duplicate {
        /// The version.
        version: SchemaVersion,
    },
    /// No version directories at all.
    #[error("the schema has no versions")]
    Empty,
}

/// A requested version the schema does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown schema version {requested}; known versions: {}", known_list(.known))]
pub struct UnknownVersion {
    /// What was asked for.
    pub requested: SchemaVersion,
    /// What exists.
    pub known: Vec<SchemaVersion>,
}

fn known_list(known: &[SchemaVersion]) -> String {
    known.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Every version of the schema, in version order.
#[derive(Debug, Clone)]
pub struct Schema {
    change_sets: Vec<ChangeSet>,
}

impl Schema {
    /// The schema compiled into this crate, checked against its pinned checksums.
    ///
    /// # Errors
    /// A [`SchemaError`] when an embedded file is malformed or a released version changed.
    pub fn embedded() -> Result<&'static Schema, SchemaError> {
        static EMBEDDED_SCHEMA: OnceLock<Result<Schema, SchemaError>> = OnceLock::new();
        EMBEDDED_SCHEMA
            .get_or_init(|| {
                let dirs: Vec<(&str, Vec<(&str, &str)>)> =
                    EMBEDDED.iter().map(|d| (d.name, d.files.to_vec())).collect();
                let schema = Schema::from_dirs(&dirs)?;
                schema.check_pins(PINNED_CHECKSUMS)?;
                Ok(schema)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Builds a schema from version directories given as `(name, [(file, content)])`.
    ///
    /// # Errors
    /// A [`SchemaError`] naming the directory and file at fault.
    pub fn from_dirs(dirs: &[(&str, Vec<(&str, &str)>)]) -> Result<Self, SchemaError> {
        let mut change_sets = Vec::new();
        for (dir, files) in dirs {
            change_sets.push(load_dir(dir, files)?);
        }
        change_sets.sort_by_key(ChangeSet::version);
        for pair in change_sets.windows(2) {
            if pair[0].version() == pair[1].version() {
                return Err(SchemaError::Duplicate { version: pair[0].version() });
            }
        }
        if change_sets.is_empty() {
            return Err(SchemaError::Empty);
        }
        Ok(Self { change_sets })
    }

    fn check_pins(&self, pins: &[(&str, &str)]) -> Result<(), SchemaError> {
        for change_set in &self.change_sets {
            let version = change_set.version().to_string();
            match pins.iter().find(|(v, _)| *v == version) {
                Some((_, pinned)) if *pinned == change_set.checksum => {}
                Some((_, pinned)) => {
                    return Err(SchemaError::ChecksumMismatch {
                        dir: change_set.dir.clone(),
                        actual: change_set.checksum.clone(),
                        pinned: (*pinned).to_owned(),
                    });
                }
                None => {
                    return Err(SchemaError::Unpinned {
                        dir: change_set.dir.clone(),
                        version,
                        actual: change_set.checksum.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every version, oldest first.
    #[must_use]
    pub fn change_sets(&self) -> &[ChangeSet] {
        &self.change_sets
    }

    /// Every known version, oldest first.
    #[must_use]
    pub fn versions(&self) -> Vec<SchemaVersion> {
        self.change_sets.iter().map(ChangeSet::version).collect()
    }

    /// The newest version: what the server expects.
    #[must_use]
    pub fn latest(&self) -> SchemaVersion {
        self.change_sets.last().map(ChangeSet::version).expect("a schema has at least one version")
    }

    /// Checks that `version` is one of ours.
    ///
    /// # Errors
    /// [`UnknownVersion`] listing the known versions.
    pub fn find(&self, version: SchemaVersion) -> Result<&ChangeSet, UnknownVersion> {
        self.change_sets
            .iter()
            .find(|c| c.version() == version)
            .ok_or_else(|| UnknownVersion { requested: version, known: self.versions() })
    }

    /// The change sets that take the schema from `from` (exclusive; `None`: nothing installed) to
    /// `to` (inclusive), in order.
    #[must_use]
    pub fn range(&self, from: Option<SchemaVersion>, to: SchemaVersion) -> Vec<&ChangeSet> {
        self.change_sets
            .iter()
            .filter(|c| from.is_none_or(|f| c.version() > f) && c.version() <= to)
            .collect()
    }
}

fn load_dir(dir: &str, files: &[(&str, &str)]) -> Result<ChangeSet, SchemaError> {
    let bad = |reason: String| SchemaError::BadManifest { dir: dir.to_owned(), reason };
    let manifest_text = files
        .iter()
        .find(|(name, _)| *name == "manifest.json")
        .map(|(_, text)| *text)
        .ok_or_else(|| SchemaError::MissingManifest { dir: dir.to_owned() })?;
    let raw: RawManifest = serde_json::from_str(manifest_text).map_err(|e| bad(e.to_string()))?;
    let curr_version: SchemaVersion =
        raw.curr_version.parse().map_err(|e| bad(format!("CurrVersion: {e}")))?;
    let min_compatible_version: SchemaVersion =
        raw.min_compatible_version.parse().map_err(|e| bad(format!("MinCompatibleVersion: {e}")))?;
    let dir_version: Option<SchemaVersion> = dir.strip_prefix('v').and_then(|v| v.parse().ok());
    if dir_version != Some(curr_version) {
        return Err(bad(format!(
            "CurrVersion {curr_version} does not match the directory name (expected v{curr_version})"
        )));
    }
    if min_compatible_version > curr_version {
        return Err(bad(format!(
            "MinCompatibleVersion {min_compatible_version} is newer than CurrVersion {curr_version}"
        )));
    }
    if raw.schema_update_cql_files.is_empty() && !raw.allow_no_cql_files {
        return Err(bad(
            "SchemaUpdateCqlFiles is empty (set AllowNoCqlFiles for an empty version)".to_owned()
        ));
    }

    let mut checksum = Sha256::new();
    checksum.update(manifest_text.as_bytes());
    let mut statements = Vec::new();
    for file in &raw.schema_update_cql_files {
        let text = files
            .iter()
            .find(|(name, _)| name == file)
            .map(|(_, text)| *text)
            .ok_or_else(|| SchemaError::MissingFile { dir: dir.to_owned(), file: file.clone() })?;
        checksum.update(file.as_bytes());
        checksum.update([0]);
        checksum.update(text.as_bytes());
        let split = split::split(text).map_err(|source| SchemaError::Split {
            dir: dir.to_owned(),
            file: file.clone(),
            source,
        })?;
        statements.extend(split);
    }
    Ok(ChangeSet {
        dir: dir.to_owned(),
        manifest: Manifest {
            curr_version,
            min_compatible_version,
            description: raw.description,
            files: raw.schema_update_cql_files,
        },
        manifest_md5: hex(&Md5::digest(manifest_text.as_bytes())),
        checksum: hex(&checksum.finalize()),
        statements,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"CurrVersion":"1.0","MinCompatibleVersion":"1.0","Description":"d","SchemaUpdateCqlFiles":["a.sql"]}"#;

    #[test]
    fn the_embedded_schema_matches_its_pins_and_the_reference_counts() {
        let schema = Schema::embedded().unwrap();
        assert_eq!(schema.versions(), ["1.0".parse().unwrap(), "1.1".parse().unwrap()]);
        assert_eq!(schema.latest().to_string(), "1.1");
        let counts: Vec<usize> = schema.change_sets().iter().map(|c| c.statements.len()).collect();
        // 36 tables + 1 seed row + 7 indexes in 1.0; current_chasm_executions in 1.1.
        assert_eq!(counts, [44, 1]);
        let v11 = &schema.change_sets()[1];
        assert_eq!(v11.manifest.min_compatible_version.to_string(), "1.0");
        assert_eq!(v11.manifest.files, ["current_chasm_executions.sql"]);
        assert_eq!(v11.manifest_md5.len(), 32);
    }

    #[test]
    fn a_changed_released_version_is_caught() {
        let schema =
            Schema::from_dirs(&[("v1.0", vec![("manifest.json", MANIFEST), ("a.sql", "SELECT 1;")])])
                .unwrap();
        let err = schema.check_pins(&[("1.0", "0000")]).unwrap_err();
        assert!(matches!(err, SchemaError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("new version directory"), "{err}");
        let err = schema.check_pins(&[]).unwrap_err();
        assert!(err.to_string().contains("PINNED_CHECKSUMS"), "{err}");
    }

    #[test]
    fn bad_manifests_say_what_and_where() {
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
        let cases: [Case<'_>; 4] = [
            ("v1.1", vec![("manifest.json", MANIFEST), ("a.sql", "")], "does not match the directory name"),
            ("v1.0", vec![("manifest.json", MANIFEST)], "lists a.sql"),
            ("v1.0", vec![("a.sql", "")], "no manifest.json"),
            ("v1.0", vec![("manifest.json", "{"), ("a.sql", "")], "v1.0/manifest.json"),
        ];
        for (dir, files, expected) in cases {
            let err = Schema::from_dirs(&[(dir, files)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn unknown_versions_list_the_known_ones() {
        let err = Schema::embedded().unwrap().find("9.9".parse().unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "unknown schema version 9.9; known versions: 1.0, 1.1");
    }

    #[test]
    fn range_is_exclusive_below_and_inclusive_above() {
        let schema = Schema::embedded().unwrap();
        let v = |s: &str| s.parse::<SchemaVersion>().unwrap();
        let dirs = |from, to| schema.range(from, to).iter().map(|c| c.dir.clone()).collect::<Vec<_>>();
        assert_eq!(dirs(None, v("1.1")), ["v1.0", "v1.1"]);
        assert_eq!(dirs(Some(v("1.0")), v("1.1")), ["v1.1"]);
        assert!(dirs(Some(v("1.1")), v("1.1")).is_empty());
    }
}
