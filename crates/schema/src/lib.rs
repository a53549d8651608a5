//! The Temporal-on-DSQL schema, embedded, and its migrator.
//!
//! * [`Schema::embedded`]: the versioned SQL (`sql/temporal/versioned/v*/`), each version with a
//!   Temporal-format manifest and a pinned checksum.
//! * [`split()`]: a statement splitter that knows comments, quoting and dollar quoting.
//! * [`Dialect`]: `dsql` (the source: `CREATE INDEX ASYNC`) and `postgres` (the local stand-in).
//! * [`lint_script`] / [`lint_statements`]: what Aurora DSQL refuses, caught before it runs.
//! * [`Migrator`]: setup, update, status, plan and verify on any `tokio_postgres::Client`.
//!
//! Contract: the version rows are written where the Temporal server reads them
//! (`SELECT curr_version FROM schema_version WHERE version_partition=0 AND db_name=$1`, with
//! `db_name` the server's `databaseName`).

mod bookkeeping;
mod catalog;
mod ddl;
mod dialect;
mod lex;
mod lint;
mod manifest;
mod migrator;
mod split;
mod version;

pub use catalog::{Catalog, Drift, ModelError};
pub use ddl::{ColumnDef, IndexDef, TableDef};
pub use dialect::{Dialect, UnknownDialect};
pub use lint::{Finding, Rule, lint_script, lint_statements};
pub use manifest::{ChangeSet, Manifest, Schema, SchemaError, UnknownVersion};
pub use migrator::{
    Event, IndexJob, LockState, MigrateError, Migrator, Observer, Options, Outcome, Plan, PlannedVersion,
    Request, Status, Step, Unfinished,
};
pub use split::{SplitError, Statement, split};
pub use version::{BadVersion, SchemaVersion};
