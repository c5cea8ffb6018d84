//! How much memory a run needs, known before any image is decoded or any buffer of the
//! network allocated, and how much the machine has for it: a run that would not fit is
//! refused with its estimate and the largest batch that fits, instead of being killed by
//! the kernel's out-of-memory killer in the middle of an epoch.
//!
//! The estimate is the decoded data, what any process of this program holds ([`PROCESS`]),
//! and the larger of two moments: loading the data (when it is split into training and
//! validation sets, the validation images are copied out of the whole set), and training
//! (the network's buffers at the batch size, `Network::memory`: weights, optimizer state,
//! the batch's values, one working arena per thread; and the batch being assembled).
//! Between the two, the memory the allocator holds free is given back to the system
//! ([`release_free`]).

use petal_model::{Memory, Network};

/// What the process holds besides the data and the network: its code and libraries, the
/// threads' stacks, the allocator's own, `matrixmultiply`'s packing buffers, the plot and
/// the checkpoint being written (measured: the peak of a run less its data and network is
/// 6 to 7 MiB).
pub const PROCESS: u64 = 8 << 20;

/// A run's memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The network's at the batch size.
    pub network: Memory,
    /// The decoded data (`f32` values), and what loading it needs besides (the validation
    /// images copied out of the whole set).
    pub data: u64,
    pub loading: u64,
    /// The batch being assembled (inputs and labels).
    pub batch: u64,
}

impl Estimate {
    /// The peak: the process and the data, then loading or training, the larger.
    pub fn total(&self) -> u64 {
        PROCESS + self.data + self.loading.max(self.batch + self.network.total())
    }

    /// One line: `312 MiB (data 120 MiB, weights and optimizer 3.1 MiB, the batch's values
    /// 160 MiB, 2 threads' working memory 24 MiB)`.
    pub fn describe(&self, threads: usize) -> String {
        let n = &self.network;
        format!(
            "{} (data {}, weights and optimizer {}, the batch's values {}, {threads} thread{} working memory {})",
            bytes(self.total()),
            bytes(self.data),
            bytes(n.weights + n.optimizer),
            bytes(n.batch + self.batch),
            if threads == 1 { "'s" } else { "s'" },
            bytes(n.tasks)
        )
    }
}

/// The estimate of training `net` on batches of `batch` samples with `threads` threads, an
/// optimizer of `slots` values per parameter value, and `images` decoded images of which a
/// fraction `split_off` is copied out as the validation set after loading (0: none).
pub fn estimate(
    net: &Network,
    batch: usize,
    threads: usize,
    slots: usize,
    images: usize,
    split_off: f64,
) -> Estimate {
    let per = net.input_shape().len() as u64;
    let data = images as u64 * per * 4;
    Estimate {
        network: net.memory(batch, threads, slots),
        data,
        loading: (data as f64 * split_off).ceil() as u64,
        batch: batch as u64 * (per * 4 + 8),
    }
}

/// Gives the memory the allocator holds free (the buffers of loading, gone) back to the
/// system, where the allocator can (glibc's `malloc_trim`): otherwise it would stay the
/// process's, beside the training buffers allocated after it.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The largest batch (up to `batch`) whose estimate fits in `budget` bytes, or `None` when
/// not even one sample's does.
pub fn largest_batch(budget: u64, batch: usize, at: impl Fn(usize) -> Estimate) -> Option<usize> {
    if at(1).total() > budget {
        return None;
    }
    // The estimate grows with the batch: the last that fits, by bisection.
    let (mut lo, mut hi) = (1, batch);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if at(mid).total() <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Bytes this process may still use: the kernel's `MemAvailable`, and a container's
/// memory limit less its usage when one is set (cgroup v2 or v1), the smaller; `None`
/// where neither can be read.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let cgroup = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    .iter()
    .find_map(|(limit, usage)| Some(read(limit)?.saturating_sub(read(usage).unwrap_or(0))));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// This process's peak resident memory so far (`VmHWM`), where the system says it.
pub fn peak_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `n` bytes in binary units: `512 KiB`, `312 MiB`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `text` (`8G`, `512M`, `1.5G`, `1000000`: bytes, or KiB, MiB, GiB, TiB with `K`, `M`,
/// `G`, `T`) in bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a size (8G, 512M, 1.5G)");
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) || v * (1u64 << shift) as f64 >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok((v * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_in_binary_units() {
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        for bad in ["", "G", "-1G", "0", "1e30T", "eight"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(312 << 20), "312 MiB");
    }

    #[test]
    fn the_largest_batch_is_the_last_that_fits() {
        let at = |b: usize| Estimate {
            network: Memory::default(),
            data: 0,
            loading: 0,
            batch: b as u64 * 1000,
        };
        let budget = PROCESS + 77_500;
        assert_eq!(largest_batch(budget, 128, at), Some(77));
        assert_eq!(largest_batch(budget, 50, at), Some(50));
        assert_eq!(largest_batch(PROCESS, 128, at), None);
    }
}
