//! Mixed-precision training (fp32 master weights, bf16 or fp16 compute): the masters stay off the
//! low-precision grid, the runs are reproducible, and they follow the fp32 run closely but not
//! exactly.

use tessera_harness::train::{
    synthetic_corpus, Corpus, LossScaler, Precision, TrainConfig, Trainer,
};

fn train(precision: Precision) -> (Vec<f32>, LossScaler) {
    let corpus = Corpus::from_text(&synthetic_corpus(30_000, 11)).unwrap();
    let mut c = TrainConfig::quick(corpus.vocab.len());
    c.steps = 10;
    c.batch = 2;
    c.seq_len = 16;
    c.precision = precision;
    let mut t = Trainer::new(c, &corpus.train).unwrap();
    t.run(false, |_, _| {}).unwrap();
    (t.params().to_vec(), t.loss_scaler())
}

#[test]
fn master_weights_stay_f32_and_runs_track_f32() {
    let (f32_run, _) = train(Precision::F32);
    for (precision, on_grid) in [
        (
            Precision::MixedBf16,
            (|x: f32| half::bf16::from_f32(x).to_f32() == x) as fn(f32) -> bool,
        ),
        (Precision::MixedF16, |x: f32| {
            half::f16::from_f32(x).to_f32() == x
        }),
    ] {
        let (p, scaler) = train(precision);
        assert_eq!(p, train(precision).0, "{precision:?} is reproducible");
        let off = p.iter().filter(|&&x| !on_grid(x)).count();
        assert!(
            off > p.len() / 2,
            "{precision:?}: only {off} masters off the grid"
        );
        assert_ne!(p, f32_run, "{precision:?} rounds its compute");
        let max = p
            .iter()
            .zip(&f32_run)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max < 1e-2, "{precision:?} strays {max} from fp32");
        // Ten steps of a small model do not overflow fp16 at the initial scale.
        assert_eq!((scaler.scale, scaler.skipped), (LossScaler::INIT, 0));
    }
}
