//! The LayerSkip training loop: reproducibility, learning, the gradient of the whole network against finite differences, and checkpoints.

use tessera_harness::train::network::Network;
use tessera_harness::train::{
    checkpoint, init_params, synthetic_corpus, Corpus, Precision, TrainConfig, Trainer,
};
use tessera_kernels::attention::FlashTiles;
use tessera_kernels::nn::AttentionKind;

fn corpus() -> Corpus {
    Corpus::from_text(&synthetic_corpus(30_000, 11)).unwrap()
}

fn tiny(vocab: usize) -> TrainConfig {
    let mut c = TrainConfig::quick(vocab);
    c.steps = 12;
    c.batch = 2;
    c.seq_len = 16;
    c
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let corpus = corpus();
    let run = |seed: u64, attention, precision| {
        let mut c = tiny(corpus.vocab.len());
        c.seed = seed;
        c.attention = attention;
        c.precision = precision;
        let mut t = Trainer::new(c, &corpus.train).unwrap();
        let mut seen = 0;
        t.run(false, |info, tr| {
            seen += 1;
            assert_eq!(info.step, seen);
            assert_eq!(tr.tensors().count(), 9 * c.model.layers + 3);
        })
        .unwrap();
        t.params().to_vec()
    };
    let a = run(3, AttentionKind::Baseline, Precision::F32);
    assert_eq!(a, run(3, AttentionKind::Baseline, Precision::F32));
    assert_ne!(a, run(4, AttentionKind::Baseline, Precision::F32));
    let flash = run(
        3,
        AttentionKind::Flash(FlashTiles::new(4, 4)),
        Precision::F32,
    );
    assert_ne!(a, flash, "flash attention rounds differently");
    let close = a.iter().zip(&flash).all(|(x, y)| (x - y).abs() < 1e-2);
    assert!(close, "but trains the same model");
    let b = run(3, AttentionKind::Baseline, Precision::Bf16Emulated);
    assert!(
        b.iter().all(|&x| half::bf16::from_f32(x).to_f32() == x),
        "bf16 weights"
    );
}

#[test]
fn training_lowers_the_loss() {
    let corpus = corpus();
    let mut c = TrainConfig::quick(corpus.vocab.len());
    c.steps = 40;
    let mut t = Trainer::new(c, &corpus.train).unwrap();
    let first = t.step().unwrap().loss;
    let mut last = first;
    t.run(false, |info, _| last = info.loss).unwrap();
    assert!(first > 3.0, "starts near ln(vocab): {first}");
    assert!(last < first - 0.8, "{first} -> {last}");
}

/// Loss of a fixed batch for the given weights, and its gradient.
fn loss_and_grad(c: &TrainConfig, params: &[f32], toks: &[u32], scales: &[f32]) -> (f64, Vec<f32>) {
    let mut net = Network::new(c.model, c.seq_len, c.attention, c.precision).unwrap();
    let mut g = vec![0.0; params.len()];
    let drop = vec![false; c.model.layers];
    let out = net
        .forward_backward(
            params,
            &mut g,
            &toks[..c.seq_len],
            &toks[1..=c.seq_len],
            &drop,
            scales,
            1.0,
        )
        .unwrap();
    let loss = out
        .per_exit
        .iter()
        .zip(scales)
        .map(|(l, &s)| l.unwrap_or(0.0) * s as f64)
        .sum();
    (loss, g)
}

