//! What the connector is doing, on a terminal or in the logs.
//!
//! - **Backfill** (the watermark is more than one forward window behind): a progress bar with an
//!   ETA, in seconds of add-time covered (`done_secs` of `total_secs`, the watermark's distance
//!   from `windows.start_time` against now's).
//! - **Caught up**: a steady status line — events committed in the last minute, time since the
//!   last commit (ticking), watermark lag, customers in the diff state.
//!
//! Without a terminal (containers, CI, log shippers) the same figures go to `info!` lines: every
//! [`LOG_INTERVAL`] during a backfill, every [`LIVE_LOG_INTERVAL`] once caught up.
//!
//! The runner passes a [`Status`] at each turn of its loop ([`Progress::update`]) and records
//! every committed transaction with [`record_commit`]; [`Progress::finish`] ends the report at
//! shutdown (later updates are ignored).
//!
//! The line is drawn on stderr. Log lines of this process are written above it, not over it
//! ([`LogWriter`], installed by [`crate::ops::logging::init`], hides the line, writes, redraws).
//! Another process sharing the terminal (the demo's event printer, `scripts/demo`) inserts its
//! lines above the status line with terminal insert-line sequences, so neither blanks the other.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a backfill log line is written when there is no terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often a caught-up status log line is written when there is no terminal.
pub const LIVE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The window over which "events per minute" is counted.
const RATE_WINDOW: Duration = Duration::from_secs(60);

const BAR_TEMPLATE: &str =
    "{spinner} backfill [{elapsed_precise}] [{wide_bar}] {percent:>3}% ETA {eta} · {msg}";
const BAR_DONE_TEMPLATE: &str = "✓ backfill done in {elapsed} · {msg}";
const BAR_STOPPED_TEMPLATE: &str = "■ backfill stopped at {percent}% after {elapsed} · {msg}";
/// `{since_commit}` is computed at each draw; the rest changes at each update.
const LIVE_TEMPLATE: &str = "{prefix} · {since_commit} · {wide_msg}";

/// What the runner knows at one turn of its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Seconds of add-time covered: from the start time to the committed watermark.
    pub done_secs: u64,
    /// Seconds of add-time to cover: from the start time to now (minus the settle lag).
    pub total_secs: u64,
    /// Less than one forward window behind: the backfill is over.
    pub caught_up: bool,
    /// Customers in the diff state.
    pub customers: u64,
    /// Now minus the committed watermark.
    pub watermark_lag: Duration,
}

/// Records one committed transaction and the change events it held (process-wide; the status
/// line shows the time since the last one and the events of the last minute).
pub fn record_commit(events: u64) {
    tally().record(Instant::now(), events);
}

/// Commits seen by [`record_commit`].
#[derive(Debug)]
struct Tally {
    last_commit: Option<Instant>,
    /// Events per second of commit time, within the last [`RATE_WINDOW`].
    recent: VecDeque<(Instant, u64)>,
}

/// What [`Tally`] says at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    events_last_minute: u64,
    since_last_commit: Option<Duration>,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            last_commit: None,
            recent: VecDeque::new(),
        }
    }

    fn record(&mut self, now: Instant, events: u64) {
        self.last_commit = Some(now);
        match self.recent.back_mut() {
            // One entry per second at most: the queue stays small at any commit rate.
            Some((t, n)) if now.saturating_duration_since(*t) < Duration::from_secs(1) => {
                *n += events
            }
            _ if events > 0 => self.recent.push_back((now, events)),
            _ => {}
        }
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    fn activity(&mut self, now: Instant) -> Activity {
        self.prune(now);
        Activity {
            events_last_minute: self.recent.iter().map(|(_, n)| n).sum(),
            since_last_commit: self.last_commit.map(|t| now.saturating_duration_since(t)),
        }
    }
}

fn tally() -> MutexGuard<'static, Tally> {
    static TALLY: Mutex<Tally> = Mutex::new(Tally::new());
    TALLY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reports what the connector is doing. Cheap to clone; all clones report to the same line or
