//! The installed schema against the contract of the reference, column by column: the fixture
//! `fixtures/contract-1.1.txt` is a hand transcription of sections 1.3 and 1.6 of
//! `temporal-dsql-fork.md`, and the live catalog is read straight from `pg_catalog` (not through
//! the crate's own catalog model, which is what is under test).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tdsql_schema::{Dialect, Migrator, Options, Request};
use tdsql_test_support::{connect, describe, fresh_database};
use tokio_postgres::Client;

const CONTRACT: &str = include_str!("fixtures/contract-1.1.txt");

/// The migrator's own lock table: ours, not part of the server's contract.
const OURS: &[&str] = &["schema_migration_lock"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    /// As `format_type` spells it: `integer`, `character varying(255)`, ...
    data_type: String,
    nullable: bool,
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    unique: bool,
    columns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    indexes: BTreeMap<String, Index>,
}

type Tables = BTreeMap<String, Table>;

/// The reference's type names in `format_type` spelling.
fn canonical_type(reference: &str) -> String {
    let upper = reference.to_ascii_uppercase();
    if let Some(length) = upper.strip_prefix("VARCHAR(").and_then(|r| r.strip_suffix(')')) {
        return format!("character varying({length})");
    }
    match upper.as_str() {
        "INT" | "INTEGER" => "integer",
        "BIGINT" => "bigint",
        "SMALLINT" => "smallint",
        "UUID" => "uuid",
        "BYTEA" => "bytea",
        "BOOLEAN" => "boolean",
        "TIMESTAMP" => "timestamp without time zone",
        other => panic!("the contract uses a type this test does not know: {other}"),
    }
    .to_owned()
}

/// `(a, b, c)` as a list of names.
fn column_list(text: &str) -> Vec<String> {
    let inner = text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')'));
    let inner = inner.unwrap_or_else(|| panic!("expected a parenthesised column list: {text}"));
    inner.split(',').map(|c| c.trim().to_owned()).collect()
}

fn parse_contract(text: &str) -> Tables {
    let mut tables = Tables::new();
    let mut current: Option<String> = None;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("contract line {}: {raw}", number + 1);
        if let Some(name) = line.strip_prefix("table ") {
            let previous = tables.insert(name.trim().to_owned(), Table::default());
            assert!(previous.is_none(), "table listed twice, {}", at());
            current = Some(name.trim().to_owned());
            continue;
        }
        let table = tables.get_mut(current.as_deref().unwrap_or_else(|| panic!("outside a table, {}", at())));
        let table = table.expect("current table exists");
        if let Some(columns) = line.strip_prefix("primary key ") {
            table.primary_key = column_list(columns);
        } else if let Some(rest) = line
            .strip_prefix("unique index ")
            .map(|r| (true, r))
            .or(line.strip_prefix("index ").map(|r| (false, r)))
        {
            let (unique, rest) = rest;
            let (name, columns) =
                rest.split_once(' ').unwrap_or_else(|| panic!("index without columns, {}", at()));
            table.indexes.insert(name.to_owned(), Index { unique, columns: column_list(columns) });
        } else {
            let (name, rest) =
                line.split_once(' ').unwrap_or_else(|| panic!("column without a type, {}", at()));
            let (data_type, rest) =
                rest.split_once(' ').unwrap_or_else(|| panic!("column without nullability, {}", at()));
            let (nullable, default) = if let Some(after) = rest.strip_prefix("not null") {
                (false, after.trim())
            } else if let Some(after) = rest.strip_prefix("null") {
                (true, after.trim())
            } else {
                panic!("nullability must be `null` or `not null`, {}", at());
            };
            let default = match default.strip_prefix("default ") {
                Some(value) => Some(value.trim().to_owned()),
                None if default.is_empty() => None,
                None => panic!("unexpected text after the nullability, {}", at()),
            };
            table.columns.push(Column {
                name: name.to_owned(),
                data_type: canonical_type(data_type),
                nullable,
                default,
            });
        }
    }
    tables
}

