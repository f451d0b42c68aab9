//! `tessera run` end to end: random float32 .npy tensors on disk, the real binary, and an
//! independent float64 attention written here (a naive triple loop that shares no code with the
//! kernels or the oracle). Bad inputs must exit with status 2, say what is wrong on stderr, and
//! leave no output file behind (and an existing one untouched).

use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use tessera_harness::tolerance::{self, NAIVE_F32_ABS, REFERENCE_VS_NAIVE_F64_ABS};
use tessera_kernels::simd::{available_backends, Backend};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "tessera-run-cli-{}-{tag}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("list temp dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `.npy` v1.0 file written by hand here (not by the harness's writer), so a reader bug and a
/// writer bug cannot cancel out. `descr` and `fortran` let tests write the wrong kinds of file.
fn npy_bytes(shape: &[usize], data: &[u8], descr: &str, fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn write_f32(path: &Path, shape: &[usize], data: &[f32]) {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, npy_bytes(shape, &raw, "<f4", false)).expect("write input");
}

fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let t = tessera_harness::npy::read_f32(path).expect("read output");
    (t.shape, t.data)
}

fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = tessera_harness::data::rng(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A problem in the CLI's layout: Q `[b, h, sq, d]`, K and V `[b, hkv, skv, d]`.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
    causal: bool,
}

impl Case {
    fn q_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.q_len, self.head_dim]
    }
    fn kv_shape(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.kv_len, self.head_dim]
    }
}

/// Attention in f64 by the definition, with the kernels' f32 scale widened exactly.
fn naive(c: &Case, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> Vec<f64> {
    let d = c.head_dim;
    let mut out = vec![0.0; q.len()];
    for b in 0..c.batch {
        for h in 0..c.heads {
            let kvh = h / (c.heads / c.kv_heads);
            for i in 0..c.q_len {
                // Query i is position kv_len - q_len + i; it sees keys at positions <= its own.
                let visible = if c.causal {
                    (i as isize + c.kv_len as isize - c.q_len as isize + 1)
                        .clamp(0, c.kv_len as isize) as usize
                } else {
                    c.kv_len
                };
                if visible == 0 {
                    continue;
                }
                let qo = ((b * c.heads + h) * c.q_len + i) * d;
                let ko = (b * c.kv_heads + kvh) * c.kv_len * d;
                let logits: Vec<f64> = (0..visible)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|t| q[qo + t] as f64 * k[ko + j * d + t] as f64)
                            .sum();
                        dot * scale as f64
                    })
                    .collect();
                let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = logits.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = w.iter().sum();
                for t in 0..d {
                    let acc: f64 = (0..visible).map(|j| w[j] * v[ko + j * d + t] as f64).sum();
                    out[qo + t] = acc / l;
                }
            }
        }
    }
    out
}

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("run")
        .args(args)
        .output()
        .expect("run the tessera binary")
}

