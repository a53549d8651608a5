//! Persistence health for `load`: the Temporal services' Prometheus endpoints, scraped before and
//! after a run (and on each progress line), reduced to what a plugin developer judges a run by.
//!
//! Two exposition styles meet here. Temporal's own metrics framework (the dev server, upstream
//! images) writes `persistence_requests` and `persistence_latency` in seconds; the fork with
//! `framework: opentelemetry` and this repository's reservoir write counters as `<name>_total` and
//! timers as `<name>_milliseconds`. Families are matched by their base name with either suffix.
//!
//! A family that no endpoint exposes is *absent* and reported as such, never as zero. Exporters
//! write a labelled counter only once it is first incremented, so within a group that is present
//! (any family of it seen), a missing counter reads as zero; a group with no family at all (the
//! plugin's families on a server without the plugin) is absent as a whole.

use crate::load::{ms, per_second, round3};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// How long one endpoint may take to answer a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Error types that are answers rather than failures: a read of a row that does not exist.
const EXPECTED_ERROR_TYPES: &[&str] = &["serviceerror_NotFound"];

/// Which exporter a family comes from; a group is absent when none of its families is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The Temporal server's persistence client (every store).
    Persistence,
    /// The DSQL plugin's connection reservoir.
    Reservoir,
    /// The DSQL plugin's transaction retry path (OCC).
    Transactions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Histogram,
}

/// A metric family the report reads: its base name, kind, the labels it is broken down by.
#[derive(Debug)]
struct Family {
    name: &'static str,
    kind: Kind,
    by: &'static [&'static str],
    group: Group,
}

const fn family(name: &'static str, kind: Kind, by: &'static [&'static str], group: Group) -> Family {
    Family { name, kind, by, group }
}

const REQUESTS: &str = "persistence_requests";
const ERRORS: &str = "persistence_error_with_type";
const LATENCY: &str = "persistence_latency";
const RESERVOIR_EMPTY: &str = "dsql_reservoir_empty";
const CHECKOUT_LATENCY: &str = "dsql_reservoir_checkout_latency";
const REFILLS: &str = "dsql_reservoir_refills";
const DISCARDS: &str = "dsql_reservoir_discards";
const TX_CONFLICTS: &str = "dsql_tx_conflict";
const TX_RETRIES: &str = "dsql_tx_retry";
const TX_EXHAUSTED: &str = "dsql_tx_exhausted";
const TX_LATENCY: &str = "dsql_tx_latency";

/// Every family the report reads (the `dsql_*` names are those of crates/reservoir/src/metrics.rs
/// and the fork's plugin).
const FAMILIES: &[Family] = &[
    family(REQUESTS, Kind::Counter, &["operation"], Group::Persistence),
    family(ERRORS, Kind::Counter, &["operation", "error_type"], Group::Persistence),
    family(LATENCY, Kind::Histogram, &["operation"], Group::Persistence),
    family(RESERVOIR_EMPTY, Kind::Counter, &[], Group::Reservoir),
    family(CHECKOUT_LATENCY, Kind::Histogram, &[], Group::Reservoir),
    family(REFILLS, Kind::Counter, &[], Group::Reservoir),
    family(DISCARDS, Kind::Counter, &["reason"], Group::Reservoir),
    family(TX_CONFLICTS, Kind::Counter, &["operation"], Group::Transactions),
    family(TX_RETRIES, Kind::Counter, &["operation"], Group::Transactions),
    family(TX_EXHAUSTED, Kind::Counter, &["operation"], Group::Transactions),
    family(TX_LATENCY, Kind::Histogram, &["operation"], Group::Transactions),
];

impl Family {
    /// The name a query would use: counters with `_total`, timers with their unit.
    fn exposition_name(&self) -> String {
        match (self.kind, self.group) {
            (Kind::Counter, Group::Persistence) => format!("{}[_total]", self.name),
            (Kind::Counter, _) => format!("{}_total", self.name),
            (Kind::Histogram, Group::Persistence) => format!("{}[_milliseconds]", self.name),
            (Kind::Histogram, _) => format!("{}_milliseconds", self.name),
        }
    }
}

/// Every family's name starts with one of these.
const FAMILY_PREFIXES: &[&str] = &["persistence_", "dsql_"];

/// Whether an exposition line (a sample, or its family's HELP or TYPE line) may belong to a family
/// the report reads. It looks at the first [`DECIDED_AFTER`] bytes at most.
fn wanted(line: &[u8]) -> bool {
    let name = line.strip_prefix(b"# HELP ").or_else(|| line.strip_prefix(b"# TYPE ")).unwrap_or(line);
    FAMILY_PREFIXES.iter().any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// A line this long (or its start) tells [`wanted`] all it needs: `# HELP ` and the longest prefix.
const DECIDED_AFTER: usize = 32;

/// Keeps the lines of an exposition that [`wanted`] lets through, fed in pieces as they arrive.
/// A scrape then holds those lines and the start of one other, never the whole exposition (3 MB
/// from a dev server, and growing with its uptime): glibc keeps the heap that buffers of that
/// size leave behind, so the generator's memory grew with each scrape of a long run.
#[derive(Debug, Default)]
struct Sieve {
    kept: Vec<u8>,
    /// The line being read, up to [`DECIDED_AFTER`] bytes of it while undecided.
    line: Vec<u8>,
    /// The rest of the current line is dropped.
    skipping: bool,
}

impl Sieve {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, rest, ended) = match bytes.iter().position(|b| *b == b'\n') {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.skipping {
                self.line.extend_from_slice(piece);
                if !ended && self.line.len() >= DECIDED_AFTER && !wanted(&self.line) {
                    self.line.clear();
                    self.skipping = true;
                }
            }
            if ended {
                self.end_line();
            }
            bytes = rest;
        }
    }

    fn end_line(&mut self) {
        if !self.skipping && wanted(&self.line) {
            self.kept.extend_from_slice(&self.line);
            self.kept.push(b'\n');
        }
        self.line.clear();
        self.skipping = false;
    }

    /// The kept lines (the last one may lack its newline).
    fn finish(mut self) -> Result<String, std::string::FromUtf8Error> {
        self.end_line();
        String::from_utf8(self.kept)
    }
}

