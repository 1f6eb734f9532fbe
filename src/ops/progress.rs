//! Backfill progress: a progress bar with ETA on a terminal, an `info!` line every ~10 s
//! otherwise (containers, CI, log shippers).
//!
//! Progress is measured in seconds of add-time covered (`done_secs` of `total_secs`, i.e. the
//! watermark's distance from `windows.start_time` against now's); the number of customers in the
//! diff state is shown beside it.
//!
//! While a bar is on the terminal, log lines must not be written over it: the log writer
//! ([`LogWriter`], installed by [`crate::ops::logging::init`]) hides the bar, writes the line and
//! redraws the bar below it.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a log line is written when there is no terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

const BAR_TEMPLATE: &str =
    "{spinner} backfill [{elapsed_precise}] [{wide_bar}] {percent:>3}% ETA {eta} · {msg}";

/// Reports backfill progress. Cheap to clone; all clones report to the same bar or log.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
enum Sink {
    /// Nothing is reported.
    Off,
    /// A terminal progress bar.
    Bar(ProgressBar),
    /// Periodic log lines.
    Log {
        interval: Duration,
        last: Option<Instant>,
    },
}

#[derive(Debug)]
struct Inner {
    sink: Sink,
    rate: Rate,
    done: u64,
    total: u64,
    customers: u64,
    finished: bool,
}

/// Rate estimate from the first sample seen to the latest.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    first: Option<(Instant, u64)>,
}

impl Rate {
    /// Remaining time at the average rate since the first sample; `None` until there is a rate.
    fn eta(&mut self, now: Instant, done: u64, total: u64) -> Option<Duration> {
        let (t0, d0) = *self.first.get_or_insert((now, done));
        let elapsed = now.saturating_duration_since(t0).as_secs_f64();
        let progressed = done.saturating_sub(d0) as f64;
        if elapsed <= 0.0 || progressed <= 0.0 {
            return None;
        }
        let remaining = total.saturating_sub(done) as f64;
        Some(Duration::from_secs_f64(remaining * elapsed / progressed))
    }
}

impl Progress {
    /// A reporter: a bar when `enabled` (`ops.progress`) and stderr is a terminal, else log
    /// lines every [`LOG_INTERVAL`].
    pub fn new(enabled: bool) -> Progress {
        if enabled && std::io::stderr().is_terminal() {
            let bar = new_bar();
            *active_bar() = Some(bar.clone());
            Progress::with_sink(Sink::Bar(bar))
        } else {
            Progress::logging(LOG_INTERVAL)
        }
    }

    /// A reporter that only writes log lines, at most once per `interval` (tests, embedding).
    pub fn logging(interval: Duration) -> Progress {
        Progress::with_sink(Sink::Log {
            interval,
            last: None,
        })
    }

    /// A reporter that reports nothing.
    pub fn disabled() -> Progress {
        Progress::with_sink(Sink::Off)
    }

    fn with_sink(sink: Sink) -> Progress {
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                sink,
                rate: Rate::default(),
                done: 0,
                total: 0,
                customers: 0,
                finished: false,
            })),
        }
    }

    /// Updates progress: `done_secs` of `total_secs` of add-time covered, `customers` in the diff
    /// state. Returns whether a log line was written (always false for a bar).
    pub fn set(&self, done_secs: u64, total_secs: u64, customers: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let done = done_secs.min(total_secs);
        g.done = done;
        g.total = total_secs;
        g.customers = customers;
        let now = Instant::now();
        let eta = g.rate.eta(now, done, total_secs);
        match &mut g.sink {
            Sink::Off => false,
            Sink::Bar(bar) => {
                bar.set_length(total_secs);
                bar.set_position(done);
                bar.set_message(format!("{customers} customers"));
                false
            }
            Sink::Log { interval, last } => {
                let due = last.is_none_or(|t| now.saturating_duration_since(t) >= *interval);
                if due {
                    *last = Some(now);
                    tracing::info!(
                        done_secs = done,
                        total_secs,
                        percent = percent(done, total_secs),
                        customers,
                        eta_secs = eta.map(|d| d.as_secs()),
                        "Backfill progress."
                    );
                }
                due
            }
        }
    }

    /// Ends the report: the bar is finished ("caught up", or "stopped" where it stood when the
    /// backfill is not complete), or a last log line is written. Idempotent.
    pub fn finish(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.finished {
            return;
        }
        g.finished = true;
        let (done, total, customers) = (g.done, g.total, g.customers);
        match &g.sink {
            Sink::Off => {}
            Sink::Bar(bar) => {
                if done < total {
                    // Stopped before catching up (shutdown): keep the bar where it was.
                    bar.abandon_with_message(format!("{customers} customers, stopped"));
                } else {
                    bar.finish_with_message(format!("{customers} customers, caught up"));
                }
                *active_bar() = None;
            }
            Sink::Log { .. } => {
                tracing::info!(
                    done_secs = done,
                    total_secs = total,
                    customers,
                    "Backfill caught up."
                )
            }
        }
    }
}

/// The bar currently drawn on the terminal, if any; the log writer hides it while writing.
fn active_bar() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);
    BAR.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stderr writer for log lines that does not draw over the progress bar: while a bar is shown
/// it is hidden, the line written, and the bar redrawn below it. Use it as the `tracing`
/// writer (`fmt::layer().with_writer(|| LogWriter)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = active_bar().clone();
        match bar {
            Some(bar) if !bar.is_finished() => {
                bar.suspend(|| std::io::stderr().lock().write_all(buf))?
            }
            _ => std::io::stderr().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    match ProgressStyle::with_template(BAR_TEMPLATE) {
        Ok(style) => bar.set_style(style.progress_chars("=> ")),
        Err(e) => tracing::debug!(error = %e, "Progress bar template rejected; using the default."),
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_from_average_rate() {
        let mut r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.eta(t0, 100, 1000), None);
        // 100 s of add-time per second of wall time, 800 left: 8 s.
        let eta = r.eta(t0 + Duration::from_secs(1), 200, 1000);
        assert_eq!(eta.map(|d| d.as_secs()), Some(8));
    }

    #[test]
    fn logs_at_most_once_per_interval() {
        let p = Progress::logging(Duration::from_secs(3600));
        assert!(p.set(10, 100, 1), "first update logs");
        assert!(
            !p.set(20, 100, 2),
            "second update within the interval is quiet"
        );
        let p = Progress::logging(Duration::ZERO);
        assert!(p.set(10, 100, 1));
        assert!(p.set(20, 100, 2));
        p.finish();
        p.finish();
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(0, 0), 100.0);
        assert_eq!(percent(1, 3), 33.3);
        let p = Progress::disabled();
        assert!(!p.set(500, 100, 0));
    }
}
