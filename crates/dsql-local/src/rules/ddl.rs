//! Refusals of catalog statements: tables, columns, identity and sequences, indexes, functions.

use std::collections::HashMap;

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, CreateFunctionStmt,
    CreateStmt, DefElem, IndexElem, IndexStmt, Node, ObjectType, SortByDir, Token, a_const,
};

use super::types::ColumnType;
use crate::errors::SqlError;

/// `CREATE TABLE`: persistence, table clauses, then each column, then table constraints.
pub(super) fn create_table(stmt: &CreateStmt) -> Option<SqlError> {
    match stmt.relation.as_ref().map(|r| r.relpersistence.as_str()) {
        Some("t") => return Some(SqlError::clause_not_supported("TEMPORARY or TEMP table", "CREATE TABLE")),
        Some("u") => return Some(SqlError::clause_not_supported("UNLOGGED table", "CREATE TABLE")),
        _ => {}
    }
    let clause = if stmt.partspec.is_some() {
        Some("PARTITION BY")
    } else if stmt.partbound.is_some() {
        Some("PARTITION OF")
    } else if !stmt.inh_relations.is_empty() {
        Some("INHERITS")
    } else if !stmt.tablespacename.is_empty() {
        Some("TABLESPACE")
    } else {
        None
    };
    if let Some(clause) = clause {
        return Some(SqlError::clause_not_supported(clause, "CREATE TABLE"));
    }
    let mut columns: HashMap<&str, ColumnType> = HashMap::new();
    for element in &stmt.table_elts {
        if let Some(NodeEnum::ColumnDef(column)) = element.node.as_ref() {
            if let Some(refusal) = column_in_create(column) {
                return Some(refusal);
            }
            if let Some(type_name) = &column.type_name {
                columns.insert(column.colname.as_str(), ColumnType::of(type_name));
            }
        }
    }
    let table_constraints =
        stmt.table_elts.iter().chain(&stmt.constraints).filter_map(|n| match n.node.as_ref() {
            Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
            _ => None,
        });
    for constraint in table_constraints {
        if !is_key(constraint) {
            continue;
        }
        for key in &constraint.keys {
            if let Some(NodeEnum::String(name)) = key.node.as_ref()
                && let Some(refusal) = columns.get(name.sval.as_str()).and_then(ColumnType::key_refusal)
            {
                return Some(refusal);
            }
        }
    }
    None
}

/// One column of `CREATE TABLE`: its type, its identity, the key type of an inline key.
fn column_in_create(column: &ColumnDef) -> Option<SqlError> {
    let column_type = ColumnType::of(column.type_name.as_ref()?);
    if let Some(refusal) = column_type.column_refusal() {
        return Some(refusal);
    }
    for constraint in constraints(&column.constraints) {
        if constraint.contype == ConstrType::ConstrIdentity as i32 {
            if !valid_cache(&constraint.options) {
                return Some(SqlError::identity_cache());
            }
            if column_type.internal() != Some("int8") {
                return Some(SqlError::identity_type(&column_type.display()));
            }
        }
        if is_key(constraint)
            && let Some(refusal) = column_type.key_refusal()
        {
            return Some(refusal);
        }
    }
    None
}

fn constraints(nodes: &[Node]) -> impl Iterator<Item = &Constraint> {
    nodes.iter().filter_map(|n| match n.node.as_ref() {
        Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
        _ => None,
    })
}

fn is_key(constraint: &Constraint) -> bool {
    constraint.contype == ConstrType::ConstrPrimary as i32
        || constraint.contype == ConstrType::ConstrUnique as i32
}

/// `CACHE` given and 1 or at least 65536 (DSQL's rule for sequences and identity columns).
fn valid_cache(options: &[Node]) -> bool {
    cache_option(options).is_some_and(|cache| cache == 1.0 || cache >= 65_536.0)
}

/// The value of a `CACHE` option, when there is one (`Float` holds numbers too big for `Integer`).
fn cache_option(options: &[Node]) -> Option<f64> {
    let cache = def_elems(options).find(|d| d.defname == "cache")?;
    Some(match cache.arg.as_ref()?.node.as_ref()? {
        NodeEnum::Integer(i) => f64::from(i.ival),
        NodeEnum::Float(f) => f.fval.parse().ok()?,
        _ => return Some(f64::NAN),
    })
}

pub(super) fn def_elems(options: &[Node]) -> impl Iterator<Item = &DefElem> {
    options.iter().filter_map(|n| match n.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => Some(d.as_ref()),
        _ => None,
    })
}

/// `CREATE SEQUENCE`: `CACHE` 1 or at least 65536.
pub(super) fn create_sequence(options: &[Node]) -> Option<SqlError> {
    (!valid_cache(options)).then(SqlError::sequence_cache)
}

/// `ALTER SEQUENCE`: a `CACHE` it sets must be valid (no `CACHE` keeps the valid one).
pub(super) fn alter_sequence(options: &[Node]) -> Option<SqlError> {
    (cache_option(options).is_some() && !valid_cache(options)).then(SqlError::alter_sequence_cache)
}

/// `CREATE DOMAIN`: accepted (recorded), but not over a type DSQL lacks.
pub(super) fn create_domain(type_name: Option<&pg_query::protobuf::TypeName>) -> Option<SqlError> {
    ColumnType::of(type_name?).column_refusal()
}

