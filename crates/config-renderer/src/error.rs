//! Errors of this crate.

use std::fmt;
use std::path::PathBuf;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML file (a profile's `profile.toml` or the user's `config.toml`).
    File {
        /// The file as shown to the user.
        path: String,
        /// 1-based line of the key.
        line: usize,
    },
    /// A `TDSQL_*` environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag as typed, such as `--region`.
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path, line } => write!(f, "{path}:{line}"),
            Self::Env { var } => write!(f, "env {var}"),
            Self::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// Works, but probably not as intended.
    Warning,
    /// A value that `cargo xtask infra apply` fills in (a coordination table that is enabled but
    /// not created yet). [`Loader::load`](crate::Loader::load) treats it as an error;
    /// [`Loader::load_before_infra`](crate::Loader::load_before_infra) sets it aside in
    /// [`Loaded::pending`](crate::Loaded::pending) for the commands that run that apply.
    Pending,
    /// Must be fixed before the config is used.
    Error,
}

/// One finding of validation: which key, where it was set, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The dotted key.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where the offending value was set, once known.
    pub origin: Option<Origin>,
}

impl Problem {
    pub(crate) fn error(key: &str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, key: key.to_owned(), message: message.into(), origin: None }
    }

    pub(crate) fn warning(key: &str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, key: key.to_owned(), message: message.into(), origin: None }
    }

    pub(crate) fn pending(key: &str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Pending, key: key.to_owned(), message: message.into(), origin: None }
    }

    pub(crate) fn at(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Everything that can go wrong loading, editing or rendering a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid TOML.
    #[error("{path}:{line}:{column}: not valid TOML: {message}")]
    Syntax {
        /// The file as shown to the user.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// One or more values are wrong; every problem is listed.
    #[error("invalid configuration:{}", list(.0))]
    Invalid(Vec<Problem>),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No DSQL cluster is configured yet.
    #[error(
        "no DSQL cluster configured (dsql.identifier and dsql.endpoint are empty): run \
         `cargo xtask infra apply`, or `cargo xtask config set dsql.identifier <id>`"
    )]
    NoCluster,
    /// A dashboard of the repository's `grafana/` folder is not valid JSON.
    #[error("{path} is not valid JSON ({message}): fix the dashboard and render again")]
    Dashboard {
        /// The source, relative to the repository root.
        path: &'static str,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A template of `crates/config-renderer/templates/` does not parse or render: a syntax error, a
    /// variable its inputs do not define, or a dynamic-config key Temporal does not register.
    #[error("{path}: {message}: fix the template and render again")]
    Template {
        /// The template, relative to the repository root.
        path: &'static str,
        /// What is wrong, with the template's line when known.
        message: String,
    },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}