/// Which family a metric name (sample or HELP/TYPE line) belongs to, and the factor that turns
/// its histogram bounds into milliseconds.
fn classify(name: &str) -> Option<(&'static Family, f64)> {
    let base = name.strip_suffix("_total").unwrap_or(name);
    let (base, to_ms) = if let Some(base) = base.strip_suffix("_milliseconds") {
        (base, 1.0)
    } else if let Some(base) = base.strip_suffix("_seconds") {
        (base, 1000.0)
    } else {
        // Temporal's own framework records timers in seconds without a suffix.
        (base, 1000.0)
    };
    FAMILIES.iter().find(|f| f.name == base).map(|f| (f, to_ms))
}

/// Cumulative bucket counts by upper bound in milliseconds (`+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets(BTreeMap<u64, f64>);

impl Buckets {
    fn add(&mut self, le_ms: f64, count: f64) {
        // Positive floats order like their bit patterns.
        *self.0.entry(le_ms.to_bits()).or_default() += count;
    }

    fn since(&self, earlier: &Buckets) -> Buckets {
        let total = |b: &Buckets| b.0.values().copied().fold(0.0, f64::max);
        // A restarted server's counts start again from zero.
        if total(self) < total(earlier) {
            return self.clone();
        }
        Buckets(
            self.0
                .iter()
                .map(|(le, count)| (*le, count - earlier.0.get(le).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    fn merge(&mut self, other: &Buckets) {
        for (le, count) in &other.0 {
            *self.0.entry(*le).or_default() += count;
        }
    }

    fn count(&self) -> f64 {
        self.0.values().copied().fold(0.0, f64::max)
    }

    /// The `q` quantile, interpolated within its bucket as Prometheus' `histogram_quantile` does;
    /// `None` without observations.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (bits, cumulative) in &self.0 {
            let le = f64::from_bits(*bits);
            if *cumulative >= rank {
                if le.is_infinite() {
                    // Above the highest finite bound: that bound is all we know.
                    return Some(lower.0);
                }
                let (lower_le, lower_count) = lower;
                let in_bucket = cumulative - lower_count;
                let fraction = if in_bucket > 0.0 { (rank - lower_count) / in_bucket } else { 1.0 };
                return Some(lower_le + (le - lower_le) * fraction);
            }
            lower = (le, *cumulative);
        }
        Some(lower.0)
    }
}

/// What one scrape of every endpoint says about the families of interest, summed over endpoints
/// and over the labels a family is not broken down by.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reading {
    /// Families some endpoint exposes (a sample, or a HELP or TYPE line).
    present: Vec<&'static str>,
    counters: HashMap<(&'static str, Vec<String>), f64>,
    histograms: HashMap<(&'static str, Vec<String>), Buckets>,
}

impl Reading {
    /// Reduces one endpoint's exposition text (Prometheus text or OpenMetrics) into `self`.
    fn add_exposition(&mut self, text: &str) -> Result<()> {
        // A Temporal service exposes thousands of series (megabytes); only the families read here
        // go to the parser, which costs time per line.
        let lines = text.lines().filter(|line| wanted(line.as_bytes())).map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).context("the exposition does not parse")?;
        for name in scrape.docs.keys() {
            if let Some((family, _)) = classify(name) {
                self.mark_present(family);
            }
        }
        for sample in scrape.samples {
            let Some((family, to_ms)) = classify(&sample.metric) else { continue };
            let key: Vec<String> =
                family.by.iter().map(|label| sample.labels.get(label).unwrap_or("").to_owned()).collect();
            match (family.kind, &sample.value) {
                (
                    Kind::Counter,
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Untyped(v)
                    | prometheus_parse::Value::Gauge(v),
                ) => {
                    self.mark_present(family);
                    *self.counters.entry((family.name, key)).or_default() += v;
                }
                (Kind::Histogram, prometheus_parse::Value::Histogram(buckets)) => {
                    self.mark_present(family);
                    let entry = self.histograms.entry((family.name, key)).or_default();
                    for bucket in buckets {
                        entry.add(bucket.less_than * to_ms, bucket.count);
                    }
                }
                // `_sum` and `_count` of histograms come as untyped samples; the buckets suffice.
                _ => {}
            }
        }
        Ok(())
    }

    fn mark_present(&mut self, family: &'static Family) {
        if !self.present.contains(&family.name) {
            self.present.push(family.name);
        }
    }

    /// What happened between `earlier` and this reading.
    pub(crate) fn since(&self, earlier: &Reading) -> Reading {
        let counters = self
            .counters
            .iter()
            .map(|(key, after)| {
                let before = earlier.counters.get(key).copied().unwrap_or(0.0);
                // A restarted service's counter starts again from zero.
                (key.clone(), if *after >= before { after - before } else { *after })
            })
            .collect();
        let histograms = self
            .histograms
            .iter()
            .map(|(key, after)| {
                let delta =
                    earlier.histograms.get(key).map_or_else(|| after.clone(), |before| after.since(before));
                (key.clone(), delta)
            })
            .collect();
        Reading { present: self.present.clone(), counters, histograms }
    }

    fn has(&self, name: &str) -> bool {
        self.present.contains(&name)
    }

    fn group_present(&self, group: Group) -> bool {
        FAMILIES.iter().any(|f| f.group == group && self.has(f.name))
    }

    /// A counter's sum, broken down by its `index`th label; `None` when its group is absent.
    fn counter_by(&self, name: &str, index: usize) -> Option<BTreeMap<String, u64>> {
        let family = FAMILIES.iter().find(|f| f.name == name)?;
        if !self.group_present(family.group) {
            return None;
        }
        let mut out = BTreeMap::new();
        for ((n, key), value) in &self.counters {
            if *n == name {
                let label = key.get(index).cloned().unwrap_or_default();
                *out.entry(label).or_default() += value.round() as u64;
            }
        }
        Some(out)
    }

    fn counter_total(&self, name: &str) -> Option<u64> {
        self.counter_by(name, 0).map(|by| by.values().sum())
    }

    /// A histogram's buckets over every label set (`None` when its group is absent), or only those
    /// whose first label is `first`.
    fn buckets(&self, name: &str, first: Option<&str>) -> Option<Buckets> {
        let family = FAMILIES.iter().find(|f| f.name == name)?;
        if !self.group_present(family.group) {
            return None;
        }
        let mut merged = Buckets::default();
        for ((n, key), buckets) in &self.histograms {
            if *n == name && first.is_none_or(|first| key.first().map(String::as_str) == Some(first)) {
                merged.merge(buckets);
            }
        }
        Some(merged)
    }

    fn p95_ms(&self, name: &str) -> Option<f64> {
        self.buckets(name, None).and_then(|b| b.quantile(0.95)).map(round3)
    }

    /// The families no endpoint exposes, by the names a query would use.
    fn absent(&self) -> Vec<String> {
        FAMILIES.iter().filter(|f| !self.has(f.name)).map(Family::exposition_name).collect()
    }
}

/// The endpoints to scrape and the HTTP client that does it.
pub(crate) struct Scraper {
    client: HttpClient<HttpConnector, Empty<Bytes>>,
    endpoints: Vec<(String, Uri)>,
    stats: ScrapeStats,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

/// How the scrapes went, for the report (and the scrape cost).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ScrapeStats {
    /// Scrapes of every endpoint made.
    count: u64,
    /// Scrapes in which some endpoint did not answer or did not parse.
    failed: u64,
    /// Wall time of one scrape of every endpoint (concurrently), parsing included.
    mean_ms: f64,
    max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip)]
    total: Duration,
}

