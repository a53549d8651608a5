//! What a query contains, wherever in the statement it is: locking clauses, `TABLESAMPLE`,
//! functions DSQL cannot run, data-modifying statements inside a `WITH`.

use pg_query::NodeEnum;
use pg_query::protobuf::{FuncCall, LockClauseStrength, Node, SelectStmt, WithClause, a_const};

use crate::errors::SqlError;

/// Beyond this depth the walk stops (PostgreSQL's own stack limit keeps real trees shallower).
const MAX_DEPTH: usize = 1_000;

/// Text search functions whose first argument names a configuration; DSQL has none.
const TEXT_SEARCH: &[&str] =
    &["to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery"];

/// Geometric constructors: their result types do not exist on DSQL.
const GEOMETRIC: &[&str] = &["point", "line", "lseg", "box", "path", "polygon", "circle"];

/// What the walk found.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// A `TABLESAMPLE` clause.
    tablesample: bool,
    /// The first function call DSQL refuses, with its refusal.
    function: Option<SqlError>,
    /// `FOR SHARE` / `FOR NO KEY UPDATE`.
    refused_lock: bool,
    /// `FOR UPDATE` / `FOR KEY SHARE`: the query takes row locks.
    pub(super) row_lock: bool,
    /// An `INSERT`/`UPDATE`/`DELETE`/`MERGE` below the statement itself (a `WITH` item).
    pub(super) nested_write: bool,
}

impl Findings {
    /// Walks the statement `node`.
    pub(super) fn of(node: &NodeEnum) -> Self {
        let mut findings = Self::default();
        findings.walk(node, 0);
        findings
    }

    /// DSQL's refusal, in the order its parse analysis meets them: FROM (`TABLESAMPLE`), then
    /// expressions (functions), then the locking clause.
    pub(super) fn refusal(&mut self) -> Option<SqlError> {
        if self.tablesample {
            return Some(SqlError::tablesample());
        }
        if let Some(refusal) = self.function.take() {
            return Some(refusal);
        }
        self.refused_lock.then(SqlError::locking_clause)
    }

    fn all(&mut self, nodes: &[Node], depth: usize) {
        for node in nodes {
            self.node(node, depth);
        }
    }

    fn node(&mut self, node: &Node, depth: usize) {
        if let Some(node) = node.node.as_ref() {
            self.walk(node, depth);
        }
    }

    fn boxed(&mut self, node: Option<&Node>, depth: usize) {
        if let Some(node) = node {
            self.node(node, depth);
        }
    }

    fn with(&mut self, with: Option<&WithClause>, depth: usize) {
        if let Some(with) = with {
            self.all(&with.ctes, depth);
        }
    }

