//! Column types as DSQL judges them: PostgreSQL's internal name (the grammar's `pg_catalog.int4`
//! for `integer`), the name PostgreSQL displays (`format_type`), and DSQL's lists.

use pg_query::NodeEnum;
use pg_query::protobuf::{TypeName, a_const};

use crate::errors::SqlError;

/// A type as written in a column definition, resolved as far as the text allows.
#[derive(Debug)]
pub(super) struct ColumnType {
    /// The internal name (`int4`, `varchar`, `serial`), lower case; `None` for a type in a
    /// schema other than `pg_catalog` (a user type: never judged here).
    internal: Option<String>,
    /// `integer[]` and the like.
    is_array: bool,
    /// The first type modifier (`varchar(n)`), when it is a plain integer.
    length: Option<i64>,
}

/// Types DSQL refuses as columns (internal names). Recorded ones and their obvious siblings.
const UNSUPPORTED: &[&str] = &[
    "money",
    "xml",
    "inet",
    "cidr",
    "macaddr",
    "macaddr8",
    "point",
    "line",
    "lseg",
    "box",
    "path",
    "polygon",
    "circle",
    "tsvector",
    "tsquery",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "tsmultirange",
    "tstzmultirange",
    "datemultirange",
    "bit",
    "varbit",
    "pg_lsn",
    "pg_snapshot",
    "txid_snapshot",
];

/// Types DSQL accepts as columns but not in a key.
const NOT_IN_KEY: &[&str] = &["bytea", "jsonb", "json"];

/// PostgreSQL's `serial` pseudo-types, which DSQL lacks.
const SERIAL: &[&str] = &["serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"];

impl ColumnType {
    /// Reads a `TypeName` of the parse tree.
    pub(super) fn of(type_name: &TypeName) -> Self {
        let names: Vec<&str> = type_name
            .names
            .iter()
            .filter_map(|n| match n.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        let internal = match names.as_slice() {
            [name] | ["pg_catalog", name] => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let length = type_name.typmods.first().and_then(|m| match m.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match &c.val {
                Some(a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
                _ => None,
            },
            _ => None,
        });
        Self { internal, is_array: !type_name.array_bounds.is_empty(), length }
    }

    /// The internal name, when it is a `pg_catalog` type or unqualified.
    pub(super) fn internal(&self) -> Option<&str> {
        self.internal.as_deref()
    }

    /// The name PostgreSQL (and so DSQL) displays: `integer`, `bit varying`, `text[]`.
    pub(super) fn display(&self) -> String {
        let base = self.internal.as_deref().map_or("?", display_name);
        if self.is_array { format!("{base}[]") } else { base.to_owned() }
    }

    /// DSQL's refusal of this type as a column: `serial`, arrays, unsupported types, declared
    /// lengths over the limits, in that order.
    pub(super) fn column_refusal(&self) -> Option<SqlError> {
        let name = self.internal.as_deref()?;
        if SERIAL.contains(&name) && !self.is_array {
            return Some(SqlError::type_does_not_exist(name));
        }
        if self.is_array || UNSUPPORTED.contains(&name) {
            return Some(SqlError::datatype_not_supported(&self.display()));
        }
        let (limit, shown) = match name {
            "varchar" => (65_535, "varchar"),
            "bpchar" => (4_096, "char"),
            _ => return None,
        };
        (self.length? > limit)
            .then(|| SqlError::datatype_limit(u32::try_from(limit).unwrap_or(u32::MAX), shown))
    }

    /// DSQL's refusal of this type in a key (primary key, unique constraint, index).
    pub(super) fn key_refusal(&self) -> Option<SqlError> {
        let name = self.internal.as_deref()?;
        (NOT_IN_KEY.contains(&name) && !self.is_array).then(|| SqlError::datatype_not_in_key(&self.display()))
    }
}

/// `format_type`'s name for an internal type name.
fn display_name(internal: &str) -> &str {
    match internal {
        "int2" => "smallint",
        "int4" | "int" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "bpchar" => "character",
        "varchar" => "character varying",
        "varbit" => "bit varying",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        "decimal" => "numeric",
        other => other,
    }
}
