//! What Aurora DSQL refuses and how it classifies statements, decided on PostgreSQL's own parse
//! tree (`pg_query`, libpg_query 18) and, for the DSQL-only `ASYNC` keyword, on PostgreSQL's own
//! scanner. No regular expressions over SQL.
//!
//! [`analyze`] splits a query string into statements and gives each one its [`Kind`] (what the
//! session engine's transaction rules need), the text to send upstream (DSQL-only syntax removed)
//! and, when DSQL refuses the statement whatever the transaction state, the [`SqlError`] it
//! answers with. Run-time rules (one DDL per transaction, DDL with DML, row limits, OCC) belong
//! to the engine; [`Probe`] helps it answer a write "as if it ran".
//!
//! # Refusals
//!
//! Sources: **recorded** = responses recorded on a real cluster (repository
//! Dreamescaper/dsql-emulator, `test/conformance/golden/*.json`, 2026-09); **reference** =
//! `shared/reference/aurora-dsql-platform.md` §1 and the AWS agent skill it cites
//! (awslabs/mcp `…/dsql-skill/references/troubleshooting.md`, values observed on a cluster
//! 2026-10-01); **inferred** = no recorded text found, the closest DSQL wording (mostly DSQL's own
//! patterns: `unsupported statement: <NodeTag>`, `<clause> not supported for <statement>`,
//! `setting configuration parameter "<name>" not supported`).
//!
//! | Rule | SQLSTATE | Message | Source |
//! |---|---|---|---|
//! | `TRUNCATE` | 0A000 | `unsupported statement: Truncate` | recorded |
//! | `CREATE EXTENSION` | 0A000 | `unsupported statement: CreateExtension` | recorded |
//! | `CREATE TRIGGER` | 0A000 | `CREATE TRIGGER not supported` | recorded |
//! | `CREATE EVENT TRIGGER` | 0A000 | `unsupported statement: CreateEventTrig` | inferred |
//! | `CREATE DATABASE` | 0A000 | `unsupported statement: Createdb` | recorded |
//! | `DROP DATABASE`, `ALTER DATABASE` | 0A000 | `unsupported statement: Dropdb` / `AlterDatabase` / `AlterDatabaseSet` | inferred |
//! | `CREATE TEMP TABLE` | 0A000 | `TEMPORARY or TEMP table not supported for CREATE TABLE` | recorded |
//! | `CREATE UNLOGGED TABLE` | 0A000 | `UNLOGGED table not supported for CREATE TABLE` | recorded |
//! | `CREATE TABLE ... PARTITION BY` / `PARTITION OF` / `INHERITS` / `TABLESPACE` | 0A000 | `PARTITION BY not supported for CREATE TABLE` (resp. `PARTITION OF`, `INHERITS`, `TABLESPACE`) | inferred |
//! | `serial`, `bigserial`, `smallserial` (+ `serial2/4/8`) column | 42704 | `type "serial" does not exist` (the name written) | recorded (serial), inferred (others) |
//! | unsupported column type (`CREATE TABLE`, `ADD COLUMN`, `CREATE DOMAIN`) | 0A000 | `datatype money not supported` (PostgreSQL's display name: `bit varying`, `integer[]`) | recorded: money xml inet cidr macaddr point line lseg box path polygon circle tsvector tsquery int4range tsrange bit varbit pg_lsn int[] text[]; inferred: macaddr8, other ranges and multiranges, pg_snapshot, txid_snapshot, domain base types |
//! | `json`, `jsonb`, `bytea` and the other types above are fine as columns except where listed | – | – | recorded (types.json: json, jsonb, bytea accepted) |
//! | `bytea` / `jsonb` / `json` in a key (inline or table `PRIMARY KEY`, `UNIQUE`; an index on an existing table through [`Statement::key_type_check`]) | 0A000 | `datatype bytea is not supported in a key` | reference (bytea), inferred (jsonb seen in a third-party log, json) |
//! | `varchar(n)`, n > 65535 | 54000 | `Datatype limit greater than 65535 bytes not supported for varchar` | reference |
//! | `char(n)`, n > 4096 | 54000 | `Datatype limit greater than 4096 bytes not supported for char` | reference |
//! | identity column without `CACHE` 1 or ≥ 65536 | 0A000 | `identity column is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1` | recorded (missing), inferred (invalid value) |
//! | identity column not `bigint` | 0A000 | `datatype integer not supported, identity column type must be bigint` | recorded |
//! | `CREATE SEQUENCE` without `CACHE` 1 or ≥ 65536 | 0A000 | `CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1` | recorded (missing), inferred (invalid value) |
//! | `ALTER SEQUENCE ... CACHE n`, n invalid | 0A000 | `ALTER SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1` | inferred |
//! | `CREATE MATERIALIZED VIEW`, `CREATE TABLE AS`, `SELECT ... INTO` | 0A000 | `unsupported statement: CreateTableAs` | recorded (SELECT INTO inferred) |
//! | `REFRESH MATERIALIZED VIEW` | 0A000 | `unsupported statement: RefreshMatView` | inferred |
//! | `CREATE TYPE ... AS ENUM`, base/shell `CREATE TYPE` | 0A000 | `CREATE TYPE not supported` | recorded (enum), inferred (base/shell) |
//! | `CREATE TYPE ... AS (...)` | 0A000 | `unsupported statement: CompositeType` | recorded |
//! | `CREATE TYPE ... AS RANGE` | 0A000 | `unsupported statement: CreateRange` | recorded |
//! | `ALTER TYPE` (`ADD VALUE`, `SET`, attributes) | 0A000 | `ALTER TYPE not supported` | recorded (ADD VALUE), inferred (others) |
//! | `ALTER TYPE ... RENAME` | 0A000 | `unsupported object in RENAME statement` | recorded |
//! | `DROP TYPE` | 0A000 | `unsupported object in DROP statement` | recorded |
//! | `CREATE DOMAIN` | – | accepted | recorded (the reference says user types are refused; the probes show domains are accepted, so they pass) |
//! | `CREATE FUNCTION ... LANGUAGE <not sql>` | 0A000 | `CREATE FUNCTION with language plpgsql not supported` | recorded |
//! | `CREATE PROCEDURE` | 0A000 | `PROCEDURE is not supported` | reference |
//! | `DO` | 0A000 | `unsupported statement: Do` | inferred |
//! | `CREATE TABLESPACE` / `DROP` / `ALTER` | 0A000 | `unsupported statement: CreateTableSpace` (resp. `DropTableSpace`, `AlterTableSpaceOptions`) | recorded (create), inferred |
//! | `CREATE FOREIGN TABLE` (and FDW, server, user mapping, `IMPORT FOREIGN SCHEMA`) | 0A000 | `unsupported statement: CreateForeignTable` (resp. `CreateFdw`, `CreateForeignServer`, `CreateUserMapping`, `ImportForeignSchema`) | recorded (foreign table), inferred |
//! | publications, subscriptions | 0A000 | `unsupported statement: CreatePublication` / `CreateSubscription` | inferred |
//! | `VACUUM` | 0A000 | `unsupported VACUUM statement` | recorded (`ANALYZE` is accepted: recorded) |
//! | `LISTEN` / `NOTIFY` / `UNLISTEN` | 0A000 | `unsupported statement: Listen` / `Notify` / `Unlisten` | recorded |
//! | `ALTER SYSTEM` | 0A000 | `unsupported statement: AlterSystem` | recorded |
//! | `LOCK TABLE` | 0A000 | `unsupported statement: Lock` | inferred |
//! | `MERGE` | 0A000 | `unsupported statement: Merge` | inferred |
//! | `SAVEPOINT` / `RELEASE` / `ROLLBACK TO` | 0A000 | `unsupported transaction statement: SAVEPOINT` / `RELEASE` / `ROLLBACK TO` | recorded (SAVEPOINT, ROLLBACK TO), inferred (RELEASE) |
//! | `PREPARE TRANSACTION`, `COMMIT/ROLLBACK PREPARED` | 0A000 | `unsupported transaction statement: PREPARE TRANSACTION` (resp. `COMMIT PREPARED`, `ROLLBACK PREPARED`) | inferred |
//! | `BEGIN`/`START TRANSACTION`/`SET TRANSACTION` `ISOLATION LEVEL` other than `REPEATABLE READ` | 0A000 | `Unsupported isolation level: SERIALIZABLE` (`READ COMMITTED`, `READ UNCOMMITTED`) | recorded (SERIALIZABLE), inferred (others) |
//! | `SET TRANSACTION ...` (a supported level too) | 0A000 | `setting configuration parameter "TRANSACTION" not supported` | recorded |
//! | `SET SESSION CHARACTERISTICS AS TRANSACTION ...` | 0A000 | `setting configuration parameter "SESSION CHARACTERISTICS" not supported` | inferred |
//! | `SET default_transaction_isolation` | 0A000 | `setting configuration parameter "default_transaction_isolation" not supported` | recorded |
//! | `SET transaction_isolation` | 0A000 | `setting configuration parameter "transaction_isolation" not supported` | inferred |
//! | `SET ROLE` / `SET SESSION AUTHORIZATION` | 0A000 | `setting configuration parameter "role" not supported` / `"session_authorization"` | reference (role, Flyway), inferred |
//! | `SELECT ... FOR SHARE` / `FOR NO KEY UPDATE` (anywhere in the statement) | 0A000 | `locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported` | recorded |
//! | `TABLESAMPLE` | 0A000 | `TABLESAMPLE clause not supported` | recorded |
//! | `to_tsvector('english', ...)` and the other text search functions with a configuration | 42704 | `text search configuration "english" does not exist` | recorded ('english'), inferred (other names) |
//! | geometric constructors `line(...)`, `circle(...)` (`point`, `lseg`, `box`, `path`, `polygon`) | 0A000 | `datatype line not supported` | recorded (line, circle), inferred |
//! | `CREATE INDEX` without `ASYNC` | 0A000 | `unsupported mode. please use CREATE INDEX ASYNC.` | recorded |
//! | `CREATE INDEX CONCURRENTLY` | 0A000 | `CONCURRENTLY not supported for CREATE INDEX` | reference (the issue said "unsupported mode"; the observed text differs) |
//! | `CREATE INDEX ASYNC schema.name` | 42601 | `syntax error at or near "."` | recorded |
//! | `ASC`/`DESC` on an index key | 0A000 | `specifying sort order not supported for index keys` | reference |
//! | operator class on an index key | 0A000 | `opclass not supported for index keys` | reference |
//! | `CREATE INDEX ... USING <method>` | 0A000 | `USING not supported for CREATE INDEX` | inferred (seen in a third-party log) |
//! | `ALTER TABLE ADD CONSTRAINT` PK/UNIQUE (not `USING INDEX`), or CHECK/FK/EXCLUDE without `NOT VALID` | 0A000 | `unsupported ALTER TABLE ADD CONSTRAINT statement` | recorded (EXCLUDE inferred) |
//! | `ALTER TABLE ... VALIDATE CONSTRAINT` without `ASYNC` | 0A000 | `unsupported ALTER TABLE VALIDATE CONSTRAINT statement` | recorded |
//! | `ALTER TABLE ... ALTER COLUMN ... TYPE` | 0A000 | `unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement` | recorded |
//! | `ALTER TABLE ... ALTER COLUMN ... SET STATISTICS` | 0A000 | `unsupported ALTER TABLE ALTER COLUMN ... SET STATISTICS statement` | reference |
//! | `ALTER TABLE ... SET TABLESPACE` / `ATTACH PARTITION` / `DETACH PARTITION` | 0A000 | `unsupported ALTER TABLE SET TABLESPACE statement` (resp. `ATTACH PARTITION`, `DETACH PARTITION`) | inferred |
//! | `ALTER TABLE ... ADD COLUMN` with any constraint (`DEFAULT`, `NOT NULL`, `CHECK`, `UNIQUE`, identity, ...) | 0A000 | `ALTER TABLE ADD COLUMN with constraint not supported` | recorded |
//!
//! When one statement has several problems, the first in this order is reported (DSQL's order
//! where recorded, else the order PostgreSQL's parse analysis meets them):
//! - `CREATE TABLE`: TEMP/UNLOGGED, then the table clauses (PARTITION, INHERITS, TABLESPACE),
//!   then each column in order (serial, array, unsupported type, declared length, identity
//!   `CACHE`, identity type, key type of an inline PK/UNIQUE), then table constraints (key types).
//!   Identity `CACHE` before identity type follows the emulator's reading (inferred).
//! - `ALTER TABLE ... ADD COLUMN`: the column's type (serial, array, unsupported, length), then
//!   "with constraint" (recorded: an `integer` identity gets the constraint message).
//! - `SELECT`: `TABLESAMPLE` (FROM), then functions (target list, WHERE), then locking clauses.
//! - `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`: the isolation message (recorded), any other
//!   `SET TRANSACTION`: the `"TRANSACTION"` message (recorded).
//! - `CREATE INDEX`: `CONCURRENTLY`, then missing `ASYNC`, then `USING`, sort order, opclass.
//! - `CREATE PROCEDURE` before the language check.
//!
//! A `CREATE INDEX ASYNC` keying a `bytea`/`jsonb`/`json` column of an existing table needs the
//! catalog: [`Statement::key_type_check`] gives the engine the query to ask it.
//!
//! Not decided here (they need the catalog or run time; the engine or PostgreSQL answers):
//! dropping a primary-key column (`cannot drop primary key column id`), limits on counts
//! (tables, indexes, columns), key sizes.
//! `SELECT sys.wait_for_job(...)` passes (a Read): on DSQL it is a procedure, so a `SELECT` of it
//! fails there with 42809 `sys.wait_for_job(text) is a procedure`; PostgreSQL answers the same if
//! the gateway creates it as a procedure.

