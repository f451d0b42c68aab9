//! Minimal SVG stacked bar charts (each bar a run, each segment a share), for study reports.
//! Hand-written like [`plot`](crate::plot), so the harness needs no plotting stack.

use std::fmt::Write as _;

/// A chart of bars stacked from segments, one colour per segment label.
#[derive(Clone, Debug)]
pub struct StackedBars {
    /// Title at the top.
    pub title: String,
    /// Label of the value axis.
    pub y_label: String,
    /// Segment labels, in stacking order (bottom first).
    pub segments: Vec<String>,
    /// Bars: a label and one value per segment.
    pub bars: Vec<(String, Vec<f64>)>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#e377c2", "#2ca02c", "#7f7f7f", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl StackedBars {
    /// Renders the chart as a standalone SVG document (values as given; the axis runs from 0 to
    /// the tallest bar).
    pub fn to_svg(&self) -> String {
        let (left, right, top, bottom) = (70.0, 190.0, 40.0, 90.0);
        let bar_w = 56.0;
        let gap = 28.0;
        let n = self.bars.len().max(1) as f64;
        let width = left + right + n * (bar_w + gap) + gap;
        let height = 420.0;
        let plot_h = height - top - bottom;
        let max = self
            .bars
            .iter()
            .map(|(_, v)| v.iter().filter(|x| x.is_finite()).sum::<f64>())
            .fold(0.0f64, f64::max)
            .max(1e-300);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            (left + width - right) / 2.0,
            escape(&self.title)
        );
        for i in 0..=5 {
            let v = max * i as f64 / 5.0;
            let y = top + plot_h * (1.0 - i as f64 / 5.0);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                width - right,
                left - 6.0,
                y + 4.0,
                (v * 1000.0).round() / 1000.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            top + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (b, (label, values)) in self.bars.iter().enumerate() {
            let x = left + gap + b as f64 * (bar_w + gap);
            let mut acc = 0.0;
            for (k, &v) in values.iter().enumerate() {
                if !(v.is_finite() && v > 0.0) {
                    continue;
                }
                let y0 = top + plot_h * (1.0 - acc / max);
                acc += v;
                let y1 = top + plot_h * (1.0 - acc / max);
                let _ = writeln!(
                    s,
                    r#"<rect x="{x}" y="{y1}" width="{bar_w}" height="{}" fill="{}"><title>{}: {v:.3}</title></rect>"#,
                    (y0 - y1).max(0.0),
                    COLORS[k % COLORS.len()],
                    escape(self.segments.get(k).map_or("", |l| l.as_str()))
                );
            }
            for (line, part) in label.split('\n').enumerate() {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                    x + bar_w / 2.0,
                    top + plot_h + 18.0 + 15.0 * line as f64,
                    escape(part)
                );
            }
        }
        for (k, label) in self.segments.iter().enumerate() {
            let y = top + 10.0 + 20.0 * k as f64;
            let x = width - right + 16.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                y - 10.0,
                COLORS[k % COLORS.len()],
                x + 18.0,
                y,
                escape(label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
