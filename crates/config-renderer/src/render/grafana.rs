//! `grafana/datasources.yaml` and the dashboards under `grafana/dashboards/`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{
    GRAFANA_DSQL_CLUSTER_VARIABLE, GRAFANA_DSQL_DASHBOARD, GRAFANA_SERVER_DASHBOARD, MIMIR_SERVICE, Rendered,
    commented, yaml_str,
};
use crate::error::ConfigError;
use crate::model::Config;

pub(super) fn datasources(c: &Config, header: &str) -> String {
    let mut y = commented(header, "# ");
    let _ = write!(
        y,
        "# Fixed uids, so dashboards refer to `prometheus` and `cloudwatch` on every machine.\n\
         apiVersion: 1\n\
         datasources:\n  \
         - name: Mimir\n    uid: prometheus\n    type: prometheus\n    access: proxy\n    \
         url: {mimir}\n    isDefault: true\n    editable: false\n    jsonData:\n      \
         httpMethod: POST\n      prometheusType: Mimir\n      timeInterval: 15s\n  \
         - name: CloudWatch\n    uid: cloudwatch\n    type: cloudwatch\n    editable: false\n    \
         jsonData:\n      authType: default\n      defaultRegion: {region}\n      \
         customMetricsNamespaces: \"AWS/AuroraDSQL\"\n",
        mimir = yaml_str(&format!("http://{MIMIR_SERVICE}:{}/prometheus", c.observability.mimir_port)),
        region = yaml_str(&c.project.region),
    );
    y
}

/// One dashboard of the repository's `grafana/` folder.
struct Dashboard {
    /// Where it is rendered, below the generated folder.
    rendered: &'static str,
    /// Its source, relative to the repository root (for error messages).
    source: &'static str,
    /// The source's text, embedded at build time.
    json: &'static str,
}

// Embedded rather than read at render time: rendering stays a function of the config alone (no
// repository root to pass in, nothing to fail reading), and cargo rebuilds when a source changes.
const DASHBOARDS: [Dashboard; 2] = [
    Dashboard {
        rendered: GRAFANA_SERVER_DASHBOARD,
        source: "grafana/server/server.json",
        json: include_str!("../../../../grafana/server/server.json"),
    },
    Dashboard {
        rendered: GRAFANA_DSQL_DASHBOARD,
        source: "grafana/dsql/persistence.json",
        json: include_str!("../../../../grafana/dsql/persistence.json"),
    },
];

/// Every dashboard, with the [`GRAFANA_DSQL_CLUSTER_VARIABLE`] variable (where a dashboard has
/// one) defaulting to the configured cluster. Without a cluster a dashboard renders as its source.
pub(super) fn dashboards(c: &Config) -> Result<Vec<Rendered>, ConfigError> {
    let cluster = c.cluster_id();
    DASHBOARDS.iter().map(|d| dashboard(d, cluster.as_deref())).collect()
}

fn dashboard(d: &Dashboard, cluster: Option<&str>) -> Result<Rendered, ConfigError> {
    let mut json: Value = serde_json::from_str(d.json)
        .map_err(|e| ConfigError::Dashboard { path: d.source, message: e.to_string() })?;
    if let Some(cluster) = cluster {
        preset_cluster(&mut json, cluster);
    }
    // Pretty JSON in the source's key order: the sources are written the same way, so an unchanged
    // dashboard renders byte for byte as its source.
    let mut contents = serde_json::to_string_pretty(&json).expect("a parsed JSON value serializes");
    contents.push('\n');
    Ok(Rendered { path: d.rendered, contents })
}

/// Sets `current` of every `templating.list` entry named [`GRAFANA_DSQL_CLUSTER_VARIABLE`]: Grafana
/// opens the dashboard with that value selected.
fn preset_cluster(dashboard: &mut Value, cluster: &str) {
    let variables = dashboard.pointer_mut("/templating/list").and_then(Value::as_array_mut);
    for variable in variables.into_iter().flatten() {
        if variable["name"] != GRAFANA_DSQL_CLUSTER_VARIABLE {
            continue;
        }
        let Some(fields) = variable.as_object_mut() else { continue };
        let mut current = Map::new();
        current.insert("selected".to_owned(), Value::Bool(true));
        current.insert("text".to_owned(), Value::String(cluster.to_owned()));
        current.insert("value".to_owned(), Value::String(cluster.to_owned()));
        // Replaces the value in place, so the key keeps its position.
        fields.insert("current".to_owned(), Value::Object(current));
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, Dashboard, dashboard};

    const BROKEN: Dashboard = Dashboard {
        rendered: "grafana/dashboards/x/broken.json",
        source: "grafana/x/broken.json",
        json: "{\n  \"uid\": \n",
    };

    #[test]
    fn a_broken_source_is_an_error_naming_the_file_and_the_place() {
        let err = dashboard(&BROKEN, Some("abc")).unwrap_err();
        assert!(matches!(err, ConfigError::Dashboard { path: "grafana/x/broken.json", .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("grafana/x/broken.json is not valid JSON ("), "{message}");
        assert!(message.contains("line 3 column 0"), "{message}");
    }

    #[test]
    fn only_the_cluster_variable_is_preset_and_keys_keep_their_order() {
        let source = Dashboard {
            rendered: "grafana/dashboards/x/two.json",
            source: "grafana/x/two.json",
            json: r#"{"uid": "two", "templating": {"list": [
                {"name": "namespace", "current": {}, "type": "query"},
                {"name": "dsql_cluster", "current": {}, "type": "query"}]}}"#,
        };
        let rendered = dashboard(&source, Some("abc")).unwrap().contents;
        let expected = r#"{
  "uid": "two",
  "templating": {
    "list": [
      {
        "name": "namespace",
        "current": {},
        "type": "query"
      },
      {
        "name": "dsql_cluster",
        "current": {
          "selected": true,
          "text": "abc",
          "value": "abc"
        },
        "type": "query"
      }
    ]
  }
}
"#;
        assert_eq!(rendered, expected);
        let unset = dashboard(&source, None).unwrap().contents;
        assert!(unset.contains("\"name\": \"dsql_cluster\",\n        \"current\": {},"), "{unset}");
    }
}
