//! Reading what Terraform wrote: the local state file (so that checks and `status` need no
//! Terraform run) and the JSON form of a saved plan (`terraform show -json <plan>`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Deserialize;
use serde_json::Value;

/// The parts of a local state file (format version 4) the xtask reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StateFile {
    #[serde(default)]
    outputs: BTreeMap<String, OutputValue>,
    #[serde(default)]
    resources: Vec<StateResource>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutputValue {
    pub(crate) value: Value,
}

#[derive(Debug, Deserialize)]
struct StateResource {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    instances: Vec<StateInstance>,
}

#[derive(Debug, Deserialize)]
struct StateInstance {
    #[serde(default)]
    attributes: Value,
}

/// The resource (and data source) types of this module; anything else means a state of another
/// configuration.
const OUR_TYPES: [&str; 6] = [
    "aws_dsql_cluster",
    "aws_dynamodb_table",
    "aws_opensearch_domain",
    "aws_caller_identity",
    "aws_partition",
    "aws_iam_session_context",
];

impl StateFile {
    /// Reads the state at `path`; a missing file is an empty state.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a terraform state file (invalid JSON); move it aside and retry",
                path.display()
            )
        })
    }

    /// Parses what `terraform state pull` printed (from the state at `location`).
    pub(crate) fn parse(json: &str, location: &str) -> Result<Self> {
        if json.trim().is_empty() {
            // `state pull` prints nothing when the backend holds no state yet.
            return Ok(Self::default());
        }
        serde_json::from_str(json)
            .with_context(|| format!("the terraform state at {location} is not a state file (invalid JSON)"))
    }

    /// Whether the state manages anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.resources.iter().all(|r| r.instances.is_empty())
    }

    /// A string output, when present and non-empty.
    pub(crate) fn output(&self, name: &str) -> Option<&str> {
        self.outputs.get(name).and_then(|o| o.value.as_str()).filter(|s| !s.is_empty())
    }

    /// The project the state was applied for (the `project_name` output, else the cluster's
    /// Project tag).
    pub(crate) fn project(&self) -> Option<&str> {
        self.output("project_name").or_else(|| {
            self.cluster_attributes()?.get("tags")?.get("Project")?.as_str().filter(|s| !s.is_empty())
        })
    }

    /// Resource types in the state that this module does not define, e.g. `aws_instance.web`.
    pub(crate) fn foreign_resources(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter(|r| !OUR_TYPES.contains(&r.kind.as_str()))
            .map(|r| format!("{}.{}", r.kind, r.name))
            .collect()
    }

    fn cluster_attributes(&self) -> Option<&Value> {
        self.resources
            .iter()
            .find(|r| r.kind == "aws_dsql_cluster" && r.name == "this")?
            .instances
            .first()
            .map(|i| &i.attributes)
    }

    /// The identifier of the cluster the state manages.
    pub(crate) fn cluster_identifier(&self) -> Option<&str> {
        self.cluster_attributes()?.get("identifier")?.as_str().filter(|s| !s.is_empty())
    }

    /// Whether Aurora DSQL deletion protection was on at the last apply or refresh.
    pub(crate) fn deletion_protection(&self) -> Option<bool> {
        self.cluster_attributes()?.get("deletion_protection_enabled")?.as_bool()
    }

    /// Name and endpoint (host) of the OpenSearch domain the state manages.
    pub(crate) fn opensearch_domain(&self) -> Option<(&str, &str)> {
        let attributes = &self
            .resources
            .iter()
            .find(|r| r.kind == "aws_opensearch_domain" && r.name == "visibility")?
            .instances
            .first()?
            .attributes;
        let name = attributes.get("domain_name")?.as_str()?;
        Some((name, attributes.get("endpoint").and_then(Value::as_str).unwrap_or_default()))
    }

    /// Names of the DynamoDB tables the state manages.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter(|r| r.kind == "aws_dynamodb_table")
            .flat_map(|r| &r.instances)
            .filter_map(|i| i.attributes.get("name")?.as_str().map(str::to_owned))
            .collect()
    }
}

/// The parts of `terraform show -json <plan>` the xtask reads.
#[derive(Debug, Deserialize)]
pub(crate) struct PlanJson {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
    /// Changes made outside Terraform that the refresh found.
    #[serde(default)]
    resource_drift: Vec<ResourceChange>,
    #[serde(default)]
    output_changes: BTreeMap<String, ChangeBody>,
}

#[derive(Debug, Deserialize)]
struct ResourceChange {
    address: String,
    #[serde(rename = "type")]
    kind: String,
    change: ChangeBody,
}

#[derive(Debug, Deserialize)]
struct ChangeBody {
    actions: Vec<String>,
    #[serde(default)]
    before: Value,
}