mod async_syntax;
mod classify;
mod ddl;
mod key_check;
mod probe;
mod query;
mod session;
mod types;

use std::ops::Range;

pub use key_check::KeyTypeCheck;

use crate::errors::SqlError;

/// One statement of a query string, analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte range of the statement in the original text (without surrounding whitespace and the
    /// terminating `;`).
    pub span: Range<usize>,
    /// The SQL to send to PostgreSQL: the statement's own text, with DSQL-only syntax PostgreSQL
    /// lacks removed (the `ASYNC` of `CREATE [UNIQUE] INDEX ASYNC ...` and of
    /// `ALTER TABLE ASYNC ... VALIDATE CONSTRAINT ...`).
    pub upstream_sql: String,
    /// What the statement is, for the engine's transaction rules.
    pub kind: Kind,
    /// DSQL refuses this statement whatever the transaction state (unsupported statement, type,
    /// clause or option).
    pub refusal: Option<SqlError>,
    /// The statement starts an asynchronous job on DSQL, answered with one row, `job_id`.
    pub async_job: Option<AsyncJob>,
}

impl Statement {
    /// For `CREATE [UNIQUE] INDEX ASYNC` on an existing table, the catalog query that finds a key
    /// column of a type DSQL refuses in a key (`bytea`, `jsonb`, `json`): DSQL answers
    /// `datatype bytea is not supported in a key` at once, where PostgreSQL would build the index.
    /// `None` for any other statement (and for keys that are all expressions).
    #[must_use]
    pub fn key_type_check(&self) -> Option<KeyTypeCheck> {
        if self.async_job != Some(AsyncJob::IndexBuild) {
            return None;
        }
        key_check::for_index(&self.upstream_sql)
    }
}

