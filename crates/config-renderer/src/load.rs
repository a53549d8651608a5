//! Layered loading with provenance: defaults < profile.toml < config.toml < `TDSQL_*` env < flags.
//!
//! Each layer is checked key by key as it is added (unknown keys, wrong types, unparsable
//! durations), so every message names the key and the file and line it came from. The merged
//! result is then validated as a whole ([`crate::validate`]).

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{Item, Value};

use crate::error::{ConfigError, Origin, Problem, Severity, line_col};
use crate::keys::{self, Kind};
use crate::model::Config;
use crate::validate;

/// Builds a [`Loaded`] config from layers added lowest-precedence first.
#[derive(Debug, Default)]
pub struct Loader {
    values: BTreeMap<String, (Value, Origin)>,
    problems: Vec<Problem>,
}

/// The effective config and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed, validated config.
    pub config: Config,
    /// Findings that do not stop the config from being used.
    pub warnings: Vec<Problem>,
    /// Values `cargo xtask infra apply` fills in ([`Severity::Pending`]); always empty after
    /// [`Loader::load`], which rejects them.
    pub pending: Vec<Problem>,
    origins: BTreeMap<String, Origin>,
}

/// One row of `config show`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The dotted key.
    pub key: &'static str,
    /// The value as TOML (`50`, `"eu-west-1"`); secrets are masked.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
    /// The environment variable that overrides it.
    pub env_var: String,
    /// One line on what it does.
    pub doc: &'static str,
}

impl Loader {
    /// Starts from the built-in defaults.
    #[must_use]
    pub fn new() -> Self {
        let values = keys::default_values().into_iter().map(|(k, v)| (k, (v, Origin::Default))).collect();
        Self { values, problems: Vec::new() }
    }

    /// Adds a TOML file layer. A missing file is an error; check first for optional files.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when it cannot be read, [`ConfigError::Syntax`] when it is not TOML.
    /// Wrong keys and values are collected and reported by [`Loader::load`].
    pub fn file(self, path: &Path, shown_as: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        self.text(&text, shown_as)
    }

