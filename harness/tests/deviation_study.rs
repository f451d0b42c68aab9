//! The quick deviation study reproduces the paper's findings on the shipped kernels: these are the
//! claims docs/results/deviation.md makes, checked on every test run.

use tessera_harness::deviation::{run_plan, Plan, Record};

fn dev(records: &[Record], format: &str, algorithm: &str, n: usize, bc: Option<usize>) -> f64 {
    records
        .iter()
        .find(|r| {
            r.format == format
                && r.algorithm == algorithm
                && r.seq_len == n
                && r.block_k == bc
                && (bc.is_none() || r.block_q == Some(64))
        })
        .unwrap_or_else(|| panic!("no record {format} {algorithm} N={n} Bc={bc:?}"))
        .max_abs_dev
}

#[test]
fn quick_study_shows_the_papers_trends() {
    let plan = Plan::quick(2024);
    let records = run_plan(&plan, false).expect("the quick study runs");
    let lens = [256, 1024, 4096, 16384];
    let flash = |f: &str, n| dev(&records, f, "flash", n, Some(64));
    let base = |f: &str, n| dev(&records, f, "baseline", n, None);

    // 1. At bf16, flash deviates clearly more than baseline at long sequences.
    let ratio_long = flash("bf16", 16384) / base("bf16", 16384);
    assert!(
        ratio_long > 5.0,
        "bf16 flash/baseline at N=16384 is only {ratio_long:.2}"
    );
    // ... and the gap grows with sequence length at a fixed tile.
    let ratio_short = flash("bf16", 256) / base("bf16", 256);
    assert!(
        ratio_long > 2.0 * ratio_short,
        "ratio {ratio_short:.2} -> {ratio_long:.2}"
    );
    assert!(flash("bf16", 16384) > flash("bf16", 256));

    // 2. Larger key tiles, fewer rescalings, less deviation.
    let (bc16, bc64, bc256) = (
        dev(&records, "bf16", "flash", 4096, Some(16)),
        dev(&records, "bf16", "flash", 4096, Some(64)),
        dev(&records, "bf16", "flash", 4096, Some(256)),
    );
    assert!(
        bc16 > bc64 && bc64 > bc256,
        "Bc 16/64/256: {bc16:e} {bc64:e} {bc256:e}"
    );

    // 3. Deviation falls with the mantissa: bf16 > fp16 > f32 > f64, for both algorithms.
    for n in lens {
        for get in [&flash as &dyn Fn(&str, usize) -> f64, &base] {
            let chain = [get("bf16", n), get("fp16", n), get("f32", n), get("f64", n)];
            assert!(chain.windows(2).all(|w| w[0] > w[1]), "N={n}: {chain:?}");
        }
    }

    // 4. In f64 both algorithms agree with the oracle to ~1e-15; f32 stays near its roundoff.
    for n in lens {
        assert!(
            flash("f64", n) < 1e-14 && base("f64", n) < 1e-14,
            "f64 at N={n}"
        );
        assert!(
            flash("f32", n) < 2e-6 && base("f32", n) < 2e-6,
            "f32 at N={n}"
        );
    }
}
