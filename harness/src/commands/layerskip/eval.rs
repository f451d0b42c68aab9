//! `tessera layerskip eval`: per-exit loss, perplexity and agreement of one or more models, with an
//! optional plot.

use super::{load_corpus, print_evals};
use crate::commands::CliResult;
use crate::fsutil::{check_outputs, write_json};
use crate::train::checkpoint;
use crate::train::eval::{evaluate_exits, ExitEval};
use anyhow::ensure;
use clap::Parser;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
pub(super) struct EvalArgs {
    /// One or more models (repeat the flag) to compare.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Write a per-exit perplexity plot of every model here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Text whose last 10% is the validation split (default: the synthetic corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Windows of `--seq-len` tokens to evaluate.
    #[arg(long, default_value_t = 64)]
    windows: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `tessera layerskip eval`.
pub(super) fn run(a: EvalArgs) -> CliResult {
    check_outputs(
        [a.svg.as_deref(), a.json.as_deref()].into_iter().flatten(),
        None,
    )?;
    let (corpus, _) = load_corpus(&a.corpus)?;
    let mut all = Vec::new();
    for path in &a.model {
        let ck = checkpoint::load(path)?;
        ensure!(
            corpus.vocab == ck.vocab,
            "the corpus's characters differ from the vocabulary of {}",
            path.display()
        );
        let evals = evaluate_exits(&ck.config, &ck.params, &corpus.val, a.seq_len, a.windows)?;
        println!("{}", path.display());
        print_evals(&evals);
        all.push((path.display().to_string(), evals));
    }
    if let Some(svg) = &a.svg {
        crate::fsutil::write_atomic(svg, perplexity_svg(&all).as_bytes())?;
    }
    if let Some(path) = a.json {
        let models: Vec<_> = all
            .iter()
            .map(|(m, e)| serde_json::json!({ "model": m, "exits": e }))
            .collect();
        write_json(&path, &serde_json::json!({ "models": models }))?;
    }
    Ok(())
}

/// A line plot of validation perplexity against the exit layer, one line per model.
pub(super) fn perplexity_svg(models: &[(String, Vec<ExitEval>)]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 30.0, 50.0);
    let layers = models
        .iter()
        .map(|(_, e)| e.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ppl = models
        .iter()
        .flat_map(|(_, e)| e.iter().map(|x| x.perplexity))
        .filter(|p| p.is_finite());
    let (lo, hi) = ppl.fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p), b.max(p)));
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let (lo, hi) = ((lo * 0.95).floor(), (hi * 1.05).ceil().max(lo + 1.0));
    let x = |l: usize| left + (l - 1) as f64 * (w - left - right) / (layers - 1) as f64;
    let y = |p: f64| top + (hi - p) * (h - top - bottom) / (hi - lo);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\">validation perplexity when exiting after layer E</text>\n",
        w / 2.0
    );
    for l in 1..=layers {
        s += &format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{l}</text>\n",
            x(l), top, h - bottom, h - bottom + 16.0
        );
    }
    let ticks = 5;
    for i in 0..=ticks {
        let p = lo + (hi - lo) * i as f64 / ticks as f64;
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{p:.1}</text>\n",
            y(p), w - right, left - 6.0, y(p) + 4.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">exit layer E</text>\n",
        w / 2.0,
        h - 12.0
    );
    for (i, (name, evals)) in models.iter().enumerate() {
        let c = colors[i % colors.len()];
        // A non-finite perplexity (a loss past f64's range) has no place on the axis.
        let skipped = evals.iter().filter(|e| !e.perplexity.is_finite()).count();
        if skipped != 0 {
            eprintln!("note: {skipped} non-finite perplexities of {name} are left out of the plot");
        }
        let pts: Vec<String> = evals
            .iter()
            .filter(|e| e.perplexity.is_finite())
            .map(|e| format!("{:.1},{:.1}", x(e.exit_layer), y(e.perplexity)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        );
        let label = Path::new(name)
            .file_stem()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        s += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\" text-anchor=\"end\">{label}</text>\n",
            w - right - 4.0,
            top + 16.0 * (i + 1) as f64
        );
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_perplexities_are_left_out_of_the_plot() {
        let e = |l, p| ExitEval {
            exit_layer: l,
            loss: f64::ln(p),
            perplexity: p,
            agreement: 1.0,
        };
        let models = vec![(
            "m.safetensors".to_string(),
            vec![e(1, f64::NAN), e(2, f64::INFINITY), e(3, 9.0), e(4, 8.0)],
        )];
        let svg = perplexity_svg(&models);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        let all_nan = vec![("m".to_string(), vec![e(1, f64::NAN), e(2, f64::NAN)])];
        let svg = perplexity_svg(&all_nan);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