/// What a statement is, as the engine's transaction rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Reads: `SELECT` without a locking clause, `SHOW`, `VALUES`, `EXPLAIN` (not `ANALYZE` of a
    /// write), `SELECT sys.wait_for_job(..)`, `CALL sys.wait_for_job(..)`, cursors.
    Read,
    /// Row writes: `INSERT`, `UPDATE`, `DELETE` (also inside a `WITH`), `SELECT ... FOR UPDATE` /
    /// `FOR KEY SHARE` (they take row locks), `COPY ... FROM`, `EXPLAIN ANALYZE` of a write.
    Write {
        /// How to learn the row count the write would report, when the statement has one.
        probe: Option<Probe>,
    },
    /// Catalog changes: `CREATE`/`ALTER`/`DROP`/`GRANT`/`REVOKE`/`COMMENT`/...
    Ddl {
        /// `CREATE [UNIQUE] INDEX ASYNC`.
        async_index: bool,
    },
    /// `BEGIN` / `START TRANSACTION` (`REPEATABLE READ` or no isolation level given).
    Begin {
        /// `READ ONLY` was given.
        read_only: bool,
    },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// Session settings: `SET`/`RESET`, `DISCARD`, `PREPARE`, `DEALLOCATE`, `SET CONSTRAINTS`, ...
    Session,
    /// Anything else, passed through unchanged (including text PostgreSQL cannot parse:
    /// PostgreSQL then reports its own syntax error).
    Other,
}