/// A default expression without its cast: `''::character varying` is `''`, `0` is `0`.
fn strip_cast(expression: &str) -> String {
    match expression.split_once("::") {
        Some((value, _)) => value.trim().to_owned(),
        None => expression.trim().to_owned(),
    }
}

/// The base tables of schema `public` with columns, primary keys and secondary indexes, from
/// `pg_catalog`.
async fn live_catalog(client: &Client) -> Tables {
    let query = |sql: &'static str| async move {
        client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
    };
    let mut tables = Tables::new();
    for row in query(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                pg_get_expr(d.adbin, d.adrelid) \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
         ORDER BY c.relname, a.attnum",
    )
    .await
    {
        tables.entry(row.get(0)).or_default().columns.push(Column {
            name: row.get(1),
            data_type: row.get(2),
            nullable: !row.get::<_, bool>(3),
            default: row.get::<_, Option<String>>(4).map(|d| strip_cast(&d)),
        });
    }
    for row in query(
        "SELECT t.relname::text, i.relname::text, x.indisprimary, x.indisunique, \
                x.indexprs IS NOT NULL OR x.indpred IS NOT NULL, \
                ARRAY(SELECT a.attname::text \
                      FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                      JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
                      ORDER BY k.ord) \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' \
         ORDER BY t.relname, i.relname",
    )
    .await
    {
        let table: String = row.get(0);
        let name: String = row.get(1);
        let (primary, unique, partial): (bool, bool, bool) = (row.get(2), row.get(3), row.get(4));
        assert!(
            !partial,
            "index {name} on {table} has an expression or a predicate, which no contract index has"
        );
        let columns: Vec<String> = row.get(5);
        let entry = tables.entry(table).or_default();
        if primary {
            entry.primary_key = columns;
        } else {
            entry.indexes.insert(name, Index { unique, columns });
        }
    }
    tables
}

fn describe_column(column: &Column) -> String {
    let null = if column.nullable { "null" } else { "not null" };
    let default = column.default.as_ref().map_or_else(String::new, |d| format!(" default {d}"));
    format!("{} {null}{default}", column.data_type)
}

/// Every difference between the contract and the live catalog, one line each.
fn differences(contract: &Tables, live: &Tables) -> Vec<String> {
    let mut out = Vec::new();
    for (name, expected) in contract {
        let Some(actual) = live.get(name) else {
            out.push(format!("table {name} is missing"));
            continue;
        };
        for (position, column) in expected.columns.iter().enumerate() {
            match actual.columns.iter().position(|c| c.name == column.name) {
                None => out.push(format!("column {name}.{} is missing", column.name)),
                Some(at) => {
                    let found = &actual.columns[at];
                    if found != column {
                        out.push(format!(
                            "column {name}.{} is `{}`, the contract says `{}`",
                            column.name,
                            describe_column(found),
                            describe_column(column)
                        ));
                    }
                    if at != position {
                        out.push(format!(
                            "column {name}.{} is at position {}, the contract says {}",
                            column.name,
                            at + 1,
                            position + 1
                        ));
                    }
                }
            }
        }
        for column in &actual.columns {
            if !expected.columns.iter().any(|c| c.name == column.name) {
                out.push(format!("column {name}.{} is not in the contract", column.name));
            }
        }
        if actual.primary_key != expected.primary_key {
            out.push(format!(
                "primary key of {name} is ({}), the contract says ({})",
                actual.primary_key.join(", "),
                expected.primary_key.join(", ")
            ));
        }
        for (index, want) in &expected.indexes {
            match actual.indexes.get(index) {
                None => out.push(format!("index {index} on {name} is missing")),
                Some(have) if have != want => out.push(format!(
                    "index {index} on {name} is {}({}), the contract says {}({})",
                    if have.unique { "unique " } else { "" },
                    have.columns.join(", "),
                    if want.unique { "unique " } else { "" },
                    want.columns.join(", ")
                )),
                Some(_) => {}
            }
        }
        for index in actual.indexes.keys() {
            if !expected.indexes.contains_key(index) {
                out.push(format!("index {index} on {name} is not in the contract"));
            }
        }
    }
    for name in live.keys() {
        if !contract.contains_key(name) && !OURS.contains(&name.as_str()) {
            out.push(format!("table {name} is not in the contract"));
        }
    }
    out
}

