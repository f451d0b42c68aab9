//! Progress of long work: an indicatif bar on a terminal, and where stderr is not a terminal (a
//! log file, CI), where the bar draws nothing, one line per tenth of the work (from the first
//! second on), so a run that takes a quarter of an hour is not silent in its log.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A progress report of `total` units of work (thread-safe: `inc` may run on many threads).
pub struct Progress {
    bar: ProgressBar,
    lines: Option<Lines>,
}

/// The plain-line reporter used without a terminal.
struct Lines {
    label: &'static str,
    total: u64,
    done: AtomicU64,
    /// Tenths of the work reported so far.
    tenths: AtomicU64,
    started: Instant,
    message: Mutex<String>,
}

impl Progress {
    /// A report of `total` units, labelled `label` in the plain lines; `template` is the bar's
    /// indicatif template. Hidden (no bar, no lines) when `show` is false.
    pub fn new(
        show: bool,
        label: &'static str,
        total: u64,
        template: &str,
    ) -> Result<Self, indicatif::style::TemplateError> {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = if show && terminal {
            let b = ProgressBar::new(total);
            b.set_style(ProgressStyle::with_template(template)?);
            b
        } else {
            ProgressBar::hidden()
        };
        let lines = (show && !terminal).then(|| Lines {
            label,
            total,
            done: AtomicU64::new(0),
            tenths: AtomicU64::new(0),
            started: Instant::now(),
            message: Mutex::new(String::new()),
        });
        Ok(Progress { bar, lines })
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(l) = &self.lines {
            let done = l.done.fetch_add(n, Ordering::Relaxed) + n;
            l.report(done);
        }
    }

    /// Units already done (a resumed run).
    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
        if let Some(l) = &self.lines {
            l.done.store(done, Ordering::Relaxed);
            let tenths = tenths_of(done, l.total);
            l.tenths.store(tenths, Ordering::Relaxed);
        }
    }

    /// What is being done now (shown on the bar and at the end of the next line).
    pub fn set_message(&self, message: String) {
        if let Some(l) = &self.lines {
            if let Ok(mut m) = l.message.lock() {
                m.clone_from(&message);
            }
        }
        self.bar.set_message(message);
    }

    /// Removes the bar (the lines need no ending).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Lines {
    /// Prints a line for each tenth of the work that `done` units complete for the first time,
    /// once the work has taken a second.
    fn report(&self, done: u64) {
        let tenths = tenths_of(done, self.total);
        let before = self.tenths.fetch_max(tenths, Ordering::Relaxed);
        // Work that ends within a second needs no account of itself.
        if tenths > before && self.started.elapsed().as_secs_f64() >= 1.0 {
            let message = self.message.lock().map(|m| m.clone()).unwrap_or_default();
            eprintln!(
                "{}: {}% ({done}/{}) after {:.0} s{}{message}",
                self.label,
                tenths * 10,
                self.total,
                self.started.elapsed().as_secs_f64(),
                if message.is_empty() { "" } else { ", " },
            );
        }
    }
}

/// Whole tenths of `total` that `done` units make (10 for no work at all).
fn tenths_of(done: u64, total: u64) -> u64 {
    (done.min(total).saturating_mul(10))
        .checked_div(total)
        .unwrap_or(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(total: u64) -> Lines {
        Lines {
            label: "t",
            total,
            done: AtomicU64::new(0),
            tenths: AtomicU64::new(0),
            started: Instant::now(),
            message: Mutex::new(String::new()),
        }
    }

    #[test]
    fn a_tenth_is_reported_once_and_never_backwards() {
        let l = lines(20);
        let mut printed = Vec::new();
        for done in [1, 2, 3, 4, 2, 20, 25] {
            let before = l.tenths.load(Ordering::Relaxed);
            l.report(done);
            printed.push(l.tenths.load(Ordering::Relaxed) > before);
        }
        assert_eq!(
            printed,
            [false, true, false, true, false, true, false],
            "tenths 0, 1, 1, 2, 2 (late), 10, 10 (clamped)"
        );
        let empty = lines(0);
        empty.report(0);
        assert_eq!(empty.tenths.load(Ordering::Relaxed), 10);
    }
}