/// An asynchronous job a DSQL statement starts (its `sys.jobs` `job_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncJob {
    /// `CREATE [UNIQUE] INDEX ASYNC`: `INDEX_BUILD`; command tag `CREATE INDEX`.
    IndexBuild,
    /// `ALTER TABLE ASYNC ... VALIDATE CONSTRAINT`; command tag `ALTER TABLE`.
    ValidateConstraint,
}

/// How to learn the row count a write would have reported, for a write the gateway must answer
/// "as if it ran" (an OCC conflict found before `COMMIT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `INSERT ... VALUES` (or `DEFAULT VALUES`) with this many rows, no `ON CONFLICT` that could
    /// skip rows.
    Rows(u64),
    /// A read-only query with the statement's own parameters (`$1..$n`, same numbering)
    /// returning one row with one `bigint` column: the number of rows the statement would
    /// affect. Prepare it with the parameter types PostgreSQL resolved for the statement itself
    /// (its ParameterDescription): the probe may not mention every parameter (those of a `SET`
    /// list), and an untyped unused parameter is an error.
    ///
    /// `UPDATE`/`DELETE`: `SELECT count(*) FROM <target> [alias] WHERE <condition>`, and with
    /// `FROM`/`USING` items `... WHERE EXISTS (SELECT 1 FROM <items> WHERE <condition>)` so a
    /// target row joined twice is counted once, as PostgreSQL's command tag counts it.
    /// `INSERT ... SELECT`: `SELECT count(*) FROM (<the select>) AS s`. A `WITH` of the statement
    /// is kept on the probe.
    Count(String),
}

