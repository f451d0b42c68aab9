//! `tessera wasserstein` end to end: a short run writes JSON whose distances behave as the study
//! claims, with a slope and an interval for every arm, and a resumed run reuses the saved seeds.

use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn run(args: &[&str], json: &std::path::Path) -> (serde_json::Value, String) {
    let out = tessera()
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("run tessera");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stderr: {stderr}");
    let text = std::fs::read_to_string(json).expect("json written");
    (serde_json::from_str(&text).expect("valid JSON"), stderr)
}

#[test]
fn short_run_measures_every_arm_and_resumes() {
    let tmp = std::env::temp_dir();
    let id = std::process::id();
    let json = tmp.join(format!("tessera-w1-{id}.json"));
    let resume = tmp.join(format!("tessera-w1-resume-{id}"));
    let resume_arg = resume.display().to_string();
    let args = [
        "wasserstein",
        "--quick",
        "--steps",
        "8",
        "--every",
        "4",
        "--seeds",
        "2",
        "--resume",
        &resume_arg,
    ];
    let (study, _) = run(&args, &json);
    let records = study["records"].as_array().expect("records");
    let arms = [
        "fp16_mixed_vs_f32",
        "bf16_mixed_vs_f32",
        "other_init",
        "flash_vs_baseline_f32",
        "flash_vs_baseline_bf16_mixed",
    ];
    let get = |seed: u64, step: u64, arm: &str, tensor: &str| {
        records
            .iter()
            .find(|r| {
                r["seed"] == seed && r["step"] == step && r["arm"] == arm && r["tensor"] == tensor
            })
            .unwrap_or_else(|| panic!("no {arm} {tensor} at seed {seed} step {step}"))
    };
    for seed in [0, 1] {
        for arm in arms {
            // Step 0: only the other initialisation differs.
            let start = get(seed, 0, arm, "matrices")["w1"].as_f64().unwrap();
            assert_eq!(
                start == 0.0,
                arm != "other_init",
                "{arm} at step 0: {start}"
            );
            for step in [4, 8] {
                for tensor in ["matrices", "norm_gains", "layers.0.wq", "final_norm"] {
                    let r = get(seed, step, arm, tensor);
                    let (w1, max) = (r["w1"].as_f64().unwrap(), r["max_diff"].as_f64().unwrap());
                    // W1 is the cheapest coupling's mean move, so never above the largest move of
                    // the position-by-position coupling.
                    assert!(
                        w1 <= max + 1e-12,
                        "{arm} {tensor} step {step}: {w1} > {max}"
                    );
                    assert_eq!(
                        r["norm_gain"],
                        tensor.ends_with("norm") || tensor == "norm_gains"
                    );
                }
                // Training moved every compared pair apart.
                assert!(
                    get(seed, step, arm, "matrices")["max_diff"]
                        .as_f64()
                        .unwrap()
                        > 0.0
                );
            }
        }
    }
    // A slope with a 2-seed interval for every arm, group and metric; ratios seed by seed.
    let slopes = study["slopes"].as_array().expect("slopes");
    assert_eq!(slopes.len(), 2 * 2 * arms.len());
    for s in slopes {
        assert_eq!(s["per_seed"].as_array().unwrap().len(), 2);
        let i = &s["interval"];
        let (lo, mean, hi) = (i["lo"].as_f64(), i["mean"].as_f64(), i["hi"].as_f64());
        assert!(lo <= mean && mean <= hi, "{s}");
    }
    assert!(study["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["verdict"].is_string()));
    // The same command again loads both seeds instead of training them.
    let (again, stderr) = run(&args, &json);
    assert!(stderr.contains("(2 reused from --resume)"), "{stderr}");
    let (a, b) = (again["records"].as_array().unwrap(), records);
    assert_eq!(a.len(), b.len());
    if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
        panic!("the resumed study differs: {x} vs {y}");
    }
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_dir_all(&resume);
}

#[test]
fn bad_arguments_exit_with_status_2() {
    for args in [
        &["wasserstein", "--quick", "--every", "0"][..],
        &["wasserstein", "--quick", "--seeds", "1"],
        &["wasserstein", "--quick", "--steps", "10", "--every", "11"],
        &["wasserstein", "--corpus", "/nonexistent/corpus.txt"],
    ] {
        let out = tessera().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--every") || stderr.contains("--seeds") || stderr.contains("corpus"),
            "{args:?}: {stderr}"
        );
    }
}
