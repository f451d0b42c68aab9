//! Tables and plots of the study's records.

use super::compare::{compare, headline_rows, verdicts};
use super::plan::{Algorithm, Model, DEFAULT_TILE};
use super::sweep::Record;
use crate::plot::{Plot, Scale, Series};
use std::fmt::Write as _;
use std::path::Path;

fn is_default_flash(r: &Record) -> bool {
    r.algorithm == "flash" && r.block_q == Some(DEFAULT_TILE.0) && r.block_k == Some(DEFAULT_TILE.1)
}

fn find<'a>(
    records: &'a [Record],
    pred: impl Fn(&Record) -> bool + 'a,
) -> impl Iterator<Item = &'a Record> + 'a {
    records.iter().filter(move |r| pred(r))
}

/// The slice the headline table and plots show: first distribution and head dimension present.
fn headline_slice(records: &[Record]) -> Option<(&'static str, usize)> {
    super::compare::headline_slice(records.iter().map(|r| (r.distribution, r.head_dim)))
}

/// The flash models present, as (format, model) in the order of [`Model`]'s lists.
fn flash_models(records: &[Record]) -> Vec<(&'static str, &'static str)> {
    let all = Model::MAIN.iter().chain(Model::EVERY_OP.iter());
    all.filter(|m| m.runs(Algorithm::Flash))
        .map(|m| (m.format(), m.name()))
        .filter(|&(f, m)| {
            records
                .iter()
                .any(|r| r.algorithm == "flash" && r.format == f && r.model == m)
        })
        .collect()
}

/// The baseline a flash model is compared with in the tables: its headline partner, else the
/// baseline of the same model.
fn partner(format: &str, model: &str) -> &'static str {
    Model::HEADLINE
        .iter()
        .find(|(f, _)| f.format() == format && f.name() == model)
        .map_or_else(
            || {
                Model::MAIN
                    .iter()
                    .chain(Model::EVERY_OP.iter())
                    .find(|m| m.format() == format && m.name() == model)
                    .map_or("", |m| m.name())
            },
            |(_, b)| b.name(),
        )
}

/// Max-abs deviation of flash (default tile) and baseline vs the oracle, and their ratio, for
/// each headline pair of models and sequence length (Markdown), then the verdicts computed from
/// those rows.
pub fn headline_table(records: &[Record]) -> String {
    let comparisons = compare(records);
    let mut s = String::new();
    let Some((dist, d)) = headline_slice(records) else {
        return s;
    };
    let _ = writeln!(
        s,
        "Max |output − exact| over sampled rows; {dist} inputs, head_dim {d}, flash tiles Br×Bc = {}×{}.\n",
        DEFAULT_TILE.0, DEFAULT_TILE.1
    );
    let seeds = {
        let mut v: Vec<u64> = records.iter().map(|r| r.seed).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let _ =
        writeln!(
        s,
        "Deviations are means over {} input seeds ({}); the ratio column gives the smallest and \
         largest per-seed flash / baseline.\n",
        seeds.len(),
        seeds.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        s,
        "| format | flash model | baseline model | seq_len | baseline | flash | flash / baseline |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|");
    for pair in Model::HEADLINE {
        for c in headline_rows(&comparisons, pair) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.3e} | {:.3e} | {:.2}–{:.2} |",
                c.format,
                c.model,
                c.baseline_model,
                c.seq_len,
                c.baseline,
                c.flash,
                c.ratio_min,
                c.ratio_max
            );
        }
    }
    let _ = writeln!(s, "\n{}", verdicts(&comparisons));
    s
}

/// Mean over seeds of a flash model's max abs deviation at one tile, and the per-seed range of
/// its ratio to the partner baseline.
struct TileCell {
    br: usize,
    bc: usize,
    sram: Option<usize>,
    rescalings: usize,
    mean_max_abs: f64,
    ratio: Option<(f64, f64)>,
    /// Per seed, the max abs deviation (for the Br-independence check).
    per_seed: Vec<(u64, f64)>,
}

