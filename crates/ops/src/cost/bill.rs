//! The arithmetic of `cost`: a window's DPUs and storage at given prices become the window's
//! cost, the spend rate per hour, a projection for a 30-day month and the monthly free tier.
//!
//! Conventions (the bill itself may differ in the last cent):
//! - a month is 30 days (720 h) for the projection and for prorating storage over a window;
//! - a GB is 2^30 bytes (AWS meters storage in GiB-month);
//! - the free tier (100,000 DPUs and 1 GB per calendar month, UTC) is shown separately, for the
//!   window as if nothing else had used it that month, so it is the most it can save.

use serde::Serialize;

use super::prices::Prices;

/// DPUs free each calendar month.
pub(crate) const FREE_DPUS_PER_MONTH: f64 = 100_000.0;
/// GB-months of storage free each calendar month.
pub(crate) const FREE_GB_PER_MONTH: f64 = 1.0;
/// The projection's month: 30 days.
pub(crate) const HOURS_PER_MONTH: f64 = 720.0;
/// Bytes per GB as AWS meters storage.
pub(crate) const BYTES_PER_GB: f64 = 1_073_741_824.0;
const SECONDS_PER_HOUR: f64 = 3600.0;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Month {
    year: i64,
    /// 1..=12
    month: u32,
}

impl Month {
    /// The month holding `epoch` (seconds since 1970-01-01T00:00:00Z).
    pub(crate) fn of(epoch: i64) -> Self {
        let (year, month, _) = civil_from_days(epoch.div_euclid(86_400));
        Self { year, month }
    }

    /// Its first second.
    pub(crate) fn start(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * 86_400
    }

    /// The month after it.
    pub(crate) fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { month: self.month + 1, ..self }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * shifted_month + 2) / 5 + 1).expect("1..=31");
    let month = u32::try_from(if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 })
        .expect("1..=12");
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// DPUs by kind, as CloudWatch reports them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Dpus {
    pub(crate) total: f64,
    pub(crate) read: f64,
    pub(crate) write: f64,
    pub(crate) compute: f64,
}

/// What the cluster used in a window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    /// Window start, epoch seconds (inclusive).
    pub(crate) from: i64,
    /// Window end, epoch seconds (exclusive).
    pub(crate) to: i64,
    pub(crate) dpus: Dpus,
    /// Total DPUs per period, keyed by the period's start; no period spans a month boundary.
    pub(crate) samples: Vec<(i64, f64)>,
    /// The latest `ClusterStorageSize`, in bytes.
    pub(crate) storage_bytes: Option<f64>,
}

/// Dollars of one window or month.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Dollars {
    pub(crate) dpu_usd: f64,
    pub(crate) storage_usd: f64,
    pub(crate) total_usd: f64,
}

impl Dollars {
    fn new(dpu_usd: f64, storage_usd: f64) -> Self {
        Self { dpu_usd, storage_usd, total_usd: dpu_usd + storage_usd }
    }
}

/// A 30-day month at the window's rate.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Projection {
    pub(crate) dpus: f64,
    pub(crate) storage_gb: f64,
    /// Before the free tier.
    pub(crate) cost: Dollars,
    /// After the free tier.
    pub(crate) after_free_tier: Dollars,
}

/// The share of one calendar month in the window, against that month's free tier.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct MonthShare {
    pub(crate) month: Month,
    pub(crate) hours: f64,
    pub(crate) dpus: f64,
    pub(crate) free_dpus: f64,
    pub(crate) billable_dpus: f64,
}

/// The window's cost after each calendar month's free tier.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct WindowFreeTier {
    pub(crate) months: Vec<MonthShare>,
    pub(crate) after_free_tier: Dollars,
}

/// Everything `cost` reports about a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Bill {
    pub(crate) hours: f64,
    pub(crate) dpus: Dpus,
    pub(crate) storage_gb: f64,
    /// The window's cost before the free tier.
    pub(crate) window_cost: Dollars,
    pub(crate) per_hour_usd: f64,
    pub(crate) month_30d: Projection,
    pub(crate) window_free_tier: WindowFreeTier,
}

/// USD for `dpus` DPUs.
pub(crate) fn dpu_usd(dpus: f64, prices: &Prices) -> f64 {
    dpus * prices.per_million_dpu / 1_000_000.0
}

/// USD for holding `gb` GB for `hours` hours.
pub(crate) fn storage_usd(gb: f64, hours: f64, prices: &Prices) -> f64 {
    gb * prices.per_gb_month * hours / HOURS_PER_MONTH
}

/// One month of `dpus` DPUs and `gb` GB, before and after the free tier.
pub(crate) fn month(dpus: f64, gb: f64, prices: &Prices) -> Projection {
    let cost = Dollars::new(dpu_usd(dpus, prices), storage_usd(gb, HOURS_PER_MONTH, prices));
    let after_free_tier = Dollars::new(
        dpu_usd((dpus - FREE_DPUS_PER_MONTH).max(0.0), prices),
        storage_usd((gb - FREE_GB_PER_MONTH).max(0.0), HOURS_PER_MONTH, prices),
    );
    Projection { dpus, storage_gb: gb, cost, after_free_tier }
}