    /// Adds a TOML layer from text (`shown_as` names it in messages).
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] when it is not TOML.
    pub fn text(mut self, text: &str, shown_as: &str) -> Result<Self, ConfigError> {
        let doc = toml_edit::Document::parse(text).map_err(|err| {
            let (line, column) = err.span().map_or((1, 1), |span| line_col(text, span.start));
            ConfigError::Syntax {
                path: shown_as.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let mut leaves = Vec::new();
        walk_spanned("", doc.as_item(), None, &mut leaves);
        for (key, item, offset) in leaves {
            let line = offset.map_or(1, |o| line_col(text, o).0);
            let origin = Origin::File { path: shown_as.to_owned(), line };
            let value = match item {
                Item::Value(value) => value,
                Item::Table(_) if keys::is_section(&key) => continue,
                Item::Table(_) | Item::ArrayOfTables(_) | Item::None => {
                    self.problems.push(Problem::error(&key, unknown_key_message(&key)).at(origin));
                    continue;
                }
            };
            self.set(&key, value, origin);
        }
        Ok(self)
    }

    /// Adds the `TDSQL_*` environment layer from `(name, value)` pairs (pass `std::env::vars()`).
    /// Variables that name no key are ignored: other tools use the `TDSQL_` prefix too.
    #[must_use]
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: BTreeMap<String, String> =
            vars.into_iter().filter(|(k, _)| k.starts_with("TDSQL_")).collect();
        for info in keys::all() {
            let var = info.env_var();
            if let Some(text) = vars.get(&var) {
                let origin = Origin::Env { var };
                match parse_text(info.kind, text) {
                    Ok(value) => self.set(&info.key, value, origin),
                    Err(message) => self.problems.push(Problem::error(&info.key, message).at(origin)),
                }
            }
        }
        self
    }

    /// Adds one command-line flag that sets `key` (e.g. `--region` sets `project.region`).
    #[must_use]
    pub fn flag(mut self, key: &str, text: &str, flag: &str) -> Self {
        let origin = Origin::Flag { flag: flag.to_owned() };
        match keys::get(key) {
            Some(info) => match parse_text(info.kind, text) {
                Ok(value) => self.set(key, value, origin),
                Err(message) => self.problems.push(Problem::error(key, message).at(origin)),
            },
            None => self.problems.push(Problem::error(key, "is not a key of the config").at(origin)),
        }
        self
    }

    /// Merges the layers, builds the typed config and validates it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every error found, [`Severity::Pending`] ones included
    /// (warnings are left out of it).
    pub fn load(self) -> Result<Loaded, ConfigError> {
        self.finish(false)
    }

    /// Like [`Loader::load`], for the commands that run `infra apply` (which fills those values
    /// in): [`Severity::Pending`] problems go into [`Loaded::pending`] instead of failing the load.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every [`Severity::Error`] found.
    pub fn load_before_infra(self) -> Result<Loaded, ConfigError> {
        self.finish(true)
    }

    fn finish(self, tolerate_pending: bool) -> Result<Loaded, ConfigError> {
        let Self { values, mut problems } = self;
        let ordered = keys::all().iter().map(|k| (k.key.as_str(), &values[&k.key].0));
        let config: Config = toml_edit::de::from_document(keys::unflatten(ordered)).map_err(|err| {
            // Each value was checked alone, so this is a bug in the model, not in the user's file.
            ConfigError::Invalid(vec![Problem::error("config", err.message().trim().to_owned())])
        })?;
        let origins: BTreeMap<String, Origin> = values.into_iter().map(|(k, (_, o))| (k, o)).collect();
        for problem in validate::validate(&config) {
            let origin = origins.get(&problem.key).cloned().unwrap_or(Origin::Default);
            problems.push(problem.at(origin));
        }
        let (mut warnings, mut pending, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for problem in problems {
            match problem.severity {
                Severity::Warning => warnings.push(problem),
                Severity::Pending if tolerate_pending => pending.push(problem),
                Severity::Pending | Severity::Error => errors.push(problem),
            }
        }
        if errors.is_empty() {
            Ok(Loaded { config, warnings, pending, origins })
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    fn set(&mut self, key: &str, value: Value, origin: Origin) {
        match check_value(key, &value) {
            Ok(()) => {
                self.values.insert(key.to_owned(), (value, origin));
            }
            Err(message) => self.problems.push(Problem::error(key, message).at(origin)),
        }
    }
}

impl Loaded {
    /// Where `key`'s effective value came from (`Default` for an unknown key).
    #[must_use]
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }

    /// Every key with its effective value and origin, in model order; secrets masked.
    #[must_use]
    pub fn entries(&self) -> Vec<Entry> {
        let doc = toml_edit::ser::to_document(&self.config).expect("the model serialises to TOML");
        let values: BTreeMap<String, Value> = keys::flatten(doc.as_item()).into_iter().collect();
        keys::all()
            .iter()
            .map(|info| {
                let mut value = values[&info.key].clone();
                value.decor_mut().clear();
                let shown = match (&value, info.is_secret()) {
                    (Value::String(s), true) if !s.value().is_empty() => "\"********\"".to_owned(),
                    _ => value.to_string(),
                };
                Entry {
                    key: info.key.as_str(),
                    value: shown,
                    origin: self.origin(&info.key).clone(),
                    env_var: info.env_var(),
                    doc: info.doc,
                }
            })
            .collect()
    }
}

/// Checks one value for one key: known key, right TOML type, and accepted by the model
/// (non-negative integers in range, durations with units, known enumeration values).
///
/// # Errors
/// A message saying what was wrong and what is expected (without the key: callers add it).
pub fn check_value(key: &str, value: &Value) -> Result<(), String> {
    let Some(info) = keys::get(key) else {
        return Err(unknown_key_message(key));
    };
    let found = match value {
        Value::String(_) => Some(Kind::String),
        Value::Integer(_) => Some(Kind::Integer),
        Value::Boolean(_) => Some(Kind::Bool),
        _ => None,
    };
    if found != Some(info.kind) {
        return Err(format!("expected {}, found {}", info.kind.describe(), value.type_name()));
    }
    toml_edit::de::from_document::<Config>(keys::unflatten([(key, value)]))
        .map(|_| ())
        .map_err(|err| err.message().trim().to_owned())
}

/// Turns the text of an env var or flag into a value of the key's kind.
///
/// # Errors
/// A message when the text is not of that kind.
pub fn parse_text(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::String => Ok(Value::from(text)),
        Kind::Integer => {
            text.trim().parse::<i64>().map(Value::from).map_err(|_| format!("`{text}` is not an integer"))
        }
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
            "false" | "0" | "no" | "off" => Ok(Value::from(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
    }
}

pub(crate) fn unknown_key_message(key: &str) -> String {
    if keys::is_section(key) {
        return "is a section, not a key: set one of its keys".to_owned();
    }
    match keys::suggest(key) {
        Some(hint) => format!("is not a key of the config (did you mean `{hint}`?)"),
        None => "is not a key of the config (`cargo xtask config show` lists every key)".to_owned(),
    }
}

/// Collects every leaf of a parsed document (owned) with the byte offset of its key.
fn walk_spanned(
    prefix: &str,
    item: &Item,
    key_offset: Option<usize>,
    out: &mut Vec<(String, Item, Option<usize>)>,
) {
    let join = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    match item {
        Item::Table(table) => {
            if table.is_empty() && !prefix.is_empty() {
                // A lone `[section]` header: fine for a known section, reported otherwise.
                out.push((prefix.to_owned(), item.clone(), key_offset.or(table.span().map(|s| s.start))));
            }
            for (k, v) in table.iter() {
                let offset = table.key(k).and_then(toml_edit::Key::span).map(|s| s.start);
                walk_spanned(&join(k), v, offset.or(key_offset), out);
            }
        }
        Item::Value(Value::InlineTable(table)) => {
            for (k, v) in table.iter() {
                let offset = table.key(k).and_then(toml_edit::Key::span).map(|s| s.start);
                walk_spanned(&join(k), &Item::Value(v.clone()), offset.or(key_offset), out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone(), key_offset)),
    }
}