fn tile_cells(
    records: &[Record],
    format: &str,
    model: &str,
    n: usize,
    dist: &str,
    d: usize,
) -> Vec<TileCell> {
    let runs: Vec<&Record> = find(records, |r| {
        r.format == format
            && r.model == model
            && r.seq_len == n
            && r.algorithm == "flash"
            && r.distribution == dist
            && r.head_dim == d
    })
    .collect();
    let base = |seed: u64| {
        find(records, |r| {
            r.algorithm == "baseline"
                && r.format == format
                && r.model == partner(format, model)
                && r.seq_len == n
                && r.distribution == dist
                && r.head_dim == d
                && r.seed == seed
        })
        .next()
        .map(|b| b.max_abs_dev)
    };
    let mut keys: Vec<(Option<usize>, Option<usize>, Option<usize>)> = runs
        .iter()
        .map(|r| (r.block_q, r.block_k, r.sram_bytes))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut cells: Vec<TileCell> = keys
        .into_iter()
        .map(|(br, bc, sram)| {
            let at: Vec<&&Record> = runs
                .iter()
                .filter(|r| (r.block_q, r.block_k, r.sram_bytes) == (br, bc, sram))
                .collect();
            let ratios: Vec<f64> = at
                .iter()
                .filter_map(|r| base(r.seed).map(|b| r.max_abs_dev / b))
                .collect();
            TileCell {
                br: br.unwrap_or(0),
                bc: bc.unwrap_or(0),
                sram,
                rescalings: at.first().map_or(0, |r| r.rescalings),
                mean_max_abs: at.iter().map(|r| r.max_abs_dev).sum::<f64>()
                    / at.len().max(1) as f64,
                ratio: (!ratios.is_empty()).then(|| {
                    ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    })
                }),
                per_seed: at.iter().map(|r| (r.seed, r.max_abs_dev)).collect(),
            }
        })
        .collect();
    cells.sort_by_key(|c| (c.sram.is_some(), c.br * c.bc, c.bc, c.br));
    cells
}

/// The paper's tile findings, checked on one model's cells: whether Br matters at a fixed Bc,
/// how square tiles move with their area, and what swapping Br and Bc does.
fn tile_verdicts(model: &str, format: &str, cells: &[TileCell]) -> String {
    let plain: Vec<&TileCell> = cells.iter().filter(|c| c.sram.is_none()).collect();
    // Br independence: every pair of cells with the same Bc, seed by seed, bit-equal results.
    let mut same_bc_pairs = 0;
    let br_matters = plain.iter().any(|a| {
        plain.iter().any(|b| {
            if a.bc != b.bc || a.br == b.br {
                return false;
            }
            same_bc_pairs += 1;
            a.per_seed
                .iter()
                .any(|(s, x)| b.per_seed.iter().any(|(t, y)| s == t && x != y))
        })
    });
    let br = if same_bc_pairs == 0 {
        "no two tiles share Bc".to_string()
    } else if br_matters {
        "Br changes the result at a fixed Bc".to_string()
    } else {
        "Br never changes the result at a fixed Bc (bit-equal in every seed): only Bc matters"
            .to_string()
    };
    let square: Vec<f64> = [32, 64, 128]
        .iter()
        .filter_map(|&t| {
            plain
                .iter()
                .find(|c| c.br == t && c.bc == t)
                .map(|c| c.mean_max_abs)
        })
        .collect();
    let area = match super::compare::trend(&square) {
        "grows with N" => "grows with the area",
        "falls with N" => "falls with the area",
        "has one point" => "has one point",
        "does not change with N" => "does not change with the area",
        _ => "is not monotone in the area",
    };
    let swaps: Vec<String> = [(16, 64), (32, 128), (64, 256)]
        .iter()
        .filter_map(|&(a, b)| {
            let wide = plain.iter().find(|c| c.br == a && c.bc == b)?;
            let tall = plain.iter().find(|c| c.br == b && c.bc == a)?;
            Some(format!(
                "{b}×{a} / {a}×{b} = {:.2}",
                tall.mean_max_abs / wide.mean_max_abs
            ))
        })
        .collect();
    format!(
        "- {format} `{model}`: {br}; the deviation of square tiles (32², 64², 128²) {area}; \
         swapping Br×Bc (deviation of the tall tile over the wide one): {}.\n",
        if swaps.is_empty() {
            "not measured".to_string()
        } else {
            swaps.join(", ")
        }
    )
}

