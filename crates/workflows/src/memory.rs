//! This process's memory from `/proc/self/status` (Linux), so a long `load` run shows its
//! footprint staying flat. Elsewhere every reading is `None` and the report leaves it out.

/// Resident set size now and its peak so far, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resident {
    /// `VmRSS`: pages in memory now.
    pub(crate) now: u64,
    /// `VmHWM`: the most there ever were (the kernel's high-water mark, between samples too).
    pub(crate) peak: u64,
}

impl Resident {
    /// Reads `/proc/self/status` now.
    pub(crate) fn read() -> Option<Self> {
        parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }
}

/// Bytes in megabytes (10^6 bytes; `top` shows KiB) to one decimal, as the reports print them.
pub(crate) fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 100_000.0).round() / 10.0
}

fn parse_status(status: &str) -> Option<Resident> {
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find_map(|line| line.strip_prefix(key))?;
        let value = line.strip_prefix(':')?.trim().strip_suffix("kB")?.trim();
        value.parse::<u64>().ok().map(|kib| kib * 1024)
    };
    Some(Resident { now: kib("VmRSS")?, peak: kib("VmHWM")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_its_high_water_mark_in_bytes() {
        let status = "Name:\ttdsql-workflows\nVmPeak:\t  457220 kB\nVmHWM:\t   60324 kB\n\
                      VmRSS:\t   48064 kB\nThreads:\t17\n";
        assert_eq!(parse_status(status), Some(Resident { now: 48_064 * 1024, peak: 60_324 * 1024 }));
        // A kernel thread has no VmRSS line.
        assert_eq!(parse_status("Name:\tkthreadd\nThreads:\t1\n"), None);
        assert!((mb(48_064 * 1024) - 49.2).abs() < 1e-9);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let resident = Resident::read().expect("/proc/self/status has VmRSS and VmHWM on Linux");
        assert!(resident.now > 0 && resident.peak >= resident.now, "{resident:?}");
    }
}
