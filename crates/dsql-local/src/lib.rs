//! dsql-local: a PostgreSQL wire-protocol (v3) gateway that listens like an Aurora DSQL endpoint
//! and forwards to a PostgreSQL server, answering connections and statements as DSQL does.
//!
//! - [`auth`]: IAM auth tokens (SigV4 presigned URLs) verified against a local key pair.
//! - [`certs`]: the local CA and the gateway's certificate, so clients verify it (`verify-full`).
//! - [`limits`]: the connection-rate bucket and the connection cap.
//! - [`rules`]: what DSQL refuses and how it classifies statements, decided on PostgreSQL's own
//!   parse tree (`pg_query`).
//! - [`errors`]: DSQL's SQLSTATEs and texts.

pub mod auth;
pub mod certs;
pub mod errors;
pub mod limits;
pub mod rules;

pub use errors::{Severity, SqlError};
