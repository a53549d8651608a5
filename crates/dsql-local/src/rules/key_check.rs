//! The catalog question behind "`bytea` in an index key": the statement names the table and the
//! key columns, only the catalog knows their types.

use pg_query::NodeEnum;

/// A read-only query with three parameters, `$1` the table name (`text`), `$2` its schema
/// (`text`, NULL when the statement did not qualify it: the table `search_path` finds), `$3` the
/// key columns in key order (`text[]`). It returns no row when every key type is allowed, else
/// one row with one `text` column: the first refused type as PostgreSQL displays it (`bytea`),
/// for [`crate::SqlError::datatype_not_in_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTypeCheck {
    /// The query: [`KeyTypeCheck::SQL`].
    pub sql: &'static str,
    /// `$1`: the table's name.
    pub table: String,
    /// `$2`: the table's schema, when the statement named one.
    pub schema: Option<String>,
    /// `$3`: the key columns, in key order (expression keys left out).
    pub columns: Vec<String>,
}

impl KeyTypeCheck {
    /// The catalog query (types DSQL refuses in a key: `bytea`, `jsonb`, `json`).
    pub const SQL: &'static str = "SELECT pg_catalog.format_type(a.atttypid, NULL) \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname::text = $1::text \
         AND (n.nspname::text = $2::text OR ($2::text IS NULL AND pg_catalog.pg_table_is_visible(c.oid))) \
         AND a.attname::text = ANY ($3::text[]) \
         AND a.attnum > 0 AND NOT a.attisdropped \
         AND a.atttypid IN ('pg_catalog.bytea'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype, 'pg_catalog.json'::pg_catalog.regtype) \
         ORDER BY pg_catalog.array_position($3::text[], a.attname::text) \
         LIMIT 1";
}

/// The check for a `CREATE INDEX` statement's upstream text.
pub(super) fn for_index(upstream_sql: &str) -> Option<KeyTypeCheck> {
    let parsed = pg_query::parse(upstream_sql, pg_query::ParserOptions::DEFAULT).ok()?;
    let node = parsed.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()?;
    let NodeEnum::IndexStmt(index) = node else { return None };
    let relation = index.relation.as_ref()?;
    let columns: Vec<String> = index
        .index_params
        .iter()
        .filter_map(|p| match p.node.as_ref() {
            Some(NodeEnum::IndexElem(elem)) if !elem.name.is_empty() => Some(elem.name.clone()),
            _ => None,
        })
        .collect();
    if columns.is_empty() {
        return None;
    }
    Some(KeyTypeCheck {
        sql: KeyTypeCheck::SQL,
        table: relation.relname.clone(),
        schema: (!relation.schemaname.is_empty()).then(|| relation.schemaname.clone()),
        columns,
    })
}
