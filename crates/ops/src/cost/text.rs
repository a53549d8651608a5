//! The human-readable form of the cost reports.

use std::fmt::Write as _;
use std::path::Path;

use super::bill::{Dollars, Estimate, FREE_DPUS_PER_MONTH, FREE_GB_PER_MONTH};
use super::prices::Prices;
use super::{Coordination, CostReport};

/// `1234567.8` as `1,234,568`.
pub(crate) fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 { format!("-{out}") } else { out }
}

/// Dollars with cents, or with four decimals below a dollar (short runs cost fractions of a cent).
pub(crate) fn usd(value: f64) -> String {
    if value.abs() >= 1.0 {
        let cents = format!("{value:.2}");
        let (whole, fraction) = cents.split_once('.').unwrap_or((&cents, "00"));
        format!("${}.{fraction}", count(whole.parse().unwrap_or(0.0)))
    } else {
        format!("${value:.4}")
    }
}

fn dollars(d: &Dollars) -> String {
    format!("{} ({} DPUs + {} storage)", usd(d.total_usd), usd(d.dpu_usd), usd(d.storage_usd))
}

fn prices(p: &Prices) -> String {
    format!("{} per 1M DPUs, {} per GB-month; {}", usd(p.per_million_dpu), usd(p.per_gb_month), p.source)
}

fn coordination(out: &mut String, c: &Coordination) {
    let _ = writeln!(out, "coordination tables (DynamoDB on-demand, consumed capacity in the window):");
    for t in &c.tables {
        let cost = t.usd.map_or_else(String::new, |usd_| format!(": {}", usd(usd_)));
        let _ = writeln!(
            out,
            "  {} {}: {} read units, {} write units{cost}",
            t.usage.role,
            t.usage.name,
            count(t.usage.read_units),
            count(t.usage.write_units)
        );
    }
    match (&c.price, c.total_usd) {
        (Some(p), Some(total)) => {
            let _ = writeln!(
                out,
                "  together {} ({} per 1M reads, {} per 1M writes; {})",
                usd(total),
                usd(p.per_million_reads),
                usd(p.per_million_writes),
                p.source
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "  no embedded DynamoDB price for this region: pass --price-ddb-read and --price-ddb-write (USD per 1M \
                 request units) for their cost"
            );
        }
    }
}

/// `cargo xtask cost`.
pub(crate) fn cost(r: &CostReport) -> String {
    let b = &r.bill;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Aurora DSQL cluster {} in {}, {} to {} ({:.2} h, CloudWatch periods of {} s)",
        r.cluster, r.region, r.window.from, r.window.to, b.hours, r.window.period_s
    );
    let _ = writeln!(
        out,
        "DPUs            {} (read {}, write {}, compute {})",
        count(b.dpus.total),
        count(b.dpus.read),
        count(b.dpus.write),
        count(b.dpus.compute)
    );
    let storage = r.storage_measured_at.as_ref().map_or_else(
        || {
            "no ClusterStorageSize datapoint in the window or the day before its end; storage left out"
                .to_owned()
        },
        |at| format!("{:.3} GB (measured {at})", b.storage_gb),
    );
    let _ = writeln!(out, "storage now     {storage}");
    let _ = writeln!(out, "the window      {}", dollars(&b.window_cost));
    let _ = writeln!(out, "spend rate      {} per hour", usd(b.per_hour_usd));
    let _ = writeln!(
        out,
        "30-day month    {} at this rate ({} DPUs, {:.3} GB)",
        dollars(&b.month_30d.cost),
        count(b.month_30d.dpus),
        b.month_30d.storage_gb
    );
    let _ = writeln!(
        out,
        "free tier       {} DPUs and {} GB per calendar month, shown apart:",
        count(FREE_DPUS_PER_MONTH),
        FREE_GB_PER_MONTH
    );
    let _ = writeln!(out, "  30-day month after it   {}", dollars(&b.month_30d.after_free_tier));
    let shares: Vec<String> = b
        .window_free_tier
        .months
        .iter()
        .map(|m| format!("{}: {} DPUs, {} of them free", m.month, count(m.dpus), count(m.free_dpus)))
        .collect();
    let _ = writeln!(
        out,
        "  the window after it     {} at best, if nothing else used the free tier ({})",
        dollars(&b.window_free_tier.after_free_tier),
        shares.join("; ")
    );
    if let Some(c) = &r.coordination {
        coordination(&mut out, c);
    }
    let _ = writeln!(out, "prices          {}", prices(&r.prices));
    let _ = writeln!(
        out,
        "CloudWatch      {} GetMetricData request(s), {:.2} s",
        r.cloudwatch.get_metric_data_requests, r.cloudwatch.wall_s
    );
    out
}

/// `cargo xtask load ... --cost`.
pub(crate) fn load(r: &CostReport, completed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost of the run ({} to {}): {} DPUs (read {}, write {}, compute {}) = {}",
        r.window.from,
        r.window.to,
        count(r.bill.dpus.total),
        count(r.bill.dpus.read),
        count(r.bill.dpus.write),
        count(r.bill.dpus.compute),
        usd(r.bill.window_cost.dpu_usd)
    );
    match &r.per_workflow {
        Some(p) => {
            let _ = writeln!(
                out,
                "per workflow: {:.3} DPUs over {} completed workflows; {} per million workflows (DPUs only)",
                p.dpus_per_workflow,
                count(p.workflows as f64),
                usd(p.usd_per_million_workflows)
            );
        }
        None => {
            let _ = writeln!(out, "per workflow: none of the {completed} started workflows completed");
        }
    }
    if let Some(c) = &r.coordination {
        coordination(&mut out, c);
    }
    let _ = writeln!(out, "prices: {}", prices(&r.prices));
    out
}

/// `cargo xtask cost --estimate`.
pub(crate) fn estimate(e: &Estimate, p: &Prices, report: &Path) -> String {
    let m = &e.month_30d;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "30-day month at {} workflows/s: {} workflows × {:.3} DPUs (from {}) = {} DPUs",
        e.workflows_per_second,
        count(e.workflows),
        e.dpus_per_workflow,
        report.display(),
        count(m.dpus)
    );
    let _ = writeln!(
        out,
        "cost            {} (storage as measured in the run: {:.3} GB)",
        dollars(&m.cost),
        m.storage_gb
    );
    let _ = writeln!(
        out,
        "after the free tier ({} DPUs and {} GB a month)  {}",
        count(FREE_DPUS_PER_MONTH),
        FREE_GB_PER_MONTH,
        dollars(&m.after_free_tier)
    );
    let _ = writeln!(out, "prices          {}", prices(p));
    out
}

#[cfg(test)]
mod tests {
    use super::{count, usd};

    #[test]
    fn figures_read_well() {
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(count(999.0), "999");
        assert_eq!(usd(1324.8), "$1,324.80");
        assert_eq!(usd(0.00825), "$0.0083");
    }
}
