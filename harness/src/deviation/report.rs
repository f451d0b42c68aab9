//! Tables and plots of the study's records.

use super::plan::{NumberFormat, DEFAULT_TILE};
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
    let dist = if records.iter().any(|r| r.distribution == "normal") {
        "normal"
    } else {
        records.first()?.distribution
    };
    let d = records
        .iter()
        .filter(|r| r.distribution == dist)
        .map(|r| r.head_dim)
        .min()?;
    Some((dist, d))
}

fn formats_present(records: &[Record]) -> Vec<&'static str> {
    let all = NumberFormat::PAPER
        .iter()
        .chain(NumberFormat::EVERY_OP.iter());
    all.map(|f| f.name())
        .filter(|f| records.iter().any(|r| r.format == *f))
        .collect()
}

/// Max-abs deviation of flash (default tile) and baseline vs the oracle, and their ratio, per
/// format and sequence length (Markdown).
pub fn headline_table(records: &[Record]) -> String {
    let mut s = String::new();
    let Some((dist, d)) = headline_slice(records) else {
        return s;
    };
    let _ = writeln!(
        s,
        "Max |output − exact| over sampled rows; {dist} inputs, head_dim {d}, flash tiles Br×Bc = {}×{}.\n",
        DEFAULT_TILE.0, DEFAULT_TILE.1
    );
    let _ = writeln!(
        s,
        "| format | seq_len | baseline | flash | flash / baseline |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for format in formats_present(records) {
        let mut lens: Vec<usize> = find(records, |r| r.format == format)
            .map(|r| r.seq_len)
            .collect();
        lens.sort_unstable();
        lens.dedup();
        for n in lens {
            let sel = |r: &Record| {
                r.format == format && r.seq_len == n && r.distribution == dist && r.head_dim == d
            };
            let base = find(records, |r| sel(r) && r.algorithm == "baseline").next();
            let flash = find(records, |r| sel(r) && is_default_flash(r)).next();
            if let (Some(b), Some(f)) = (base, flash) {
                let _ = writeln!(
                    s,
                    "| {format} | {n} | {:.3e} | {:.3e} | {:.1} |",
                    b.max_abs_dev,
                    f.max_abs_dev,
                    f.max_abs_dev / b.max_abs_dev
                );
            }
        }
    }
    s
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
        "Flash max |output − exact| at seq_len {n}, {dist} inputs, head_dim {d}.\n"
    );
    let _ = writeln!(s, "| format | Br | Bc | rescalings | max abs | mean abs |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for format in formats_present(records) {
        let mut rows: Vec<&Record> = find(records, |r| {
            r.format == format
                && r.seq_len == n
                && r.algorithm == "flash"
                && r.distribution == dist
                && r.head_dim == d
        })
        .collect();
        rows.sort_by_key(|r| (r.block_k, r.block_q));
        for r in rows {
            let _ = writeln!(
                s,
                "| {format} | {} | {} | {} | {:.3e} | {:.3e} |",
                r.block_q.unwrap_or(0),
                r.block_k.unwrap_or(0),
                r.rescalings,
                r.max_abs_dev,
                r.mean_abs_dev
            );
        }
    }
    s
}

fn full_table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| distribution | d | format | algorithm | N | Br | Bc | max abs | mean abs | max ulp | bound |"
    );
    let _ = writeln!(s, "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in records {
        let tile = |t: Option<usize>| t.map_or("–".to_string(), |v| v.to_string());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3e} | {:.3e} | {:.2} | {:.2e} |",
            r.distribution,
            r.head_dim,
            r.format,
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
    let formats = formats_present(records);
    let mut by_len = Vec::new();
    let mut ratio = Vec::new();
    let mut by_tile = Vec::new();
    for &format in &formats {
        let points = |flash: bool| -> Vec<(f64, f64)> {
            let mut p: Vec<(f64, f64)> = find(records, |r| {
                in_slice(r)
                    && r.format == format
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
        let (f, b) = (points(true), points(false));
        let r: Vec<(f64, f64)> = f
            .iter()
            .filter_map(|&(n, fv)| b.iter().find(|p| p.0 == n).map(|&(_, bv)| (n, fv / bv)))
            .collect();
        by_len.push(Series {
            label: format!("{format} flash"),
            points: f,
            dashed: false,
        });
        by_len.push(Series {
            label: format!("{format} baseline"),
            points: b,
            dashed: true,
        });
        ratio.push(Series {
            label: format.to_string(),
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
                    && r.seq_len == n
                    && r.algorithm == "flash"
                    && r.block_q == Some(DEFAULT_TILE.0)
            })
            .map(|r| (r.block_k.unwrap_or(0) as f64, r.max_abs_dev))
            .collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            by_tile.push(Series {
                label: format.to_string(),
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
    let json = serde_json::to_string_pretty(records)?;
    files.push(("deviation.json".into(), json));
    for (name, body) in files {
        crate::fsutil::write_atomic(&dir.join(name), body.as_bytes())?;
    }
    Ok(())
}
