//! The errors the gateway itself answers with, in DSQL's words: SQLSTATE, message and hint as a
//! real cluster sends them (`../shared/reference/aurora-dsql-platform.md` sections 1 to 3).

use std::fmt;

/// How bad an error is on the wire: `ERROR` ends a statement, `FATAL` ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The connection is closed after the message.
    Fatal,
}

impl Severity {
    /// The severity as PostgreSQL spells it in the `S` and `V` fields.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// An error the gateway answers with instead of (or before) PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// `ERROR` or `FATAL`.
    pub severity: Severity,
    /// The five-character SQLSTATE, e.g. `0A000`.
    pub code: &'static str,
    /// The primary message, exactly as DSQL words it.
    pub message: String,
    /// The `HINT` field, when DSQL sends one (e.g. `Signature expired`).
    pub hint: Option<String>,
}

impl SqlError {
    /// An `ERROR` with this SQLSTATE and message.
    #[must_use]
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, message: message.into(), hint: None }
    }

    /// A `FATAL` with this SQLSTATE and message; the connection closes after it.
    #[must_use]
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self { severity: Severity::Fatal, code, message: message.into(), hint: None }
    }

    /// The same error with a `HINT`.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 0A000 `unsupported statement: <Kind>`, DSQL's answer to a whole statement kind it lacks
    /// (`Truncate`, `CreateExtension`, ...).
    #[must_use]
    pub fn unsupported_statement(kind: &str) -> Self {
        Self::error("0A000", format!("unsupported statement: {kind}"))
    }

    /// 25P02, every statement of a failed transaction until it ends.
    #[must_use]
    pub fn transaction_aborted() -> Self {
        Self::error("25P02", "current transaction is aborted, commands ignored until end of transaction block")
    }

    /// 0A000, a second DDL statement in one transaction.
    #[must_use]
    pub fn multiple_ddl() -> Self {
        Self::error("0A000", "multiple ddl statements not supported in a transaction")
    }

    /// 0A000, DDL and DML in one transaction.
    #[must_use]
    pub fn ddl_and_dml() -> Self {
        Self::error("0A000", "ddl and dml are not supported in the same transaction")
    }

    /// 54000, the statement that takes a transaction past its row limit.
    #[must_use]
    pub fn row_limit() -> Self {
        Self::error("54000", "transaction row limit exceeded")
    }

    /// 54000 at `COMMIT`, a transaction older than the age limit.
    #[must_use]
    pub fn age_limit(limit_secs: u64) -> Self {
        Self::error("54000", format!("transaction age limit of {limit_secs}s exceeded"))
    }

    /// 54000 at `COMMIT`, a transaction that modified more than the size limit.
    #[must_use]
    pub fn size_limit() -> Self {
        Self::error("54000", "transaction size limit 10mb exceeded")
    }

    /// 40001 with `(OC000)`: another transaction committed a write to a row this one wrote or
    /// locked; reported at `COMMIT`.
    #[must_use]
    pub fn occ_data_conflict() -> Self {
        Self::error("40001", "change conflicts with another transaction (OC000)")
    }

    /// 40001 with `(OC001)`: the session's catalog is older than a committed schema change;
    /// reported on the next statement.
    #[must_use]
    pub fn occ_schema_conflict() -> Self {
        Self::error("40001", "schema has been updated by another transaction (OC001)")
    }

    /// 53400 `FATAL`, the connection-rate bucket is empty.
    #[must_use]
    pub fn rate_exceeded() -> Self {
        Self::fatal("53400", "Unable to accept connection, rate exceeded.")
    }

    /// 53300 `FATAL`, the cluster's connection cap is reached.
    #[must_use]
    pub fn too_many_connections() -> Self {
        Self::fatal("53300", "Unable to accept connection, too many open connections.")
    }

    /// 28000 `FATAL` `access denied`: wrong key, region, host, action or signature. With
    /// `expired`, DSQL adds `HINT: Signature expired`.
    #[must_use]
    pub fn access_denied(expired: bool) -> Self {
        let error = Self::fatal("28000", "unable to accept connection, access denied");
        if expired { error.with_hint("Signature expired") } else { error }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity.as_str(), self.code, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (HINT: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}