impl Scraper {
    /// Checks the URLs: each must be `http://HOST:PORT/PATH`.
    pub(crate) fn new(urls: &[String]) -> Result<Self> {
        let mut endpoints = Vec::new();
        for url in urls {
            let uri: Uri = url.parse().map_err(|err| {
                anyhow!("--metrics `{url}` is not a URL ({err}); give e.g. http://127.0.0.1:9090/metrics")
            })?;
            ensure!(
                uri.scheme_str() == Some("http") && uri.host().is_some(),
                "--metrics `{url}` is not an http:// URL; give e.g. http://127.0.0.1:9090/metrics \
                 (the services' metrics endpoints speak plain HTTP)"
            );
            endpoints.push((url.clone(), uri));
        }
        let client = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Self { client, endpoints, stats: ScrapeStats::default() })
    }

    /// The endpoints, as given.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|(url, _)| url.clone()).collect()
    }

    /// Scrapes every endpoint at once; an endpoint that fails fails the scrape (with its URL).
    pub(crate) async fn scrape(&mut self) -> Result<Reading> {
        let started = Instant::now();
        let texts =
            futures::future::join_all(self.endpoints.iter().map(|(url, uri)| self.fetch(url, uri))).await;
        let urls = self.urls();
        // Parsing is CPU work: off the runtime that runs the workers.
        let parse = move || {
            let mut reading = Reading::default();
            for (url, text) in urls.iter().zip(texts) {
                reading
                    .add_exposition(&text?)
                    .with_context(|| format!("cannot read the metrics at {url}"))?;
            }
            Ok::<_, anyhow::Error>(reading)
        };
        let result = tokio::task::spawn_blocking(parse)
            .await
            .unwrap_or_else(|err| Err(anyhow!("the parser panicked: {err}")));
        let took = started.elapsed();
        self.stats.count += 1;
        self.stats.total += took;
        self.stats.mean_ms = ms(self.stats.total / u32::try_from(self.stats.count).unwrap_or(u32::MAX));
        self.stats.max_ms = self.stats.max_ms.max(ms(took));
        if let Err(err) = &result {
            self.stats.failed += 1;
            self.stats.last_error = Some(format!("{err:#}"));
        }
        result
    }

    /// The lines of the families read here, sieved from the body as it arrives.
    async fn fetch(&self, url: &str, uri: &Uri) -> Result<String> {
        let request = async {
            let response = self.client.get(uri.clone()).await?;
            let status = response.status();
            let mut sieve = Sieve::default();
            if status == StatusCode::OK {
                let mut body = response.into_body();
                while let Some(frame) = body.frame().await {
                    if let Some(data) = frame?.data_ref() {
                        sieve.feed(data);
                    }
                }
            }
            Ok::<_, anyhow::Error>((status, sieve))
        };
        let (status, sieve) = tokio::time::timeout(SCRAPE_TIMEOUT, request)
            .await
            .map_err(|_| anyhow!("no answer within {} s", SCRAPE_TIMEOUT.as_secs()))
            .and_then(|r| r)
            .with_context(|| format!("cannot scrape the metrics at {url}"))?;
        if status != StatusCode::OK {
            bail!("the metrics endpoint {url} answered {status}; is it a Prometheus /metrics URL?");
        }
        sieve.finish().with_context(|| format!("the metrics at {url} are not UTF-8 text"))
    }

    /// How the scrapes went so far.
    pub(crate) fn stats(&self) -> ScrapeStats {
        self.stats.clone()
    }
}

