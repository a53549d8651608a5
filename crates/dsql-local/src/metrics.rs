//! The gateway's Prometheus metrics (`dsql_local_*`) and the `/metrics` endpoint that serves them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::errors::SqlError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    code: String,
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Marker {
    marker: String,
}

/// Every metric the gateway exports; cheap to clone (shared registry).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    accepted: Counter,
    refused: Family<Reason, Counter>,
    closed: Family<Reason, Counter>,
    open: Gauge,
    statements_refused: Family<Rule, Counter>,
    occ: Family<Marker, Counter>,
    connect: Histogram,
    analysis: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let accepted = Counter::default();
        let refused = Family::<Reason, Counter>::default();
        let closed = Family::<Reason, Counter>::default();
        let open = Gauge::default();
        let statements_refused = Family::<Rule, Counter>::default();
        let occ = Family::<Marker, Counter>::default();
        // 0.1 ms to ~3 s.
        let connect = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        // 1 µs to ~30 ms.
        let analysis = Histogram::new(exponential_buckets(0.000_001, 2.0, 16));
        registry.register(
            "dsql_local_connections_accepted",
            "Connections admitted (TLS, token and limits passed)",
            accepted.clone(),
        );
        registry.register(
            "dsql_local_connections_refused",
            "Connections refused, by reason",
            refused.clone(),
        );
        registry.register(
            "dsql_local_connections_closed",
            "Connections ended, by reason (client, lifetime, error)",
            closed.clone(),
        );
        registry.register("dsql_local_connections_open", "Connections open now", open.clone());
        registry.register(
            "dsql_local_statements_refused",
            "Statements refused with DSQL's error, by SQLSTATE and rule",
            statements_refused.clone(),
        );
        registry.register(
            "dsql_local_occ_conflicts",
            "OCC conflicts signalled, by marker (OC000, OC001)",
            occ.clone(),
        );
        registry.register(
            "dsql_local_connect_seconds",
            "Time from accept to ready: TLS, token check, upstream connect",
            connect.clone(),
        );
        registry.register(
            "dsql_local_statement_analysis_seconds",
            "Latency the gateway adds per statement text: parse and rules",
            analysis.clone(),
        );
        Self {
            registry: Arc::new(registry),
            accepted,
            refused,
            closed,
            open,
            statements_refused,
            occ,
            connect,
            analysis,
        }
    }

    /// The exposition text (OpenMetrics).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn connection_accepted(&self, connect: Duration) {
        self.accepted.inc();
        self.open.inc();
        self.connect.observe(connect.as_secs_f64());
    }

    pub(crate) fn connection_refused(&self, reason: &str) {
        self.refused.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    pub(crate) fn connection_closed(&self, reason: &str) {
        self.open.dec();
        self.closed.get_or_create(&Reason { reason: reason.to_owned() }).inc();
    }

    pub(crate) fn statement_refused(&self, error: &SqlError) {
        self.statements_refused
            .get_or_create(&Rule { code: error.code.to_owned(), rule: rule_label(&error.message) })
            .inc();
    }

    pub(crate) fn occ_conflict(&self, marker: &str) {
        self.occ.get_or_create(&Marker { marker: marker.to_owned() }).inc();
    }

    pub(crate) fn observe_analysis(&self, took: Duration) {
        self.analysis.observe(took.as_secs_f64());
    }
}

/// A bounded label for a refusal: its message with quoted names taken out.
fn rule_label(message: &str) -> String {
    let mut label = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            quoted = !quoted;
            if quoted {
                label.push('_');
            }
        } else if !quoted {
            label.push(c);
        }
    }
    label
}

/// Serves `GET /metrics` (any path, in fact) on `addr` until the task is dropped.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                // One read is enough for a scrape's request line; the body is ignored.
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request)).await;
                let body = metrics.encode();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_labels_drop_quoted_names() {
        assert_eq!(rule_label("type \"serial\" does not exist"), "type _ does not exist");
        assert_eq!(rule_label("unsupported statement: Truncate"), "unsupported statement: Truncate");
    }

    #[test]
    fn families_are_exported() {
        let metrics = Metrics::new();
        metrics.connection_refused("rate_exceeded");
        metrics.statement_refused(&SqlError::multiple_ddl());
        let text = metrics.encode();
        assert!(text.contains("dsql_local_connections_refused_total{reason=\"rate_exceeded\"} 1"), "{text}");
        assert!(text.contains("dsql_local_statements_refused_total{code=\"0A000\""), "{text}");
    }
}
