//! The `tessera` argument parser on arbitrary argument lists. The binary's `Cli` struct is private
//! to `harness/src/main.rs`; this target rebuilds it from the public per-command `Args` (the same
//! derives, so the same parser) and calls `try_parse_from`. Arguments are drawn from the
//! parser's own flags and subcommands (walked from `Cli::command()`, nothing hard-coded), edge
//! values (huge, negative, non-finite, empty, long) and arbitrary strings. Asserts: clap's own
//! consistency checks on the command definition pass, and parsing returns `Ok` or an `Err` with
//! a message, never a panic. (Running the parsed commands is out of scope: they train models and
//! write files; the CLI's run-time limits are tested in `harness/tests`.)

#![no_main]

use arbitrary::Arbitrary;
use clap::{CommandFactory, Parser, Subcommand};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tessera_harness::commands;

#[derive(Parser)]
#[command(name = "tessera")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    Run(commands::run::Args),
    Deviation(commands::deviation::Args),
    Wasserstein(commands::wasserstein::Args),
    Layerskip(commands::layerskip::Args),
    Hyperopt(commands::hyperopt::Args),
}

#[derive(Arbitrary, Debug)]
enum Token {
    /// One of the parser's flags or subcommand names, by index.
    Known(u16),
    Value(u8),
    Text(String),
}

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "9223372036854775807",
    "1e309",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "0.0",
    "-0",
    "1e-45",
    "3.4e38",
    "",
    " ",
    "=",
    "--",
    "-",
    "flash",
    "baseline",
    "f32",
    "bf16",
    "f64",
    "auto",
    "generic",
    "avx2",
    "avx512",
    "/dev/null",
    "/nonexistent/x.npy",
    "../x",
    "a,b",
    "1,2,3",
];

/// Every long flag, short flag and subcommand name the parser knows, at any depth.
fn known() -> &'static [String] {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
            out.push(cmd.get_name().to_string());
            for a in cmd.get_arguments() {
                out.extend(a.get_long().map(|l| format!("--{l}")));
                out.extend(a.get_short().map(|s| format!("-{s}")));
                for v in a.get_possible_values() {
                    out.push(v.get_name().to_string());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut out = Vec::new();
        walk(&cmd, &mut out);
        out
    })
}

fuzz_target!(|tokens: Vec<Token>| {
    let known = known();
    let mut argv = vec!["tessera".to_string()];
    for t in tokens.into_iter().take(24) {
        argv.push(match t {
            Token::Known(i) => known[i as usize % known.len()].clone(),
            Token::Value(i) => VALUES[i as usize % VALUES.len()].to_string(),
            Token::Text(s) => s,
        });
    }
    match Cli::try_parse_from(&argv) {
        Ok(_) => {}
        Err(e) => {
            // Rendering the error (help and version included) must not panic either.
            let _ = e.render().to_string();
        }
    }
});
