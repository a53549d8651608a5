//! The shape of a schema as tables, columns, keys and indexes: what the embedded SQL declares, what
//! a live database has, and the differences between the two.

use std::collections::BTreeMap;
use std::fmt;

use tokio_postgres::Client;

use crate::ddl::{self, Definition, IndexDef, TableDef};
use crate::split::Statement;

/// Tables and indexes by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Tables by name.
    pub tables: BTreeMap<String, TableDef>,
    /// Secondary indexes by name (primary keys are part of their table).
    pub indexes: BTreeMap<String, IndexDef>,
}

/// A statement of our own SQL that the catalog model cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot model statement on line {line}: {reason}")]
pub struct ModelError {
    /// The statement's line.
    pub line: usize,
    /// Why.
    pub reason: String,
}

impl Catalog {
    /// The catalog that `statements` build on an empty database.
    ///
    /// # Errors
    /// [`ModelError`] when a `CREATE TABLE` or `CREATE INDEX` cannot be read.
    pub fn from_statements<'a>(
        statements: impl IntoIterator<Item = &'a Statement>,
    ) -> Result<Self, ModelError> {
        let mut catalog = Catalog::default();
        for statement in statements {
            match ddl::parse_definition(&statement.text) {
                Ok(Some(Definition::Table(table))) => {
                    catalog.tables.insert(table.name.clone(), table);
                }
                Ok(Some(Definition::Index(index))) => {
                    catalog.indexes.insert(index.name.clone(), index);
                }
                Ok(None) => {}
                Err(reason) => return Err(ModelError { line: statement.line, reason }),
            }
        }
        Ok(catalog)
    }

    /// Reads the tables (columns, primary keys) and secondary indexes of schema `public`.
    ///
    /// # Errors
    /// The database error of a catalog query.
    pub async fn read(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let mut catalog = Catalog::default();
        let columns = client
            .query(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                        c.character_maximum_length, c.is_nullable::text, c.column_default::text \
                 FROM information_schema.columns c \
                 JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
                 ORDER BY c.table_name, c.ordinal_position",
                &[],
            )
            .await?;
        for row in columns {
            let table: String = row.get(0);
            let data_type: String = row.get(2);
            let length: Option<i32> = row.get(3);
            let column = ddl::ColumnDef {
                name: row.get(1),
                data_type: match length {
                    Some(n) => format!("{data_type}({n})"),
                    None => data_type,
                },
                nullable: row.get::<_, String>(4) == "YES",
                default: row.get::<_, Option<String>>(5).map(|d| ddl::normalize_default(&d)),
            };
            catalog
                .tables
                .entry(table.clone())
                .or_insert_with(|| TableDef {
                    name: table,
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                    unique: Vec::new(),
                })
                .columns
                .push(column);
        }
        let keys = client
            .query(
                "SELECT tc.table_name::text, tc.constraint_name::text, k.column_name::text \
                 FROM information_schema.table_constraints tc \
                 JOIN information_schema.key_column_usage k \
                   ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name \
                  AND k.table_name = tc.table_name \
                 WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY' \
                 ORDER BY tc.table_name, k.ordinal_position",
                &[],
            )
            .await?;
        let mut key_indexes = Vec::new();
        for row in keys {
            let table: String = row.get(0);
            key_indexes.push(row.get::<_, String>(1));
            if let Some(def) = catalog.tables.get_mut(&table) {
                def.primary_key.push(row.get(2));
            }
        }
        let indexes = client
            .query(
                "SELECT indexname::text, indexdef::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
                &[],
            )
            .await?;
        for row in indexes {
            let name: String = row.get(0);
            if key_indexes.contains(&name) {
                continue;
            }
            let definition: String = row.get(1);
            if let Ok(Some(Definition::Index(index))) = ddl::parse_definition(&definition) {
                catalog.indexes.insert(name, index);
            }
        }
        Ok(catalog)
    }

    /// Everything in `self` (expected) that `live` lacks or has differently. Tables and indexes
    /// that only `live` has are not drift: they are not ours.
    #[must_use]
    pub fn diff(&self, live: &Catalog) -> Vec<Drift> {
        let mut drift = Vec::new();
        for (name, expected) in &self.tables {
            let Some(found) = live.tables.get(name) else {
                drift.push(Drift::MissingTable { table: name.clone() });
                continue;
            };
            for column in &expected.columns {
                let Some(live_column) = found.columns.iter().find(|c| c.name == column.name) else {
                    drift.push(Drift::MissingColumn { table: name.clone(), column: column.name.clone() });
                    continue;
                };
                let mut differs = |what: &'static str, expected: String, found: String| {
                    if expected != found {
                        drift.push(Drift::Column {
                            table: name.clone(),
                            column: column.name.clone(),
                            what,
                            expected,
                            found,
                        });
                    }
                };
                differs("type", column.data_type.clone(), live_column.data_type.clone());
                differs("nullability", nullability(column.nullable), nullability(live_column.nullable));
                differs("default", default(column.default.as_ref()), default(live_column.default.as_ref()));
            }
            for column in &found.columns {
                if !expected.columns.iter().any(|c| c.name == column.name) {
                    drift.push(Drift::ExtraColumn { table: name.clone(), column: column.name.clone() });
                }
            }
            if expected.primary_key != found.primary_key {
                drift.push(Drift::PrimaryKey {
                    table: name.clone(),
                    expected: expected.primary_key.clone(),
                    found: found.primary_key.clone(),
                });
            }
        }
        for (name, expected) in &self.indexes {
            match live.indexes.get(name) {
                None => {
                    drift.push(Drift::MissingIndex { index: name.clone(), table: expected.table.clone() });
                }
                Some(found)
                    if found.table != expected.table
                        || found.columns != expected.columns
                        || found.unique != expected.unique =>
                {
                    drift.push(Drift::Index {
                        index: name.clone(),
                        expected: describe_index(expected),
                        found: describe_index(found),
                    });
                }
                Some(_) => {}
            }
        }
        drift
    }
}

