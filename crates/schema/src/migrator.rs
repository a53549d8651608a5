//! The migrator: brings a database to a schema version, one statement per transaction, and
//! records the version where the Temporal server reads it.
//!
//! It works on any `tokio_postgres::Client`, so it does not care whether the connection is plain
//! (the local PostgreSQL) or TLS with an IAM token (Aurora DSQL).

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{Duration, Instant};

use tdsql_reservoir::retry::classify;
use tdsql_reservoir::{RetryConfig, RetryError, RetryPolicy};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::bookkeeping::{self, LOCK_TABLE_NAME, NOW_UTC};
use crate::catalog::{Catalog, Drift, ModelError};
use crate::ddl::{self, Definition};
use crate::dialect::Dialect;
use crate::manifest::{Schema, SchemaError, UnknownVersion};
use crate::split::{self, Statement};
use crate::version::SchemaVersion;

/// How PostgreSQL reports two sessions running the same `CREATE TABLE IF NOT EXISTS` at once: a
/// unique violation on its type catalog, or the table or its row type already existing.
const CREATE_RACE: [SqlState; 3] =
    [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_TABLE, SqlState::DUPLICATE_OBJECT];

/// How a migrator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SQL dialect of the database.
    pub dialect: Dialect,
    /// The `db_name` of the version rows: the server's `databaseName` (`postgres` on DSQL).
    pub db_name: String,
    /// Who this migrator is in the lock row (default: `host:pid:nonce`).
    pub holder: String,
    /// How long the lock lease lasts without renewal; a dead migrator's lock frees itself after it.
    pub lock_ttl: Duration,
    /// How long to wait for another migrator's lock before giving up.
    pub lock_wait: Duration,
    /// OCC retry of every statement and bookkeeping transaction (DSQL reports a catalog change
    /// by another session, such as a finished index job, as OC001).
    pub retry: RetryPolicy,
}

impl Options {
    /// Defaults for `dialect`: db_name `postgres`, a 60 s lease, waiting up to 2 minutes.
    #[must_use]
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            db_name: "postgres".to_owned(),
            holder: default_holder(),
            lock_ttl: Duration::from_secs(60),
            lock_wait: Duration::from_secs(120),
            retry: RetryPolicy::new(RetryConfig::default()).expect("the default retry settings are valid"),
        }
    }
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Install the schema up to `version` (default: the latest). With `overwrite`, drop every
    /// table first.
    Setup {
        /// Target version; `None` is the latest.
        version: Option<SchemaVersion>,
        /// Drop all tables first.
        overwrite: bool,
    },
    /// Apply the versions after the installed one, up to `version` (default: the latest).
    Update {
        /// Target version; `None` is the latest.
        version: Option<SchemaVersion>,
    },
}

/// One statement the migrator will run, in its own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The statement in the chosen dialect.
    pub sql: String,
    /// Its line in the version's SQL file.
    pub line: usize,
    /// On DSQL, the asynchronous index whose job is awaited after the statement.
    pub awaits_index: Option<String>,
}

/// The statements of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVersion {
    /// The version these statements install.
    pub version: SchemaVersion,
    /// The version before it (`None`: nothing installed).
    pub from: Option<SchemaVersion>,
    /// The manifest's description.
    pub description: String,
    /// The statements, in order.
    pub steps: Vec<Step>,
}

/// A run that did not finish, as recorded in the lock row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The version that was being applied.
    pub version: String,
    /// The db_name of that run.
    pub db_name: Option<String>,
    /// When it started (UTC).
    pub started_at: Option<String>,
    /// The error it stopped with, when it recorded one (a killed run records none).
    pub last_error: Option<String>,
}

/// Everything a run would do, computed without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The dialect of the statements.
    pub dialect: Dialect,
    /// The db_name the version rows are written for.
    pub db_name: String,
    /// The installed version (`None`: none).
    pub installed: Option<SchemaVersion>,
    /// The version the run ends at.
    pub target: SchemaVersion,
    /// Tables dropped first (`setup --overwrite`).
    pub drop_tables: Vec<String>,
    /// A run that did not finish and that this one completes.
    pub resumes: Option<Unfinished>,
    /// The versions to apply, in order.
    pub versions: Vec<PlannedVersion>,
}

impl Plan {
    /// Whether the run has nothing to do.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.versions.is_empty() && self.drop_tables.is_empty()
    }

    /// How many schema statements the run executes.
    #[must_use]
    pub fn statement_count(&self) -> usize {
        self.versions.iter().map(|v| v.steps.len()).sum()
    }
}

