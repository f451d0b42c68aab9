//! `tessera layerskip` from the command line: the recipe's flags and defaults in `--help`, bad
//! recipe flags refused with status 2, and the quick recipe-vs-no-recipe study (CI's short run).

use std::process::Command;

fn tessera(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tessera")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tessera-layerskip-cli-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

#[test]
fn train_help_lists_the_recipe_with_the_papers_defaults() {
    let out = tessera(&["layerskip", "train", "--help"], &std::env::temp_dir());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "gradual",
        "rotational:R",
        "all (every exit at every step: NOT the paper's recipe",
        "[default: gradual]",
        "[possible values: sum_l, linear_l, uniform, paper]",
        "[default: sum_l]",
        "[possible values: exp, constant]",
        "[default: exp]",
        "--p-max <P_MAX>",
        "[default: 0.1]",
        "--e-scale <E_SCALE>",
        "--threads <THREADS>",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}

#[test]
fn bad_recipe_flags_are_refused_with_status_2() {
    let dir = scratch("bad");
    for (flags, needle) in [
        (&["--curriculum", "rotational:0"][..], "bad rotation period"),
        (&["--curriculum", "sometimes"][..], "--curriculum must be"),
        (&["--loss-scale", "cubic"][..], "invalid value 'cubic'"),
        (&["--time-scale", "log"][..], "invalid value 'log'"),
        (&["--p-max", "1.5"][..], "p-max"),
    ] {
        let args = [
            &["layerskip", "train", "--quick", "--out", "m.safetensors"][..],
            flags,
        ]
        .concat();
        let out = tessera(&args, &dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(
            err.contains(needle),
            "{flags:?}: `{needle}` missing from {err}"
        );
    }
}

#[test]
fn quick_study_compares_the_arms_and_reuses_its_models() {
    let dir = scratch("study");
    let args = [
        "layerskip",
        "study",
        "--quick",
        "--work",
        "models",
        "--seeds",
        "0,1",
        "--no-progress",
        "--json",
        "s.json",
        "--md",
        "s.md",
        "--svg",
        "s.svg",
    ];
    let out = tessera(&args, &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("teacher-forced expected speedup:"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("s.json")).unwrap()).unwrap();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 4, "two seeds x two arms");
    for m in models {
        let g = &m["generation"];
        assert_eq!(g["identical"], true);
        let rep = g["repeated_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rep));
        assert!(m["expected_speedup"].as_f64().unwrap() > 0.0);
    }
    let md = std::fs::read_to_string(dir.join("s.md")).unwrap();
    assert!(
        md.contains("| arm | seed |") && md.contains("repeated 8-gram frac."),
        "{md}"
    );
    assert!(md.contains("paper (LayerSkip, pretraining from scratch)"));
    // Sampling with temperature from one of the models: full and self-speculative.
    let m = "models/recipe-seed0.safetensors";
    let sample = |extra: &[&str]| {
        let base = [
            "layerskip",
            "sample",
            "--model",
            m,
            "--exit-layer",
            "1",
            "--tokens",
            "20",
            "--prompt",
            "the ",
        ];
        tessera(&[&base[..], extra].concat(), &dir)
    };
    let ok = sample(&[
        "--draft",
        "2",
        "--temperature",
        "0.7",
        "--json",
        "sample.json",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("acceptance"));
    for bad in [
        &["--temperature", "0"][..],
        &["--exit-layer", "3"][..],
        &["--draft", "0"][..],
    ] {
        let out = sample(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    // A second run finds the models and does not train again.
    let again = tessera(&args, &dir);
    assert!(again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.matches("reusing").count(), 4, "{err}");
}
