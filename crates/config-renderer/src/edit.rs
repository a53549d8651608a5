//! The comment-preserving editor of a config file (`cargo xtask config set`, and write-back of
//! the cluster identifier and table names by `cargo xtask infra apply`).
//!
//! Edits go through `toml_edit`, so comments, blank lines, key order and the style of the file
//! (`[dsql]` tables or dotted keys) survive; a replaced value keeps its trailing comment. Saving
//! is atomic: a temporary file next to the target, flushed, then renamed over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::error::{ConfigError, Problem, line_col};
use crate::keys;
use crate::load::{check_value, parse_text, unknown_key_message};

/// A config file opened for editing.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    doc: DocumentMut,
}

impl ConfigFile {
    /// Opens `path`; a missing file is an empty document (saved on [`ConfigFile::save`]).
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Syntax`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(path, &text)
    }

    /// An editor over `text`, to be saved to `path`.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] when `text` is not TOML.
    pub fn parse(path: impl Into<PathBuf>, text: &str) -> Result<Self, ConfigError> {
        let path = path.into();
        let doc: DocumentMut = text.parse().map_err(|err: toml_edit::TomlError| {
            let (line, column) = err.span().map_or((1, 1), |span| line_col(text, span.start));
            ConfigError::Syntax {
                path: path.display().to_string(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        Ok(Self { path, doc })
    }

    /// The file this editor saves to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets `key` from text as typed on a command line (`50`, `true`, `eu-west-1`): the text is
    /// converted to the key's type and checked before anything changes.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key when it is unknown or the value does not fit.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), ConfigError> {
        self.set_many(&[(key, text)])
    }

    /// Sets several keys at once: all are checked first, and nothing changes unless all are valid.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every key that is unknown or whose value does not fit.
    pub fn set_many(&mut self, pairs: &[(&str, &str)]) -> Result<(), ConfigError> {
        let mut values = Vec::with_capacity(pairs.len());
        let mut problems = Vec::new();
        for (key, text) in pairs {
            let Some(info) = keys::get(key) else {
                problems.push(Problem::error(key, unknown_key_message(key)));
                continue;
            };
            match parse_text(info.kind, text).and_then(|v| check_value(key, &v).map(|()| v)) {
                Ok(value) => values.push((*key, value)),
                Err(message) => problems.push(Problem::error(key, message)),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        // Check every path first so a file with `dsql = 5` changes nothing.
        for (key, _) in &values {
            self.section_conflict(key)
                .map_or(Ok(()), |message| Err(ConfigError::Invalid(vec![Problem::error(key, message)])))?;
        }
        for (key, value) in values {
            self.put(key, value);
        }
        Ok(())
    }

    /// The value of `key` in this file, if it is set here (not the effective value).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Value> {
        let mut item = self.doc.as_item();
        for part in key.split('.') {
            item = item.get(part)?;
        }
        item.as_value().cloned()
    }

    /// The file's text as it would be saved.
    #[must_use]
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the file atomically (temp file + rename). A new file is created readable by its owner
    /// only, since it may hold the Grafana password; an existing file keeps its permissions.
    ///
    /// # Errors
    /// [`ConfigError::Write`].
    pub fn save(&self) -> Result<(), ConfigError> {
        write_atomic(&self.path, self.render().as_bytes(), true)
    }

    /// A section on `key`'s path that this file holds as a plain value (`dsql = 5`).
    fn section_conflict(&self, key: &str) -> Option<String> {
        let parts: Vec<&str> = key.split('.').collect();
        let mut item = self.doc.as_item();
        for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
            match item.get(part) {
                None => return None,
                Some(next) if next.is_table_like() => item = next,
                Some(_) => {
                    let section = parts[..=i].join(".");
                    return Some(format!(
                        "{} sets `{section}` to a value, but it is a section: remove that line first",
                        self.path.display()
                    ));
                }
            }
        }
        None
    }

    fn put(&mut self, key: &str, value: Value) {
        let parts: Vec<&str> = key.split('.').collect();
        let (leaf, sections) = parts.split_last().expect("keys are not empty");
        let mut table: &mut dyn toml_edit::TableLike = self.doc.as_table_mut();
        for section in sections {
            if table.get(section).is_none() {
                let mut new = Table::new();
                // `[dsql.reservoir]` rather than an empty `[dsql]` followed by it.
                new.set_implicit(true);
                table.insert(section, Item::Table(new));
            }
            table = table
                .get_mut(section)
                .and_then(Item::as_table_like_mut)
                .expect("config sections are tables (checked by the loader)");
        }
        let mut value = value;
        if let Some(old) = table.get(leaf).and_then(Item::as_value) {
            // Keep `key = value  # comment` and the spacing around `=`.
            *value.decor_mut() = old.decor().clone();
        }
        match table.get_mut(leaf) {
            Some(Item::Value(slot)) => *slot = value,
            _ => {
                table.insert(leaf, Item::Value(value));
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (so the rename does
/// not cross file systems), flushed to disk, then renamed over `path`. With `private`, a new file is
/// created with mode 0600 on Unix; an existing file's permissions are kept.
///
/// # Errors
/// [`ConfigError::Write`].
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        match std::fs::metadata(path) {
            Ok(meta) => file.set_permissions(meta.permissions())?,
            Err(_) if private => restrict(&file)?,
            Err(_) => {}
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(unix)]
fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}
