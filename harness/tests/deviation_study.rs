//! The quick deviation study reproduces the paper's findings on the shipped kernels: these are the
//! claims docs/results/deviation.md makes, checked on every test run.

use tessera_harness::deviation::{compare, headline_table, run_plan, Model, Plan, Record};

/// The format's model the paper's findings are about: the paper's own at bf16/fp16.
fn paper_model(format: &str, algorithm: &str) -> &'static str {
    match (format, algorithm) {
        ("bf16" | "fp16", _) => "paper",
        ("f32", _) => "f32",
        _ => "f64",
    }
}

fn dev(records: &[Record], format: &str, algorithm: &str, n: usize, bc: Option<usize>) -> f64 {
    dev_model(
        records,
        format,
        paper_model(format, algorithm),
        algorithm,
        n,
        bc,
    )
}

fn dev_model(
    records: &[Record],
    format: &str,
    model: &str,
    algorithm: &str,
    n: usize,
    bc: Option<usize>,
) -> f64 {
    records
        .iter()
        .find(|r| {
            r.format == format
                && r.model == model
                && r.sram_bytes.is_none()
                && r.algorithm == algorithm
                && r.seq_len == n
                && r.block_k == bc
                && (bc.is_none() || r.block_q == Some(64))
        })
        .unwrap_or_else(|| panic!("no record {format} {model} {algorithm} N={n} Bc={bc:?}"))
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

    // 1b. FlashAttention-2's own precision (fp32 state, P rounded to bf16) against eager bf16
    // attention: flash deviates *less* at every N, and less than the paper's flash model.
    // Checked for every input seed of the plan.
    assert_eq!(plan.seeds, 3);
    for seed in plan.seed..plan.seed + plan.seeds {
        let of_seed: Vec<Record> = records.iter().filter(|r| r.seed == seed).cloned().collect();
        for n in lens {
            let fa2 = dev_model(&of_seed, "bf16", "fa2", "flash", n, Some(64));
            let eager = dev_model(&of_seed, "bf16", "bf16-ops", "baseline", n, None);
            let paper = dev_model(&of_seed, "bf16", "paper", "flash", n, Some(64));
            assert!(
                fa2 < eager,
                "seed {seed} N={n}: fa2 {fa2:e} vs bf16-ops {eager:e}"
            );
            assert!(
                fa2 < paper,
                "seed {seed} N={n}: fa2 {fa2:e} vs paper {paper:e}"
            );
        }
    }
    // The JSON comparisons pair them, with the errors of both runs.
    let comparisons = compare(&records);
    for model in ["fa2", "paper"] {
        assert!(comparisons.iter().any(|c| c.model == model
            && c.format == "bf16"
            && c.baseline_model == if model == "fa2" { "bf16-ops" } else { "paper" }
            && c.seq_len == 16384
            && c.flash > 0.0
            && c.baseline > 0.0));
    }
    assert_eq!(Model::HEADLINE[0], (Model::Fa2, Model::Bf16Ops));

    // The README's headline is this run's: every table row and verdict that does not depend on
    // the machine's SIMD backend (all but f32, which runs on the best one) appears verbatim.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let printed = headline_table(&records);
    let mut checked = 0;
    for line in printed.lines() {
        let row =
            line.starts_with("| bf16") || line.starts_with("| fp16") || line.starts_with("| f64");
        let verdict =
            line.starts_with("- bf16") || line.starts_with("- fp16") || line.starts_with("- f64");
        if row || verdict {
            assert!(
                readme.contains(line),
                "README.md lacks this headline line:\n{line}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 4 + 4, "headline rows and verdicts checked");

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

/// `tessera deviation --quick --json F`: one record per flash run and baseline model, with the
/// models, the format, N and both errors; `fa2` and `paper` flash at bf16 among them.
#[test]
fn quick_json_names_the_models() {
    let dir = std::env::temp_dir().join(format!("tessera-devjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("dev.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "deviation",
            "--quick",
            "--seeds",
            "1",
            "--rows",
            "2",
            "--json",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("tessera runs");
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("json written")).expect("valid JSON");
    let records = json.as_array().expect("an array of records");
    for model in ["fa2", "paper"] {
        let flash_bf16: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["model"] == model && r["format"] == "bf16" && r["algorithm"] == "flash")
            .collect();
        assert!(!flash_bf16.is_empty(), "no {model} flash record at bf16");
        for r in flash_bf16 {
            assert!(r["seq_len"].as_u64().is_some_and(|n| n > 0));
            assert!(r["baseline_model"].is_string());
            assert!(r["flash"].as_f64().is_some_and(|x| x > 0.0));
            assert!(r["baseline"].as_f64().is_some_and(|x| x > 0.0));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