fn success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files of one case on disk, and the paths as strings for the command line.
struct Inputs {
    dir: TempDir,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Inputs {
    fn write(case: &Case, seed: u64, tag: &str) -> Inputs {
        let dir = TempDir::new(tag);
        let qn: usize = case.q_shape().iter().product();
        let kvn: usize = case.kv_shape().iter().product();
        let (q, k, v) = (
            uniform(qn, seed),
            uniform(kvn, seed + 1),
            uniform(kvn, seed + 2),
        );
        write_f32(&dir.path("q.npy"), &case.q_shape(), &q);
        write_f32(&dir.path("k.npy"), &case.kv_shape(), &k);
        write_f32(&dir.path("v.npy"), &case.kv_shape(), &v);
        Inputs { dir, q, k, v }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path(name).to_string_lossy().into_owned()
    }

    /// Runs `tessera run --kernel KERNEL` with the case's files and `extra` flags; returns the
    /// output tensor.
    fn run(&self, case: &Case, kernel: &str, extra: &[&str]) -> Vec<f32> {
        let (q, k, v, o) = (
            self.p("q.npy"),
            self.p("k.npy"),
            self.p("v.npy"),
            self.p("o.npy"),
        );
        let mut args = vec![
            "--kernel", kernel, "--q", &q, "--k", &k, "--v", &v, "--out", &o,
        ];
        if case.causal {
            args.push("--causal");
        }
        args.extend_from_slice(extra);
        success(&tessera(&args), &format!("{kernel} {extra:?} on {case:?}"));
        let (shape, data) = read_f32(&self.dir.path("o.npy"));
        assert_eq!(shape, case.q_shape(), "output shape");
        std::fs::remove_file(self.dir.path("o.npy")).expect("remove output");
        data
    }
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn cases() -> Vec<(&'static str, Case)> {
    let c = |batch, heads, kv_heads, q_len, kv_len, head_dim, causal| Case {
        batch,
        heads,
        kv_heads,
        q_len,
        kv_len,
        head_dim,
        causal,
    };
    vec![
        ("mha", c(2, 3, 3, 9, 9, 8, false)),
        ("gqa", c(1, 8, 2, 12, 12, 16, true)),
        ("mqa", c(2, 4, 1, 7, 20, 8, false)),
        ("causal_prefill", c(1, 2, 2, 33, 33, 16, true)),
        ("decode_1", c(2, 4, 2, 1, 37, 32, true)),
        ("decode_4", c(1, 4, 4, 4, 37, 64, true)),
        ("odd_head_dim", c(1, 3, 1, 10, 13, 7, true)),
        ("head_dim_1", c(1, 1, 1, 5, 6, 1, false)),
        ("masked_rows", c(1, 2, 1, 6, 3, 5, true)),
    ]
}

fn default_scale(d: usize) -> f32 {
    1.0 / (d as f32).sqrt()
}

#[test]
fn f32_kernels_match_a_naive_f64_attention() {
    for (seed, (tag, case)) in cases().into_iter().enumerate() {
        let inputs = Inputs::write(&case, 100 * seed as u64, tag);
        let want = naive(
            &case,
            &inputs.q,
            &inputs.k,
            &inputs.v,
            default_scale(case.head_dim),
        );
        for (kernel, extra) in [
            ("flash", &[][..]),
            ("flash", &["--block-q", "3", "--block-k", "5"][..]),
            ("flash", &["--block-q", "1", "--block-k", "1"][..]),
            ("baseline", &[][..]),
        ] {
            let got = inputs.run(&case, kernel, extra);
            let err = max_abs_diff(&got, &want);
            assert!(
                err <= NAIVE_F32_ABS,
                "{tag} {kernel} {extra:?}: max |out - naive| = {err:e}"
            );
        }
    }
}

#[test]
fn every_available_backend_runs_from_the_command_line() {
    let (tag, case) = cases()[1];
    let inputs = Inputs::write(&case, 7, tag);
    let want = naive(&case, &inputs.q, &inputs.k, &inputs.v, default_scale(16));
    let names: Vec<&str> = std::iter::once(Backend::Auto)
        .chain(available_backends())
        .map(Backend::name)
        .collect();
    assert!(names.contains(&"generic"));
    for backend in names {
        for kernel in ["flash", "baseline"] {
            for dtype in ["f32", "bf16"] {
                let extra = ["--backend", backend, "--dtype", dtype, "--block-k", "5"];
                let got = inputs.run(&case, kernel, &extra);
                if dtype == "f32" {
                    let err = max_abs_diff(&got, &want);
                    assert!(err <= NAIVE_F32_ABS, "{kernel} {backend}: {err:e}");
                } else {
                    assert!(got.iter().all(|x| x.is_finite()), "{kernel} {backend} bf16");
                }
            }
        }
    }
}

#[test]
fn custom_scale_is_used() {
    let (tag, case) = cases()[0];
    let inputs = Inputs::write(&case, 11, tag);
    let want = naive(&case, &inputs.q, &inputs.k, &inputs.v, 0.3);
    let got = inputs.run(&case, "flash", &["--scale", "0.3"]);
    assert!(max_abs_diff(&got, &want) <= NAIVE_F32_ABS);
    // The default scale would give visibly different output.
    let default = naive(&case, &inputs.q, &inputs.k, &inputs.v, default_scale(8));
    assert!(max_abs_diff(&got, &default) > 1e-3);
}

#[test]
fn reference_kernel_is_the_exact_result_rounded_to_f32() {
    for (seed, (tag, case)) in cases().into_iter().enumerate() {
        let inputs = Inputs::write(&case, 1000 + seed as u64, tag);
        let want = naive(
            &case,
            &inputs.q,
            &inputs.k,
            &inputs.v,
            default_scale(case.head_dim),
        );
        let got = inputs.run(&case, "reference", &[]);
        assert_correctly_rounded(&got, &want, tag);
    }
}

/// Each element of `got` is within half an f32 ULP of the naive f64 value (what correct
/// rounding of the exact result gives), up to the naive loop's own f64 error.
fn assert_correctly_rounded(got: &[f32], want: &[f64], tag: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let half_ulp = if w == 0.0 {
            0.0
        } else {
            tessera_harness::metrics::Format::F32.ulp(w) / 2.0
        };
        let err = (g as f64 - w).abs();
        assert!(
            err <= half_ulp + REFERENCE_VS_NAIVE_F64_ABS,
            "{tag} element {i}: reference {g:e}, naive {w:e}"
        );
    }
}

#[test]
fn bf16_dtype_rounds_inputs_and_stays_within_the_bound() {
    let (tag, case) = cases()[4];
    let inputs = Inputs::write(&case, 21, tag);
    let round = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .map(|&x| tessera_kernels::bf16::from_f32(x).to_f32())
            .collect()
    };
    let (q, k, v) = (round(&inputs.q), round(&inputs.k), round(&inputs.v));
    let scale = default_scale(case.head_dim);
    let want = naive(&case, &q, &k, &v, scale);
    let d = case.head_dim;
    for (kernel, block_k) in [("flash", Some(8)), ("baseline", None)] {
        let extra: &[&str] = if block_k.is_some() {
            &["--dtype", "bf16", "--block-k", "8"]
        } else {
            &["--dtype", "bf16"]
        };
        let got = inputs.run(&case, kernel, extra);
        // Every output is a bf16 value written as f32.
        assert!(got
            .iter()
            .all(|&x| tessera_kernels::bf16::from_f32(x).to_f32() == x));
        // decode_1: one query row per head, all keys visible; head h reads KV head h / 2.
        for row in 0..case.batch * case.heads {
            let (b, h) = (row / case.heads, row % case.heads);
            let ko = (b * case.kv_heads + h / 2) * case.kv_len * d;
            let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let bound = tolerance::row_bound(
                &wide(&q[row * d..(row + 1) * d]),
                &wide(&k[ko..ko + case.kv_len * d]),
                &wide(&v[ko..ko + case.kv_len * d]),
                scale as f64,
                block_k,
                tolerance::U_F32,
                tolerance::U_BF16,
            );
            let err = max_abs_diff(&got[row * d..(row + 1) * d], &want[row * d..(row + 1) * d]);
            assert!(err <= bound, "{kernel} row {row}: {err:e} > {bound:e}");
        }
    }
    // The reference on bf16 inputs is exact for the rounded inputs.
    let got = inputs.run(&case, "reference", &["--dtype", "bf16"]);
    assert_correctly_rounded(&got, &want, "bf16 reference");
}

