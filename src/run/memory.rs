//! Resident memory of this process (Linux `/proc`); `None` elsewhere.

use std::fs;

fn status_kb(key: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Peak resident set size in KiB (VmHWM).
pub fn peak_rss_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Current resident set size in KiB (VmRSS).
pub fn rss_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// Reset the peak to the current size (Linux ≥ 4.0), so that phases can be measured apart.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}
