//! `tessera wasserstein` end to end: a short run prints the per-step table with the ratio column
//! and writes JSON whose distances behave as the study claims.

use std::process::Command;

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

#[test]
fn short_run_prints_distances_and_ratio() {
    let json = std::env::temp_dir().join(format!("tessera-w1-{}.json", std::process::id()));
    let out = tessera()
        .args([
            "wasserstein",
            "--quick",
            "--steps",
            "8",
            "--every",
            "4",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run tessera");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(c)/(b)"), "no ratio column in:\n{stdout}");
    let text = std::fs::read_to_string(&json).expect("json written");
    let _ = std::fs::remove_file(&json);
    let records: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let all: Vec<&serde_json::Value> = records
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["tensor"] == "all")
        .collect();
    // Two snapshots (steps 4 and 8) of four comparisons.
    assert_eq!(all.len(), 8);
    for step in [4, 8] {
        let w1 = |run: &str| {
            all.iter()
                .find(|r| r["step"] == step && r["run"] == run)
                .and_then(|r| r["w1"].as_f64())
                .unwrap_or_else(|| panic!("no {run} at step {step}"))
        };
        // Low-precision training moves the weights further than the f32 flash algorithm does,
        // and every run differs from its anchor.
        assert!(w1("baseline_bf16") > w1("flash_f32"), "step {step}");
        assert!(w1("flash_f32") > 0.0 && w1("flash_bf16_vs_baseline_bf16") > 0.0);
    }
}

#[test]
fn bad_arguments_exit_with_status_2() {
    let out = tessera()
        .args(["wasserstein", "--quick", "--every", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--every"));
    let out = tessera()
        .args(["wasserstein", "--corpus", "/nonexistent/corpus.txt"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