/// Runs a command that must fail: exit 2, `needle` on stderr, no output file created, and the
/// directory holding nothing but what was there before.
fn fails(dir: &TempDir, args: &[&str], needle: &str) {
    let before = dir.entries();
    let out = tessera(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should exit 2; stderr: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr should mention `{needle}`, got: {stderr}"
    );
    assert_eq!(dir.entries(), before, "{args:?} changed the directory");
}

#[test]
fn bad_inputs_exit_2_with_a_message_and_no_output() {
    let dir = TempDir::new("bad");
    let p = |name: &str| dir.path(name).to_string_lossy().into_owned();
    let f32s = |n: usize| vec![0.5f32; n];
    write_f32(&dir.path("q.npy"), &[1, 4, 3, 8], &f32s(96));
    write_f32(&dir.path("k.npy"), &[1, 2, 5, 8], &f32s(80));
    write_f32(&dir.path("v.npy"), &[1, 2, 5, 8], &f32s(80));
    write_f32(&dir.path("rank3.npy"), &[4, 3, 8], &f32s(96));
    write_f32(&dir.path("batch2.npy"), &[2, 2, 5, 8], &f32s(160));
    write_f32(&dir.path("dim4.npy"), &[1, 2, 5, 4], &f32s(40));
    write_f32(&dir.path("heads3.npy"), &[1, 3, 5, 8], &f32s(120));
    write_f32(&dir.path("len6.npy"), &[1, 2, 6, 8], &f32s(96));
    let f64_data: Vec<u8> = (0..80).flat_map(|_| 0.5f64.to_le_bytes()).collect();
    std::fs::write(
        dir.path("f64.npy"),
        npy_bytes(&[1, 2, 5, 8], &f64_data, "<f8", false),
    )
    .unwrap();
    let f32_data: Vec<u8> = (0..80).flat_map(|_| 0.5f32.to_le_bytes()).collect();
    std::fs::write(
        dir.path("fortran.npy"),
        npy_bytes(&[1, 2, 5, 8], &f32_data, "<f4", true),
    )
    .unwrap();
    std::fs::write(
        dir.path("short.npy"),
        npy_bytes(&[1, 2, 5, 8], &f32_data[..300], "<f4", false),
    )
    .unwrap();
    std::fs::write(dir.path("junk.npy"), b"this is not numpy").unwrap();

    let (q, k, v, o) = (p("q.npy"), p("k.npy"), p("v.npy"), p("o.npy"));
    let run = |kernel: &'static str, q: &str, k: &str, v: &str, extra: &[&str], needle: &str| {
        let mut args = vec![
            "--kernel", kernel, "--q", q, "--k", k, "--v", v, "--out", &o,
        ];
        args.extend_from_slice(extra);
        fails(&dir, &args, needle);
    };
    // The good files do run, so every failure below is the one thing changed.
    success(
        &tessera(&[
            "--kernel", "flash", "--q", &q, "--k", &k, "--v", &v, "--out", &o,
        ]),
        "good files",
    );
    std::fs::remove_file(dir.path("o.npy")).unwrap();

    let missing = p("missing.npy");
    for kernel in ["flash", "baseline", "reference"] {
        run(kernel, &missing, &k, &v, &[], "cannot read --q");
        run(kernel, &q, &p("junk.npy"), &v, &[], "not a .npy file");
        run(kernel, &q, &k, &p("short.npy"), &[], "truncated");
        run(kernel, &q, &p("f64.npy"), &v, &[], "'<f8'");
        run(kernel, &q, &p("fortran.npy"), &v, &[], "Fortran order");
        run(kernel, &p("rank3.npy"), &k, &v, &[], "rank 4");
        run(
            kernel,
            &q,
            &p("batch2.npy"),
            &p("batch2.npy"),
            &[],
            "batch differs",
        );
        run(
            kernel,
            &q,
            &p("dim4.npy"),
            &p("dim4.npy"),
            &[],
            "head_dim differs",
        );
        run(
            kernel,
            &q,
            &p("heads3.npy"),
            &p("heads3.npy"),
            &[],
            "multiple",
        );
        run(kernel, &q, &k, &p("len6.npy"), &[], "same shape");
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--block-q", "0"],
            "--block-q must be in 1..=4096",
        );
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--block-k", "5000"],
            "--block-k must be in",
        );
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--backend", "sse9"],
            "unknown backend `sse9`",
        );
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--scale", "0"],
            "--scale must be finite",
        );
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--scale", "NaN"],
            "--scale must be finite",
        );
        run(
            kernel,
            &q,
            &k,
            &v,
            &["--scale", "inf"],
            "--scale must be finite",
        );
    }
    // Clap's own errors (an unknown kernel, a missing flag) also exit 2.
    run("fast", &q, &k, &v, &[], "invalid value 'fast'");
    fails(&dir, &["--kernel", "flash", "--q", &q], "--k");
    if let Some(missing) = Backend::ALL.into_iter().find(|b| !b.is_available()) {
        run(
            "flash",
            &q,
            &k,
            &v,
            &["--backend", missing.name()],
            "not available",
        );
    }
    // An output directory that does not exist.
    let nowhere = p("no/such/dir/o.npy");
    fails(
        &dir,
        &[
            "--kernel", "flash", "--q", &q, "--k", &k, "--v", &v, "--out", &nowhere,
        ],
        "cannot write",
    );
}

#[test]
fn a_failed_run_leaves_an_existing_output_untouched_and_a_good_one_replaces_it() {
    let (tag, case) = cases()[0];
    let inputs = Inputs::write(&case, 5, tag);
    let sentinel = b"previous results, not to be clobbered".to_vec();
    std::fs::write(inputs.dir.path("o.npy"), &sentinel).unwrap();
    let (q, k, o) = (inputs.p("q.npy"), inputs.p("k.npy"), inputs.p("o.npy"));
    // V missing: fails after Q and K were read.
    let v = inputs.p("missing.npy");
    fails(
        &inputs.dir,
        &[
            "--kernel", "flash", "--q", &q, "--k", &k, "--v", &v, "--out", &o,
        ],
        "cannot read --v",
    );
    assert_eq!(std::fs::read(inputs.dir.path("o.npy")).unwrap(), sentinel);
    // A good run replaces it whole.
    let got = inputs.run(&case, "baseline", &[]);
    let want = naive(&case, &inputs.q, &inputs.k, &inputs.v, default_scale(8));
    assert!(max_abs_diff(&got, &want) <= NAIVE_F32_ABS);
}
