//! How much memory a command may ask for, checked before it allocates.
//!
//! Every buffer whose size comes from the command line or a file is sized with checked arithmetic
//! and compared with a byte budget first, so an absurd argument is refused with a message that
//! names it instead of aborting on a failed allocation (or paging the machine to a halt).
//!
//! The budget is the smallest of the limits the process can see (Linux): the memory the kernel
//! reports as available (`MemAvailable` in `/proc/meminfo`), the cgroup's limit
//! (`/sys/fs/cgroup/memory.max`) and the address-space limit (`ulimit -v`, from
//! `/proc/self/limits`). Where none can be read it is [`FALLBACK_BUDGET`].

use anyhow::bail;
use std::fmt;

/// The budget where the platform shows no limit: 16 GiB.
pub const FALLBACK_BUDGET: u64 = 16 << 30;

/// One buffer a command is about to allocate.
#[derive(Clone, Debug)]
pub struct Need {
    /// What it is, for the message ("the KV cache").
    pub what: String,
    /// Its size in bytes; `None` when computing it overflowed.
    pub bytes: Option<u64>,
}

impl Need {
    /// `count` values of `T`; `count` is `None` (or an error) when computing it overflowed.
    pub fn of<T, E>(what: impl Into<String>, count: Result<usize, E>) -> Need {
        let size = std::mem::size_of::<T>() as u64;
        Need {
            what: what.into(),
            bytes: count
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .and_then(|n| n.checked_mul(size)),
        }
    }

    /// `copies` of all of `parts` together, as one need (`None` if any part overflowed).
    pub fn combined(what: impl Into<String>, parts: &[Need], copies: usize) -> Need {
        let one = parts
            .iter()
            .try_fold(0u64, |acc, n| acc.checked_add(n.bytes?));
        Need {
            what: what.into(),
            bytes: one.and_then(|b| b.checked_mul(copies as u64)),
        }
    }

    /// `count` `f32` values.
    pub fn floats<E>(what: impl Into<String>, count: Result<usize, E>) -> Need {
        Need::of::<f32, E>(what, count)
    }
}

/// A byte count printed with a binary unit ("1.5 GiB").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit + 1 < UNITS.len() {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[unit])
        }
    }
}

/// The memory budget and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Bytes a command may allocate.
    pub bytes: u64,
    /// Which limit set it, for messages.
    pub source: &'static str,
}

/// The budget of this process now (see the module docs).
pub fn budget() -> Budget {
    let limits = [
        (
            meminfo_available(),
            "the memory available (MemAvailable in /proc/meminfo)",
        ),
        (cgroup_limit(), "the cgroup's memory limit"),
        (address_space_limit(), "the address-space limit (ulimit -v)"),
    ];
    limits
        .into_iter()
        .filter_map(|(b, source)| b.map(|bytes| Budget { bytes, source }))
        .min_by_key(|b| b.bytes)
        .unwrap_or(Budget {
            bytes: FALLBACK_BUDGET,
            source: "the default budget (no memory limit could be read)",
        })
}

/// Checks that `needs` together fit in [`budget`]; `advice` says which flag or file to change.
/// Every size that overflowed is refused whatever the budget.
pub fn ensure_fits(needs: &[Need], advice: &str) -> anyhow::Result<()> {
    ensure_fits_in(needs, budget(), advice)
}

/// [`ensure_fits`] against a given budget.
pub fn ensure_fits_in(needs: &[Need], budget: Budget, advice: &str) -> anyhow::Result<()> {
    if let Some(n) = needs.iter().find(|n| n.bytes.is_none()) {
        bail!(
            "{} would be larger than any memory can hold; {advice}",
            n.what
        );
    }
    let total = needs
        .iter()
        .try_fold(0u64, |acc, n| acc.checked_add(n.bytes.unwrap_or(0)));
    if matches!(total, Some(t) if t <= budget.bytes) {
        return Ok(());
    }
    let parts: Vec<String> = needs
        .iter()
        .filter(|n| n.bytes != Some(0))
        .map(|n| format!("{} {}", n.what, Bytes(n.bytes.unwrap_or(0))))
        .collect();
    let total = total.map_or("more than 16 EiB".to_string(), |t| Bytes(t).to_string());
    bail!(
        "this needs {total} of memory ({}), more than the {} of {}; {advice}",
        parts.join(", "),
        Bytes(budget.bytes),
        budget.source
    )
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The cgroup v2 memory limit, if one is set.
fn cgroup_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The soft address-space limit of `/proc/self/limits`, if one is set. Part of it is already
/// taken by the program itself; the checks are about sizes far beyond that.
fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line.trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: Budget = Budget {
        bytes: 1 << 30,
        source: "a test budget",
    };

    #[test]
    fn sizes_within_the_budget_pass_and_larger_ones_name_every_part() {
        let small = [Need::floats("weights", Ok::<_, ()>(1000))];
        ensure_fits_in(&small, GIB, "lower --x").expect("4 KB fits");
        let big = [
            Need::floats("weights", Ok::<_, ()>(1000)),
            Need::floats("the KV cache", Ok::<_, ()>(1 << 30)),
        ];
        let e = ensure_fits_in(&big, GIB, "lower --x")
            .expect_err("4 GiB does not fit")
            .to_string();
        assert!(e.contains("the KV cache 4.0 GiB"), "{e}");
        assert!(e.contains("1.0 GiB of a test budget"), "{e}");
        assert!(e.ends_with("lower --x"), "{e}");
    }

    #[test]
    fn overflowing_sizes_are_refused_whatever_the_budget() {
        let huge = Budget {
            bytes: u64::MAX,
            source: "all",
        };
        let e = ensure_fits_in(&[Need::floats("scratch", Err(()))], huge, "lower --draft")
            .expect_err("overflow")
            .to_string();
        assert!(e.starts_with("scratch would be larger"), "{e}");
        let two = [
            Need::floats("a", Ok::<_, ()>(usize::MAX / 4)),
            Need::floats("b", Ok::<_, ()>(usize::MAX / 4)),
        ];
        assert!(ensure_fits_in(&two, huge, "x").is_err());
    }

    #[test]
    fn the_budget_is_positive_and_bytes_print_with_units() {
        assert!(budget().bytes > 0);
        assert_eq!(Bytes(512).to_string(), "512 bytes");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5 GiB");
    }
}
