//! Timing logic of the reservoir under tokio's paused clock, with a connector that opens
//! in-memory connections and injects delays and failures (no real counterpart can do that).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tdsql_reservoir::metrics::RefillFailure;
use tdsql_reservoir::{CheckoutError, Connector, Metrics, Reservoir, ReservoirConfig};
use tokio::time::Instant;

#[derive(Debug, Default)]
struct FakeState {
    opened: AtomicUsize,
    alive: AtomicUsize,
    fail_next: AtomicUsize,
    delay_ms: AtomicUsize,
    attempts: Mutex<Vec<Instant>>,
    broken: Mutex<Vec<Arc<AtomicBool>>>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<FakeState>);

#[derive(Debug)]
struct FakeConn {
    id: usize,
    broken: Arc<AtomicBool>,
    state: Arc<FakeState>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.state.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected connect failure")]
struct Injected;

impl Connector for Fake {
    type Connection = FakeConn;
    type Error = Injected;

    async fn connect(&self) -> Result<FakeConn, Injected> {
        let state = self.0.clone();
        state.attempts.lock().unwrap().push(Instant::now());
        let delay = state.delay_ms.load(Ordering::SeqCst) as u64;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if state.fail_next.load(Ordering::SeqCst) > 0 {
            state.fail_next.fetch_sub(1, Ordering::SeqCst);
            return Err(Injected);
        }
        let id = state.opened.fetch_add(1, Ordering::SeqCst);
        state.alive.fetch_add(1, Ordering::SeqCst);
        let broken = Arc::new(AtomicBool::new(false));
        state.broken.lock().unwrap().push(broken.clone());
        Ok(FakeConn { id, broken, state })
    }

