//! `grafana/datasources.yaml`.

use std::fmt::Write as _;

use super::{MIMIR_SERVICE, commented, yaml_str};
use crate::model::Config;

pub(super) fn datasources(c: &Config, header: &str) -> String {
    let mut y = commented(header, "# ");
    let cluster = c.cluster_id().unwrap_or_default();
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
         customMetricsNamespaces: \"AWS/AuroraDSQL\"\n      \
         # The cluster of this profile (CloudWatch dimension ClusterId); empty until one is configured.\n      \
         tdsqlClusterId: {cluster}\n",
        mimir = yaml_str(&format!("http://{MIMIR_SERVICE}:{}/prometheus", c.observability.mimir_port)),
        region = yaml_str(&c.project.region),
        cluster = yaml_str(&cluster),
    );
    y
}
