//! CPU time from `/proc` (Linux): of this process, of its threads with a given name, and of the
//! whole machine, so the load report can say whether the generator or the machine was the limit.
//! Elsewhere every reading is `None` and the report leaves the figures out.

use std::time::Duration;

/// Clock ticks per second in `/proc` figures (`USER_HZ`, 100 on every Linux ABI in use).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) this process has used.
pub(crate) fn process() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU time used by the threads of this process whose name starts with `prefix`.
pub(crate) fn threads(prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if thread_name(&stat).is_some_and(|name| name.starts_with(prefix)) {
            total += stat_cpu(&stat)?;
        }
    }
    Some(total)
}

/// A reading of the machine-wide counters in `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Machine {
    busy: u64,
    total: u64,
    /// Logical CPUs.
    pub(crate) cores: usize,
}

impl Machine {
    /// Reads `/proc/stat` now.
    pub(crate) fn now() -> Option<Self> {
        parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of all cores that was busy between `earlier` and this reading (0..=1).
    pub(crate) fn busy_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

fn parse_machine(stat: &str) -> Option<Machine> {
    let line = stat.lines().next()?;
    let fields: Vec<u64> =
        line.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let all: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(Machine { busy: all - idle, total: all, cores })
}

/// The name between the parentheses of a `stat` line (it may itself contain spaces or parens).
fn thread_name(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    stat.get(open + 1..close)
}

/// utime + stime (fields 14 and 15 of a `stat` line) as a duration.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_and_name_from_a_stat_line() {
        let line = "4242 (load gen (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(thread_name(line), Some("load gen (x)"));
        assert_eq!(stat_cpu(line), Some(Duration::from_secs(3)));
    }

    #[test]
    fn machine_busy_share_between_two_readings() {
        let first =
            parse_machine("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 5\n").unwrap();
        let second = parse_machine("cpu  250 0 150 750 150 0 0 0 0 0\ncpu0 1\ncpu1 1\n").unwrap();
        assert_eq!(first.cores, 2);
        // 200 busy ticks out of 300.
        let share = second.busy_since(&first).unwrap();
        assert!((share - 2.0 / 3.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0_u64;
        for i in 0..20_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process().is_some_and(|cpu| cpu > Duration::ZERO));
        assert!(Machine::now().is_some_and(|m| m.cores >= 1));
    }
}