/// The bill of a window. `usage.to` must be after `usage.from`.
pub(crate) fn bill(usage: &Usage, prices: &Prices) -> Bill {
    let hours = (usage.to - usage.from) as f64 / SECONDS_PER_HOUR;
    let gb = usage.storage_bytes.unwrap_or(0.0) / BYTES_PER_GB;
    let window_cost = Dollars::new(dpu_usd(usage.dpus.total, prices), storage_usd(gb, hours, prices));
    let month_30d = month(usage.dpus.total * HOURS_PER_MONTH / hours, gb, prices);
    Bill {
        hours,
        dpus: usage.dpus,
        storage_gb: gb,
        window_cost,
        per_hour_usd: window_cost.total_usd / hours,
        month_30d,
        window_free_tier: window_free_tier(usage, gb, prices),
    }
}

/// Splits the window at month boundaries and applies each month's free tier to its share.
fn window_free_tier(usage: &Usage, gb: f64, prices: &Prices) -> WindowFreeTier {
    let mut months = Vec::new();
    let (mut dpu_total, mut storage_total) = (0.0, 0.0);
    let mut month = Month::of(usage.from);
    while month.start() < usage.to {
        let from = usage.from.max(month.start());
        let to = usage.to.min(month.next().start());
        let hours = (to - from) as f64 / SECONDS_PER_HOUR;
        let dpus: f64 =
            usage.samples.iter().filter(|(at, _)| Month::of(*at) == month).map(|(_, dpus)| dpus).sum();
        let free_dpus = dpus.min(FREE_DPUS_PER_MONTH);
        let billable_dpus = dpus - free_dpus;
        dpu_total += dpu_usd(billable_dpus, prices);
        storage_total += storage_usd((gb - FREE_GB_PER_MONTH).max(0.0), hours, prices);
        months.push(MonthShare { month, hours, dpus, free_dpus, billable_dpus });
        month = month.next();
    }
    WindowFreeTier { months, after_free_tier: Dollars::new(dpu_total, storage_total) }
}

/// What a load run's workflows cost, from its window's DPUs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct PerWorkflow {
    pub(crate) workflows: u64,
    pub(crate) dpus_per_workflow: f64,
    /// DPU cost only: storage does not grow with a run of a few minutes in a way CloudWatch shows.
    pub(crate) usd_per_million_workflows: f64,
}

/// DPUs per completed workflow; `None` when none completed.
pub(crate) fn per_workflow(dpus: f64, workflows: u64, prices: &Prices) -> Option<PerWorkflow> {
    if workflows == 0 {
        return None;
    }
    let dpus_per_workflow = dpus / workflows as f64;
    Some(PerWorkflow {
        workflows,
        dpus_per_workflow,
        usd_per_million_workflows: dpu_usd(dpus_per_workflow * 1_000_000.0, prices),
    })
}

/// A 30-day month at a steady rate of workflows.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) workflows_per_second: f64,
    pub(crate) dpus_per_workflow: f64,
    pub(crate) workflows: f64,
    pub(crate) month_30d: Projection,
}