/// log.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
enum Output {
    /// Nothing is reported.
    Off,
    /// A line on stderr, a terminal.
    Terminal,
    /// Periodic log lines.
    Log {
        backfill_every: Duration,
        live_every: Duration,
        last: Option<Instant>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No update yet.
    Starting,
    Backfill,
    CaughtUp,
    /// [`Progress::finish`] was called; updates are ignored.
    Finished,
}

#[derive(Debug)]
struct Inner {
    output: Output,
    phase: Phase,
    /// The terminal line of the current phase.
    bar: Option<ProgressBar>,
    rate: Rate,
    status: Status,
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
    /// A reporter: a line on stderr when `enabled` (`ops.progress`) and stderr is a terminal,
    /// else log lines every [`LOG_INTERVAL`] (backfill) or [`LIVE_LOG_INTERVAL`] (caught up).
    pub fn new(enabled: bool) -> Progress {
        if enabled && std::io::stderr().is_terminal() {
            Progress::with_output(Output::Terminal)
        } else {
            Progress::with_output(Output::Log {
                backfill_every: LOG_INTERVAL,
                live_every: LIVE_LOG_INTERVAL,
                last: None,
            })
        }
    }

    /// A reporter that only writes log lines, at most once per `interval` (tests, embedding).
    pub fn logging(interval: Duration) -> Progress {
        Progress::with_output(Output::Log {
            backfill_every: interval,
            live_every: interval,
            last: None,
        })
    }

    /// A reporter that reports nothing.
    pub fn disabled() -> Progress {
        Progress::with_output(Output::Off)
    }

