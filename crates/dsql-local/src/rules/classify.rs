//! One statement's kind and refusal, from its parse tree.

use pg_query::NodeEnum;
use pg_query::protobuf::{ExplainStmt, ObjectType};

use super::query::Findings;
use super::{AsyncJob, Kind, ddl, probe, session};
use crate::errors::SqlError;

/// A statement's kind and DSQL's refusal.
#[derive(Debug)]
pub(super) struct Analysis {
    pub(super) kind: Kind,
    pub(super) refusal: Option<SqlError>,
}

/// Analyses the statement `node`. `async_job` is the `ASYNC` the scanner found in it; `text` is
/// the statement's upstream text.
pub(super) fn analyze_node(node: &NodeEnum, async_job: Option<AsyncJob>, text: &str) -> Analysis {
    let ddl = |refusal: Option<SqlError>| Analysis { kind: Kind::Ddl { async_index: false }, refusal };
    let refused = |kind: Kind, refusal: SqlError| Analysis { kind, refusal: Some(refusal) };
    let statement = |name: &str| SqlError::unsupported_statement(name);
    match node {
        NodeEnum::SelectStmt(s) if s.into_clause.is_some() => ddl(Some(statement("CreateTableAs"))),
        NodeEnum::SelectStmt(_) => query(node, None),
        NodeEnum::InsertStmt(s) => query(node, probe::insert(s)),
        NodeEnum::UpdateStmt(s) => query(node, probe::update(s)),
        NodeEnum::DeleteStmt(s) => query(node, probe::delete(s)),
        NodeEnum::MergeStmt(_) => refused(Kind::Write { probe: None }, statement("Merge")),
        NodeEnum::ExplainStmt(s) => explain(node, s),
        NodeEnum::DeclareCursorStmt(_) => query(node, None),
        NodeEnum::CopyStmt(s) => {
            let mut analysis = query(node, None);
            if s.is_from {
                analysis.kind = Kind::Write { probe: None };
            }
            analysis
        }
        NodeEnum::VariableShowStmt(_) | NodeEnum::FetchStmt(_) | NodeEnum::ClosePortalStmt(_) => {
            Analysis { kind: Kind::Read, refusal: None }
        }
        NodeEnum::CallStmt(s) => {
            let waits = s.funccall.as_ref().is_some_and(|call| {
                let names: Vec<&str> = call
                    .funcname
                    .iter()
                    .filter_map(|n| match n.node.as_ref() {
                        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                        _ => None,
                    })
                    .collect();
                names == ["sys", "wait_for_job"]
            });
            Analysis { kind: if waits { Kind::Read } else { Kind::Other }, refusal: None }
        }
        NodeEnum::TransactionStmt(s) => {
            let (kind, refusal) = session::transaction(s);
            Analysis { kind, refusal }
        }
        NodeEnum::VariableSetStmt(s) => Analysis { kind: Kind::Session, refusal: session::set(s) },
        NodeEnum::DiscardStmt(_)
        | NodeEnum::PrepareStmt(_)
        | NodeEnum::DeallocateStmt(_)
        | NodeEnum::ConstraintsSetStmt(_) => Analysis { kind: Kind::Session, refusal: None },

        NodeEnum::TruncateStmt(_) => refused(Kind::Write { probe: None }, statement("Truncate")),
        NodeEnum::ListenStmt(_) => refused(Kind::Other, statement("Listen")),
        NodeEnum::NotifyStmt(_) => refused(Kind::Other, statement("Notify")),
        NodeEnum::UnlistenStmt(_) => refused(Kind::Other, statement("Unlisten")),
        NodeEnum::AlterSystemStmt(_) => refused(Kind::Other, statement("AlterSystem")),
        NodeEnum::LockStmt(_) => refused(Kind::Other, statement("Lock")),
        NodeEnum::DoStmt(_) => refused(Kind::Other, statement("Do")),
        NodeEnum::VacuumStmt(s) if s.is_vacuumcmd => refused(Kind::Other, SqlError::vacuum()),
        NodeEnum::VacuumStmt(_) => Analysis { kind: Kind::Other, refusal: None },

        NodeEnum::CreateStmt(s) => ddl(ddl::create_table(s)),
        NodeEnum::AlterTableStmt(s) => {
            ddl(ddl::alter_table(s, async_job == Some(AsyncJob::ValidateConstraint)))
        }
        NodeEnum::IndexStmt(s) => {
            let is_async = async_job == Some(AsyncJob::IndexBuild);
            Analysis { kind: Kind::Ddl { async_index: is_async }, refusal: ddl::index(s, is_async, text) }
        }
        NodeEnum::CreateSeqStmt(s) => ddl(ddl::create_sequence(&s.options)),
        NodeEnum::AlterSeqStmt(s) => ddl(ddl::alter_sequence(&s.options)),
        NodeEnum::CreateFunctionStmt(s) => ddl(ddl::create_function(s)),
        NodeEnum::CreateDomainStmt(s) => ddl(ddl::create_domain(s.type_name.as_ref())),
        NodeEnum::CreateTrigStmt(_) => ddl(Some(SqlError::not_supported("CREATE TRIGGER"))),
        NodeEnum::CreateEnumStmt(_) => ddl(Some(SqlError::not_supported("CREATE TYPE"))),
        NodeEnum::DefineStmt(s) if s.kind == ObjectType::ObjectType as i32 => {
            ddl(Some(SqlError::not_supported("CREATE TYPE")))
        }
        NodeEnum::AlterEnumStmt(_) | NodeEnum::AlterTypeStmt(_) => {
            ddl(Some(SqlError::not_supported("ALTER TYPE")))
        }
        NodeEnum::RenameStmt(s)
            if s.rename_type == ObjectType::ObjectType as i32
                || s.rename_type == ObjectType::ObjectAttribute as i32 =>
        {
            ddl(Some(SqlError::unsupported_object_in("RENAME")))
        }
        NodeEnum::DropStmt(s) if s.remove_type == ObjectType::ObjectType as i32 => {
            ddl(Some(SqlError::unsupported_object_in("DROP")))
        }
        NodeEnum::CreateTableAsStmt(_) => ddl(Some(statement("CreateTableAs"))),
        NodeEnum::RefreshMatViewStmt(_) => ddl(Some(statement("RefreshMatView"))),
        NodeEnum::CompositeTypeStmt(_) => ddl(Some(statement("CompositeType"))),
        NodeEnum::CreateRangeStmt(_) => ddl(Some(statement("CreateRange"))),
        NodeEnum::CreateExtensionStmt(_) => ddl(Some(statement("CreateExtension"))),
        NodeEnum::CreateEventTrigStmt(_) => ddl(Some(statement("CreateEventTrig"))),
        NodeEnum::CreatedbStmt(_) => ddl(Some(statement("Createdb"))),
        NodeEnum::DropdbStmt(_) => ddl(Some(statement("Dropdb"))),
        NodeEnum::AlterDatabaseStmt(_) => ddl(Some(statement("AlterDatabase"))),
        NodeEnum::AlterDatabaseSetStmt(_) => ddl(Some(statement("AlterDatabaseSet"))),
        NodeEnum::CreateTableSpaceStmt(_) => ddl(Some(statement("CreateTableSpace"))),
        NodeEnum::DropTableSpaceStmt(_) => ddl(Some(statement("DropTableSpace"))),
        NodeEnum::AlterTableSpaceOptionsStmt(_) => ddl(Some(statement("AlterTableSpaceOptions"))),
        NodeEnum::CreateForeignTableStmt(_) => ddl(Some(statement("CreateForeignTable"))),
        NodeEnum::CreateFdwStmt(_) => ddl(Some(statement("CreateFdw"))),
        NodeEnum::CreateForeignServerStmt(_) => ddl(Some(statement("CreateForeignServer"))),
        NodeEnum::CreateUserMappingStmt(_) => ddl(Some(statement("CreateUserMapping"))),
        NodeEnum::ImportForeignSchemaStmt(_) => ddl(Some(statement("ImportForeignSchema"))),
        NodeEnum::CreatePublicationStmt(_) => ddl(Some(statement("CreatePublication"))),
        NodeEnum::CreateSubscriptionStmt(_) => ddl(Some(statement("CreateSubscription"))),

        NodeEnum::CreateSchemaStmt(_)
        | NodeEnum::ViewStmt(_)
        | NodeEnum::DropStmt(_)
        | NodeEnum::RenameStmt(_)
        | NodeEnum::AlterObjectSchemaStmt(_)
        | NodeEnum::AlterOwnerStmt(_)
        | NodeEnum::AlterFunctionStmt(_)
        | NodeEnum::AlterDomainStmt(_)
        | NodeEnum::CommentStmt(_)
        | NodeEnum::GrantStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::AlterDefaultPrivilegesStmt(_)
        | NodeEnum::CreateRoleStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::DropOwnedStmt(_)
        | NodeEnum::ReassignOwnedStmt(_)
        | NodeEnum::DefineStmt(_)
        | NodeEnum::CreatePolicyStmt(_)
        | NodeEnum::AlterPolicyStmt(_)
        | NodeEnum::CreateStatsStmt(_)
        | NodeEnum::AlterStatsStmt(_)
        | NodeEnum::CreateCastStmt(_)
        | NodeEnum::CreateConversionStmt(_)
        | NodeEnum::CreateOpClassStmt(_)
        | NodeEnum::CreateOpFamilyStmt(_)
        | NodeEnum::AlterOpFamilyStmt(_)
        | NodeEnum::RuleStmt(_)
        | NodeEnum::SecLabelStmt(_)
        | NodeEnum::AlterExtensionStmt(_)
        | NodeEnum::AlterExtensionContentsStmt(_)
        | NodeEnum::AlterCollationStmt(_)
        | NodeEnum::AlterTsdictionaryStmt(_)
        | NodeEnum::AlterTsconfigurationStmt(_)
        | NodeEnum::ReindexStmt(_)
        | NodeEnum::ClusterStmt(_) => ddl(None),
        _ => Analysis { kind: Kind::Other, refusal: None },
    }
}

