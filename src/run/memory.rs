//! Resident memory of this process (Linux `/proc`; `None` elsewhere) and how glibc's allocator
//! keeps freed memory.

use std::fs;
use std::sync::OnceLock;

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

/// Whether glibc's allocator was told to keep freed memory for reuse ([`keep_freed_memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Set here: blocks up to 256 MiB come from the heap and freed memory is kept up to 1 GiB.
    KeepsFreed,
    /// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` is set: the user's settings stand.
    UserSettings,
    /// Not glibc: the platform's allocator as it is.
    Untouched,
}

/// Tells glibc to serve blocks of up to 256 MiB from its heap and to keep up to 1 GiB of freed
/// memory instead of returning it to the kernel. By default each step's multi-megabyte tensors
/// are fresh mappings whose pages fault in on first touch and are unmapped when freed: 8–16 % of
/// bench-small's cycles on flex were page faults (benches/README.md, "Page faults"); with this,
/// the next step reuses the same memory. Peak memory is unchanged (the memory freed is the
/// memory the next step takes again). Call it first thing in `main`, before other threads
/// exist; later calls change nothing and return what the first one did.
pub fn keep_freed_memory() -> Allocator {
    static SET: OnceLock<Allocator> = OnceLock::new();
    *SET.get_or_init(|| {
        let user = |k: &str| std::env::var_os(k).is_some();
        if user("MALLOC_MMAP_THRESHOLD_") || user("MALLOC_TRIM_THRESHOLD_") {
            return Allocator::UserSettings;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes two of glibc's allocator parameters, under glibc's
            // own lock; it is called once.
            let set = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
            };
            if set {
                return Allocator::KeepsFreed;
            }
        }
        Allocator::Untouched
    })
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeepsFreed => "glibc, keeps freed memory (mmap threshold 256 MiB, trim 1 GiB)",
            Self::UserSettings => "glibc, as set by MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_",
            Self::Untouched => "the platform's, untouched",
        })
    }
}