/// `ALTER TABLE`: each command in order.
pub(super) fn alter_table(stmt: &AlterTableStmt, is_async: bool) -> Option<SqlError> {
    if stmt.objtype == ObjectType::ObjectType as i32 {
        return Some(SqlError::not_supported("ALTER TYPE"));
    }
    stmt.cmds.iter().find_map(|cmd| match cmd.node.as_ref() {
        Some(NodeEnum::AlterTableCmd(cmd)) => alter_table_command(cmd, is_async),
        _ => None,
    })
}

fn alter_table_command(cmd: &AlterTableCmd, is_async: bool) -> Option<SqlError> {
    let subtype = AlterTableType::try_from(cmd.subtype).ok()?;
    match subtype {
        AlterTableType::AtAddColumn => {
            let Some(NodeEnum::ColumnDef(column)) = cmd.def.as_ref()?.node.as_ref() else { return None };
            if let Some(refusal) = ColumnType::of(column.type_name.as_ref()?).column_refusal() {
                return Some(refusal);
            }
            (!column.constraints.is_empty() || column.raw_default.is_some())
                .then(SqlError::add_column_with_constraint)
        }
        AlterTableType::AtAlterColumnType => {
            Some(SqlError::unsupported_alter_table("ALTER COLUMN ... SET DATA TYPE"))
        }
        AlterTableType::AtSetStatistics => {
            Some(SqlError::unsupported_alter_table("ALTER COLUMN ... SET STATISTICS"))
        }
        AlterTableType::AtAddConstraint => {
            let Some(NodeEnum::Constraint(constraint)) = cmd.def.as_ref()?.node.as_ref() else { return None };
            let refused = match ConstrType::try_from(constraint.contype).ok()? {
                ConstrType::ConstrPrimary | ConstrType::ConstrUnique => constraint.indexname.is_empty(),
                ConstrType::ConstrCheck | ConstrType::ConstrForeign => !constraint.skip_validation,
                ConstrType::ConstrExclusion => true,
                _ => false,
            };
            refused.then(|| SqlError::unsupported_alter_table("ADD CONSTRAINT"))
        }
        AlterTableType::AtValidateConstraint if !is_async => {
            Some(SqlError::unsupported_alter_table("VALIDATE CONSTRAINT"))
        }
        AlterTableType::AtSetTableSpace => Some(SqlError::unsupported_alter_table("SET TABLESPACE")),
        AlterTableType::AtAttachPartition => Some(SqlError::unsupported_alter_table("ATTACH PARTITION")),
        AlterTableType::AtDetachPartition | AlterTableType::AtDetachPartitionFinalize => {
            Some(SqlError::unsupported_alter_table("DETACH PARTITION"))
        }
        _ => None,
    }
}

/// `CREATE INDEX`: `CONCURRENTLY`, `ASYNC`, then the access method and each key.
/// `text` is the statement's own text (for `USING`, which the parse tree fills in by default).
pub(super) fn index(stmt: &IndexStmt, is_async: bool, text: &str) -> Option<SqlError> {
    if stmt.concurrent {
        return Some(SqlError::clause_not_supported("CONCURRENTLY", "CREATE INDEX"));
    }
    if !is_async {
        return Some(SqlError::index_not_async());
    }
    if stmt.access_method != "btree" || names_access_method(text) {
        return Some(SqlError::clause_not_supported("USING", "CREATE INDEX"));
    }
    for param in &stmt.index_params {
        let Some(NodeEnum::IndexElem(elem)) = param.node.as_ref() else { continue };
        if let Some(refusal) = index_key(elem) {
            return Some(refusal);
        }
    }
    None
}

fn index_key(elem: &IndexElem) -> Option<SqlError> {
    let ordering = SortByDir::try_from(elem.ordering).unwrap_or(SortByDir::SortbyDefault);
    if matches!(ordering, SortByDir::SortbyAsc | SortByDir::SortbyDesc | SortByDir::SortbyUsing) {
        return Some(SqlError::index_sort_order());
    }
    (!elem.opclass.is_empty()).then(SqlError::index_opclass)
}

/// Whether a `USING` token comes before the key list's `(` (only the access method can be there).
fn names_access_method(text: &str) -> bool {
    let Ok(tokens) = pg_query::scan_tokens(text) else { return false };
    tokens
        .iter()
        .map(|t| Token::try_from(t.token))
        .take_while(|t| !matches!(t, Ok(Token::Ascii40)))
        .any(|t| matches!(t, Ok(Token::Using)))
}

/// `CREATE FUNCTION` / `CREATE PROCEDURE`: procedures are refused, functions only in `sql`.
pub(super) fn create_function(stmt: &CreateFunctionStmt) -> Option<SqlError> {
    if stmt.is_procedure {
        return Some(SqlError::procedure());
    }
    let language = def_elems(&stmt.options).find(|d| d.defname == "language")?;
    let name = match language.arg.as_ref()?.node.as_ref()? {
        NodeEnum::String(s) => s.sval.clone(),
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Sval(s)) => s.sval.clone(),
            _ => return None,
        },
        _ => return None,
    };
    (!name.eq_ignore_ascii_case("sql")).then(|| SqlError::function_language(&name))
}