/// The persistence section of the load report.
#[derive(Debug, Serialize)]
pub(crate) struct Health {
    endpoints: Vec<String>,
    /// Seconds between the scrape before the run and the one after it.
    window_s: f64,
    scrapes: ScrapeStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Requests>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Errors>,
    /// 95th percentile of every persistence call, all operations together.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_p95_ms: Option<f64>,
    /// The plugin's reservoir (absent on a server without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    reservoir: Option<Reservoir>,
    /// The plugin's transaction retries on OCC conflicts (absent on a server without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    transactions: Option<Transactions>,
    /// Families no endpoint exposed: not zero, unknown.
    absent: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Requests {
    total: u64,
    per_second: f64,
    by_operation: BTreeMap<String, OperationStats>,
}

#[derive(Debug, Serialize)]
struct OperationStats {
    requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    p95_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Errors {
    total: u64,
    /// Errors other than not-found answers (reads of rows that do not exist are normal).
    unexpected: u64,
    by_operation: BTreeMap<String, u64>,
    by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct Reservoir {
    /// Checkouts that found the reservoir empty.
    empty_checkouts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout_latency_p95_ms: Option<f64>,
    refills: u64,
    discards_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct Transactions {
    occ_conflicts: u64,
    retries: u64,
    /// Transactions that ran out of retries: each one an error the caller saw.
    exhausted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_p95_ms: Option<f64>,
}

impl Health {
    /// The report over `window` from the delta between two readings.
    pub(crate) fn new(scraper: &Scraper, delta: &Reading, window: Duration) -> Self {
        let requests = delta.counter_by(REQUESTS, 0).map(|by| {
            let total = by.values().sum();
            let by_operation = by
                .into_iter()
                .filter(|(_, requests)| *requests > 0)
                .map(|(operation, requests)| {
                    let p95 =
                        delta.buckets(LATENCY, Some(&operation)).and_then(|b| b.quantile(0.95)).map(round3);
                    (operation, OperationStats { requests, p95_ms: p95 })
                })
                .collect();
            Requests { total, per_second: round3(per_second(total, window)), by_operation }
        });
        let errors = delta.counter_by(ERRORS, 0).map(|by_operation| {
            let by_type = delta.counter_by(ERRORS, 1).unwrap_or_default();
            let expected: u64 = by_type
                .iter()
                .filter(|(t, _)| EXPECTED_ERROR_TYPES.contains(&t.as_str()))
                .map(|(_, n)| n)
                .sum();
            let by_operation: BTreeMap<String, u64> =
                by_operation.into_iter().filter(|(_, n)| *n > 0).collect();
            let by_type: BTreeMap<String, u64> = by_type.into_iter().filter(|(_, n)| *n > 0).collect();
            let total = by_operation.values().sum();
            Errors { total, unexpected: total - expected.min(total), by_operation, by_type }
        });
        let reservoir = delta.group_present(Group::Reservoir).then(|| Reservoir {
            empty_checkouts: delta.counter_total(RESERVOIR_EMPTY).unwrap_or(0),
            checkout_latency_p95_ms: delta.p95_ms(CHECKOUT_LATENCY),
            refills: delta.counter_total(REFILLS).unwrap_or(0),
            discards_by_reason: delta.counter_by(DISCARDS, 0).unwrap_or_default(),
        });
        let transactions = delta.group_present(Group::Transactions).then(|| Transactions {
            occ_conflicts: delta.counter_total(TX_CONFLICTS).unwrap_or(0),
            retries: delta.counter_total(TX_RETRIES).unwrap_or(0),
            exhausted: delta.counter_total(TX_EXHAUSTED).unwrap_or(0),
            latency_p95_ms: delta.p95_ms(TX_LATENCY),
        });
        Health {
            endpoints: scraper.urls(),
            window_s: round3(window.as_secs_f64()),
            scrapes: scraper.stats(),
            requests,
            errors,
            latency_p95_ms: delta.p95_ms(LATENCY),
            reservoir,
            transactions,
            absent: delta.absent(),
        }
    }

    /// The reasons the thresholds were missed; a threshold on an absent family is missed too (it
    /// cannot be checked).
    pub(crate) fn missed(&self, t: &PersistenceThresholds) -> Vec<String> {
        let mut reasons = Vec::new();
        let mut check = |flag: &str, limit: Option<u64>, value: Option<u64>, what: &str, family: &str| {
            let Some(limit) = limit else { return };
            match value {
                Some(value) if value > limit => reasons.push(format!("{value} {what}; {flag} is {limit}")),
                Some(_) => {}
                None => reasons.push(format!(
                    "{flag} cannot be checked: no metrics endpoint exposes {family} (see `absent` in the report)"
                )),
            }
        };
        check(
            "--max-reservoir-empty",
            t.max_reservoir_empty,
            self.reservoir.as_ref().map(|r| r.empty_checkouts),
            "checkouts found the reservoir empty",
            "dsql_reservoir_empty_total",
        );
        check(
            "--max-occ-exhausted",
            t.max_occ_exhausted,
            self.transactions.as_ref().map(|t| t.exhausted),
            "transactions exhausted their OCC retries",
            "dsql_tx_exhausted_total",
        );
        check(
            "--max-persistence-errors",
            t.max_persistence_errors,
            self.errors.as_ref().map(|e| e.unexpected),
            "persistence errors (not-found answers aside)",
            "persistence_error_with_type",
        );
        reasons
    }

    /// The summary lines for stdout.
    pub(crate) fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let scrapes = &self.scrapes;
        lines.push(format!(
            "persistence metrics from {} endpoint(s) over {:.1} s; {} scrapes ({} failed), {:.1} ms each on average, {:.1} ms at most",
            self.endpoints.len(),
            self.window_s,
            scrapes.count,
            scrapes.failed,
            scrapes.mean_ms,
            scrapes.max_ms
        ));
        if let Some(r) = &self.requests {
            let mut top: Vec<_> = r.by_operation.iter().collect();
            top.sort_by_key(|(_, s)| std::cmp::Reverse(s.requests));
            let top: Vec<String> = top
                .iter()
                .take(5)
                .map(|(op, s)| match s.p95_ms {
                    Some(p95) => format!("{op} {} (p95 {p95:.1} ms)", s.requests),
                    None => format!("{op} {}", s.requests),
                })
                .collect();
            lines.push(format!(
                "persistence requests {} ({:.1}/s), p95 {}; most: {}",
                r.total,
                r.per_second,
                self.latency_p95_ms.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1} ms")),
                top.join(", ")
            ));
        }
        if let Some(e) = &self.errors {
            let types: Vec<String> = e.by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
            lines.push(format!(
                "persistence errors {} ({} not counting not-found answers){}",
                e.total,
                e.unexpected,
                if types.is_empty() { String::new() } else { format!(": {}", types.join(", ")) }
            ));
        }
        if let Some(r) = &self.reservoir {
            let discards: Vec<String> =
                r.discards_by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
            lines.push(format!(
                "reservoir: empty checkouts {}, checkout p95 {}, refills {}, discards {}",
                r.empty_checkouts,
                r.checkout_latency_p95_ms.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1} ms")),
                r.refills,
                if discards.is_empty() { "0".to_owned() } else { discards.join(", ") }
            ));
        }
        if let Some(t) = &self.transactions {
            lines.push(format!(
                "transactions: OCC conflicts {}, retries {}, exhausted {}, latency p95 {}",
                t.occ_conflicts,
                t.retries,
                t.exhausted,
                t.latency_p95_ms.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1} ms"))
            ));
        }
        if !self.absent.is_empty() {
            lines.push(format!("absent (not exposed by any endpoint): {}", self.absent.join(", ")));
        }
        lines
    }
}