    fn is_broken(&self, connection: &FakeConn) -> bool {
        connection.broken.load(Ordering::SeqCst)
    }
}

fn config(target: usize) -> ReservoirConfig {
    ReservoirConfig {
        target_ready: target,
        base_lifetime: Duration::from_secs(60),
        lifetime_jitter: Duration::ZERO,
        guard_window: Duration::from_secs(5),
        connect_rate: 1000.0,
        connect_burst: 1000,
        ..ReservoirConfig::default()
    }
}

fn build(fake: &Fake, config: ReservoirConfig) -> Reservoir<Fake> {
    Reservoir::builder(fake.clone()).config(config).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn fills_to_target_and_checkout_never_waits_when_ready() {
    let fake = Fake::default();
    let metrics = Metrics::new();
    let reservoir =
        Reservoir::builder(fake.clone()).config(config(5)).metrics(metrics.clone()).build().unwrap();
    reservoir.ready(5, Duration::from_secs(1)).await.unwrap();
    let status = reservoir.status();
    assert_eq!((status.ready, status.in_use, status.target), (5, 0, 5));

    let before = Instant::now();
    let conn = reservoir.checkout().await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO, "a ready connection must not wait");
    assert_eq!(conn.id, 0, "FIFO: the oldest ready connection first");
    assert!(!conn.waited());
    assert_eq!(reservoir.status().in_use, 1);
    drop(conn);
    assert_eq!(reservoir.status().in_use, 0);

    let stats = reservoir.statistics();
    assert_eq!((stats.checkouts, stats.waited_checkouts, stats.empty), (1, 0, 0));
    let text = metrics.encode();
    assert!(text.contains("dsql_reservoir_target 5\n"), "{text}");
    assert!(text.contains("dsql_reservoir_checkouts_total 1\n"), "{text}");
    assert!(text.contains("dsql_reservoir_checkout_latency_milliseconds_count 1\n"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn an_empty_reservoir_waits_the_empty_timeout_then_fails() {
    let fake = Fake::default();
    fake.0.delay_ms.store(10_000, Ordering::SeqCst);
    let reservoir = build(&fake, config(2));
    let before = Instant::now();
    let err = reservoir.checkout().await.unwrap_err();
    assert_eq!(before.elapsed(), Duration::from_millis(100));
    assert!(matches!(err, CheckoutError::Empty { connecting: 2, .. }), "{err:?}");
    assert_eq!(reservoir.statistics().empty, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_checkout_gets_a_returned_connection() {
    let fake = Fake::default();
    let mut cfg = config(1);
    cfg.max_open = Some(1);
    let reservoir = build(&fake, cfg);
    reservoir.ready(1, Duration::from_secs(1)).await.unwrap();
    let held = reservoir.checkout().await.unwrap();
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(held);
    });
    let before = Instant::now();
    let conn = reservoir.checkout().await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_millis(40));
    assert_eq!(conn.id, 0);
    assert!(conn.waited());
    assert_eq!(reservoir.statistics().waited_checkouts, 1);
    returner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn lifetime_jitter_is_sampled_once_per_connection_within_range() {
    let fake = Fake::default();
    let mut cfg = config(20);
    cfg.base_lifetime = Duration::from_secs(600);
    cfg.lifetime_jitter = Duration::from_secs(120);
    let reservoir = build(&fake, cfg);
    reservoir.ready(20, Duration::from_secs(1)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(reservoir.checkout().await.unwrap());
    }
    let lifetimes: Vec<Duration> = held.iter().map(tdsql_reservoir::Conn::remaining_lifetime).collect();
    for l in &lifetimes {
        assert!(*l >= Duration::from_secs(600) && *l < Duration::from_secs(720), "{l:?}");
    }
    let mut distinct = lifetimes.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 10, "jitter must differ between connections: {lifetimes:?}");
    // Sampled once: the remaining lifetime only shrinks with time.
    tokio::time::advance(Duration::from_secs(7)).await;
    for (conn, before) in held.iter().zip(&lifetimes) {
        assert_eq!(conn.remaining_lifetime(), *before - Duration::from_secs(7));
    }
}

#[tokio::test(start_paused = true)]
async fn the_guard_window_is_enforced_at_checkout() {
    let fake = Fake::default();
    let mut cfg = config(3);
    cfg.base_lifetime = Duration::from_secs(10);
    cfg.guard_window = Duration::from_secs(2);
    // No scan in this test: only checkout may enforce the guard.
    cfg.expiry_scan_interval = Duration::from_secs(3600);
    let reservoir = build(&fake, cfg);
    reservoir.ready(3, Duration::from_secs(1)).await.unwrap();
    tokio::time::advance(Duration::from_millis(8_500)).await;
    let conn = reservoir.checkout().await.unwrap();
    assert!(conn.id >= 3, "connections inside the guard window must not be handed out");
    assert!(conn.remaining_lifetime() >= Duration::from_secs(9));
    assert_eq!(reservoir.statistics().discarded_lifetime, 3);
}

#[tokio::test(start_paused = true)]
async fn the_scan_evicts_expiring_connections_and_the_refiller_replaces_them() {
    let fake = Fake::default();
    let metrics = Metrics::new();
    let mut cfg = config(4);
    cfg.base_lifetime = Duration::from_secs(10);
    cfg.guard_window = Duration::from_secs(2);
    let reservoir = Reservoir::builder(fake.clone()).config(cfg).metrics(metrics.clone()).build().unwrap();
    reservoir.ready(4, Duration::from_secs(1)).await.unwrap();
    // Remaining lifetime drops under the guard after 8 s; the scan (every 1 s) sees it by 9 s.
    tokio::time::sleep(Duration::from_millis(9_100)).await;
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_reservoir_discards_total{reason="expiring_soon_on_scan"} 4"#), "{text}");
    assert_eq!(fake.0.opened.load(Ordering::SeqCst), 8, "the four evicted connections are replaced");
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 4, "evicted connections are closed");
    assert_eq!(reservoir.status().ready, 4);
}

#[tokio::test(start_paused = true)]
async fn a_connection_held_past_its_lifetime_is_closed_when_it_comes_back() {
    let fake = Fake::default();
    let mut cfg = config(2);
    cfg.base_lifetime = Duration::from_secs(10);
    cfg.guard_window = Duration::from_secs(1);
    let reservoir = build(&fake, cfg);
    reservoir.ready(2, Duration::from_secs(1)).await.unwrap();
    let held = reservoir.checkout().await.unwrap();
    let id = held.id;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(held.remaining_lifetime(), Duration::ZERO);
    drop(held);
    for _ in 0..10 {
        let conn = reservoir.checkout().await.unwrap();
        assert_ne!(conn.id, id, "an expired connection must never be reused");
    }
    assert!(reservoir.statistics().discarded_lifetime >= 1);
    assert!(fake.0.alive.load(Ordering::SeqCst) <= 4, "no more than max_open (2 x target) connections");
}

#[tokio::test(start_paused = true)]
async fn broken_connections_are_discarded() {
    let fake = Fake::default();
    let reservoir = build(&fake, config(3));
    reservoir.ready(3, Duration::from_secs(1)).await.unwrap();
    // Marked broken by the user.
    let mut conn = reservoir.checkout().await.unwrap();
    conn.mark_broken();
    drop(conn);
    assert_eq!(reservoir.statistics().discarded_broken, 1);
    // Broken while ready (e.g. killed by the server): never handed out.
    for flag in fake.0.broken.lock().unwrap().iter() {
        flag.store(true, Ordering::SeqCst);
    }
    let conn = reservoir.checkout().await.unwrap();
    assert!(!conn.broken.load(Ordering::SeqCst));
    assert!(reservoir.statistics().discarded_broken >= 3);
}

#[tokio::test(start_paused = true)]
async fn failed_connects_back_off_growing_and_recover() {
    let fake = Fake::default();
    fake.0.fail_next.store(7, Ordering::SeqCst);
    let metrics = Metrics::new();
    let mut cfg = config(1);
    cfg.max_concurrent_connects = 1;
    let reservoir = Reservoir::builder(fake.clone()).config(cfg).metrics(metrics.clone()).build().unwrap();
    reservoir.ready(1, Duration::from_secs(30)).await.unwrap();
    let attempts = fake.0.attempts.lock().unwrap().clone();
    let gaps: Vec<u128> = attempts.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // 250 ms, doubling, capped at max_failure_backoff (5 s by default).
    assert_eq!(gaps, [250, 500, 1000, 2000, 4000, 5000, 5000]);
    let stats = reservoir.statistics();
    assert_eq!((stats.refill_failures, stats.refills), (7, 1));
    let reason = RefillFailure::ConnectionOpen.as_str();
    assert!(
        metrics.encode().contains(&format!("dsql_reservoir_refill_failures_total{{reason=\"{reason}\"}} 7"))
    );
    // A success resets the backoff: the next failure pauses 250 ms again.
    fake.0.fail_next.store(1, Ordering::SeqCst);
    let held = reservoir.checkout().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = fake.0.attempts.lock().unwrap().clone();
    let tail: Vec<u128> = attempts[8..].windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(tail, [250], "one failure, then the first backoff step again");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn warm_up_times_out_with_the_last_error() {
    let fake = Fake::default();
    fake.0.fail_next.store(usize::MAX / 2, Ordering::SeqCst);
    let reservoir = build(&fake, config(2));
    let err = reservoir.ready(2, Duration::from_secs(3)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("only 0 of 2") && text.contains("injected connect failure"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_connects_are_capped() {
    let fake = Fake::default();
    fake.0.delay_ms.store(1000, Ordering::SeqCst);
    let mut cfg = config(10);
    cfg.max_concurrent_connects = 3;
    let reservoir = build(&fake, cfg);
    // Four rounds of at most three 1-second connects.
    for _ in 0..45 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(reservoir.status().connecting <= 3, "{:?}", reservoir.status());
    }
    assert_eq!(reservoir.status().ready, 10);
}

#[tokio::test(start_paused = true)]
async fn connects_stay_within_rate_plus_burst_per_second() {
    let fake = Fake::default();
    let mut cfg = config(40);
    cfg.connect_rate = 5.0;
    cfg.connect_burst = 3;
    cfg.max_concurrent_connects = 40;
    let reservoir = build(&fake, cfg);
    reservoir.ready(40, Duration::from_secs(60)).await.unwrap();
    let attempts = fake.0.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 40);
    for (i, start) in attempts.iter().enumerate() {
        let in_window = attempts[i..].iter().take_while(|t| **t - *start < Duration::from_secs(1)).count();
        assert!(in_window <= 8, "{in_window} connects within 1 s of attempt {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_task_outlives_a_dropped_reservoir() {
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    let fake = Fake::default();
    let reservoir = build(&fake, config(6));
    reservoir.ready(3, Duration::from_secs(1)).await.unwrap();
    // Slow connects still in flight when the reservoir goes.
    fake.0.delay_ms.store(60_000, Ordering::SeqCst);
    let held = reservoir.checkout().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(tasks() > before);
    drop(reservoir);
    // A checked-out guard keeps the state, not the tasks... until it comes back.
    drop(held);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(tasks(), before, "background tasks outlived the reservoir");
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 0, "connections outlived the reservoir");
    assert_eq!(Arc::strong_count(&fake.0), 1, "the connector outlived the reservoir");
}

#[tokio::test(start_paused = true)]
async fn close_ends_everything_and_later_checkouts_fail() {
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    let fake = Fake::default();
    let reservoir = build(&fake, config(4));
    reservoir.ready(4, Duration::from_secs(1)).await.unwrap();
    let held = reservoir.checkout().await.unwrap();
    reservoir.close().await;
    assert_eq!(tasks(), before);
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 1, "only the checked-out connection is left");
    assert!(matches!(reservoir.checkout().await, Err(CheckoutError::Closed)));
    drop(held);
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 0);
    assert!(reservoir.status().closed);
}

/// A lease hook with a slot limit, counting what is held and keeping every lease it issued (to
/// revoke them).
#[derive(Debug, Default)]
struct Slots {
    limit: usize,
    held: Mutex<std::collections::HashSet<String>>,
    issued: Mutex<Vec<tdsql_reservoir::Lease>>,
    next: AtomicUsize,
}

impl Slots {
    fn with_limit(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, ..Self::default() })
    }
}

impl tdsql_reservoir::LeaseHook for Slots {
    fn acquire(
        &self,
    ) -> tdsql_reservoir::token::BoxFuture<'_, Result<tdsql_reservoir::Lease, tdsql_reservoir::LimitError>>
    {
        Box::pin(async move {
            let mut held = self.held.lock().unwrap();
            if held.len() >= self.limit {
                return Err(tdsql_reservoir::LimitError::Denied("the test's slots"));
            }
            let id = format!("lease-{}", self.next.fetch_add(1, Ordering::SeqCst));
            held.insert(id.clone());
            let lease = tdsql_reservoir::Lease::new(id);
            self.issued.lock().unwrap().push(lease.clone());
            Ok(lease)
        })
    }