/// Splits `sql` into statements (PostgreSQL's own statement boundaries) and analyses each.
/// Empty text (or only comments): an empty `Vec`. Text PostgreSQL cannot parse: one
/// `Statement { kind: Other, refusal: None, .. }` covering all of it, so PostgreSQL reports the
/// error itself; its `upstream_sql` is the text with DSQL's `ASYNC` removed (what DSQL's own
/// grammar would have seen), and a schema-qualified `CREATE INDEX ASYNC` name gets DSQL's 42601.
#[must_use]
pub fn analyze(sql: &str) -> Vec<Statement> {
    let marks = async_syntax::find(sql);
    let parse_text = marks.blanked(sql);
    let Ok(parsed) = pg_query::parse(&parse_text, pg_query::ParserOptions::DEFAULT) else {
        return vec![Statement {
            span: 0..sql.len(),
            upstream_sql: marks.cut(sql, 0..sql.len()),
            kind: Kind::Other,
            refusal: marks.qualified_index_name.then(|| SqlError::syntax_error_at(".")),
            async_job: None,
        }];
    };
    parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let span = trimmed_span(sql, raw.stmt_location, raw.stmt_len);
            let async_job = marks.job_in(&span);
            let upstream_sql = marks.cut(sql, span.clone());
            let analysis = classify::analyze_node(node, async_job, &upstream_sql);
            Some(Statement { upstream_sql, span, kind: analysis.kind, refusal: analysis.refusal, async_job })
        })
        .collect()
}

/// Analyses of recent query texts, shared by every session: parsing a text costs tens of
/// microseconds (PostgreSQL's parser and a protobuf round trip), and clients send the same texts
/// again and again (`BEGIN`, `COMMIT`, a driver's statements on each new connection). [`analyze`]
/// depends on nothing but the text, so a hit is exact. Bounded: texts over
/// [`AnalysisCache::MAX_TEXT`] bytes are not kept, and a full cache starts over.
#[derive(Debug)]
pub struct AnalysisCache {
    entries: std::sync::Mutex<std::collections::HashMap<Box<str>, std::sync::Arc<[Statement]>>>,
    capacity: usize,
}

impl AnalysisCache {
    /// Longest text kept.
    pub const MAX_TEXT: usize = 4096;

    /// A cache of at most `capacity` texts.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { entries: std::sync::Mutex::default(), capacity }
    }

    /// [`analyze`]`(sql)`, from the cache when the same text was analysed before.
    pub fn analyze(&self, sql: &str) -> std::sync::Arc<[Statement]> {
        if let Some(hit) = self.entries.lock().ok().and_then(|e| e.get(sql).cloned()) {
            return hit;
        }
        let analysed: std::sync::Arc<[Statement]> = analyze(sql).into();
        if sql.len() <= Self::MAX_TEXT
            && let Ok(mut entries) = self.entries.lock()
        {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(sql.into(), analysed.clone());
        }
        analysed
    }

    /// Texts held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether no text is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The statement's byte range without the whitespace PostgreSQL leaves around it. A length of 0
/// means "to the end of the text".
fn trimmed_span(sql: &str, location: i32, len: i32) -> Range<usize> {
    let start = floor_char_boundary(sql, usize::try_from(location).unwrap_or(0));
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => floor_char_boundary(sql, start + len),
    };
    let text = &sql[start..end];
    let leading = text.len() - text.trim_start().len();
    let trailing = text.len() - text.trim_end().len();
    let (start, end) = (start + leading, end - trailing);
    // The last statement of `SELECT 1;` runs to the end of the text, `;` included.
    let end = if sql[start..end].ends_with(';') { end - 1 } else { end };
    let text = &sql[start..end];
    start..start + text.trim_end().len()
}

/// `at`, or the nearest char boundary before it (PostgreSQL's locations are byte offsets at
/// token boundaries; this keeps slicing safe whatever they are).
fn floor_char_boundary(sql: &str, at: usize) -> usize {
    let mut at = at.min(sql.len());
    while !sql.is_char_boundary(at) {
        at -= 1;
    }
    at
}
