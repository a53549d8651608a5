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
        Self::error(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        )
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

/// Statement refusals ([`crate::rules`]): the texts a real cluster answers with. Where a text was
/// not recorded on a cluster, the rules module's table marks it "inferred".
impl SqlError {
    /// 0A000 `unsupported transaction statement: SAVEPOINT` (also `RELEASE`, `ROLLBACK TO`).
    #[must_use]
    pub fn unsupported_transaction_statement(what: &str) -> Self {
        Self::error("0A000", format!("unsupported transaction statement: {what}"))
    }

    /// 0A000 `Unsupported isolation level: SERIALIZABLE` (the level in upper case).
    #[must_use]
    pub fn unsupported_isolation_level(level: &str) -> Self {
        Self::error("0A000", format!("Unsupported isolation level: {}", level.to_ascii_uppercase()))
    }

    /// 0A000 `setting configuration parameter "<name>" not supported` (`TRANSACTION`,
    /// `default_transaction_isolation`, `role`, ...).
    #[must_use]
    pub fn setting_not_supported(name: &str) -> Self {
        Self::error("0A000", format!("setting configuration parameter \"{name}\" not supported"))
    }

    /// 0A000 `<WHAT> not supported`, DSQL's short form for some statements (`CREATE TRIGGER`,
    /// `CREATE TYPE`, `ALTER TYPE`).
    #[must_use]
    pub fn not_supported(what: &str) -> Self {
        Self::error("0A000", format!("{what} not supported"))
    }

    /// 0A000 `unsupported object in <RENAME|DROP> statement` (a user type).
    #[must_use]
    pub fn unsupported_object_in(statement: &str) -> Self {
        Self::error("0A000", format!("unsupported object in {statement} statement"))
    }

    /// 0A000 `<clause> not supported for <statement>`, e.g. `TEMPORARY or TEMP table not supported
    /// for CREATE TABLE`, `CONCURRENTLY not supported for CREATE INDEX`.
    #[must_use]
    pub fn clause_not_supported(clause: &str, statement: &str) -> Self {
        Self::error("0A000", format!("{clause} not supported for {statement}"))
    }

    /// 42704 `type "<name>" does not exist` (`serial`, `bigserial`, `smallserial`).
    #[must_use]
    pub fn type_does_not_exist(name: &str) -> Self {
        Self::error("42704", format!("type \"{name}\" does not exist"))
    }

    /// 0A000 `datatype <type> not supported` (`money`, `integer[]`, `bit varying`, ...).
    #[must_use]
    pub fn datatype_not_supported(display: &str) -> Self {
        Self::error("0A000", format!("datatype {display} not supported"))
    }

    /// 0A000 `datatype <type> is not supported in a key` (`bytea` in a primary key, unique
    /// constraint or index).
    #[must_use]
    pub fn datatype_not_in_key(display: &str) -> Self {
        Self::error("0A000", format!("datatype {display} is not supported in a key"))
    }

    /// 54000 `Datatype limit greater than <n> bytes not supported for <type>`: a declared
    /// `varchar`/`char` length over DSQL's limit.
    #[must_use]
    pub fn datatype_limit(limit: u32, type_name: &str) -> Self {
        Self::error(
            "54000",
            format!("Datatype limit greater than {limit} bytes not supported for {type_name}"),
        )
    }

    /// 0A000, a `CREATE SEQUENCE` without a `CACHE` of 1 or at least 65536.
    #[must_use]
    pub fn sequence_cache() -> Self {
        Self::error(
            "0A000",
            "CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
        )
    }

    /// 0A000, an `ALTER SEQUENCE ... CACHE n` with n neither 1 nor at least 65536.
    #[must_use]
    pub fn alter_sequence_cache() -> Self {
        Self::error(
            "0A000",
            "ALTER SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
        )
    }

    /// 0A000, an identity column without a `CACHE` of 1 or at least 65536.
    #[must_use]
    pub fn identity_cache() -> Self {
        Self::error(
            "0A000",
            "identity column is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
        )
    }

    /// 0A000 `datatype <type> not supported, identity column type must be bigint`.
    #[must_use]
    pub fn identity_type(display: &str) -> Self {
        Self::error("0A000", format!("datatype {display} not supported, identity column type must be bigint"))
    }

    /// 0A000, a `CREATE INDEX` without `ASYNC`.
    #[must_use]
    pub fn index_not_async() -> Self {
        Self::error("0A000", "unsupported mode. please use CREATE INDEX ASYNC.")
    }

    /// 0A000, `ASC`/`DESC` on a key of `CREATE INDEX ASYNC`.
    #[must_use]
    pub fn index_sort_order() -> Self {
        Self::error("0A000", "specifying sort order not supported for index keys")
    }

    /// 0A000, an operator class on a key of `CREATE INDEX ASYNC`.
    #[must_use]
    pub fn index_opclass() -> Self {
        Self::error("0A000", "opclass not supported for index keys")
    }

    /// 0A000 `unsupported ALTER TABLE <what> statement` (`ADD CONSTRAINT`, `VALIDATE CONSTRAINT`,
    /// `ALTER COLUMN ... SET DATA TYPE`, ...).
    #[must_use]
    pub fn unsupported_alter_table(what: &str) -> Self {
        Self::error("0A000", format!("unsupported ALTER TABLE {what} statement"))
    }

    /// 0A000, `ALTER TABLE ... ADD COLUMN` with any inline constraint (also `DEFAULT`, `NOT NULL`,
    /// identity).
    #[must_use]
    pub fn add_column_with_constraint() -> Self {
        Self::error("0A000", "ALTER TABLE ADD COLUMN with constraint not supported")
    }

    /// 0A000 `CREATE FUNCTION with language <lang> not supported`.
    #[must_use]
    pub fn function_language(language: &str) -> Self {
        Self::error("0A000", format!("CREATE FUNCTION with language {language} not supported"))
    }

    /// 0A000 `PROCEDURE is not supported`.
    #[must_use]
    pub fn procedure() -> Self {
        Self::error("0A000", "PROCEDURE is not supported")
    }

    /// 0A000 `unsupported VACUUM statement`.
    #[must_use]
    pub fn vacuum() -> Self {
        Self::error("0A000", "unsupported VACUUM statement")
    }

    /// 0A000, `FOR SHARE` / `FOR NO KEY UPDATE`.
    #[must_use]
    pub fn locking_clause() -> Self {
        Self::error("0A000", "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported")
    }

    /// 0A000 `TABLESAMPLE clause not supported`.
    #[must_use]
    pub fn tablesample() -> Self {
        Self::error("0A000", "TABLESAMPLE clause not supported")
    }

    /// 42704 `text search configuration "<name>" does not exist`: DSQL has no text search
    /// configurations.
    #[must_use]
    pub fn text_search_configuration(name: &str) -> Self {
        Self::error("42704", format!("text search configuration \"{name}\" does not exist"))
    }

    /// 42601 `syntax error at or near "<token>"`.
    #[must_use]
    pub fn syntax_error_at(token: &str) -> Self {
        Self::error("42601", format!("syntax error at or near \"{token}\""))
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