#[test]
fn network_gradient_matches_finite_differences() {
    // Directional derivative along the gradient itself: (L(p + h u) - L(p - h u)) / 2h = g·u.
    // L is an f32 computation of about 30 nats, so its rounding noise is ~3e-5 absolute; with
    // h = 1e-2 along a unit direction that is ~2e-3 of a derivative of size ~|g| (order 1), and
    // the O(h²) truncation error is smaller still: we allow 2%.
    let corpus = corpus();
    let mut c = tiny(corpus.vocab.len());
    c.model.layers = 3;
    c.seq_len = 8;
    let params = init_params(&c.model, 9).unwrap();
    let params: Vec<f32> = params.iter().map(|p| p * 10.0).collect(); // away from the flat start
    let scales = [0.0, 0.3, 0.7]; // two exits, one of them early
    let toks = &corpus.train[100..100 + c.seq_len + 1];
    for attention in [
        AttentionKind::Baseline,
        AttentionKind::Flash(FlashTiles::new(3, 2)),
    ] {
        c.attention = attention;
        let (_, g) = loss_and_grad(&c, &params, toks, &scales);
        let norm = g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        assert!(norm > 0.1, "gradient norm {norm}");
        let h = 1e-2;
        let shifted = |sign: f64| -> f64 {
            let p: Vec<f32> = params
                .iter()
                .zip(&g)
                .map(|(&p, &gi)| (p as f64 + sign * h * gi as f64 / norm) as f32)
                .collect();
            loss_and_grad(&c, &p, toks, &scales).0
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let rel = (numeric - norm).abs() / norm;
        assert!(
            rel < 0.02,
            "{attention:?}: numeric {numeric} vs analytic {norm}"
        );
    }
}

#[test]
fn checkpoints_round_trip_and_bad_files_are_clear_errors() {
    let corpus = corpus();
    let c = tiny(corpus.vocab.len());
    let params = init_params(&c.model, 1).unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-ck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    checkpoint::save(&path, &c.model, &corpus.vocab, &params, "test").unwrap();
    let back = checkpoint::load(&path).unwrap();
    assert_eq!(back.params, params);
    assert_eq!(back.config, c.model);
    assert_eq!(back.vocab, corpus.vocab);
    std::fs::write(&path, b"not a model").unwrap();
    // `{:#}`: the message with its causes, as the CLI prints it.
    let err = format!("{:#}", checkpoint::load(&path).unwrap_err());
    assert!(
        err.contains("not a usable tessera layerskip model"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        checkpoint::load(&dir.join("missing.safetensors")).unwrap_err()
    );
    assert!(err.contains("cannot read model"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tessera layerskip generate --prompts-from`: prompts from the held-out tail of a text file,
/// every one decoded identically by both decoders; bad combinations are clear errors.
#[test]
fn generate_draws_prompts_from_the_held_out_text() {
    let text = synthetic_corpus(30_000, 11);
    let corpus = Corpus::from_text(&text).unwrap();
    let c = tiny(corpus.vocab.len());
    let params = init_params(&c.model, 3).unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (model, corpus_file, json) = (
        dir.join("m.safetensors"),
        dir.join("corpus.txt"),
        dir.join("gen.json"),
    );
    checkpoint::save(&model, &c.model, &corpus.vocab, &params, "test").unwrap();
    std::fs::write(&corpus_file, &text).unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["layerskip", "generate", "--model", model.to_str().unwrap()])
            .args([
                "--exit-layer",
                "1",
                "--draft",
                "2",
                "--tokens",
                "8",
                "--repeats",
                "1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let from = corpus_file.to_str().unwrap();
    let out = run(&[
        "--prompts-from",
        from,
        "--prompt-count",
        "3",
        "--prompt-chars",
        "8",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(row["prompts"], 3);
    assert_eq!(row["tokens"], 24);
    assert_eq!(row["identical"], true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let n = text.chars().count();
    let tail: String = text.chars().skip(n - n / 10).take(8).collect();
    assert!(
        stdout.contains(&tail),
        "the first prompt is the held-out tail's start: {stdout}"
    );

    let out = run(&["--prompts-from", from, "--prompt", "ab"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
    let out = run(&["--prompts-from", from, "--prompt-count", "0"]);
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_weights_do_not_depend_on_the_thread_count() {
    let corpus = corpus();
    let mut c = tiny(corpus.vocab.len());
    c.batch = 3; // uneven split over two threads
    let run = |threads: usize| {
        let mut t = Trainer::new(c, &corpus.train).unwrap();
        t.set_threads(threads).unwrap();
        assert_eq!(t.threads(), threads.min(c.batch));
        t.run(false, |_, _| {}).unwrap();
        t.params().to_vec()
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let corpus = corpus();
    let c = tiny(corpus.vocab.len()); // the recipe's dropout draws are replayed too
    let mut whole = Trainer::new(c, &corpus.train).unwrap();
    whole.run(false, |_, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("run.state");
    let mut first = Trainer::new(c, &corpus.train).unwrap();
    for _ in 0..5 {
        first.step().unwrap();
    }
    first.save_state(&state).unwrap();
    let mut second = Trainer::new(c, &corpus.train).unwrap();
    second.resume(&state).unwrap();
    assert_eq!(second.steps_done(), 5);
    second.run(false, |_, _| {}).unwrap();
    assert_eq!(whole.params(), second.params());
    // Other settings are refused.
    let mut other = c;
    other.seed += 1;
    let err = Trainer::new(other, &corpus.train)
        .unwrap()
        .resume(&state)
        .unwrap_err();
    assert!(format!("{err:#}").contains("other settings"), "{err:#}");
    std::fs::write(&state, b"TSRSTATE1\x01").unwrap();
    assert!(second.resume(&state).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