/// What a plan would do, ready to print and to decide on.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PlanSummary {
    /// One line per resource that changes, e.g. `+ create aws_dsql_cluster.this`.
    pub(crate) changes: Vec<String>,
    /// Whether any output value changes (an apply is still needed to record it).
    pub(crate) outputs_change: bool,
    /// Identifiers of clusters the state had but AWS no longer has.
    pub(crate) clusters_deleted_outside: Vec<String>,
    /// Tables the state had but AWS no longer has.
    pub(crate) tables_deleted_outside: Vec<String>,
}

impl PlanJson {
    /// Parses the JSON printed by `terraform show -json <plan>`.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).context("terraform printed a plan this xtask cannot read (`show -json`)")
    }

    pub(crate) fn summary(&self) -> PlanSummary {
        let changes = self
            .resource_changes
            .iter()
            .filter_map(|rc| {
                let verb = match rc.change.actions.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["create"] => "+ create",
                    ["update"] => "~ update",
                    ["delete"] => "- destroy",
                    ["delete", "create"] | ["create", "delete"] => "-/+ replace",
                    _ => return None,
                };
                Some(format!("{verb} {}", rc.address))
            })
            .collect();
        let outputs_change =
            self.output_changes.values().any(|c| c.actions.iter().any(|a| a != "no-op" && a != "read"));
        let deleted = |kind: &str, key: &str| -> Vec<String> {
            self.resource_drift
                .iter()
                .filter(|d| d.kind == kind && d.change.actions == ["delete"])
                .map(|d| d.change.before.get(key).and_then(Value::as_str).unwrap_or(&d.address).to_owned())
                .collect()
        };
        PlanSummary {
            changes,
            outputs_change,
            clusters_deleted_outside: deleted("aws_dsql_cluster", "identifier"),
            tables_deleted_outside: deleted("aws_dynamodb_table", "name"),
        }
    }
}

impl PlanSummary {
    /// Whether applying the plan would do anything.
    pub(crate) fn has_changes(&self) -> bool {
        !self.changes.is_empty() || self.outputs_change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = r#"{
      "version": 4, "outputs": {"project_name": {"value": "demo", "type": "string"},
                                "rate_limiter_table": {"value": "", "type": "string"}},
      "resources": [
        {"mode": "managed", "type": "aws_dsql_cluster", "name": "this",
         "instances": [{"attributes": {"identifier": "abc", "deletion_protection_enabled": true,
                                       "tags": {"Project": "demo"}}}]},
        {"mode": "managed", "type": "aws_dynamodb_table", "name": "conn_lease",
         "instances": [{"index_key": 0, "attributes": {"name": "demo-dsql-conn-lease"}}]}
      ]}"#;

    #[test]
    fn the_state_tells_project_cluster_protection_and_tables() {
        let state: StateFile = serde_json::from_str(STATE).unwrap();
        assert!(!state.is_empty());
        assert_eq!(state.project(), Some("demo"));
        assert_eq!(state.cluster_identifier(), Some("abc"));
        assert_eq!(state.deletion_protection(), Some(true));
        assert_eq!(state.table_names(), ["demo-dsql-conn-lease"]);
        assert_eq!(state.output("rate_limiter_table"), None, "an empty output counts as absent");
        assert!(state.foreign_resources().is_empty());
    }

    #[test]
    fn a_missing_state_file_is_empty() {
        let state = StateFile::read(Path::new("/nonexistent/terraform.tfstate")).unwrap();
        assert!(state.is_empty());
        assert_eq!(state.project(), None);
    }

    #[test]
    fn a_plan_summary_lists_changes_and_drift() {
        let plan = PlanJson::parse(
            r#"{"resource_changes": [
                  {"address": "aws_dsql_cluster.this", "type": "aws_dsql_cluster", "change": {"actions": ["create"]}},
                  {"address": "aws_dynamodb_table.conn_lease[0]", "type": "aws_dynamodb_table", "change": {"actions": ["no-op"]}},
                  {"address": "aws_dynamodb_table.rate_limiter[0]", "type": "aws_dynamodb_table", "change": {"actions": ["delete", "create"]}}],
                "resource_drift": [
                  {"address": "aws_dsql_cluster.this", "type": "aws_dsql_cluster",
                   "change": {"actions": ["delete"], "before": {"identifier": "gone1"}}}],
                "output_changes": {"region": {"actions": ["no-op"]}}}"#,
        )
        .unwrap();
        let summary = plan.summary();
        assert_eq!(
            summary.changes,
            ["+ create aws_dsql_cluster.this", "-/+ replace aws_dynamodb_table.rate_limiter[0]"]
        );
        assert_eq!(summary.clusters_deleted_outside, ["gone1"]);
        assert!(summary.tables_deleted_outside.is_empty());
        assert!(summary.has_changes());
    }

    #[test]
    fn a_plan_of_no_ops_has_no_changes() {
        let plan = PlanJson::parse(
            r#"{"resource_changes": [{"address": "aws_dsql_cluster.this", "type": "aws_dsql_cluster",
                 "change": {"actions": ["no-op"]}}], "output_changes": {"region": {"actions": ["no-op"]}}}"#,
        )
        .unwrap();
        assert!(!plan.summary().has_changes());
    }
}
