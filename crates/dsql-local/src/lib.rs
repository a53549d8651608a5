//! dsql-local: a PostgreSQL wire-protocol (v3) gateway that listens like an Aurora DSQL endpoint
//! and forwards to a PostgreSQL server, answering connections and statements as DSQL does, so code
//! written for DSQL meets DSQL's rules on a laptop, with no AWS account.
//!
//! - [`auth`]: IAM auth tokens (SigV4 presigned URLs) verified against a local key pair.
//! - [`certs`]: the local CA and the gateway's certificate, so clients verify it (`verify-full`).
//! - [`limits`]: the connection-rate bucket, the cap and the lifetime.
//! - [`rules`]: what DSQL refuses and how it classifies statements, decided on PostgreSQL's own
//!   parse tree (`pg_query`).
//! - [`errors`]: DSQL's SQLSTATEs and texts.
//! - [`server`]: the listener and the admission of a connection; a private `session` module is the
//!   statement engine; [`wire`] the protocol codec; [`metrics`] the Prometheus families.
//!
//! # What behaves as on DSQL
//!
//! - **Admission**: TLS only (a plaintext StartupMessage is refused); database `postgres` only;
//!   the password is an IAM token verified as a SigV4 presigned URL (action `DbConnectAdmin` for
//!   `admin`, host one of the gateway's names, region, date and expiry, signature with the local
//!   key pair), refused with `access denied` (+ `HINT: Signature expired` when expired); the
//!   connection bucket (100/s, burst 1,000) refuses with 53400, the cap (10,000) with 53300, and
//!   a connection is closed at its maximum lifetime (60 min) without an error. Every number is a
//!   [`limits::ConnectionLimits`] field.
//! - **Statements**: everything DSQL refuses is refused with its SQLSTATE and text (the table in
//!   [`rules`]); one DDL per transaction, no DDL with DML; a refusal inside a transaction aborts it
//!   (25P02 afterwards, and 25P02 before any other refusal), outside one it does not; REPEATABLE
//!   READ is every session's isolation; a Query string of several statements is one transaction.
//! - **Async indexes**: `CREATE [UNIQUE] INDEX ASYNC ...` returns one row, `job_id` (26 characters
//!   of `[a-z0-9]`), with the tag `CREATE INDEX`; `sys.jobs` has DSQL's columns; `sys.wait_for_job`
//!   is a procedure (`CALL sys.wait_for_job('id')`; a `SELECT` of it fails with 42809 as on DSQL).
//! - **Limits**: a transaction's 3,001st written row fails its statement with 54000 and aborts the
//!   transaction, autocommit statements included; a transaction older than 300 s fails at COMMIT;
//!   a message over 10 MiB drops the connection.
//! - **OCC**: no statement waits for another transaction's row lock. The transaction that
//!   committed first keeps its writes; the other's `COMMIT` fails with 40001
//!   `change conflicts with another transaction (OC000)`, also for `SELECT ... FOR UPDATE`; after
//!   a committed schema change, every other session's next statement fails once with 40001
//!   `schema has been updated by another transaction (OC001)`.
//!
//! # How OCC is done on PostgreSQL, and where it still differs
//!
//! Every session runs with a short `lock_timeout` (10 ms by default). Inside an explicit
//! transaction each row write runs behind a savepoint. When PostgreSQL refuses the row lock
//! (55P03: another open transaction wrote the row) or finds a version committed after this
//! transaction's snapshot (40001), the gateway rolls back to the savepoint, answers the write as
//! if it ran (its row count from a read of the same rows on the same snapshot) and dooms the
//! transaction: its `COMMIT` becomes a ROLLBACK answered with `(OC000)`. Differences:
//!
//! - The loser is the transaction whose write met the other's row lock, which is the second
//!   *writer*; DSQL fails the second *committer*. They differ when the second writer commits
//!   first: DSQL lets it win, here it still fails.
//! - After a doomed write the transaction does not see its own effect of that write (it was
//!   rolled back to the savepoint); its reads are otherwise on its snapshot. It cannot commit.
//! - `RETURNING` rows of a doomed write are not produced (the row count is). A locking read
//!   (`SELECT ... FOR UPDATE`) that conflicts, and a write without a row-count probe, report the
//!   conflict at the statement instead of at COMMIT (still 40001 with `(OC000)`).
//! - An autocommit write that meets a row locked by an open transaction fails at once with
//!   `(OC000)`; on DSQL it would win and the open transaction would fail at its COMMIT.
//! - DDL that waits for a lock past `lock_timeout` fails with PostgreSQL's 55P03.
//! - OC001 is sent to every other session after any committed DDL (DSQL: sessions whose cached
//!   catalog is affected), and only on the next statement (DSQL may also report it at COMMIT).
//!
//! # Other differences
//!
//! - The 10 MiB transaction size is counted as the bytes of the written statements' text and
//!   parameters, not as DSQL's stored size with index overhead; it is checked at COMMIT (and for
//!   an autocommit write before it runs).
//! - Async jobs finish before `CREATE INDEX ASYNC` returns (PostgreSQL builds the index in the
//!   statement's transaction): `sys.jobs` shows them `completed` at once, never `submitted`.
//! - Only the `admin` role is mapped (custom roles and `AWS IAM GRANT` are refused at login);
//!   sessions run as the upstream role the gateway logs in with.
//! - Server parameters (`server_version`, planner, functions) are the upstream PostgreSQL's
//!   (16 in compose, 15 in this repository's tests); DSQL reports 16.15.
//! - The gateway keeps a few upstream logins ready ([`UpstreamConfig::spares`], 2 by default)
//!   and sets a client's startup parameters on the one it takes, so a connect costs the TLS
//!   handshake and the token check rather than a SCRAM login; those idle logins show in
//!   `pg_stat_activity` as `application_name = 'dsql-local'`.
//! - There is no cluster wake-up, no storage quota, no count limits (tables, indexes, columns)
//!   and no key-size limit; those are refused by DSQL only.

pub mod auth;
/// The local CA and the gateway's certificate: the `tdsql-local-pki` crate, kept out of this one so
/// `config render` can create the PKI without pg_query (libclang).
pub use tdsql_local_pki as certs;
pub mod errors;
pub mod limits;
pub mod metrics;
pub mod rules;
pub mod server;
mod session;
pub mod wire;

pub use errors::{Severity, SqlError};
pub use server::{
    DEFAULT_SPARES, Gateway, GatewayConfig, GatewayError, GatewayHandle, TxnLimits, UpstreamConfig,
};