fn nullability(nullable: bool) -> String {
    if nullable { "NULL".to_owned() } else { "NOT NULL".to_owned() }
}

fn default(value: Option<&String>) -> String {
    value.map_or_else(|| "no default".to_owned(), |d| format!("DEFAULT {d}"))
}

fn describe_index(index: &IndexDef) -> String {
    let unique = if index.unique { "UNIQUE " } else { "" };
    format!("{unique}INDEX ON {} ({})", index.table, index.columns.join(", "))
}

/// One difference between the embedded schema and a live database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drift {
    /// A table is missing.
    MissingTable {
        /// The table.
        table: String,
    },
    /// A column is missing.
    MissingColumn {
        /// Its table.
        table: String,
        /// The column.
        column: String,
    },
    /// A column exists that the schema does not declare.
    ExtraColumn {
        /// Its table.
        table: String,
        /// The column.
        column: String,
    },
    /// A column's type, nullability or default differs.
    Column {
        /// Its table.
        table: String,
        /// The column.
        column: String,
        /// `type`, `nullability` or `default`.
        what: &'static str,
        /// What the schema declares.
        expected: String,
        /// What the database has.
        found: String,
    },
    /// A table's primary key differs.
    PrimaryKey {
        /// The table.
        table: String,
        /// Declared key columns.
        expected: Vec<String>,
        /// Live key columns.
        found: Vec<String>,
    },
    /// An index is missing.
    MissingIndex {
        /// The index.
        index: String,
        /// The table it belongs on.
        table: String,
    },
    /// An index differs (table, columns or uniqueness).
    Index {
        /// The index.
        index: String,
        /// Declared shape.
        expected: String,
        /// Live shape.
        found: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingTable { table } => write!(f, "table {table} is missing"),
            Drift::MissingColumn { table, column } => write!(f, "column {table}.{column} is missing"),
            Drift::ExtraColumn { table, column } => write!(f, "column {table}.{column} is not in the schema"),
            Drift::Column { table, column, what, expected, found } => {
                write!(f, "column {table}.{column}: {what} is {found}, expected {expected}")
            }
            Drift::PrimaryKey { table, expected, found } => write!(
                f,
                "table {table}: primary key is ({}), expected ({})",
                found.join(", "),
                expected.join(", ")
            ),
            Drift::MissingIndex { index, table } => write!(f, "index {index} on {table} is missing"),
            Drift::Index { index, expected, found } => {
                write!(f, "index {index} is {found}, expected {expected}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Schema;

    #[test]
    fn the_embedded_schema_models_the_contract() {
        let schema = Schema::embedded().unwrap();
        let catalog =
            Catalog::from_statements(schema.change_sets().iter().flat_map(|c| &c.statements)).unwrap();
        assert_eq!(catalog.tables.len(), 37);
        assert_eq!(catalog.indexes.len(), 7);
        let unique: Vec<&str> =
            catalog.indexes.values().filter(|i| i.unique).map(|i| i.name.as_str()).collect();
        assert_eq!(unique, ["idx_buffered_events_id", "idx_namespaces_name"]);
        for table in catalog.tables.values() {
            assert!(!table.primary_key.is_empty(), "{} has no primary key", table.name);
            for key in &table.primary_key {
                let column = table.columns.iter().find(|c| &c.name == key).unwrap();
                assert_ne!(column.data_type, "bytea", "{}.{key} is BYTEA in a key", table.name);
                assert!(!column.nullable, "{}.{key} is a nullable key column", table.name);
            }
            for column in &table.columns {
                if column.name.ends_with("_id") && column.name != "task_id" && column.data_type == "bytea" {
                    panic!("identifier {}.{} is BYTEA", table.name, column.name);
                }
            }
        }
        let chasm = &catalog.tables["current_chasm_executions"];
        assert_eq!(chasm.primary_key, ["shard_id", "namespace_id", "business_id", "archetype_id"]);
        let status = &catalog.tables["nexus_endpoints_partition_status"];
        assert_eq!(status.primary_key, ["id"]);
        assert_eq!(status.columns[0].default.as_deref(), Some("0"));
    }
}