/// A short progress note from the change since the run began.
pub(crate) fn progress_note(delta: &Reading, window: Duration) -> String {
    let mut note = String::new();
    if let Some(requests) = delta.counter_total(REQUESTS) {
        note.push_str(&format!("persistence {:.0} req/s", per_second(requests, window)));
    }
    if let Some(by_type) = delta.counter_by(ERRORS, 1) {
        let unexpected: u64 =
            by_type.iter().filter(|(t, _)| !EXPECTED_ERROR_TYPES.contains(&t.as_str())).map(|(_, n)| n).sum();
        note.push_str(&format!(", {unexpected} errors"));
    }
    if let Some(p95) = delta.p95_ms(LATENCY) {
        note.push_str(&format!(", p95 {p95:.1} ms"));
    }
    if let Some(empty) = delta.counter_total(RESERVOIR_EMPTY) {
        note.push_str(&format!(", reservoir empty {empty}"));
    }
    if let Some(exhausted) = delta.counter_total(TX_EXHAUSTED) {
        note.push_str(&format!(", OCC exhausted {exhausted}"));
    }
    note
}

/// The persistence thresholds of `load`; each one given makes the run fail when it is missed.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub(crate) struct PersistenceThresholds {
    /// Fail when more checkouts than this found the plugin's reservoir empty (needs --metrics)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_reservoir_empty: Option<u64>,
    /// Fail when more transactions than this exhausted their OCC retries (needs --metrics)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_occ_exhausted: Option<u64>,
    /// Fail when the server saw more persistence errors than this, not-found answers aside
    /// (needs --metrics)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_persistence_errors: Option<u64>,
}