    fn select(&mut self, s: &SelectStmt, depth: usize) {
        self.with(s.with_clause.as_ref(), depth);
        self.all(&s.from_clause, depth);
        self.all(&s.target_list, depth);
        self.boxed(s.where_clause.as_deref(), depth);
        self.all(&s.group_clause, depth);
        self.boxed(s.having_clause.as_deref(), depth);
        self.all(&s.values_lists, depth);
        self.all(&s.sort_clause, depth);
        self.boxed(s.limit_offset.as_deref(), depth);
        self.boxed(s.limit_count.as_deref(), depth);
        self.all(&s.locking_clause, depth);
        if let Some(larg) = &s.larg {
            self.select(larg, depth + 1);
        }
        if let Some(rarg) = &s.rarg {
            self.select(rarg, depth + 1);
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per node kind that can hold a query or an expression
    fn walk(&mut self, node: &NodeEnum, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let d = depth + 1;
        match node {
            NodeEnum::SelectStmt(s) => self.select(s, d),
            NodeEnum::InsertStmt(s) => {
                self.nested_write |= depth > 0;
                self.with(s.with_clause.as_ref(), d);
                self.boxed(s.select_stmt.as_deref(), d);
                if let Some(on_conflict) = &s.on_conflict_clause {
                    self.all(&on_conflict.target_list, d);
                    self.boxed(on_conflict.where_clause.as_deref(), d);
                }
                if let Some(returning) = &s.returning_clause {
                    self.all(&returning.exprs, d);
                }
            }
            NodeEnum::UpdateStmt(s) => {
                self.nested_write |= depth > 0;
                self.with(s.with_clause.as_ref(), d);
                self.all(&s.from_clause, d);
                self.all(&s.target_list, d);
                self.boxed(s.where_clause.as_deref(), d);
                if let Some(returning) = &s.returning_clause {
                    self.all(&returning.exprs, d);
                }
            }
            NodeEnum::DeleteStmt(s) => {
                self.nested_write |= depth > 0;
                self.with(s.with_clause.as_ref(), d);
                self.all(&s.using_clause, d);
                self.boxed(s.where_clause.as_deref(), d);
                if let Some(returning) = &s.returning_clause {
                    self.all(&returning.exprs, d);
                }
            }
            NodeEnum::MergeStmt(s) => {
                self.nested_write |= depth > 0;
                self.with(s.with_clause.as_ref(), d);
                self.boxed(s.source_relation.as_deref(), d);
                self.boxed(s.join_condition.as_deref(), d);
            }
            NodeEnum::ExplainStmt(s) => self.boxed(s.query.as_deref(), d),
            NodeEnum::DeclareCursorStmt(s) => self.boxed(s.query.as_deref(), d),
            NodeEnum::CopyStmt(s) => self.boxed(s.query.as_deref(), d),
            NodeEnum::CommonTableExpr(s) => self.boxed(s.ctequery.as_deref(), d),
            NodeEnum::RangeSubselect(s) => self.boxed(s.subquery.as_deref(), d),
            NodeEnum::RangeFunction(s) => self.all(&s.functions, d),
            NodeEnum::RangeTableSample(s) => {
                self.tablesample = true;
                self.boxed(s.relation.as_deref(), d);
            }
            NodeEnum::JoinExpr(s) => {
                self.boxed(s.larg.as_deref(), d);
                self.boxed(s.rarg.as_deref(), d);
                self.boxed(s.quals.as_deref(), d);
            }
            NodeEnum::LockingClause(s) => match LockClauseStrength::try_from(s.strength) {
                Ok(LockClauseStrength::LcsForshare | LockClauseStrength::LcsFornokeyupdate) => {
                    self.refused_lock = true;
                }
                Ok(LockClauseStrength::LcsForupdate | LockClauseStrength::LcsForkeyshare) => {
                    self.row_lock = true;
                }
                _ => {}
            },
            NodeEnum::SubLink(s) => {
                self.boxed(s.testexpr.as_deref(), d);
                self.boxed(s.subselect.as_deref(), d);
            }
            NodeEnum::FuncCall(s) => {
                if self.function.is_none() {
                    self.function = function_refusal(s);
                }
                self.all(&s.args, d);
                self.all(&s.agg_order, d);
                self.boxed(s.agg_filter.as_deref(), d);
            }
            NodeEnum::AExpr(s) => {
                self.boxed(s.lexpr.as_deref(), d);
                self.boxed(s.rexpr.as_deref(), d);
            }
            NodeEnum::BoolExpr(s) => self.all(&s.args, d),
            NodeEnum::TypeCast(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::ResTarget(s) => self.boxed(s.val.as_deref(), d),
            NodeEnum::CaseExpr(s) => {
                self.boxed(s.arg.as_deref(), d);
                self.all(&s.args, d);
                self.boxed(s.defresult.as_deref(), d);
            }
            NodeEnum::CaseWhen(s) => {
                self.boxed(s.expr.as_deref(), d);
                self.boxed(s.result.as_deref(), d);
            }
            NodeEnum::CoalesceExpr(s) => self.all(&s.args, d),
            NodeEnum::MinMaxExpr(s) => self.all(&s.args, d),
            NodeEnum::NullTest(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::BooleanTest(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::RowExpr(s) => self.all(&s.args, d),
            NodeEnum::AArrayExpr(s) => self.all(&s.elements, d),
            NodeEnum::AIndirection(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::SortBy(s) => self.boxed(s.node.as_deref(), d),
            NodeEnum::GroupingSet(s) => self.all(&s.content, d),
            NodeEnum::CollateClause(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::NamedArgExpr(s) => self.boxed(s.arg.as_deref(), d),
            NodeEnum::List(s) => self.all(&s.items, d),
            _ => {}
        }
    }
}

/// DSQL's refusal of a function call: text search with a named configuration, geometric
/// constructors. Only built-in names (unqualified or `pg_catalog.`).
fn function_refusal(call: &FuncCall) -> Option<SqlError> {
    let names: Vec<&str> = call
        .funcname
        .iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    let name = match names.as_slice() {
        [name] | ["pg_catalog", name] => *name,
        _ => return None,
    };
    if TEXT_SEARCH.contains(&name) && call.args.len() >= 2 {
        let Some(NodeEnum::AConst(config)) = call.args[0].node.as_ref() else { return None };
        let Some(a_const::Val::Sval(config)) = &config.val else { return None };
        return Some(SqlError::text_search_configuration(&config.sval));
    }
    (GEOMETRIC.contains(&name) && !call.args.is_empty()).then(|| SqlError::datatype_not_supported(name))
}

/// Whether a `SELECT` statement is a plain `VALUES` list (an `INSERT ... VALUES`), and how many rows.
pub(super) fn values_rows(select: &SelectStmt) -> Option<u64> {
    let plain = select.with_clause.is_none()
        && select.sort_clause.is_empty()
        && select.limit_count.is_none()
        && select.limit_offset.is_none()
        && select.larg.is_none();
    (plain && !select.values_lists.is_empty()).then_some(select.values_lists.len() as u64)
}