fn report(differences: &[String]) -> String {
    let mut out = format!("{} difference(s) from the contract:\n", differences.len());
    for line in differences {
        writeln!(out, "  {line}").unwrap();
    }
    out
}

async fn installed_1_1(label: &str) -> Client {
    let client = connect(&fresh_database(label).await).await;
    Migrator::new(&client, Options::new(Dialect::Postgres))
        .unwrap()
        .run(Request::Setup { version: None, overwrite: false })
        .await
        .unwrap();
    client
}

#[test]
fn the_contract_has_37_temporal_tables_and_the_two_version_tables() {
    let contract = parse_contract(CONTRACT);
    assert_eq!(contract.len(), 39);
    let temporal = contract.keys().filter(|t| !t.starts_with("schema_")).count();
    assert_eq!(temporal, 37);
    let indexes: usize = contract.values().map(|t| t.indexes.len()).sum();
    assert_eq!(indexes, 7, "2 unique and 5 plain secondary indexes");
    // BYTEA only outside keys.
    for (name, table) in &contract {
        let keyed = table.primary_key.iter().chain(table.indexes.values().flat_map(|i| &i.columns));
        for column in keyed {
            let def = table.columns.iter().find(|c| &c.name == column);
            let def = def.unwrap_or_else(|| panic!("{name}: key column {column} is not a column"));
            assert_ne!(def.data_type, "bytea", "{name}.{column} is BYTEA in a key");
        }
    }
}

#[tokio::test]
async fn installed_1_1_matches_the_reference_contract_column_by_column() {
    let client = installed_1_1("contract").await;
    let live = live_catalog(&client).await;
    let drift = differences(&parse_contract(CONTRACT), &live);
    assert!(drift.is_empty(), "{}", report(&drift));
    let sequences: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'S'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sequences, 0, "the schema must create no sequences (DSQL has none)");
}

/// The comparison sees each kind of difference, so a clean result above means something.
#[tokio::test]
async fn the_contract_comparison_names_every_kind_of_difference() {
    let client = installed_1_1("contract_drift").await;
    client
        .batch_execute(
            "ALTER TABLE shards ALTER COLUMN range_id TYPE INTEGER;
             ALTER TABLE executions ALTER COLUMN db_record_version DROP DEFAULT;
             ALTER TABLE current_executions ALTER COLUMN start_time SET NOT NULL;
             ALTER TABLE queue DROP COLUMN message_payload;
             ALTER TABLE queue ADD COLUMN message_payload BYTEA NOT NULL;
             ALTER TABLE tasks ADD COLUMN extra INTEGER;
             DROP INDEX idx_namespaces_name;
             CREATE INDEX idx_namespaces_name ON namespaces (name);
             DROP INDEX cm_idx_lasthb;
             CREATE INDEX stray ON history_tree (data_encoding);
             ALTER TABLE shards DROP CONSTRAINT shards_pkey;
             ALTER TABLE shards ADD PRIMARY KEY (shard_id, range_id);
             DROP TABLE nexus_endpoints;
             CREATE TABLE leftover (id INTEGER)",
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let drift = differences(&parse_contract(CONTRACT), &live_catalog(&client).await);
    let expected = [
        "column current_executions.start_time is `timestamp without time zone not null`, the contract says \
         `timestamp without time zone null`",
        "column executions.db_record_version is `bigint not null`, the contract says `bigint not null default 0`",
        "index idx_namespaces_name on namespaces is (name), the contract says unique (name)",
        "table nexus_endpoints is missing",
        "column queue.message_payload is at position 4, the contract says 3",
        "column queue.message_encoding is at position 3, the contract says 4",
        "column shards.range_id is `integer not null`, the contract says `bigint not null`",
        "primary key of shards is (shard_id, range_id), the contract says (shard_id)",
        "column tasks.extra is not in the contract",
        "index stray on history_tree is not in the contract",
        "index cm_idx_lasthb on cluster_membership is missing",
        "table leftover is not in the contract",
    ];
    let mut got = drift.clone();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(got, want, "{}", report(&drift));
}
