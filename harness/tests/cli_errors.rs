//! The `tessera` binary attacked as a new user would (issue 15): absurd numbers, malformed or
//! special files, outputs that cannot be written. Each case must exit with status 2 and a message
//! that names the problem, never panic (101) or abort on an allocation (134).
//!
//! Every run is under an address-space limit of 2 GiB (`ulimit -v` through `sh`), so a command
//! that tried to allocate what an absurd input asks for (tens of GB to PB) would abort instead of
//! exiting 2: the limit is what shows the memory stays within what the inputs justify.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const ADDRESS_SPACE_KIB: u64 = 2 << 20;

/// A scratch directory for this test binary (under the system's temporary directory).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tessera-cli-errors-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs `tessera args...` in the scratch directory under the address-space limit.
fn tessera<S: AsRef<str>>(args: &[S]) -> Run {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args(args.iter().map(AsRef::as_ref))
        .current_dir(scratch())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run tessera");
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Runs `tessera args...` and checks it is refused with status 2, quickly, with a message that
/// holds every one of `needles`.
fn refused<S: AsRef<str>>(args: &[S], needles: &[&str]) -> String {
    let run = tessera(args);
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    assert_eq!(
        run.code,
        Some(2),
        "tessera {args:?} should exit 2 (101 is a panic, 134 an allocation abort); stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "tessera {args:?}: the message should say {n:?}; stderr:\n{}",
            run.stderr
        );
    }
    assert!(
        run.took < Duration::from_secs(30),
        "{args:?} took {:?}",
        run.took
    );
    run.stderr
}

/// Runs `tessera args...` and checks it succeeds.
fn succeeds<S: AsRef<str>>(args: &[S]) {
    let run = tessera(args);
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    assert_eq!(
        run.code,
        Some(0),
        "tessera {args:?}; stderr:\n{}",
        run.stderr
    );
}

/// A model trained with `layerskip train --quick` (a second or two), shared by the tests.
fn model() -> &'static str {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL.get_or_init(|| {
        succeeds(&[
            "layerskip",
            "train",
            "--quick",
            "--no-progress",
            "--out",
            "quick.safetensors",
        ]);
        "quick.safetensors".to_string()
    })
}

/// A copy of the quick model with its header rewritten by `edit` (config, tensors) and its data
/// bytes by `data`, written as `name`.
fn edited_model(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
    data: impl FnOnce(&mut Vec<u8>),
) -> String {
    let bytes = std::fs::read(scratch().join(model())).expect("model");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    let mut body = bytes[8 + n..].to_vec();
    edit(&mut header);
    data(&mut body);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&body);
    std::fs::write(scratch().join(name), out).expect("write model");
    name.to_string()
}

/// Sets `config.key = value` in a safetensors header.
fn set_config(header: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    let meta = &mut header["__metadata__"];
    let mut config: serde_json::Value =
        serde_json::from_str(meta["config"].as_str().expect("config")).expect("config json");
    config[key] = value;
    meta["config"] = config.to_string().into();
}