    fn release(&self, lease: tdsql_reservoir::Lease) -> tdsql_reservoir::token::BoxFuture<'_, ()> {
        Box::pin(async move {
            assert!(self.held.lock().unwrap().remove(lease.id()), "released a lease twice or never taken");
        })
    }
}

#[tokio::test(start_paused = true)]
async fn leases_cap_connections_and_are_released_with_them() {
    let fake = Fake::default();
    let slots = Slots::with_limit(3);
    let metrics = Metrics::new();
    let mut cfg = config(5);
    cfg.base_lifetime = Duration::from_secs(10);
    cfg.guard_window = Duration::from_secs(1);
    let reservoir = Reservoir::builder(fake.clone())
        .config(cfg)
        .lease_hook(slots.clone())
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let err = reservoir.ready(5, Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("only 3 of 5"), "{err}");
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 3, "the lease limit caps connections");
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_reservoir_refill_failures_total{reason="lease_acquire"}"#), "{text}");
    // Expiry (at 9 s) closes connections and gives their slots back; replacements take them again
    // once the refiller's failure backoff (grown while the slots were taken) has passed.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(fake.0.opened.load(Ordering::SeqCst) >= 6, "expired connections are replaced");
    assert_eq!(slots.held.lock().unwrap().len(), fake.0.alive.load(Ordering::SeqCst));
    reservoir.close().await;
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 0);
    assert!(slots.held.lock().unwrap().is_empty(), "close() releases every lease");
}