/// A query (`SELECT`, `INSERT`, ...): its kind from what it contains, DSQL's refusal of its
/// clauses and functions.
fn query(node: &NodeEnum, probe: Option<super::Probe>) -> Analysis {
    let mut findings = Findings::of(node);
    let top_write =
        matches!(node, NodeEnum::InsertStmt(_) | NodeEnum::UpdateStmt(_) | NodeEnum::DeleteStmt(_));
    let kind = if findings.nested_write {
        // A data-modifying `WITH`: its rows are not what the probe counts.
        Kind::Write { probe: None }
    } else if top_write {
        Kind::Write { probe }
    } else if findings.row_lock {
        Kind::Write { probe: None }
    } else {
        Kind::Read
    };
    Analysis { kind, refusal: findings.refusal() }
}

/// `EXPLAIN`: a read, unless `ANALYZE` runs a write.
fn explain(node: &NodeEnum, stmt: &ExplainStmt) -> Analysis {
    let mut analysis = query(node, None);
    let analyzes = super::ddl::def_elems(&stmt.options).any(|option| {
        option.defname == "analyze"
            && !matches!(
                option.arg.as_ref().and_then(|a| a.node.as_ref()),
                Some(NodeEnum::String(s)) if matches!(s.sval.to_ascii_lowercase().as_str(), "false" | "off" | "0")
            )
            && !matches!(
                option.arg.as_ref().and_then(|a| a.node.as_ref()),
                Some(NodeEnum::Boolean(b)) if !b.boolval
            )
    });
    let writes = analysis.kind != Kind::Read;
    analysis.kind = if analyzes && writes { Kind::Write { probe: None } } else { Kind::Read };
    analysis
}