    fn with_output(output: Output) -> Progress {
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                output,
                phase: Phase::Starting,
                bar: None,
                rate: Rate::default(),
                status: Status::default(),
            })),
        }
    }

    /// Reports `status`: the backfill bar while behind, the caught-up line once caught up.
    /// Returns whether a log line was written (always false on a terminal). Ignored after
    /// [`Progress::finish`].
    pub fn update(&self, status: &Status) -> bool {
        let mut g = self.lock();
        if g.phase == Phase::Finished {
            return false;
        }
        let mut status = *status;
        status.done_secs = status.done_secs.min(status.total_secs);
        g.status = status;
        let next = if status.caught_up {
            Phase::CaughtUp
        } else {
            Phase::Backfill
        };
        let now = Instant::now();
        if g.phase != next {
            g.enter(next);
        }
        match next {
            Phase::Backfill => g.show_backfill(now),
            _ => g.show_caught_up(now),
        }
    }

    /// Ends the report (shutdown): the backfill bar stays where it stood, marked "stopped"; the
    /// caught-up line is left with "stopped". Idempotent.
    pub fn finish(&self) {
        let mut g = self.lock();
        if g.phase == Phase::Finished {
            return;
        }
        let from = std::mem::replace(&mut g.phase, Phase::Finished);
        let status = g.status;
        if let Some(bar) = g.bar.take() {
            *active_bar() = None;
            match from {
                Phase::Backfill => {
                    set_template(&bar, BAR_STOPPED_TEMPLATE);
                    bar.abandon_with_message(format!("{} customers", status.customers))
                }
                _ => {
                    bar.set_prefix("stopped");
                    bar.finish();
                }
            }
        }
        if from == Phase::Backfill && matches!(g.output, Output::Log { .. }) {
            tracing::info!(
                done_secs = status.done_secs,
                total_secs = status.total_secs,
                customers = status.customers,
                "Stopped before the backfill caught up."
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Leaves the current phase for `next` (Backfill or CaughtUp).
    fn enter(&mut self, next: Phase) {
        let from = std::mem::replace(&mut self.phase, next);
        let status = self.status;
        if let Some(bar) = self.bar.take() {
            *active_bar() = None;
            if from == Phase::Backfill {
                set_template(&bar, BAR_DONE_TEMPLATE);
                bar.finish_with_message(format!("{} customers", status.customers));
            } else {
                bar.finish_and_clear();
            }
        }
        self.rate = Rate::default();
        if let Output::Log { last, .. } = &mut self.output {
            // The first line of a phase is written at once.
            *last = None;
            match (from, next) {
                (Phase::Backfill, Phase::CaughtUp) => tracing::info!(
                    customers = status.customers,
                    "Backfill caught up; following new changes."
                ),
                (Phase::CaughtUp, Phase::Backfill) => tracing::info!(
                    watermark_lag_secs = status.watermark_lag.as_secs(),
                    "Fell behind by more than a forward window; backfilling."
                ),
                _ => {}
            }
        }
        if matches!(self.output, Output::Terminal) {
            let bar = match next {
                Phase::Backfill => backfill_bar(),
                _ => caught_up_line(),
            };
            *active_bar() = Some(bar.clone());
            self.bar = Some(bar);
        }
    }

    fn show_backfill(&mut self, now: Instant) -> bool {
        let Status {
            done_secs: done,
            total_secs: total,
            customers,
            ..
        } = self.status;
        let eta = self.rate.eta(now, done, total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{customers} customers"));
        }
        if !self.log_due(now) {
            return false;
        }
        tracing::info!(
            done_secs = done,
            total_secs = total,
            percent = percent(done, total),
            customers,
            eta_secs = eta.map(|d| d.as_secs()),
            "Backfill progress."
        );
        true
    }

    fn show_caught_up(&mut self, now: Instant) -> bool {
        let status = self.status;
        let activity = tally().activity(now);
        if let Some(bar) = &self.bar {
            bar.set_message(caught_up_details(&status, &activity));
        }
        if !self.log_due(now) {
            return false;
        }
        tracing::info!(
            events_last_minute = activity.events_last_minute,
            since_last_commit_secs = activity.since_last_commit.map(|d| d.as_secs()),
            watermark_lag_secs = status.watermark_lag.as_secs(),
            customers = status.customers,
            "Caught up."
        );
        true
    }

    /// Whether a log line is due now (and if so, records it as written).
    fn log_due(&mut self, now: Instant) -> bool {
        let caught_up = self.phase == Phase::CaughtUp;
        let Output::Log {
            backfill_every,
            live_every,
            last,
        } = &mut self.output
        else {
            return false;
        };
        let every = if caught_up {
            *live_every
        } else {
            *backfill_every
        };
        let due = last.is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            *last = Some(now);
        }
        due
    }
}

/// The caught-up line after "caught up · last commit …": what changes only at updates.
fn caught_up_details(status: &Status, activity: &Activity) -> String {
    format!(
        "{} events/min · watermark lag {} · {} customers",
        activity.events_last_minute,
        short(status.watermark_lag),
        status.customers
    )
}

/// "last commit 3s ago", computed at each draw so that it ticks between updates.
fn since_commit(activity: &Activity) -> String {
    match activity.since_last_commit {
        Some(d) => format!("last commit {} ago", short(d)),
        None => "no commit yet".to_string(),
    }
}

/// `42s`, `3m07s`, `5h02m`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The bar currently drawn on the terminal, if any; the log writer hides it while writing.
fn active_bar() -> MutexGuard<'static, Option<ProgressBar>> {
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

fn backfill_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    match ProgressStyle::with_template(BAR_TEMPLATE) {
        Ok(style) => bar.set_style(style.progress_chars("=> ")),
        Err(e) => tracing::debug!(error = %e, "Progress bar template rejected; using the default."),
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The caught-up status line: redrawn every second so that "last commit … ago" ticks.
fn caught_up_line() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let since = |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let activity = tally().activity(Instant::now());
        let _ = w.write_str(&since_commit(&activity));
    };
    match ProgressStyle::with_template(LIVE_TEMPLATE) {
        Ok(style) => bar.set_style(style.with_key("since_commit", since)),
        Err(e) => tracing::debug!(error = %e, "Status line template rejected; using the default."),
    }
    bar.set_prefix("caught up");
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

/// Restyles a finished bar (the templates are constants; a rejected one keeps the old style).
fn set_template(bar: &ProgressBar, template: &str) {
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
