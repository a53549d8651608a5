//! The migrator's own tables: the two version tables exactly as the Temporal server reads them
//! (`schema_version`, `schema_update_history`, as upstream PostgreSQL defines them), and the lock
//! row that keeps two migrators apart.
//!
//! # The lock, designed for DSQL
//!
//! DSQL has no advisory locks, no lock waits and no `SELECT ... FOR UPDATE` across tables, and it
//! refuses DDL and DML in one transaction. So mutual exclusion is a lease in an ordinary row:
//!
//! * `schema_migration_lock` has one row (`lock_partition = 0`): `holder` (host:pid:nonce, NULL
//!   when free), `expires_at`, and the progress of the run (`applying_version`, `last_error`).
//! * Taking it is one conditional upsert in its own transaction:
//!   `INSERT ... ON CONFLICT DO UPDATE ... WHERE holder IS NULL OR expires_at < now`; one row
//!   affected means we hold it. Two racing takers conflict on the row: on DSQL the loser's
//!   COMMIT fails with OC000 and its retry sees the row taken; on PostgreSQL the loser waits for
//!   the row and then sees it taken. Either way exactly one wins.
//! * The holder renews the lease between statements (a fenced `UPDATE ... WHERE holder = me`);
//!   every write of the run's progress and of the version rows is fenced the same way, so a
//!   migrator whose lease expired and was taken over can never record a version.
//! * Releasing clears `holder`. A migrator that died leaves the row until `expires_at`; on the
//!   same host, a holder whose process is gone is taken over at once.
//! * DDL never shares a transaction with these writes: each schema statement runs alone.

/// The version table the server reads at startup.
pub(crate) const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
  version_partition INT NOT NULL,
  db_name VARCHAR(255) NOT NULL,
  creation_time TIMESTAMP,
  curr_version VARCHAR(64),
  min_compatible_version VARCHAR(64),
  PRIMARY KEY (version_partition, db_name)
)";

/// One row per applied version.
pub(crate) const UPDATE_HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_update_history (
  version_partition INT NOT NULL,
  year INT NOT NULL,
  month INT NOT NULL,
  update_time TIMESTAMP NOT NULL,
  description VARCHAR(255),
  manifest_md5 VARCHAR(64),
  new_version VARCHAR(64),
  old_version VARCHAR(64),
  PRIMARY KEY (version_partition, year, month, update_time)
)";

/// The name of the lock table.
pub(crate) const LOCK_TABLE_NAME: &str = "schema_migration_lock";

/// The lease row that keeps two migrators apart, with the progress of the current run.
pub(crate) const LOCK_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migration_lock (
  lock_partition INT NOT NULL,
  holder VARCHAR(255),
  acquired_at TIMESTAMP,
  expires_at TIMESTAMP,
  db_name VARCHAR(255),
  applying_version VARCHAR(64),
  target_version VARCHAR(64),
  started_at TIMESTAMP,
  last_error VARCHAR(1024),
  PRIMARY KEY (lock_partition)
)";

/// The migrator's tables, in creation order.
pub(crate) const TABLES: [&str; 3] = [SCHEMA_VERSION_TABLE, UPDATE_HISTORY_TABLE, LOCK_TABLE];

/// Names of the migrator's own tables (not Temporal's).
pub(crate) const TABLE_NAMES: [&str; 3] = ["schema_version", "schema_update_history", LOCK_TABLE_NAME];

/// "Now" in UTC as a `TIMESTAMP` (the tables use TIMESTAMP without time zone).
pub(crate) const NOW_UTC: &str = "(now() AT TIME ZONE 'UTC')";