fn tile_table(records: &[Record]) -> String {
    let mut s = String::new();
    let Some((dist, d)) = headline_slice(records) else {
        return s;
    };
    let n = find(records, |r| {
        r.algorithm == "flash" && r.block_k != Some(DEFAULT_TILE.1)
    })
    .map(|r| r.seq_len)
    .next();
    let Some(n) = n else {
        return s;
    };
    let _ = writeln!(
        s,
        "Flash max |output − exact| at seq_len {n}, {dist} inputs, head_dim {d}, by tile (mean over \
         seeds): the key-tile sweep (Br = 64), block areas Br×Bc with square and swapped tiles, and \
         the paper's default tiling `Bc = ⌈M/4d⌉, Br = min(Bc, d)` for an SRAM of M bytes (bf16 \
         elements). The last column is the per-seed range of the ratio to the model's baseline \
         partner at the same N.\n"
    );
    let _ = writeln!(
        s,
        "| format | model | Br | Bc | area | SRAM M | rescalings | max abs | / baseline |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = String::new();
    for (format, model) in flash_models(records) {
        let cells = tile_cells(records, format, model, n, dist, d);
        for c in &cells {
            let sram = c
                .sram
                .map_or("–".to_string(), |m| format!("{} KiB", m >> 10));
            let ratio = c
                .ratio
                .map_or("–".to_string(), |(lo, hi)| format!("{lo:.2}–{hi:.2}"));
            let _ = writeln!(
                s,
                "| {format} | {model} | {} | {} | {} | {sram} | {} | {:.3e} | {ratio} |",
                c.br,
                c.bc,
                c.br * c.bc,
                c.rescalings,
                c.mean_max_abs
            );
        }
        verdicts.push_str(&tile_verdicts(model, format, &cells));
    }
    let _ = writeln!(s, "\n{verdicts}");
    s
}

fn full_table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| seed | distribution | d | format | model | algorithm | N | Br | Bc | max abs | mean abs | max ulp | bound |"
    );
    let _ = writeln!(
        s,
        "|---:|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in records {
        let tile = |t: Option<usize>| t.map_or("–".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3e} | {:.3e} | {:.2} | {:.2e} |",
            r.seed,
            r.distribution,
            r.head_dim,
            r.format,
            r.model,
            r.algorithm,
            r.seq_len,
            tile(r.block_q),
            tile(r.block_k),
            r.max_abs_dev,
            r.mean_abs_dev,
            r.max_ulp,
            r.bound
        );
    }
    s
}