#[tokio::test(start_paused = true)]
async fn a_revoked_lease_closes_its_connection_ready_or_checked_out() {
    let fake = Fake::default();
    let slots = Slots::with_limit(2);
    let metrics = Metrics::new();
    let reservoir = Reservoir::builder(fake.clone())
        .config(config(2))
        .lease_hook(slots.clone())
        .metrics(metrics.clone())
        .build()
        .unwrap();
    reservoir.ready(2, Duration::from_secs(1)).await.unwrap();
    let held = reservoir.checkout().await.unwrap();
    for lease in slots.issued.lock().unwrap().iter() {
        lease.revoke();
    }
    // The ready one goes at the next checkout or scan, the checked-out one when it comes back;
    // neither is handed out again, and both slots are given back (and taken by replacements).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 2, "the ready one was replaced");
    drop(held);
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 1, "closed when it came back, not kept for the scan");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = metrics.encode();
    assert!(text.contains(r#"dsql_reservoir_discards_total{reason="lease_revoked"} 2"#), "{text}");
    assert_eq!(fake.0.opened.load(Ordering::SeqCst), 4);
    assert_eq!(fake.0.alive.load(Ordering::SeqCst), 2);
    let issued = slots.issued.lock().unwrap().clone();
    let live: Vec<_> = issued.iter().filter(|lease| !lease.is_revoked()).map(|l| l.id().to_owned()).collect();
    let mut held_ids: Vec<_> = slots.held.lock().unwrap().iter().cloned().collect();
    held_ids.sort();
    assert_eq!(held_ids, live, "the revoked leases were released, the replacements' are held");
    assert_eq!(reservoir.statistics().discarded_other, 2);
    reservoir.close().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_settings_are_refused_with_the_key() {
    let bad = [
        ReservoirConfig { target_ready: 0, ..ReservoirConfig::default() },
        ReservoirConfig { base_lifetime: Duration::from_secs(30), ..ReservoirConfig::default() },
        ReservoirConfig { base_lifetime: Duration::from_secs(59 * 60), ..ReservoirConfig::default() },
        ReservoirConfig { connect_rate: 0.0, ..ReservoirConfig::default() },
        ReservoirConfig { max_open: Some(5), ..ReservoirConfig::default() },
    ];
    let keys = ["target_ready", "base_lifetime", "lifetime_jitter", "connect_rate", "max_open"];
    for (config, key) in bad.into_iter().zip(keys) {
        let err = Reservoir::builder(Fake::default()).config(config).build().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    // The fork's defaults (temporal-dsql-fork.md sections 3.2 to 3.4), and ours where it has none.
    let defaults = ReservoirConfig::default();
    assert_eq!(defaults.target_ready, 100);
    assert_eq!(defaults.connect_rate, 10.0);
    assert_eq!(defaults.connect_burst, 100);
    assert_eq!(defaults.connect_timeout, Duration::from_secs(30));
    assert_eq!(defaults.max_failure_backoff, Duration::from_secs(5));
    assert!(defaults.validate().is_ok());
    assert_eq!(defaults.base_lifetime, Duration::from_secs(660));
    assert_eq!(defaults.lifetime_jitter, Duration::from_secs(120));
    assert_eq!(defaults.guard_window, Duration::from_secs(45));
    assert_eq!(defaults.expiry_scan_interval, Duration::from_secs(1));
    assert_eq!(defaults.empty_wait_timeout, Duration::from_millis(100));
    assert_eq!(defaults.failure_backoff, Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_connect_aborted_by_close_gives_its_lease_back() {
    let fake = Fake::default();
    fake.0.delay_ms.store(60_000, Ordering::SeqCst); // every connect hangs
    let slots = Slots::with_limit(10);
    let reservoir =
        Reservoir::builder(fake.clone()).config(config(3)).lease_hook(slots.clone()).build().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reservoir.status().connecting, 3);
    assert_eq!(slots.held.lock().unwrap().len(), 3, "each connect in flight holds a lease");
    reservoir.close().await;
    // The aborted connects give their leases back on tasks of their own.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(slots.held.lock().unwrap().is_empty(), "an aborted connect kept its lease");
}