#[test]
fn generate_refuses_absurd_numbers_and_its_defaults_fit_the_quick_model() {
    let m = model();
    let gen = ["layerskip", "generate", "--model", m, "--exit-layer", "2"];
    let with = |extra: &[&'static str]| [&gen[..], extra].concat();
    succeeds(&with(&["--draft", "3", "--repeats", "1"]));
    refused(
        &with(&["--draft", "3", "--tokens", "18446744073709551615"]),
        &["--tokens 18446744073709551615", "max_seq 256"],
    );
    refused(&with(&["--draft", "3", "--tokens", "0"]), &["--tokens"]);
    refused(
        &with(&["--draft", "1000000000", "--quick"]),
        &["--draft 1000000000 is outside 1..=64"],
    );
    std::fs::write(scratch().join("prompts.txt"), "abc ".repeat(500)).expect("prompts");
    refused(
        &with(&[
            "--draft",
            "3",
            "--prompts-from",
            "prompts.txt",
            "--prompt-count",
            "1000000000000",
        ]),
        &["--prompt-count 1000000000000 exceeds"],
    );
}

#[test]
fn checkpoints_are_checked_against_the_file_before_allocating() {
    let gen = |model: &str, expect: &[&str]| {
        let args = [
            "layerskip",
            "generate",
            "--model",
            model,
            "--exit-layer",
            "2",
        ];
        refused(&[&args[..], &["--draft", "3", "--quick"]].concat(), expect)
    };
    // Config says ffn_hidden 6.5e6 (80 GB of weights); the data is a few hundred bytes.
    let tiny = edited_model(
        "ffn.safetensors",
        |h| {
            set_config(h, "ffn_hidden", 6_500_000.into());
            let map = h.as_object_mut().expect("header");
            let mut at = 0;
            for (_, t) in map.iter_mut().filter(|(k, _)| *k != "__metadata__") {
                t["shape"] = serde_json::json!([1]);
                t["data_offsets"] = serde_json::json!([at, at + 4]);
                at += 4;
            }
        },
        |d| d.truncate(4 * 39),
    );
    assert!(
        std::fs::metadata(scratch().join(&tiny))
            .expect("file")
            .len()
            < 10_000
    );
    gen(&tiny, &["ffn.safetensors", "more than the file's"]);
    let neg = edited_model(
        "neg.safetensors",
        |h| set_config(h, "layers", (-1).into()),
        |_| {},
    );
    gen(&neg, &["neg.safetensors", "`layers` is -1"]);
    let layers = edited_model(
        "layers.safetensors",
        |h| set_config(h, "layers", 1_000_000_000_000u64.into()),
        |_| {},
    );
    gen(&layers, &["holds 39 tensors"]);
    let truncated = edited_model("cut.safetensors", |_| {}, |d| d.truncate(d.len() / 2));
    let e = gen(&truncated, &["cut.safetensors", "truncated"]);
    assert!(!e.contains("MetadataIncompleteBuffer"), "{e}");
    let nan = edited_model(
        "nan.safetensors",
        |_| {},
        |d| d[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
    );
    gen(&nan, &["holds NaN"]);
    refused(
        &["layerskip", "eval", "--model", &nan, "--windows", "2"],
        &["holds NaN"],
    );
    std::fs::write(scratch().join("empty.safetensors"), b"").expect("empty");
    gen("empty.safetensors", &["empty or truncated"]);
    gen(".", &["directory"]);
    // An absurd max_seq must not size the KV cache: generation uses the positions it needs.
    let long = edited_model(
        "maxseq.safetensors",
        |h| set_config(h, "max_seq", 1_000_000_000_000_000_000u64.into()),
        |_| {},
    );
    succeeds(&[
        "layerskip",
        "generate",
        "--model",
        &long,
        "--exit-layer",
        "2",
        "--draft",
        "3",
        "--quick",
    ]);
}

#[test]
fn training_refuses_absurd_sizes_and_stops_on_divergence() {
    let train = |extra: &[&'static str]| {
        let base = [
            "layerskip",
            "train",
            "--quick",
            "--no-progress",
            "--out",
            "t.safetensors",
        ];
        [&base[..], extra].concat()
    };
    refused(
        &train(&["--dim", "1000000", "--heads", "2000"]),
        &["of memory", "the weights, gradients and Adam state"],
    );
    refused(&train(&["--e-scale", "inf"]), &["--e-scale", "finite"]);
    refused(&train(&["--e-scale", "NaN"]), &["--e-scale"]);
    refused(&train(&["--p-max", "2"]), &["--p-max"]);
    refused(&train(&["--lr", "1e30"]), &["training diverged"]);
    refused(&train(&["--batch", "18446744073709551615"]), &["overflows"]);
    refused(&train(&["--corpus", "."]), &["directory"]);
    refused(&train(&["--corpus", "/dev/zero"]), &["pipe or device"]);
    std::fs::write(scratch().join("plain-file"), b"x").expect("file");
    refused(
        &["deviation", "--quick", "--out-dir", "plain-file"],
        &["plain-file: it is not a directory"],
    );
    assert!(!scratch().join("t.safetensors").exists());
    refused(
        &["deviation", "--quick", "--rows", "100000000000000"],
        &["--rows"],
    );
    refused(&["deviation", "--quick", "--seeds", "0"], &["--seeds"]);
    refused(
        &[
            "wasserstein",
            "--quick",
            "--steps",
            "100000000",
            "--every",
            "1",
        ],
        &["snapshots", "of memory"],
    );
}

#[test]
fn outputs_are_probed_before_work_and_special_files_are_refused() {
    let train = |out: &str| {
        let args = [
            "layerskip",
            "train",
            "--quick",
            "--no-progress",
            "--steps",
            "2",
        ];
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--out".to_string(), out.to_string()]);
        v
    };
    let long = "a".repeat(254);
    succeeds(&train(&long));
    assert!(scratch().join(&long).is_file());
    let e = refused(&train(&"b".repeat(256)), &["too long"]);
    assert!(!e.contains("training"), "refused before training: {e}");

    #[cfg(unix)]
    {
        let target = scratch().join("keep.txt");
        std::fs::write(&target, b"keep").expect("target");
        let link = scratch().join("link.safetensors");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        refused(&train("link.safetensors"), &["symbolic link"]);
        let kind = std::fs::symlink_metadata(&link).expect("link").file_type();
        assert!(kind.is_symlink());
        assert_eq!(std::fs::read(&target).expect("target"), b"keep");
        let fifo = scratch().join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            use std::os::unix::fs::FileTypeExt;
            refused(&train("fifo"), &["not a regular file"]);
            let kind = std::fs::symlink_metadata(&fifo).expect("fifo").file_type();
            assert!(kind.is_fifo());
        }
    }
}

/// `gpu-check` where it cannot run (issue 21): without the `cuda` feature it says how to build a
/// binary that can; with it, on a machine with no driver or no GPU (CI), or given a PTX that does
/// not exist, it says which is missing. Exit 2 either way, never a panic.
#[test]
fn gpu_check_without_a_gpu_exits_2_and_says_why() {
    let missing = scratch().join("missing.ptx");
    let args = ["gpu-check", "--quick", "--ptx", missing.to_str().unwrap()];
    if cfg!(feature = "cuda") {
        let msg = refused(&args, &["gpu-check"]);
        assert!(
            ["no CUDA driver", "no usable GPU", "cannot read the PTX"]
                .iter()
                .any(|why| msg.contains(why)),
            "{msg}"
        );
    } else {
        refused(&args, &["built without GPU support", "--features cuda"]);
    }
    // Bad arguments are refused before anything is tried.
    refused(&["gpu-check", "--reps", "0"], &["--reps"]);
}
