//! Benchmarks live in benches/; this library holds what the instruction-count benches share.

use std::process::Command;

/// The value after `flag` in a command line (how the instruction benches pass a case to the
/// copy of themselves that callgrind runs).
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

/// Whether `valgrind` runs here (the instruction-count benches say so and count nothing if not).
pub fn valgrind_available() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok()
}

/// Instructions callgrind counts when it runs `exe` with `args`, or why it could not.
pub fn callgrind_instructions(exe: &str, args: &[&str]) -> Result<u64, String> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null", exe])
        .args(args)
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("valgrind failed on {args:?}:\n{log}"));
    }
    log.lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no instruction total in valgrind's output for {args:?}"))
}

/// The instructions of one step of a case: callgrind's count with `steps` steps minus its count
/// with none (set-up and process start cancel), divided by `steps`. `args` select the case; the
/// step count is passed as `--steps N`.
pub fn instructions_per_step(exe: &str, args: &[&str], steps: u32) -> Result<f64, String> {
    let count = |n: u32| {
        let n = n.to_string();
        let mut all = args.to_vec();
        all.extend(["--steps", n.as_str()]);
        callgrind_instructions(exe, &all)
    };
    let (full, base) = (count(steps)?, count(0)?);
    Ok(full.saturating_sub(base) as f64 / f64::from(steps.max(1)))
}
