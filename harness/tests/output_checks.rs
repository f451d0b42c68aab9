//! Every long-running command checks where its results go before it starts: a mistyped or
//! unwritable output path exits 2 with a message naming it at once, not after the training or
//! study it was meant to keep.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("tessera runs")
}

/// A path under a directory that does not exist.
fn nowhere(name: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("tessera-missing-{}", std::process::id()));
    assert!(!dir.exists());
    dir.join("no/such/dir").join(name).display().to_string()
}

/// A directory that cannot be created: it would sit under a regular file (made here; the caller
/// removes it with [`remove`]).
fn under_a_file(tag: &str) -> (String, PathBuf) {
    let file = std::env::temp_dir().join(format!("tessera-file-{tag}-{}", std::process::id()));
    std::fs::write(&file, b"not a directory").expect("scratch file");
    (file.join("results").display().to_string(), file)
}

fn remove(file: PathBuf) {
    let _ = std::fs::remove_file(file);
}

/// `args` must exit 2 naming `path`, and print none of `work` (what the command prints once its
/// work has started).
fn fails_before_work(args: &[&str], path: &str, work: &[&str]) {
    let out = tessera(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains("cannot write") && stderr.contains(path),
        "{args:?}: {stderr}"
    );
    for w in work {
        assert!(!stderr.contains(w), "{args:?} started its work: {stderr}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "{args:?} printed results"
    );
}

#[test]
fn study_commands_check_their_outputs_first() {
    let json = nowhere("out.json");
    fails_before_work(
        &["hyperopt", "--quick", "--json", &json],
        &json,
        &["cells (", "cell 1/"],
    );
    fails_before_work(&["deviation", "--quick", "--json", &json], &json, &["rows"]);
    fails_before_work(
        &["characterize", "tti", "--quick", "--json", &json],
        &json,
        &["model(s)"],
    );
    // A missing output directory is created; one that cannot be is an error before the work.
    let (dir, file) = under_a_file("study");
    fails_before_work(
        &["hyperopt", "--quick", "--out-dir", &dir],
        &dir,
        &["cells ("],
    );
    fails_before_work(
        &["characterize", "ttv", "--quick", "--out-dir", &dir],
        &dir,
        &["model(s)"],
    );
    fails_before_work(
        &["wasserstein", "--quick", "--steps", "4", "--out-dir", &dir],
        &dir,
        &["runs of 4 steps"],
    );
    remove(file);
}

#[test]
fn training_checks_its_checkpoint_and_report_first() {
    let out = nowhere("model.safetensors");
    fails_before_work(
        &["layerskip", "train", "--quick", "--out", &out],
        &out,
        &["training "],
    );
    let json = nowhere("train.json");
    let fine = std::env::temp_dir().join(format!("tessera-unused-{}.st", std::process::id()));
    let fine = fine.display().to_string();
    fails_before_work(
        &[
            "layerskip",
            "train",
            "--quick",
            "--out",
            &fine,
            "--json",
            &json,
        ],
        &json,
        &["training "],
    );
    assert!(!std::path::Path::new(&fine).exists());
}

#[test]
fn a_directory_is_not_an_output_file() {
    let dir = std::env::temp_dir().display().to_string();
    fails_before_work(&["hyperopt", "--quick", "--json", &dir], &dir, &["cells ("]);
}