/// Projects a month at `wps` workflows per second from a measured DPU figure per workflow.
pub(crate) fn estimate(wps: f64, dpus_per_workflow: f64, storage_gb: f64, prices: &Prices) -> Estimate {
    let workflows = wps * HOURS_PER_MONTH * SECONDS_PER_HOUR;
    Estimate {
        workflows_per_second: wps,
        dpus_per_workflow,
        workflows,
        month_30d: month(workflows * dpus_per_workflow, storage_gb, prices),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Prices {
        Prices { per_million_dpu: 8.0, per_gb_month: 0.33, source: "test".to_owned() }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn epoch(year: i64, month: u32, day: u32, hour: i64) -> i64 {
        days_from_civil(year, month, day) * 86_400 + hour * 3600
    }

    #[test]
    fn calendar_round_trips_and_knows_leap_years() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 28) + 1), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2025, 2, 28) + 1), (2025, 3, 1));
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(Month::of(epoch(2025, 12, 31, 23)).next().to_string(), "2026-01");
        assert_eq!(Month::of(epoch(2025, 2, 1, 0)).start(), epoch(2025, 2, 1, 0));
    }

    /// 200,000 DPUs and 2 GB in a month: $1.60 + $0.66 = $2.26 before the free tier; after it,
    /// 100,000 DPUs ($0.80) and 1 GB ($0.33) are left: $1.13.
    #[test]
    fn a_month_of_200000_dpus_and_2_gb() {
        let m = month(200_000.0, 2.0, &seed());
        assert!(close(m.cost.dpu_usd, 1.60) && close(m.cost.storage_usd, 0.66), "{m:?}");
        assert!(close(m.cost.total_usd, 2.26), "{m:?}");
        assert!(
            close(m.after_free_tier.dpu_usd, 0.80) && close(m.after_free_tier.storage_usd, 0.33),
            "{m:?}"
        );
        assert!(close(m.after_free_tier.total_usd, 1.13), "{m:?}");
    }

    #[test]
    fn a_month_inside_the_free_tier_costs_nothing_after_it() {
        let m = month(99_999.0, 0.5, &seed());
        assert!(close(m.after_free_tier.total_usd, 0.0), "{m:?}");
        assert!(close(m.cost.total_usd, 99_999.0 * 8e-6 + 0.5 * 0.33), "{m:?}");
    }

    /// Six hours with 30,000 DPUs and 3 GB: the DPUs cost $0.24 and the storage 3 × 0.33 × 6/720
    /// = $0.00825; a 30-day month at that rate is 3,600,000 DPUs ($28.80) plus $0.99.
    #[test]
    fn a_window_its_rate_and_its_month() {
        let from = epoch(2025, 6, 10, 0);
        let usage = Usage {
            from,
            to: from + 6 * 3600,
            dpus: Dpus { total: 30_000.0, read: 10_000.0, write: 15_000.0, compute: 5_000.0 },
            samples: vec![(from, 30_000.0)],
            storage_bytes: Some(3.0 * BYTES_PER_GB),
        };
        let bill = bill(&usage, &seed());
        assert!(close(bill.hours, 6.0) && close(bill.storage_gb, 3.0), "{bill:?}");
        assert!(
            close(bill.window_cost.dpu_usd, 0.24) && close(bill.window_cost.storage_usd, 0.008_25),
            "{bill:?}"
        );
        assert!(close(bill.per_hour_usd, (0.24 + 0.008_25) / 6.0), "{bill:?}");
        assert!(close(bill.month_30d.dpus, 3_600_000.0), "{bill:?}");
        assert!(close(bill.month_30d.cost.total_usd, 28.80 + 0.99), "{bill:?}");
        assert!(close(bill.month_30d.after_free_tier.total_usd, 28.00 + 0.66), "{bill:?}");
        // One month's share: 30,000 DPUs all free, 2 GB of the 3 billed for 6 hours.
        let tier = &bill.window_free_tier;
        assert_eq!(tier.months.len(), 1);
        assert!(close(tier.after_free_tier.dpu_usd, 0.0), "{tier:?}");
        assert!(close(tier.after_free_tier.storage_usd, 2.0 * 0.33 * 6.0 / 720.0), "{tier:?}");
    }

    /// 150,000 DPUs on January 31st and 80,000 on February 1st: each month has its own 100,000, so
    /// 50,000 are billed ($0.40), not the 130,000 ($1.04) one allowance would leave.
    #[test]
    fn the_free_tier_applies_per_calendar_month_across_a_boundary() {
        let from = epoch(2025, 1, 31, 22);
        let usage = Usage {
            from,
            to: from + 4 * 3600,
            dpus: Dpus { total: 230_000.0, ..Dpus::default() },
            samples: vec![(from, 100_000.0), (from + 3600, 50_000.0), (from + 7200, 80_000.0)],
            storage_bytes: None,
        };
        let bill = bill(&usage, &seed());
        assert!(close(bill.window_cost.dpu_usd, 1.84), "{bill:?}");
        let months = &bill.window_free_tier.months;
        assert_eq!(months.iter().map(|m| m.month.to_string()).collect::<Vec<_>>(), ["2025-01", "2025-02"]);
        assert!(close(months[0].hours, 2.0) && close(months[1].hours, 2.0), "{months:?}");
        assert!(
            close(months[0].billable_dpus, 50_000.0) && close(months[1].billable_dpus, 0.0),
            "{months:?}"
        );
        assert!(close(bill.window_free_tier.after_free_tier.total_usd, 0.40), "{bill:?}");
    }

    #[test]
    fn dpus_per_workflow_and_a_month_at_a_rate() {
        let per = per_workflow(50_000.0, 10_000, &seed()).unwrap();
        assert!(close(per.dpus_per_workflow, 5.0) && close(per.usd_per_million_workflows, 40.0), "{per:?}");
        assert_eq!(per_workflow(1.0, 0, &seed()), None);
        // 10 wps for 30 days = 25,920,000 workflows × 5 DPUs = 129,600,000 DPUs = $1,036.80.
        let e = estimate(10.0, 5.0, 0.0, &seed());
        assert!(close(e.workflows, 25_920_000.0) && close(e.month_30d.dpus, 129_600_000.0), "{e:?}");
        assert!(close(e.month_30d.cost.total_usd, 1_036.80), "{e:?}");
        assert!(close(e.month_30d.after_free_tier.total_usd, 1_036.00), "{e:?}");
    }
}