impl fmt::Display for Plan {
    /// The plan as a SQL script: every statement the run executes, each in its own transaction,
    /// with the bookkeeping it does in comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let installed = self.installed.map_or_else(|| "none".to_owned(), |v| v.to_string());
        writeln!(
            f,
            "-- dialect {}, db_name {}: installed {installed}, target {}",
            self.dialect, self.db_name, self.target
        )?;
        if self.is_noop() {
            return writeln!(f, "-- nothing to do: the schema is at {installed}");
        }
        writeln!(
            f,
            "-- each statement runs in its own transaction, under the lock row in {LOCK_TABLE_NAME}"
        )?;
        if let Some(unfinished) = &self.resumes {
            writeln!(f, "-- completes an unfinished run of {}", unfinished.version)?;
        }
        for table in &self.drop_tables {
            writeln!(f, "DROP TABLE IF EXISTS {};", quote_ident(table))?;
        }
        for table in bookkeeping::TABLES {
            writeln!(f, "{table};")?;
        }
        for version in &self.versions {
            writeln!(f, "\n-- schema {}: {}", version.version, version.description)?;
            for step in &version.steps {
                writeln!(f, "{};", step.sql)?;
                if let Some(index) = &step.awaits_index {
                    writeln!(
                        f,
                        "-- then wait for the job of index {index}: CALL sys.wait_for_job('<job_id>');"
                    )?;
                }
            }
            let from = version.from.map_or_else(|| "0".to_owned(), |v| v.to_string());
            writeln!(
                f,
                "-- then record {} in schema_version (db_name {}) and schema_update_history ({from} -> {})",
                version.version, self.db_name, version.version
            )?;
        }
        Ok(())
    }
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Nothing to do: the installed version is already at (or past) the target.
    UpToDate {
        /// The installed version.
        installed: SchemaVersion,
    },
    /// Versions were applied.
    Applied {
        /// The version before the run (`None`: none).
        from: Option<SchemaVersion>,
        /// The version after it.
        to: SchemaVersion,
        /// How many schema statements ran.
        statements: usize,
        /// How many tables were dropped first.
        dropped: usize,
    },
}

/// Progress of a run, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Another migrator holds the lock; this one waits.
    LockWaiting {
        /// Who holds it.
        holder: String,
        /// When its lease runs out if it is not renewed.
        expires_in: Duration,
    },
    /// The lock of a migrator whose process is gone (same host) was taken over.
    LockTakenOver {
        /// The dead holder.
        previous: String,
    },
    /// A table is being dropped (`--overwrite`).
    Dropping {
        /// The table.
        table: String,
    },
    /// A version starts.
    VersionStarted {
        /// The version.
        version: SchemaVersion,
        /// How many statements it has.
        statements: usize,
    },
    /// A statement is about to run.
    Statement {
        /// Its version.
        version: SchemaVersion,
        /// 1-based position in the version.
        number: usize,
        /// Statements in the version.
        total: usize,
        /// Its first line.
        summary: String,
    },
    /// An asynchronous index job was submitted (DSQL) and is being awaited.
    IndexJobWaiting {
        /// The index.
        index: String,
        /// The job.
        job_id: String,
    },
    /// An index job finished.
    IndexJobDone {
        /// The index.
        index: String,
        /// How long the wait took.
        waited: Duration,
    },
    /// A version was recorded in `schema_version`.
    VersionRecorded {
        /// The version.
        version: SchemaVersion,
    },
}

/// An index job still running (DSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexJob {
    /// The job id.
    pub job_id: String,
    /// Its status as `sys.jobs` reports it.
    pub status: String,
    /// Its details, if any.
    pub details: Option<String>,
}

/// The lock row as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct LockState {
    /// Who holds it (`None`: free).
    pub holder: Option<String>,
    /// Seconds until the lease runs out (negative: expired).
    pub expires_in_secs: Option<f64>,
    /// The run's progress.
    pub unfinished: Option<Unfinished>,
}

/// Installed vs expected, and anything unfinished.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The db_name looked at.
    pub db_name: String,
    /// The installed version (`None`: none).
    pub installed: Option<SchemaVersion>,
    /// The installed minimum compatible version.
    pub min_compatible: Option<SchemaVersion>,
    /// The newest embedded version: what the server expects.
    pub expected: SchemaVersion,
    /// The lock row, when the lock table exists.
    pub lock: Option<LockState>,
    /// Index jobs not finished yet (DSQL; always empty on PostgreSQL).
    pub pending_jobs: Vec<IndexJob>,
}

