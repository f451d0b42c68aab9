//! Benchmarks live in benches/; this library holds what they share.

/// The value after `flag` in a command line (how a bench passes a case to a copy of itself).
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}
