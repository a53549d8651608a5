//! Transaction statements and session settings.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    Node, TransactionStmt, TransactionStmtKind, VariableSetKind, VariableSetStmt, a_const,
};

use super::Kind;
use super::ddl::def_elems;
use crate::errors::SqlError;

/// Settings DSQL refuses to change, whatever the value.
const REFUSED_SETTINGS: &[&str] =
    &["default_transaction_isolation", "transaction_isolation", "role", "session_authorization"];

/// `BEGIN`, `COMMIT`, `SAVEPOINT`, ...: the kind and DSQL's refusal.
pub(super) fn transaction(stmt: &TransactionStmt) -> (Kind, Option<SqlError>) {
    let kind = TransactionStmtKind::try_from(stmt.kind).unwrap_or(TransactionStmtKind::Undefined);
    let refused = |what| (Kind::Other, Some(SqlError::unsupported_transaction_statement(what)));
    match kind {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
            (Kind::Begin { read_only: read_only(&stmt.options) }, isolation_refusal(&stmt.options))
        }
        TransactionStmtKind::TransStmtCommit => (Kind::Commit, None),
        TransactionStmtKind::TransStmtRollback => (Kind::Rollback, None),
        TransactionStmtKind::TransStmtSavepoint => refused("SAVEPOINT"),
        TransactionStmtKind::TransStmtRelease => refused("RELEASE"),
        TransactionStmtKind::TransStmtRollbackTo => refused("ROLLBACK TO"),
        TransactionStmtKind::TransStmtPrepare => refused("PREPARE TRANSACTION"),
        TransactionStmtKind::TransStmtCommitPrepared => refused("COMMIT PREPARED"),
        TransactionStmtKind::TransStmtRollbackPrepared => refused("ROLLBACK PREPARED"),
        TransactionStmtKind::Undefined => (Kind::Other, None),
    }
}

/// `SET`/`RESET`: a session statement; DSQL refuses transaction characteristics and a few
/// parameters.
pub(super) fn set(stmt: &VariableSetStmt) -> Option<SqlError> {
    let kind = VariableSetKind::try_from(stmt.kind).unwrap_or(VariableSetKind::Undefined);
    match kind {
        // `SET TRANSACTION ...` / `SET SESSION CHARACTERISTICS AS TRANSACTION ...`: an
        // unsupported level is named first (recorded), then the statement itself is refused.
        VariableSetKind::VarSetMulti
            if stmt.name == "TRANSACTION" || stmt.name == "SESSION CHARACTERISTICS" =>
        {
            Some(isolation_refusal(&stmt.args).unwrap_or_else(|| SqlError::setting_not_supported(&stmt.name)))
        }
        VariableSetKind::VarSetValue | VariableSetKind::VarSetDefault | VariableSetKind::VarSetCurrent
            if REFUSED_SETTINGS.contains(&stmt.name.as_str()) =>
        {
            Some(SqlError::setting_not_supported(&stmt.name))
        }
        _ => None,
    }
}

/// `ISOLATION LEVEL` other than `REPEATABLE READ` among transaction options.
fn isolation_refusal(options: &[Node]) -> Option<SqlError> {
    let level = def_elems(options).find(|d| d.defname == "transaction_isolation")?;
    let level = string_constant(level.arg.as_ref()?)?;
    (level != "repeatable read").then(|| SqlError::unsupported_isolation_level(level))
}

/// `READ ONLY` among transaction options (the last one given wins, as in PostgreSQL).
fn read_only(options: &[Node]) -> bool {
    def_elems(options).filter(|d| d.defname == "transaction_read_only").last().is_some_and(|d| {
        matches!(
            d.arg.as_ref().and_then(|a| a.node.as_ref()),
            Some(NodeEnum::AConst(c)) if matches!(&c.val, Some(a_const::Val::Ival(i)) if i.ival != 0)
        )
    })
}

fn string_constant(node: &Node) -> Option<&str> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Sval(s)) => Some(s.sval.as_str()),
            _ => None,
        },
        NodeEnum::String(s) => Some(s.sval.as_str()),
        _ => None,
    }
}