/// Why a migration step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The embedded schema itself is broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A version that does not exist was asked for.
    #[error(transparent)]
    UnknownVersion(#[from] UnknownVersion),
    /// The embedded schema cannot be modelled for `verify`.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A database call failed.
    #[error("{action}{}", sqlstate_suffix(.source))]
    Database {
        /// What the migrator was doing.
        action: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `update` on a database with no schema.
    #[error(
        "no schema is installed for db_name `{db_name}` (no row in schema_version); run `cargo xtask schema setup` first"
    )]
    NotInstalled {
        /// The db_name looked up.
        db_name: String,
    },
    /// `setup` on a database that has tables but no version row.
    #[error(
        "the database already has {} table(s) ({}) but no schema_version row for db_name `{db_name}`: it was \
         not set up by this migrator; `cargo xtask schema setup --overwrite` drops them and starts over",
        .tables.len(), preview(.tables)
    )]
    ForeignTables {
        /// The db_name looked up.
        db_name: String,
        /// The tables found.
        tables: Vec<String>,
    },
    /// Another migrator kept the lock for longer than this one waits.
    #[error(
        "another migrator (`{holder}`) is changing the schema: waited {}s for its lock in {LOCK_TABLE_NAME}; \
         run again when it is done (if it died, its lock expires in {}s)",
        .waited.as_secs(), expires_in_secs.max(0.0).ceil()
    )]
    LockHeld {
        /// Who holds the lock.
        holder: String,
        /// How long this migrator waited.
        waited: Duration,
        /// When the lock expires if its holder stopped renewing it.
        expires_in_secs: f64,
    },
    /// The lease ran out and another migrator took the lock.
    #[error(
        "this migrator lost the schema lock (its lease expired and another migrator took it); nothing \
         more was recorded; run again to complete the schema"
    )]
    LostLock,
    /// A DSQL index job failed.
    #[error("index {index}: job {job_id} failed{}", .details.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    IndexJobFailed {
        /// The index.
        index: String,
        /// The job.
        job_id: String,
        /// What `sys.jobs` says.
        details: Option<String>,
    },
}

impl MigrateError {
    /// The SQLSTATE of a database error, if this is one.
    #[must_use]
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            MigrateError::Database { source, .. } => source.code(),
            _ => None,
        }
    }
}

fn sqlstate_suffix(error: &tokio_postgres::Error) -> String {
    error.code().map(|c| format!(" (SQLSTATE {})", c.code())).unwrap_or_default()
}

fn preview(tables: &[String]) -> String {
    let mut shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    if tables.len() > 5 {
        shown.push("…");
    }
    shown.join(", ")
}

fn db(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MigrateError {
    let action = action.into();
    move |source| MigrateError::Database { action, source }
}

/// A callback that receives [`Event`]s.
pub type Observer<'a> = Box<dyn FnMut(&Event) + Send + Sync + 'a>;

/// Applies, plans, inspects and verifies the embedded schema on one connection.
pub struct Migrator<'a> {
    client: &'a Client,
    schema: &'a Schema,
    options: Options,
    observer: Observer<'a>,
}

impl fmt::Debug for Migrator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator").field("options", &self.options).finish_non_exhaustive()
    }
}

/// The lease this migrator holds.
struct Lease {
    renewed: Instant,
}

impl<'a> Migrator<'a> {
    /// A migrator for the embedded schema on `client`.
    ///
    /// # Errors
    /// [`SchemaError`] when the embedded schema is broken.
    pub fn new(client: &'a Client, options: Options) -> Result<Self, SchemaError> {
        Ok(Self::with_schema(client, Schema::embedded()?, options))
    }

    /// A migrator for `schema` on `client`.
    #[must_use]
    pub fn with_schema(client: &'a Client, schema: &'a Schema, options: Options) -> Self {
        Self { client, schema, options, observer: Box::new(|_| {}) }
    }

    /// Sends progress to `observer`.
    #[must_use]
    pub fn observe(mut self, observer: impl FnMut(&Event) + Send + Sync + 'a) -> Self {
        self.observer = Box::new(observer);
        self
    }

    /// The schema this migrator applies.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// The options in force.
    #[must_use]
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn emit(&mut self, event: Event) {
        (self.observer)(&event);
    }