fn plots(records: &[Record]) -> Vec<(&'static str, Plot)> {
    let Some((dist, d)) = headline_slice(records) else {
        return Vec::new();
    };
    let in_slice = |r: &Record| r.distribution == dist && r.head_dim == d;
    let mut by_len = Vec::new();
    let mut ratio = Vec::new();
    let mut by_tile = Vec::new();
    let comparisons = compare(records);
    for (format, model) in flash_models(records) {
        let label = format!("{format} {model}");
        let points = |flash: bool, model: &str| -> Vec<(f64, f64)> {
            let mut p: Vec<(f64, f64)> = find(records, |r| {
                in_slice(r)
                    && r.format == format
                    && r.model == model
                    && if flash {
                        is_default_flash(r)
                    } else {
                        r.algorithm == "baseline"
                    }
            })
            .map(|r| (r.seq_len as f64, r.max_abs_dev))
            .collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            p
        };
        let base_model = partner(format, model);
        by_len.push(Series {
            label: format!("{label} flash"),
            points: points(true, model),
            dashed: false,
        });
        by_len.push(Series {
            label: format!("{format} {base_model} baseline"),
            points: points(false, base_model),
            dashed: true,
        });
        let mut r: Vec<(f64, f64)> = comparisons
            .iter()
            .filter(|c| {
                c.distribution == dist
                    && c.head_dim == d
                    && c.format == format
                    && c.model == model
                    && c.baseline_model == base_model
                    && c.block_q == Some(DEFAULT_TILE.0)
                    && c.block_k == Some(DEFAULT_TILE.1)
                    && c.sram_bytes.is_none()
            })
            .map(|c| (c.seq_len as f64, c.ratio))
            .collect();
        r.sort_by(|a, b| a.0.total_cmp(&b.0));
        ratio.push(Series {
            label: format!("{label} / {base_model}"),
            points: r,
            dashed: false,
        });
        let tile_n = find(records, |r| {
            r.algorithm == "flash" && r.block_k != Some(DEFAULT_TILE.1)
        })
        .map(|r| r.seq_len)
        .next();
        if let Some(n) = tile_n {
            let mut p: Vec<(f64, f64)> = find(records, |r| {
                in_slice(r)
                    && r.format == format
                    && r.model == model
                    && r.seq_len == n
                    && r.algorithm == "flash"
                    && r.block_q == Some(DEFAULT_TILE.0)
                    && r.sram_bytes.is_none()
            })
            .map(|r| (r.block_k.unwrap_or(0) as f64, r.max_abs_dev))
            .collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            by_tile.push(Series {
                label,
                points: p,
                dashed: false,
            });
        }
    }
    let plot = |title: String, x: &str, y: &str, series| Plot {
        title,
        x_label: x.into(),
        y_label: y.into(),
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        series,
    };
    vec![
        (
            "deviation_vs_seq_len.svg",
            plot(
                format!("Max abs deviation vs sequence length ({dist}, d={d}, tiles 64x64)"),
                "sequence length N",
                "max |output - exact|",
                by_len,
            ),
        ),
        (
            "deviation_ratio.svg",
            plot(
                format!("Flash / baseline max abs deviation ({dist}, d={d})"),
                "sequence length N",
                "ratio",
                ratio,
            ),
        ),
        (
            "deviation_vs_block_k.svg",
            plot(
                format!("Flash max abs deviation vs key tile Bc ({dist}, d={d}, Br=64)"),
                "key tile Bc",
                "max |output - exact|",
                by_tile,
            ),
        ),
    ]
}

/// Writes `deviation_tables.md`, the SVG plots and `deviation.json` into `dir`. `command` is the
/// command line that produced the records, quoted in the Markdown.
pub fn write_report(records: &[Record], dir: &Path, command: &str) -> anyhow::Result<()> {
    crate::fsutil::prepare_output_dir(dir)?;
    let mut md = String::new();
    let _ = writeln!(md, "# Deviation study: generated tables\n");
    let _ = writeln!(
        md,
        "Made by `{command}`. See deviation.md for the setup and discussion.\n"
    );
    let _ = writeln!(
        md,
        "## Flash vs baseline by sequence length\n\n{}",
        headline_table(records)
    );
    let _ = writeln!(md, "## Flash by tile shape\n\n{}", tile_table(records));
    let _ = writeln!(md, "## Every configuration\n\n{}", full_table(records));
    let mut files: Vec<(String, String)> = vec![("deviation_tables.md".into(), md)];
    for (name, plot) in plots(records) {
        files.push((name.into(), plot.to_svg()));
    }
    // Every flash run against its partner baseline (and fa2 against the fused baseline too):
    // the full sweep's every-model pairs would be megabytes; `--json` writes them all.
    let pairs: Vec<_> = compare(records)
        .into_iter()
        .filter(|c| {
            c.baseline_model == partner(c.format, c.model)
                || (c.model == Model::Fa2.name() && c.baseline_model == Model::Fused.name())
        })
        .collect();
    // Six significant digits: the deviations are measured on 16 rows, not to 17 digits.
    let sig = |x: f64| -> f64 {
        if x == 0.0 || !x.is_finite() {
            return x;
        }
        let f = 10f64.powi(5 - x.abs().log10().floor() as i32);
        (x * f).round() / f
    };
    let pairs: Vec<_> = pairs
        .into_iter()
        .map(|mut c| {
            for x in [
                &mut c.flash,
                &mut c.baseline,
                &mut c.ratio,
                &mut c.flash_mean,
                &mut c.baseline_mean,
            ] {
                *x = sig(*x);
            }
            c
        })
        .collect();
    let json = serde_json::to_string(&pairs)?;
    files.push(("deviation.json".into(), json));
    for (name, body) in files {
        crate::fsutil::write_atomic(&dir.join(name), body.as_bytes())?;
    }
    Ok(())
}
