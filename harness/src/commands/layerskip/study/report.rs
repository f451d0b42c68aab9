//! The study's report: JSON, a Markdown page with the paper's setting beside ours, and verdicts
//! computed from the numbers.

use super::{ModelResult, StudyArgs};
use crate::train::eval::ExitEval;
use crate::train::speedup::{distinct_n, repeated_ngram_fraction};
use crate::train::TrainConfig;
use std::fmt::Write;

pub(super) struct Report {
    settings: serde_json::Value,
    config: TrainConfig,
    source: String,
    results: Vec<ModelResult>,
    /// Repetition of the true held-out continuations (what non-degenerate text scores).
    reference_repeated: f64,
    reference_distinct: f64,
    ngram: usize,
    seeds: usize,
}

/// Mean and sample standard deviation.
fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = if x.len() > 1 {
        x.iter().map(|y| (y - m) * (y - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v.sqrt())
}

/// The verdict on whether the recipe raises `metric`: every recipe seed above every no-recipe
/// seed, and the gap of the means larger than twice its standard error.
fn verdict(recipe: &[f64], none: &[f64]) -> (bool, String) {
    let (mr, sr) = mean_sd(recipe);
    let (mn, sn) = mean_sd(none);
    let se = (sr * sr / recipe.len() as f64 + sn * sn / none.len() as f64).sqrt();
    let lo = recipe.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = none.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // One seed per arm has no spread to compare the gap with: no verdict.
    let yes = recipe.len() > 1 && none.len() > 1 && lo > hi && mr - mn > 2.0 * se;
    let text = format!(
        "recipe {mr:.3} ± {sr:.3} vs no recipe {mn:.3} ± {sn:.3} (gap {:+.3}, 2·SE {:.3}; lowest \
         recipe seed {lo:.3}, highest no-recipe seed {hi:.3})",
        mr - mn,
        2.0 * se
    );
    (yes, text)
}

impl Report {
    pub(super) fn new(
        a: &StudyArgs,
        config: &TrainConfig,
        source: &str,
        results: Vec<ModelResult>,
        reference: &[&[u32]],
    ) -> Report {
        let n = reference.len().max(1) as f64;
        let settings = serde_json::json!({
            "corpus": source, "seeds": a.seeds, "layers": a.layers, "dim": a.dim, "ffn": a.ffn,
            "seq_len": a.seq_len, "batch": a.batch, "steps": a.steps, "lr": a.lr,
            "prompts": a.prompts, "prompt_chars": a.prompt_chars, "tokens": a.tokens,
            "max_draft": a.max_draft, "windows": a.windows, "ngram": a.ngram,
            "recipe": format!("{:?}", crate::train::Recipe::layerskip()),
        });
        Report {
            settings,
            config: *config,
            source: source.to_string(),
            reference_repeated: reference
                .iter()
                .map(|r| repeated_ngram_fraction(r, a.ngram))
                .sum::<f64>()
                / n,
            reference_distinct: reference
                .iter()
                .map(|r| distinct_n(r, a.ngram))
                .sum::<f64>()
                / n,
            results,
            ngram: a.ngram,
            seeds: a.seeds.len(),
        }
    }

    fn arm<'a>(&'a self, arm: &'a str) -> impl Iterator<Item = &'a ModelResult> + 'a {
        self.results.iter().filter(move |r| r.arm == arm)
    }

    fn metric(&self, arm: &str, f: impl Fn(&ModelResult) -> f64) -> Vec<f64> {
        self.arm(arm).map(f).collect()
    }

    /// Per-exit evaluation, mean over seeds, per arm.
    pub(super) fn mean_exits(&self) -> Vec<(String, Vec<ExitEval>)> {
        ["recipe", "none"]
            .iter()
            .map(|arm| {
                let runs: Vec<&ModelResult> = self.arm(arm).collect();
                let layers = runs.first().map_or(0, |r| r.exits.len());
                let exits = (0..layers)
                    .map(|l| {
                        let loss =
                            runs.iter().map(|r| r.exits[l].loss).sum::<f64>() / runs.len() as f64;
                        ExitEval {
                            exit_layer: l + 1,
                            loss,
                            perplexity: loss.exp(),
                            agreement: runs.iter().map(|r| r.exits[l].agreement).sum::<f64>()
                                / runs.len() as f64,
                        }
                    })
                    .collect();
                (
                    format!("{arm}-recipe").replace("none-recipe", "no-recipe"),
                    exits,
                )
            })
            .collect()
    }

    fn verdicts(&self) -> Vec<(String, bool, String)> {
        let tf = verdict(
            &self.metric("recipe", |r| r.expected_speedup),
            &self.metric("none", |r| r.expected_speedup),
        );
        let gen = verdict(
            &self.metric("recipe", |r| r.generation.speedup),
            &self.metric("none", |r| r.generation.speedup),
        );
        let passes = verdict(
            &self.metric("recipe", |r| 1.0 / (1.0 - r.generation.layer_passes_saved)),
            &self.metric("none", |r| 1.0 / (1.0 - r.generation.layer_passes_saved)),
        );
        let mut v = vec![
            ("teacher-forced expected speedup".into(), tf.0, tf.1),
            ("measured generation speedup".into(), gen.0, gen.1),
            (
                "layer-pass speedup of generation".into(),
                passes.0,
                passes.1,
            ),
        ];
        // Whether self-speculation pays at all: the mean expected speedup above 1 by more than
        // twice its standard error.
        for (arm, label) in [("recipe", "recipe"), ("none", "no recipe")] {
            let x = self.metric(arm, |r| r.expected_speedup);
            let (m, sd) = mean_sd(&x);
            let se = sd / (x.len() as f64).sqrt();
            v.push((
                format!("teacher-forced expected speedup above 1 ({label})"),
                x.len() > 1 && m - 2.0 * se > 1.0,
                format!(
                    "{m:.3} ± {sd:.3} over {} seeds, 2·SE of the mean {:.3}",
                    x.len(),
                    2.0 * se
                ),
            ));
        }
        v
    }

    pub(super) fn summary(&self) -> String {
        let mut s = String::new();
        for (name, yes, text) in self.verdicts() {
            let _ = writeln!(
                s,
                "{name}: {} — {text}",
                match (name.contains("above 1"), yes) {
                    (true, true) => "yes",
                    (true, false) => "no",
                    (false, true) => "the recipe raises it",
                    (false, false) => "not shown to come from the recipe",
                }
            );
        }
        s
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let verdicts: Vec<_> = self
            .verdicts()
            .into_iter()
            .map(|(m, yes, text)| serde_json::json!({"metric": m, "recipe_raises_it": yes, "numbers": text}))
            .collect();
        serde_json::json!({
            "settings": self.settings,
            "reference_repeated_fraction": self.reference_repeated,
            "reference_distinct": self.reference_distinct,
            "models": self.results,
            "verdicts": verdicts,
        })
    }

    pub(super) fn markdown(&self) -> String {
        let c = &self.config;
        let m = &c.model;
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "# LayerSkip on tiny Shakespeare: the recipe against no recipe\n\n\
             Generated by `tessera layerskip study` (command below); every number and verdict on \
             this page is computed by it from the runs it lists. Corpus `{}` (character level, \
             last 10% held out: prompts, windows and reference text all come from there). \
             {} seeds per arm; the two arms share the architecture, data order, steps, \
             learning-rate schedule and seeds and differ only in the recipe.\n",
            self.source, self.seeds
        );
        let _ = writeln!(w, "## Setting: the paper's beside ours\n");
        let _ = writeln!(
            w,
            "| | paper (LayerSkip, pretraining from scratch) | here |\n|---|---|---|"
        );
        let rows = [
            ("model", "Llama2 1.5B / 7B, 24-32 layers, BPE tokens".to_string(),
             format!("{} layers × {} wide, FFN {}, {} heads ({} KV), {} characters", m.layers, m.dim, m.ffn_hidden, m.heads, m.kv_heads, m.vocab)),
            ("data", "Llama2 pretraining data, ~26-52B tokens".into(),
             format!("tiny Shakespeare, {} steps × {} × {} characters", c.steps, c.batch, c.seq_len)),
            ("layer dropout", "p_max 0.1-0.2, D(l) exponential, S_exp(t) from scratch, per sample".into(),
             "p_max 0.1, D(l) exponential, S_exp(t), per sample".into()),
            ("early-exit loss", "curriculum rotational or gradual, e_scale ≤ 1".into(),
             "gradual (one more exit every T/(2L) steps), torchtune `sum_l`, e_scale 1".into()),
            ("speedup baseline", "model trained without LayerSkip, decoded normally".into(),
             "the same architecture and seed trained without the recipe, decoded normally".into()),
            ("speedup measure", "wall time of self-speculative vs autoregressive greedy decoding on GPUs, CNN/DM etc.".into(),
             "(a) wall time on 2 CPU cores from held-out prompts; (b) teacher-forced acceptance × measured costs".into()),
            ("optimizer", "AdamW, Llama2 schedule".into(),
             format!("Adam (0.9, 0.95), lr {} with {}-step warm-up and cosine decay to 10%, clip 1", c.lr, c.warmup)),
        ];
        for (k, p, h) in rows {
            let _ = writeln!(w, "| {k} | {p} | {h} |");
        }
        let _ = writeln!(
            w,
            "\nThe paper's own per-model hyperparameter table could not be read here (only its \
             abstract is in `../shared/seeds/`): the recipe's values follow PAPERS.md §3 and the \
             official training code's configuration (torchtune `recipes/dev/7B_full_early_exit.yaml`: \
             gradual curriculum, `sum_l`, e_scale 1, p_max 0.2 with the exponential depth scale); \
             p_max 0.1 is the lower end of the paper's range, S_exp its prescription when training \
             from scratch.\n"
        );
        let _ = writeln!(w, "## Verdicts\n");
        for (name, yes, text) in self.verdicts() {
            let _ = writeln!(
                w,
                "- **{name}**: {} — {text}.",
                match (name.contains("above 1"), yes) {
                    (true, true) => "yes (mean − 2·SE > 1)",
                    (true, false) => "**no** (mean − 2·SE ≤ 1)",
                    (false, true) => "the recipe raises it (every recipe seed above every no-recipe seed, gap > 2·SE)",
                    (false, false) => "**not** shown to come from the recipe (the criterion — every recipe seed above every no-recipe seed and a gap > 2·SE — fails)",
                }
            );
        }
        let (rr, _) = mean_sd(&self.metric("recipe", |r| r.generation.repeated_fraction));
        let (rn, _) = mean_sd(&self.metric("none", |r| r.generation.repeated_fraction));
        let _ = writeln!(
            w,
            "- Repetition of greedy text (fraction of generated characters inside a repeated \
             {n}-gram, mean over prompts and seeds): recipe {rr:.3}, no recipe {rn:.3}; the true \
             held-out continuations score {:.3} (distinct-{n} {:.3}). Only (b) is immune to it.\n",
            self.reference_repeated,
            self.reference_distinct,
            n = self.ngram
        );
        let _ = writeln!(w, "## Every model\n");
        let _ = writeln!(
            w,
            "(b) teacher-forced: acceptance of exit E's greedy token against the full model's on \
             {} held-out windows (true text as context); tokens per round `1 + min(run, d)` over \
             every start; expected speedup = tokens per round × t_full / ((d+1)·t_draft(E) + \
             t_verify(E, d)) with the costs measured on this machine; (E, d) is the best of \
             E < L, d ≤ {}. (a) generation: {} held-out prompts, {} greedy tokens each, full and \
             self-speculative decoding interleaved prompt by prompt at that (E, d); outputs \
             identical in every row. \"vs baseline\" is the paper's measure: full decoding of the \
             no-recipe model (same seed), timed in the same loop, over speculative decoding of \
             this model.\n",
            self.settings["windows"],
            self.settings["max_draft"],
            self.settings["prompts"],
            self.settings["tokens"]
        );
        let _ = writeln!(
            w,
            "| arm | seed | val loss (last) | val loss (E) | E | d | (b) accept | (b) tokens/round | (b) expected speedup | (a) accept | (a) speedup | (a) vs baseline | (a) layer passes saved | repeated {n}-gram frac. | distinct-{n} | train s |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            n = self.ngram
        );
        for r in &self.results {
            let e = r.best_exit;
            let tf = &r.teacher_forced[e - 1];
            let g = &r.generation;
            let base = g
                .vs_baseline
                .map_or("—".to_string(), |x| format!("{x:.2}x"));
            let _ = writeln!(
                w,
                "| {} | {} | {:.3} | {:.3} | {e} | {} | {:.3} | {:.2} | {:.2}x | {:.3} | {:.2}x | {base} | {:.1}% | {:.3} | {:.3} | {:.0} |",
                if r.arm == "recipe" { "recipe" } else { "no recipe" },
                r.seed,
                r.exits.last().map_or(f64::NAN, |x| x.loss),
                r.exits[e - 1].loss,
                r.best_draft,
                tf.acceptance,
                tf.tokens_per_round[r.best_draft - 1],
                r.expected_speedup,
                g.acceptance,
                g.speedup,
                100.0 * g.layer_passes_saved,
                g.repeated_fraction,
                g.distinct,
                r.train_seconds,
            );
        }
        let _ = writeln!(
            w,
            "\n## Teacher-forced acceptance per exit (mean ± sd over seeds)\n"
        );
        let _ = writeln!(w, "| E | recipe: accept | recipe: best expected speedup | no recipe: accept | no recipe: best expected speedup |\n|---|---|---|---|---|");
        let layers = self.results.first().map_or(0, |r| r.teacher_forced.len());
        for e in 0..layers {
            let best = |r: &ModelResult| {
                let t = &r.teacher_forced[e];
                t.tokens_per_round
                    .iter()
                    .enumerate()
                    .filter_map(|(d, &x)| r.costs.expected_speedup(e + 1, d + 1, x))
                    .fold(0.0, f64::max)
            };
            let cell = |arm: &str, f: &dyn Fn(&ModelResult) -> f64| {
                let (m, sd) = mean_sd(&self.metric(arm, f));
                format!("{m:.3} ± {sd:.3}")
            };
            let acc = |r: &ModelResult| r.teacher_forced[e].acceptance;
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                e + 1,
                cell("recipe", &acc),
                cell("recipe", &best),
                cell("none", &acc),
                cell("none", &best)
            );
        }
        let _ = writeln!(w, "\n## Validation loss per exit (mean over seeds)\n");
        let means = self.mean_exits();
        let _ = writeln!(w, "| E | recipe: loss | recipe: top-1 agree | no recipe: loss | no recipe: top-1 agree |\n|---|---|---|---|---|");
        if let [(_, r), (_, n)] = means.as_slice() {
            for (a, b) in r.iter().zip(n) {
                let _ = writeln!(
                    w,
                    "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    a.exit_layer, a.loss, a.agreement, b.loss, b.agreement
                );
            }
        }
        let _ = writeln!(w, "\n![per-exit perplexity](layerskip-study-ppl.svg)\n");
        let _ = writeln!(w, "Settings (JSON): `{}`", self.settings);
        s
    }
}