    /// Runs one autocommit statement or one whole transaction, again on an OCC conflict.
    async fn retried<T, F, Fut>(&self, action: impl FnOnce() -> String, attempt: F) -> Result<T, MigrateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.options.retry.run("schema migration", attempt).await.map_err(|error| {
            let mut action = action();
            if let RetryError::Exhausted { attempts, .. } = &error {
                action.push_str(&format!(" (still conflicting after {attempts} attempts)"));
            }
            MigrateError::Database { action, source: error.into_inner() }
        })
    }

    /// A query whose missing table means "nothing there yet" (`None`).
    async fn query_if_exists(
        &self,
        action: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Vec<Row>>, MigrateError> {
        let rows = self.retried(|| action.to_owned(), || self.client.query(sql, params)).await;
        match rows {
            Ok(rows) => Ok(Some(rows)),
            Err(e) if e.sqlstate() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The installed version and the minimum compatible one, read the way the server reads it;
    /// `None` when the version table or the row is missing.
    ///
    /// # Errors
    /// Any database error other than a missing table.
    pub async fn installed(&self) -> Result<Option<(SchemaVersion, Option<SchemaVersion>)>, MigrateError> {
        let Some(rows) = self
            .query_if_exists(
                "reading schema_version",
                "SELECT curr_version, min_compatible_version FROM schema_version \
                 WHERE version_partition = 0 AND db_name = $1",
                &[&self.options.db_name],
            )
            .await?
        else {
            return Ok(None);
        };
        let Some(row) = rows.first() else { return Ok(None) };
        let current: Option<String> = row.get(0);
        let min: Option<String> = row.get(1);
        let parse = |v: Option<String>| v.and_then(|s| s.parse::<SchemaVersion>().ok());
        Ok(parse(current).map(|c| (c, parse(min))))
    }

    /// The lock row; `None` when the lock table does not exist yet.
    ///
    /// # Errors
    /// Any database error other than a missing table.
    pub async fn lock_state(&self) -> Result<Option<LockState>, MigrateError> {
        let sql = format!(
            "SELECT holder, EXTRACT(EPOCH FROM (expires_at - {NOW_UTC}))::float8, db_name, \
                    applying_version, started_at::text, last_error \
             FROM {LOCK_TABLE_NAME} WHERE lock_partition = 0"
        );
        let Some(rows) = self.query_if_exists(&format!("reading {LOCK_TABLE_NAME}"), &sql, &[]).await? else {
            return Ok(None);
        };
        let Some(row) = rows.first() else {
            return Ok(Some(LockState { holder: None, expires_in_secs: None, unfinished: None }));
        };
        let applying: Option<String> = row.get(3);
        Ok(Some(LockState {
            holder: row.get(0),
            expires_in_secs: row.get(1),
            unfinished: applying.map(|version| Unfinished {
                version,
                db_name: row.get(2),
                started_at: row.get(4),
                last_error: row.get(5),
            }),
        }))
    }

    /// Installed vs expected version, the lock and progress row, and unfinished index jobs.
    ///
    /// # Errors
    /// A database error.
    pub async fn status(&self) -> Result<Status, MigrateError> {
        let installed = self.installed().await?;
        let lock = self.lock_state().await?;
        let pending_jobs = match self.options.dialect {
            Dialect::Postgres => Vec::new(),
            Dialect::Dsql => self.pending_jobs().await?,
        };
        Ok(Status {
            db_name: self.options.db_name.clone(),
            installed: installed.map(|(v, _)| v),
            min_compatible: installed.and_then(|(_, m)| m),
            expected: self.schema.latest(),
            lock,
            pending_jobs,
        })
    }

    async fn pending_jobs(&self) -> Result<Vec<IndexJob>, MigrateError> {
        let sql = "SELECT job_id::text, status::text, details::text FROM sys.jobs \
                   WHERE lower(status::text) NOT IN ('completed', 'failed', 'cancelled')";
        let rows = self.retried(|| "reading sys.jobs".to_owned(), || self.client.query(sql, &[])).await?;
        Ok(rows.iter().map(|r| IndexJob { job_id: r.get(0), status: r.get(1), details: r.get(2) }).collect())
    }

    fn target(&self, version: Option<SchemaVersion>) -> Result<SchemaVersion, MigrateError> {
        match version {
            Some(v) => Ok(self.schema.find(v)?.version()),
            None => Ok(self.schema.latest()),
        }
    }

    /// Everything `request` would do, without writing anything (not even the version tables).
    ///
    /// # Errors
    /// An unknown version, a database in a state the request refuses, or a database error.
    pub async fn plan(&self, request: Request) -> Result<Plan, MigrateError> {
        let installed = self.installed().await?.map(|(v, _)| v);
        let resumes = self.lock_state().await?.and_then(|l| l.unfinished);
        let (version, overwrite) = match request {
            Request::Setup { version, overwrite } => (version, overwrite),
            Request::Update { version } => (version, false),
        };
        let target = self.target(version)?;
        let mut plan = Plan {
            dialect: self.options.dialect,
            db_name: self.options.db_name.clone(),
            installed,
            target,
            drop_tables: Vec::new(),
            resumes: None,
            versions: Vec::new(),
        };
        let from = if overwrite {
            plan.drop_tables = self.tables().await?.into_iter().filter(|t| t != LOCK_TABLE_NAME).collect();
            None
        } else {
            if installed.is_some_and(|i| i >= target) {
                return Ok(plan);
            }
            match request {
                Request::Update { .. } if installed.is_none() && resumes.is_none() => {
                    return Err(MigrateError::NotInstalled { db_name: self.options.db_name.clone() });
                }
                Request::Setup { .. } if installed.is_none() && resumes.is_none() => {
                    let foreign: Vec<String> = self
                        .tables()
                        .await?
                        .into_iter()
                        .filter(|t| !bookkeeping::TABLE_NAMES.contains(&t.as_str()))
                        .collect();
                    if !foreign.is_empty() {
                        return Err(MigrateError::ForeignTables {
                            db_name: self.options.db_name.clone(),
                            tables: foreign,
                        });
                    }
                }
                _ => {}
            }
            plan.resumes = resumes;
            installed
        };
        plan.versions = planned_versions(self.schema, self.options.dialect, from, target);
        Ok(plan)
    }

    /// The plan of `setup` on an empty database, computed without any connection (for a DSQL
    /// cluster that does not exist yet, or to read the statements of a dialect).
    ///
    /// # Errors
    /// [`UnknownVersion`] listing the known versions.
    pub fn plan_fresh(
        schema: &Schema,
        options: &Options,
        version: Option<SchemaVersion>,
    ) -> Result<Plan, UnknownVersion> {
        let target = match version {
            Some(v) => schema.find(v)?.version(),
            None => schema.latest(),
        };
        Ok(Plan {
            dialect: options.dialect,
            db_name: options.db_name.clone(),
            installed: None,
            target,
            drop_tables: Vec::new(),
            resumes: None,
            versions: planned_versions(schema, options.dialect, None, target),
        })
    }

    async fn tables(&self) -> Result<Vec<String>, MigrateError> {
        let sql = "SELECT table_name::text FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name";
        let rows = self.retried(|| "listing tables".to_owned(), || self.client.query(sql, &[])).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Runs `request`: a no-op (that says so) when the schema is already there; otherwise takes
    /// the lock, applies each pending version one statement per transaction, records it, and
    /// releases the lock. A run that stopped half-way is completed by running again.
    ///
    /// # Errors
    /// See [`MigrateError`]; on failure the lock row records the error and the version being
    /// applied, and the version table is left at the last fully applied version.
    pub async fn run(&mut self, request: Request) -> Result<Outcome, MigrateError> {
        // Read-only first: a re-run that has nothing to do writes nothing and takes no lock.
        let plan = self.plan(request).await?;
        if plan.is_noop() {
            return Ok(Outcome::UpToDate { installed: plan.installed.unwrap_or(plan.target) });
        }
        for table in bookkeeping::TABLES {
            self.create_bookkeeping_table(table).await?;
        }
        let mut lease = self.acquire().await?;
        let result = self.run_locked(request, &mut lease).await;
        let error = result.as_ref().err().map(ToString::to_string);
        let released = self.release(error.as_deref()).await;
        let outcome = result?;
        released?;
        Ok(outcome)
    }

    async fn run_locked(&mut self, request: Request, lease: &mut Lease) -> Result<Outcome, MigrateError> {
        // Plan again under the lock: another migrator may have finished meanwhile.
        let plan = self.plan(request).await?;
        if plan.is_noop() {
            return Ok(Outcome::UpToDate { installed: plan.installed.unwrap_or(plan.target) });
        }
        for table in &plan.drop_tables {
            self.emit(Event::Dropping { table: table.clone() });
            self.renew_if_due(lease).await?;
            let sql = format!("DROP TABLE IF EXISTS {}", quote_ident(table));
            self.retried(|| format!("dropping table {table}"), || self.client.batch_execute(&sql)).await?;
        }
        if !plan.drop_tables.is_empty() {
            for table in bookkeeping::TABLES {
                self.create_bookkeeping_table(table).await?;
            }
        }
        let mut statements = 0;
        for version in &plan.versions {
            self.start_version(version.version, plan.target).await?;
            let total = version.steps.len();
            self.emit(Event::VersionStarted { version: version.version, statements: total });
            for (i, step) in version.steps.iter().enumerate() {
                self.renew_if_due(lease).await?;
                self.emit(Event::Statement {
                    version: version.version,
                    number: i + 1,
                    total,
                    summary: step.sql.lines().next().unwrap_or_default().to_owned(),
                });
                self.execute(version.version, step).await?;
                statements += 1;
            }
            if self.options.dialect == Dialect::Dsql {
                self.wait_for_leftover_jobs().await?;
            }
            self.record_version(version).await?;
            lease.renewed = Instant::now();
            self.emit(Event::VersionRecorded { version: version.version });
        }
        Ok(Outcome::Applied {
            from: plan.installed.filter(|_| plan.drop_tables.is_empty()),
            to: plan.target,
            statements,
            dropped: plan.drop_tables.len(),
        })
    }

    async fn execute(&mut self, version: SchemaVersion, step: &Step) -> Result<(), MigrateError> {
        let action =
            || format!("schema {version}, statement on line {}: `{}`", step.line, summary(&step.sql));
        let messages = self.retried(action, || self.client.simple_query(&step.sql)).await?;
        let Some(index) = &step.awaits_index else { return Ok(()) };
        // CREATE INDEX ASYNC returns the job id; IF NOT EXISTS on an existing index returns none.
        let job_id = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                let named = row.try_get("job_id").ok().flatten();
                named.or_else(|| row.try_get(0).ok().flatten()).map(str::to_owned)
            }
            _ => None,
        });
        let Some(job_id) = job_id else { return Ok(()) };
        self.emit(Event::IndexJobWaiting { index: index.clone(), job_id: job_id.clone() });
        let started = Instant::now();
        self.wait_for_job(index, &job_id).await?;
        self.emit(Event::IndexJobDone { index: index.clone(), waited: started.elapsed() });
        Ok(())
    }

    /// Waits for index jobs a killed run left behind: re-running `CREATE INDEX ASYNC IF NOT EXISTS`
    /// on such an index returns no job to wait on, and a version is only recorded once its
    /// indexes are built. Best effort: if `sys.jobs` cannot be read, the jobs this run submitted
    /// were already awaited one by one.
    async fn wait_for_leftover_jobs(&mut self) -> Result<(), MigrateError> {
        let Ok(jobs) = self.pending_jobs().await else { return Ok(()) };
        for job in jobs {
            let index = format!("(job left by an earlier run, {})", job.status);
            self.emit(Event::IndexJobWaiting { index: index.clone(), job_id: job.job_id.clone() });
            let started = Instant::now();
            self.wait_for_job(&index, &job.job_id).await?;
            self.emit(Event::IndexJobDone { index, waited: started.elapsed() });
        }
        Ok(())
    }

    /// Blocks on `sys.wait_for_job`, then reads the job's outcome from `sys.jobs`; a job that did
    /// not complete is an error with its details. DSQL's `sys.wait_for_job` is a procedure: a
    /// `SELECT` of it fails there with 42809, so it is `CALL`ed (recorded on a real cluster).
    async fn wait_for_job(&self, index: &str, job_id: &str) -> Result<(), MigrateError> {
        let wait = format!("CALL sys.wait_for_job({})", quote_literal(job_id));
        self.retried(
            || format!("waiting for the job {job_id} of index {index}"),
            || self.client.simple_query(&wait),
        )
        .await?;
        let outcome = format!(
            "SELECT status::text, details::text FROM sys.jobs WHERE job_id::text = {}",
            quote_literal(job_id)
        );
        let rows = self
            .retried(
                || format!("reading the outcome of the job {job_id} of index {index}"),
                || self.client.simple_query(&outcome),
            )
            .await?;
        let outcome = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let (status, details) = outcome
            .map_or((None, None), |row| (row.get(0).map(str::to_owned), row.get(1).map(str::to_owned)));
        if status.as_deref() == Some("completed") {
            return Ok(());
        }
        let details = details.or_else(|| status.map(|s| format!("status {s}")));
        Err(MigrateError::IndexJobFailed { index: index.to_owned(), job_id: job_id.to_owned(), details })
    }

    /// Creates one of the migrator's tables; tolerates another migrator creating it at the same
    /// moment (`CREATE_RACE`): the next `IF NOT EXISTS` then finds the table.
    async fn create_bookkeeping_table(&self, sql: &str) -> Result<(), MigrateError> {
        let mut attempt = 0;
        loop {
            match self
                .retried(|| "creating the migrator's tables".to_owned(), || self.client.batch_execute(sql))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 && e.sqlstate().is_some_and(|c| CREATE_RACE.contains(c)) => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the lock, waiting up to `lock_wait` for another holder.
    async fn acquire(&mut self) -> Result<Lease, MigrateError> {
        let started = Instant::now();
        let ttl = format!("{} milliseconds", self.options.lock_ttl.as_millis());
        loop {
            let taken = self
                .client
                .execute(
                    &format!(
                        "INSERT INTO {LOCK_TABLE_NAME} AS l (lock_partition, holder, acquired_at, expires_at) \
                         VALUES (0, $1, {NOW_UTC}, {NOW_UTC} + $2::text::interval) \
                         ON CONFLICT (lock_partition) DO UPDATE \
                         SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at \
                         WHERE l.holder IS NULL OR l.expires_at < {NOW_UTC}"
                    ),
                    &[&self.options.holder, &ttl],
                )
                .await;
            match taken {
                Ok(1) => return Ok(Lease { renewed: Instant::now() }),
                Ok(_) => {}
                // Two takers raced on the row (DSQL reports it at commit as OC000): look again.
                Err(e) if classify(&e).is_retryable() && started.elapsed() < self.options.lock_wait => {
                    tokio::time::sleep(Duration::from_millis(20 + jitter_millis(80))).await;
                    continue;
                }
                Err(e) => return Err(db("taking the schema lock")(e)),
            }
            let state = self.lock_state().await?.unwrap_or(LockState {
                holder: None,
                expires_in_secs: None,
                unfinished: None,
            });
            let Some(holder) = state.holder else { continue };
            let expires_in_secs = state.expires_in_secs.unwrap_or(0.0);
            if holder_is_dead(&holder) && self.take_over(&holder, &ttl).await? {
                self.emit(Event::LockTakenOver { previous: holder });
                return Ok(Lease { renewed: Instant::now() });
            }
            let waited = started.elapsed();
            if waited >= self.options.lock_wait {
                return Err(MigrateError::LockHeld { holder, waited, expires_in_secs });
            }
            self.emit(Event::LockWaiting {
                holder,
                expires_in: Duration::from_secs_f64(expires_in_secs.max(0.0)),
            });
            let pause = Duration::from_millis(150 + jitter_millis(200)).min(self.options.lock_wait - waited);
            tokio::time::sleep(pause).await;
        }
    }

    async fn take_over(&self, previous: &str, ttl: &str) -> Result<bool, MigrateError> {
        let sql = format!(
            "UPDATE {LOCK_TABLE_NAME} SET holder = $1, acquired_at = {NOW_UTC}, \
             expires_at = {NOW_UTC} + $2::text::interval WHERE lock_partition = 0 AND holder = $3"
        );
        let params: [&(dyn ToSql + Sync); 3] = [&self.options.holder, &ttl, &previous];
        let taken = self
            .retried(|| "taking over the schema lock".to_owned(), || self.client.execute(&sql, &params))
            .await?;
        Ok(taken == 1)
    }

    /// Extends the lease when a third of it is used; a lease that was taken over is an error.
    async fn renew_if_due(&self, lease: &mut Lease) -> Result<(), MigrateError> {
        if lease.renewed.elapsed() < self.options.lock_ttl / 3 {
            return Ok(());
        }
        let ttl = format!("{} milliseconds", self.options.lock_ttl.as_millis());
        let sql = format!(
            "UPDATE {LOCK_TABLE_NAME} SET expires_at = {NOW_UTC} + $2::text::interval \
             WHERE lock_partition = 0 AND holder = $1"
        );
        let params: [&(dyn ToSql + Sync); 2] = [&self.options.holder, &ttl];
        let renewed = self
            .retried(|| "renewing the schema lock".to_owned(), || self.client.execute(&sql, &params))
            .await?;
        if renewed != 1 {
            return Err(MigrateError::LostLock);
        }
        lease.renewed = Instant::now();
        Ok(())
    }

    /// Records in the lock row which version is being applied (fenced by the holder).
    async fn start_version(&self, version: SchemaVersion, target: SchemaVersion) -> Result<(), MigrateError> {
        let ttl = format!("{} milliseconds", self.options.lock_ttl.as_millis());
        let sql = format!(
            "UPDATE {LOCK_TABLE_NAME} SET applying_version = $2, target_version = $3, db_name = $4, \
             started_at = {NOW_UTC}, last_error = NULL, expires_at = {NOW_UTC} + $5::text::interval \
             WHERE lock_partition = 0 AND holder = $1"
        );
        let (version, target) = (version.to_string(), target.to_string());
        let params: [&(dyn ToSql + Sync); 5] =
            [&self.options.holder, &version, &target, &self.options.db_name, &ttl];
        let updated = self
            .retried(
                || "recording progress in the lock row".to_owned(),
                || self.client.execute(&sql, &params),
            )
            .await?;
        if updated == 1 { Ok(()) } else { Err(MigrateError::LostLock) }
    }

    /// Writes the version rows and clears the progress, in one DML-only transaction that only
    /// commits while this migrator still holds the lock.
    async fn record_version(&mut self, version: &PlannedVersion) -> Result<(), MigrateError> {
        let change_set = self.schema.find(version.version)?;
        let manifest = &change_set.manifest;
        let ttl = format!("{} milliseconds", self.options.lock_ttl.as_millis());
        let old = version.from.map_or_else(|| "0".to_owned(), |v| v.to_string());
        let description: String = manifest.description.chars().take(255).collect();
        let (new, min) = (manifest.curr_version.to_string(), manifest.min_compatible_version.to_string());
        // A `&Client` cannot open a `Transaction` (that needs `&mut`), so BEGIN/COMMIT by hand.
        let client = self.client;
        let record = || async {
            client.batch_execute("BEGIN").await?;
            let fenced = client
                .execute(
                    &format!(
                        "UPDATE {LOCK_TABLE_NAME} SET applying_version = NULL, target_version = NULL, \
                         started_at = NULL, last_error = NULL, expires_at = {NOW_UTC} + $2::text::interval \
                         WHERE lock_partition = 0 AND holder = $1"
                    ),
                    &[&self.options.holder, &ttl],
                )
                .await?;
            if fenced != 1 {
                return Ok(false);
            }
            client
                .execute(
                    &format!(
                        "INSERT INTO schema_version \
                         (version_partition, db_name, creation_time, curr_version, min_compatible_version) \
                         VALUES (0, $1, {NOW_UTC}, $2, $3) \
                         ON CONFLICT (version_partition, db_name) DO UPDATE SET creation_time = EXCLUDED.creation_time, \
                         curr_version = EXCLUDED.curr_version, min_compatible_version = EXCLUDED.min_compatible_version"
                    ),
                    &[&self.options.db_name, &new, &min],
                )
                .await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO schema_update_history \
                         (version_partition, year, month, update_time, old_version, new_version, manifest_md5, description) \
                         VALUES (0, EXTRACT(YEAR FROM {NOW_UTC})::int, EXTRACT(MONTH FROM {NOW_UTC})::int, {NOW_UTC}, \
                                 $1, $2, $3, $4)"
                    ),
                    &[&old, &new, &change_set.manifest_md5, &description],
                )
                .await?;
            client.batch_execute("COMMIT").await?;
            Ok(true)
        };
        let attempt = || async {
            let outcome = record().await;
            if !matches!(outcome, Ok(true)) {
                // Leave no transaction open on the session; a failed ROLLBACK changes nothing here.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            outcome
        };
        let fenced = self
            .retried(|| format!("recording version {} in schema_version", version.version), attempt)
            .await?;
        if fenced { Ok(()) } else { Err(MigrateError::LostLock) }
    }

    /// Frees the lock; when the run failed, records why next to the version being applied.
    async fn release(&self, error: Option<&str>) -> Result<(), MigrateError> {
        let error: Option<String> = error.map(|e| e.chars().take(1024).collect());
        let sql = format!(
            "UPDATE {LOCK_TABLE_NAME} SET holder = NULL, expires_at = NULL, \
             last_error = COALESCE($2, last_error) WHERE lock_partition = 0 AND holder = $1"
        );
        let params: [&(dyn ToSql + Sync); 2] = [&self.options.holder, &error];
        self.retried(|| "releasing the schema lock".to_owned(), || self.client.execute(&sql, &params))
            .await?;
        Ok(())
    }

    /// Compares the live catalog with the embedded schema at `version` (default: the installed
    /// version, else the latest), including the version tables; empty means no drift.
    ///
    /// # Errors
    /// An unknown version or a database error.
    pub async fn verify(&self, version: Option<SchemaVersion>) -> Result<Vec<Drift>, MigrateError> {
        let version = match version {
            Some(v) => self.target(Some(v))?,
            None => self.installed().await?.map_or(self.schema.latest(), |(v, _)| v),
        };
        let expected = self.expected_catalog(version)?;
        let live = self.retried(|| "reading the catalog".to_owned(), || Catalog::read(self.client)).await?;
        Ok(expected.diff(&live))
    }

    /// The catalog the embedded schema declares at `version`, with the version tables.
    ///
    /// # Errors
    /// When a statement of the schema cannot be modelled.
    pub fn expected_catalog(&self, version: SchemaVersion) -> Result<Catalog, MigrateError> {
        let mut statements: Vec<Statement> = Vec::new();
        for sql in [bookkeeping::SCHEMA_VERSION_TABLE, bookkeeping::UPDATE_HISTORY_TABLE] {
            statements.extend(split::split(sql).map_err(|source| SchemaError::Split {
                dir: "(migrator)".to_owned(),
                file: "version tables".to_owned(),
                source,
            })?);
        }
        for change_set in self.schema.range(None, version) {
            statements.extend(change_set.statements.iter().cloned());
        }
        Ok(Catalog::from_statements(&statements)?)
    }
}

/// The statements of every version in `(from, target]`, rendered for `dialect`.
fn planned_versions(
    schema: &Schema,
    dialect: Dialect,
    from: Option<SchemaVersion>,
    target: SchemaVersion,
) -> Vec<PlannedVersion> {
    let mut previous = from;
    let mut versions = Vec::new();
    for change_set in schema.range(from, target) {
        let steps = change_set.statements.iter().map(|s| step(dialect, s)).collect();
        versions.push(PlannedVersion {
            version: change_set.version(),
            from: previous,
            description: change_set.manifest.description.clone(),
            steps,
        });
        previous = Some(change_set.version());
    }
    versions
}

fn step(dialect: Dialect, statement: &Statement) -> Step {
    let awaits_index = match (dialect, ddl::parse_definition(&statement.text)) {
        (Dialect::Dsql, Ok(Some(Definition::Index(index)))) if index.is_async => Some(index.name),
        _ => None,
    };
    Step { sql: dialect.render(&statement.text), line: statement.line, awaits_index }
}

fn summary(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 80 { format!("{}…", flat.chars().take(80).collect::<String>()) } else { flat }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn jitter_millis(max: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish() % max.max(1)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// `host:pid:nonce`: unique per migrator, and says where a stale lock came from.
fn default_holder() -> String {
    let nonce = jitter_millis(1 << 32);
    format!("{}:{}:{nonce:08x}", hostname(), std::process::id())
}

/// Whether `holder` names a process on this host that no longer exists (Linux `/proc` only).
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (Some(_nonce), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_from_this_live_process_is_not_dead() {
        let holder = default_holder();
        assert!(holder.starts_with(&format!("{}:{}:", hostname(), std::process::id())), "{holder}");
        assert!(!holder_is_dead(&holder));
        assert!(!holder_is_dead("some-other-host:1:abc"));
        assert!(holder_is_dead(&format!("{}:{}:abc", hostname(), u32::MAX - 1)));
    }

    #[test]
    fn summaries_are_one_short_line() {
        assert_eq!(summary("CREATE TABLE t (\n  a INT\n)"), "CREATE TABLE t ( a INT )");
        assert!(summary(&"x ".repeat(100)).ends_with('…'));
    }
}