impl PersistenceThresholds {
    /// The flags given, for the error when there is nothing to check them against.
    pub(crate) fn given(&self) -> Vec<&'static str> {
        [
            ("--max-reservoir-empty", self.max_reservoir_empty),
            ("--max-occ-exhausted", self.max_occ_exhausted),
            ("--max-persistence-errors", self.max_persistence_errors),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.map(|_| flag))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporal's own framework: no `_total`, timers in seconds.
    const TEMPORAL: &str = "\
# HELP persistence_requests persistence_requests counter
# TYPE persistence_requests counter
persistence_requests{namespace=\"default\",operation=\"GetWorkflowExecution\",service_name=\"history\"} 10
persistence_requests{namespace=\"default\",operation=\"UpdateWorkflowExecution\",service_name=\"history\"} 4
persistence_requests{namespace=\"other\",operation=\"GetWorkflowExecution\",service_name=\"history\"} 2
# TYPE persistence_error_with_type counter
persistence_error_with_type{error_type=\"serviceerror_NotFound\",operation=\"GetWorkflowExecution\",service_name=\"history\"} 3
persistence_error_with_type{error_type=\"serviceerror_Unavailable\",operation=\"UpdateWorkflowExecution\",service_name=\"history\"} 1
# TYPE persistence_latency histogram
persistence_latency_bucket{operation=\"GetWorkflowExecution\",le=\"0.001\"} 6
persistence_latency_bucket{operation=\"GetWorkflowExecution\",le=\"0.01\"} 10
persistence_latency_bucket{operation=\"GetWorkflowExecution\",le=\"+Inf\"} 12
persistence_latency_sum{operation=\"GetWorkflowExecution\"} 0.05
persistence_latency_count{operation=\"GetWorkflowExecution\"} 12
";

    /// OpenMetrics as crates/reservoir writes it: `_total`, milliseconds, `# EOF`.
    const PLUGIN: &str = "\
# HELP dsql_reservoir_empty Checkouts that found the reservoir empty.
# TYPE dsql_reservoir_empty counter
dsql_reservoir_empty_total 2
# HELP dsql_reservoir_discards Connections discarded.
# TYPE dsql_reservoir_discards counter
dsql_reservoir_discards_total{reason=\"expired\"} 5
dsql_reservoir_discards_total{reason=\"broken\"} 1
# HELP dsql_reservoir_checkout_latency Checkout latency.
# TYPE dsql_reservoir_checkout_latency_milliseconds histogram
# UNIT dsql_reservoir_checkout_latency_milliseconds milliseconds
dsql_reservoir_checkout_latency_milliseconds_bucket{le=\"1.0\"} 90
dsql_reservoir_checkout_latency_milliseconds_bucket{le=\"10.0\"} 100
dsql_reservoir_checkout_latency_milliseconds_bucket{le=\"+Inf\"} 100
dsql_reservoir_checkout_latency_milliseconds_sum 120.0
dsql_reservoir_checkout_latency_milliseconds_count 100
# HELP dsql_tx_exhausted Transactions that exhausted their retries.
# TYPE dsql_tx_exhausted counter
# EOF
";

    fn reading(texts: &[&str]) -> Reading {
        let mut reading = Reading::default();
        for text in texts {
            reading.add_exposition(text).unwrap();
        }
        reading
    }

    #[test]
    fn the_sieve_keeps_the_families_read_here_however_the_body_is_cut() {
        // Other families around them, one line longer than the sieve ever holds of a line.
        let other = format!(
            "# HELP poll_latency poll_latency histogram\npoll_latency_bucket{{le=\"1\"}} 3\n\
             service_requests{{operation=\"{}\"}} 1\n#\n\n",
            "x".repeat(300)
        );
        let body =
            format!("{other}{TEMPORAL}{other}{PLUGIN}{other}persistence_requests{{operation=\"Last\"}} 1");
        let want: String = body.lines().filter(|l| wanted(l.as_bytes())).map(|l| format!("{l}\n")).collect();
        assert_eq!(want.lines().count(), TEMPORAL.lines().count() + PLUGIN.lines().count() - 2 + 1);
        for size in [1, 2, 7, 31, 32, 33, 100, 4096, body.len()] {
            let mut sieve = Sieve::default();
            for piece in body.as_bytes().chunks(size) {
                sieve.feed(piece);
                // Never the 300-byte line whole: at most a kept line or the start of another.
                assert!(sieve.line.len() < 200, "pieces of {size}: {}", sieve.line.len());
            }
            assert_eq!(sieve.finish().unwrap(), want, "pieces of {size}");
        }
        let mut sieve = Sieve::default();
        sieve.feed(b"persistence_requests{operation=\"\xff\"} 1\n");
        assert!(sieve.finish().is_err());
    }

    #[test]
    fn temporal_families_are_summed_by_operation_and_the_plugin_is_absent() {
        let delta = reading(&[TEMPORAL]).since(&Reading::default());
        let health = Health::new(&Scraper::new(&[]).unwrap(), &delta, Duration::from_secs(2));
        let requests = health.requests.as_ref().unwrap();
        assert_eq!(requests.total, 16);
        assert_eq!(requests.per_second, 8.0);
        assert_eq!(requests.by_operation["GetWorkflowExecution"].requests, 12);
        let errors = health.errors.as_ref().unwrap();
        assert_eq!((errors.total, errors.unexpected), (4, 1));
        assert_eq!(errors.by_type["serviceerror_NotFound"], 3);
        // Rank 11.4 of 12 falls in the +Inf bucket: the highest finite bound is all that is known.
        assert_eq!(health.latency_p95_ms, Some(10.0));
        assert!(health.reservoir.is_none() && health.transactions.is_none());
        assert!(health.absent.contains(&"dsql_reservoir_empty_total".to_owned()), "{:?}", health.absent);
        assert!(health.absent.contains(&"dsql_tx_exhausted_total".to_owned()), "{:?}", health.absent);
        assert!(!health.absent.iter().any(|a| a.starts_with("persistence_")), "{:?}", health.absent);

        let t = PersistenceThresholds {
            max_reservoir_empty: Some(0),
            max_persistence_errors: Some(0),
            ..Default::default()
        };
        let missed = health.missed(&t);
        assert_eq!(missed.len(), 2, "{missed:?}");
        assert!(missed[0].starts_with("--max-reservoir-empty cannot be checked"), "{missed:?}");
        assert_eq!(
            missed[1],
            "1 persistence errors (not-found answers aside); --max-persistence-errors is 0"
        );
    }

    #[test]
    fn plugin_families_in_openmetrics_with_a_present_group_reading_zero_for_unused_counters() {
        let before = reading(&[PLUGIN]);
        let after_text = PLUGIN.replace("dsql_reservoir_empty_total 2", "dsql_reservoir_empty_total 7");
        let delta = reading(&[&after_text]).since(&before);
        let health = Health::new(&Scraper::new(&[]).unwrap(), &delta, Duration::from_secs(1));
        let reservoir = health.reservoir.as_ref().unwrap();
        assert_eq!(reservoir.empty_checkouts, 5);
        assert_eq!(reservoir.discards_by_reason.values().sum::<u64>(), 0);
        // The transactions group is there (its HELP line), with nothing counted yet.
        let transactions = health.transactions.as_ref().unwrap();
        assert_eq!(transactions.exhausted, 0);
        assert!(health.absent.contains(&"dsql_tx_latency_milliseconds".to_owned()), "{:?}", health.absent);
        assert!(health.requests.is_none(), "no Temporal families in this exposition");

        let whole = reading(&[PLUGIN]).since(&Reading::default());
        let p95 = whole.p95_ms(CHECKOUT_LATENCY).unwrap();
        // Rank 95 of 100: half-way through the (1, 10] bucket that holds 10.
        assert!((p95 - 5.5).abs() < 1e-9, "{p95}");
        assert_eq!(whole.counter_by(DISCARDS, 0).unwrap()["expired"], 5);
        let t = PersistenceThresholds {
            max_reservoir_empty: Some(4),
            max_occ_exhausted: Some(0),
            ..Default::default()
        };
        assert_eq!(health.missed(&t), ["5 checkouts found the reservoir empty; --max-reservoir-empty is 4"]);
    }

    #[test]
    fn a_restarted_server_counts_from_zero_again() {
        let before = reading(&[TEMPORAL]);
        let after = reading(&[&TEMPORAL.replace("} 10\n", "} 3\n")]);
        let delta = after.since(&before);
        // 12 before (10 + 2 of another namespace), 5 after: fewer, so the server started again and
        // all 5 are new.
        assert_eq!(delta.counter_by(REQUESTS, 0).unwrap()["GetWorkflowExecution"], 5);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut b = Buckets::default();
        b.add(10.0, 50.0);
        b.add(20.0, 100.0);
        b.add(f64::INFINITY, 100.0);
        assert_eq!(b.quantile(0.5), Some(10.0));
        assert_eq!(b.quantile(0.75), Some(15.0));
        assert_eq!(Buckets::default().quantile(0.95), None);
    }

    #[test]
    fn only_http_urls_are_accepted() {
        for bad in ["127.0.0.1:9090", "https://127.0.0.1:9090/metrics", "not a url"] {
            let err = Scraper::new(&[bad.to_owned()]).unwrap_err().to_string();
            assert!(err.contains(&format!("--metrics `{bad}`")), "{err}");
            assert!(err.contains("http://127.0.0.1:9090/metrics"), "{err}");
        }
    }
}
