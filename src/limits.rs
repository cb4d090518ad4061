//! How much a run may ask of the machine: checked before anything is allocated, so a mistyped
//! size is a clear error naming its field, never an aborted process.

/// The largest batch any optimizer step or evaluation may take.
pub const MAX_BATCH: usize = 1 << 16;

/// The share of the machine's memory the image sets of a run may take, in bytes: half of the
/// physical memory (`/proc/meminfo`), or 4 GiB where that cannot be read.
pub fn memory_budget() -> u64 {
    physical_memory().map_or(4 << 30, |total| total / 2)
}

/// The machine's physical memory in bytes, where the OS says.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes held in memory by `images` images of `values_per_image` `f32` values, saturating.
pub fn image_bytes(images: u64, values_per_image: u64) -> u64 {
    images.saturating_mul(values_per_image).saturating_mul(4)
}

/// `bytes` in the unit a person reads (KiB … PiB).
pub fn human_bytes(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Err with a message when `bytes` of image data exceed the memory budget.
pub fn check_image_memory(what: &str, bytes: u64) -> Result<(), String> {
    let budget = memory_budget();
    if bytes <= budget {
        return Ok(());
    }
    Err(format!(
        "{what} would take {} in memory; at most {} (half of this machine's memory) may go to image data",
        human_bytes(bytes),
        human_bytes(budget)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_human_units_and_saturate() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(image_bytes(u64::MAX, 3), u64::MAX);
        assert!(check_image_memory("x", 1 << 20).is_ok());
        let e = check_image_memory("original.train", u64::MAX).unwrap_err();
        assert!(e.starts_with("original.train would take"), "{e}");
    }
}
