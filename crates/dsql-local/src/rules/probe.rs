//! Probes: how many rows a write would report, built on the parse tree and deparsed by
//! libpg_query (no string surgery).

use pg_query::protobuf::{
    AConst, Alias, CoercionForm, DeleteStmt, FuncCall, InsertStmt, Integer, LimitOption, Node,
    OnConflictAction, RangeSubselect, RangeVar, ResTarget, SelectStmt, SetOperation, SubLink, SubLinkType,
    UpdateStmt, WithClause, a_const,
};
use pg_query::{DeparseOptions, NodeEnum, NodeRef};

use super::Probe;
use super::query::values_rows;

/// `UPDATE`: the rows its condition selects in the target (each once, whatever the `FROM` join).
pub(super) fn update(stmt: &UpdateStmt) -> Option<Probe> {
    count_of_target(
        stmt.relation.as_ref()?,
        &stmt.from_clause,
        stmt.where_clause.as_deref(),
        stmt.with_clause.as_ref(),
    )
}

/// `DELETE`: the rows its condition selects in the target (each once, whatever the `USING` join).
pub(super) fn delete(stmt: &DeleteStmt) -> Option<Probe> {
    count_of_target(
        stmt.relation.as_ref()?,
        &stmt.using_clause,
        stmt.where_clause.as_deref(),
        stmt.with_clause.as_ref(),
    )
}

/// `INSERT`: the number of `VALUES` rows, or the rows of its `SELECT`. `ON CONFLICT DO NOTHING`
/// (or `DO UPDATE ... WHERE`) reports only some of them, which only running it tells: no probe.
pub(super) fn insert(stmt: &InsertStmt) -> Option<Probe> {
    if let Some(on_conflict) = &stmt.on_conflict_clause {
        let updates_all = on_conflict.action == OnConflictAction::OnconflictUpdate as i32
            && on_conflict.where_clause.is_none();
        if !updates_all {
            return None;
        }
    }
    let Some(source) = stmt.select_stmt.as_deref() else {
        // `INSERT ... DEFAULT VALUES`
        return Some(Probe::Rows(1));
    };
    let Some(NodeEnum::SelectStmt(select)) = source.node.as_ref() else { return None };
    if stmt.with_clause.is_none()
        && let Some(rows) = values_rows(select)
    {
        return Some(Probe::Rows(rows));
    }
    let subselect = node(NodeEnum::RangeSubselect(Box::new(RangeSubselect {
        lateral: false,
        subquery: Some(Box::new(source.clone())),
        alias: Some(Alias { aliasname: "s".to_owned(), colnames: Vec::new() }),
    })));
    deparse(count_select(vec![subselect], None, stmt.with_clause.clone()))
}

fn count_of_target(
    target: &RangeVar,
    items: &[Node],
    condition: Option<&Node>,
    with: Option<&WithClause>,
) -> Option<Probe> {
    // `WHERE CURRENT OF cursor` depends on a cursor's position, not on a condition.
    if matches!(condition.and_then(|c| c.node.as_ref()), Some(NodeEnum::CurrentOfExpr(_))) {
        return None;
    }
    let target = node(NodeEnum::RangeVar(target.clone()));
    let condition = if items.is_empty() {
        condition.cloned()
    } else {
        let one = node(NodeEnum::ResTarget(Box::new(ResTarget {
            name: String::new(),
            indirection: Vec::new(),
            val: Some(Box::new(node(NodeEnum::AConst(AConst {
                isnull: false,
                location: -1,
                val: Some(a_const::Val::Ival(Integer { ival: 1 })),
            })))),
            location: -1,
        })));
        let exists = SelectStmt { target_list: vec![one], ..select(items.to_vec(), condition.cloned()) };
        Some(node(NodeEnum::SubLink(Box::new(SubLink {
            sub_link_type: SubLinkType::ExistsSublink as i32,
            subselect: Some(Box::new(node(NodeEnum::SelectStmt(Box::new(exists))))),
            location: -1,
            ..SubLink::default()
        }))))
    };
    deparse(count_select(vec![target], condition, with.cloned()))
}

/// `SELECT count(*) FROM <from> [WHERE <condition>]`, with the statement's `WITH`.
fn count_select(from: Vec<Node>, condition: Option<Node>, with: Option<WithClause>) -> SelectStmt {
    let count = node(NodeEnum::ResTarget(Box::new(ResTarget {
        name: String::new(),
        indirection: Vec::new(),
        val: Some(Box::new(node(NodeEnum::FuncCall(Box::new(FuncCall {
            funcname: vec![node(NodeEnum::String(pg_query::protobuf::String { sval: "count".to_owned() }))],
            agg_star: true,
            funcformat: CoercionForm::CoerceExplicitCall as i32,
            location: -1,
            ..FuncCall::default()
        }))))),
        location: -1,
    })));
    SelectStmt { target_list: vec![count], with_clause: with, ..select(from, condition) }
}

fn select(from: Vec<Node>, condition: Option<Node>) -> SelectStmt {
    SelectStmt {
        from_clause: from,
        where_clause: condition.map(Box::new),
        op: SetOperation::SetopNone as i32,
        limit_option: LimitOption::Default as i32,
        ..SelectStmt::default()
    }
}

fn node(node: NodeEnum) -> Node {
    Node { node: Some(node) }
}

fn deparse(select: SelectStmt) -> Option<Probe> {
    NodeRef::SelectStmt(&select).deparse(DeparseOptions::default()).ok().map(Probe::Count)
}
