//! Reads every page of one `[since, before)` window and checks that the pages agree.
//!
//! # Drift and unstable order
//! The endpoint pages by page number over a live data set, so rows added or removed while a
//! window is being read shift the pages: a row may be skipped or seen twice. Rows that share an
//! add time (a bulk import puts thousands in one second) may also come back in a different order
//! on every request, as SQL `ORDER BY addTime LIMIT/OFFSET` does with ties, so page N of one
//! request and page N+1 of the next overlap or leave gaps. A pass over the window has *drifted*
//! when any of these is seen:
//!
//! * `totalCount` differs between pages;
//! * the same `(externalUserId, qwUserId)` comes back twice;
//! * a page before the last one is empty, or a page past `totalPage` has rows;
//! * at the end, the rows received (distinct relations plus rejected rows) differ from
//!   `totalCount`.
//!
//! # Complete reads
//! A read is **complete** when the distinct relations plus rejected rows it saw equal
//! `totalCount`, and `totalCount` did not change while they were seen (see [`super::seen`]: a
//! page with another total starts the count again). Two ways get there: a pass whose pages
//! agree (the usual case, `ceil(totalCount / page_size)` requests), or the union of several
//! passes, which is how a window of tied rows in an unstable order is read whole. The reader
//! stops as soon as the union is complete, even in the middle of a pass.
//!
//! A drifted window is read again from page 1 (`tanma_window_drift_rereads_total`). After
//! `api.max_drift_rereads` re-reads a window that can be halved (wider than one second, halved
//! at most three times) is read as two halves, each on its own. A window that cannot be halved
//! is read again until it is complete, up to `api.max_read_passes` passes in all. If it is still
//! incomplete then, the result is the union of every row seen, the latest content winning, with
//! [`WindowRead::complete`] false: never fewer rows than were seen, and the planner reads the
//! window again soon. Page requests beyond each read's first pass are counted in
//! `tanma_window_reread_requests_total`, incomplete reads in `tanma_window_incomplete_reads_total`.
//!
//! # Requests
//! Pages are requested one after the other, and reading stops at the last page
//! (`pageNo >= totalPage`) without asking for the empty page past the end: a clean window costs
//! `ceil(totalCount / pageSize)` requests, and one request when it is empty.

use tracing::debug;

use crate::config::ApiConfig;
use crate::customer::Relation;
use crate::ops::metrics::names;
use crate::plan::{ReadSummary, Window};
use crate::upstream::api_error::ApiError;
use crate::upstream::client::ApiClient;
use crate::upstream::parse::{RelationPage, RowResult};
use crate::upstream::seen::{Seen, Which};
use crate::upstream::timefmt::list_request;

/// Reads whole windows through a shared [`ApiClient`].
#[derive(Debug, Clone)]
pub struct WindowReader {
    client: ApiClient,
    page_size: u32,
    max_drift_rereads: u32,
    max_read_passes: u32,
}

/// What reading a window came to.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutcome {
    /// Every page was read (see [`WindowRead::complete`] for whether every row was seen).
    Complete(WindowRead),
    /// The first page's `totalCount` exceeded the split threshold; nothing further was read.
    TooLarge {
        /// The window.
        window: Window,
        /// `totalCount` of its first page.
        total_count: u64,
    },
}

/// Every relation of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRead {
    /// The window.
    pub window: Window,
    /// `totalCount` the read ended with (of a read in halves: their sum).
    pub total_count: u64,
    /// Valid relations in canonical form (as [`Relation::from_row`] makes them), sorted by
    /// (externalUserId, qwUserId), each relation once.
    pub relations: Vec<(String, Relation)>,
    /// Rows that failed `Relation::from_row`: raw JSON of the row + the error text.
    pub rejected: Vec<RejectedRow>,
    /// Page requests made (`list_page` calls, all passes; HTTP retries inside a call not counted).
    pub requests: u32,
    /// Of `requests`, those made after the first pass: what drift and unstable order cost.
    pub reread_requests: u32,
    /// Pages the window's rows fill: `ceil(total_count / page_size)` (0 when empty). A clean
    /// read costs this many requests (one when empty).
    pub pages: u32,
    /// Times the window was read again because its pages drifted.
    pub drift_rereads: u32,
    /// True when every row of the window was seen: the distinct relations plus rejected rows
    /// equal `totalCount`, and `totalCount` did not change while they were seen (of a read in
    /// halves: every half complete). False after `api.max_read_passes` passes without that; the
    /// result is then the union of everything seen, and a relation missing from it may still
    /// exist.
    pub complete: bool,
}

impl WindowRead {
    /// What the planner needs to know about this read.
    pub fn summary(&self) -> ReadSummary {
        ReadSummary {
            total_count: self.total_count,
            complete: self.complete,
            requests: self.requests,
            reread_requests: self.reread_requests,
            pages: self.pages,
        }
    }
}

/// A row that could not be turned into a relation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedRow {
    /// The row as JSON (re-serialized from the parsed row).
    pub raw_json: String,
    /// Why it was rejected, naming the page and field.
    pub error: String,
}

/// The checks of one pass.
struct Pass {
    /// `totalCount` of its first page.
    total: u64,
    /// Rows received: distinct relations plus rejected rows.
    received: u64,
    /// Why the pass drifted: the first sign seen.
    drift: Option<String>,
}

impl Pass {
    fn drifted(&mut self, why: impl FnOnce() -> String) {
        if self.drift.is_none() {
            self.drift = Some(why());
        }
    }

    /// Takes the rows of page `page_no` into the pass's checks and into `seen`.
    fn absorb(&mut self, seen: &mut Seen, page_no: u32, rows: Vec<RowResult>) {
        for row in rows {
            match row {
                RowResult::Relation(ext, relation) => {
                    if seen.relation(ext, relation) {
                        self.drifted(|| format!("a relation came back twice (page {page_no})"));
                    } else {
                        self.received += 1;
                    }
                }
                RowResult::Rejected { raw_json, error } => {
                    self.received += 1;
                    seen.rejected(RejectedRow {
                        raw_json,
                        error: format!("page {page_no}: {error}"),
                    });
                }
            }
        }
    }
}

/// How a pass ended.
enum PassEnd {
    /// The first page's `totalCount` exceeded the threshold.
    TooLarge(u64),
    /// Every page agreed: the pass alone is complete.
    Clean,
    /// The union of the passes so far is complete (the pass may have stopped early).
    UnionComplete,
    /// The pages disagreed, and the union is not complete yet.
    Drifted(String),
}

/// The last page number of the window according to `page`.
fn last_page(page: &RelationPage, total_count: u64, requested_page_size: u32) -> u32 {
    let size = u64::from(
        page.page_size
            .filter(|s| *s > 0)
            .unwrap_or(requested_page_size)
            .max(1),
    );
    let computed = u32::try_from(total_count.div_ceil(size)).unwrap_or(u32::MAX);
    page.total_page.unwrap_or(0).max(computed)
}

/// How often a window whose pages keep drifting is halved (at most 2^3 = 8 parts) before it is
/// read as it is until complete.
const MAX_DRIFT_SPLIT_DEPTH: u32 = 3;

impl WindowReader {
    /// A reader using `api.page_size`, `api.max_drift_rereads` and `api.max_read_passes`; the
    /// time zone is the client's.
    pub fn new(client: ApiClient, cfg: &ApiConfig) -> Self {
        WindowReader {
            client,
            page_size: cfg.page_size.max(1),
            max_drift_rereads: cfg.max_drift_rereads,
            max_read_passes: cfg.max_read_passes.max(1),
        }
    }

    /// The client this reader uses.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Reads every page of `window`. If the first page's totalCount exceeds `split_threshold`
    /// and the window is wider than one second, returns TooLarge without reading further. A
    /// one-second window is read whole, however many rows it holds.
    pub async fn read(
        &self,
        window: Window,
        split_threshold: u64,
    ) -> Result<WindowOutcome, ApiError> {
        let outcome = self.read_at_depth(window, split_threshold, 0).await?;
        if let WindowOutcome::Complete(r) = &outcome {
            metrics::counter!(names::WINDOW_REREAD_REQUESTS_TOTAL)
                .increment(u64::from(r.reread_requests));
            if !r.complete {
                metrics::counter!(names::WINDOW_INCOMPLETE_READS_TOTAL).increment(1);
            }
            if r.reread_requests > 0 {
                debug!(%window, complete = r.complete, total_count = r.total_count,
                    relations = r.relations.len(), requests = r.requests,
                    reread_requests = r.reread_requests, "Window read again until its pages agreed.");
            }
        }
        Ok(outcome)
    }

    /// [`WindowReader::read`]; `depth` counts how often a drifting window has been halved.
    async fn read_at_depth(
        &self,
        window: Window,
        split_threshold: u64,
        depth: u32,
    ) -> Result<WindowOutcome, ApiError> {
        let mut seen = Seen::default();
        let mut requests = 0u32;
        let mut first_pass = None::<u32>;
        let mut passes = 0u32;
        loop {
            let end = self
                .read_pass(window, split_threshold, &mut requests, &mut seen)
                .await?;
            passes += 1;
            let first = *first_pass.get_or_insert(requests);
            let which = match end {
                PassEnd::TooLarge(total_count) => {
                    debug!(%window, total_count, split_threshold, "Window too large; to be split.");
                    return Ok(WindowOutcome::TooLarge {
                        window,
                        total_count,
                    });
                }
                PassEnd::Clean => Some(Which::Pass),
                PassEnd::UnionComplete => Some(Which::Epoch),
                PassEnd::Drifted(why) => {
                    let halves = window.split().filter(|_| depth < MAX_DRIFT_SPLIT_DEPTH);
                    if let Some(halves) = halves.filter(|_| passes > self.max_drift_rereads) {
                        // Fewer pages drift less: read the two halves, each on its own.
                        debug!(%window, passes, reason = %why, "Window pages still drift; reading it in two halves.");
                        let parent = (requests, requests - first, passes - 1);
                        return self.read_halves(window, halves, depth + 1, parent).await;
                    }
                    if passes >= self.max_read_passes {
                        debug!(%window, passes, reason = %why, relations = seen.relations(),
                            total_count = seen.total(), "Window still incomplete after every pass; keeping the union of all rows seen.");
                        None
                    } else {
                        metrics::counter!(names::WINDOW_DRIFT_REREADS_TOTAL).increment(1);
                        debug!(%window, pass = passes, reason = %why, "Window pages drifted while being read; reading it again.");
                        continue;
                    }
                }
            };
            let total_count = seen.total();
            let (relations, rejected) = seen.take(which.unwrap_or(Which::All));
            return Ok(WindowOutcome::Complete(WindowRead {
                window,
                total_count,
                relations,
                rejected,
                requests,
                reread_requests: requests - first,
                pages: self.pages(total_count),
                drift_rereads: passes - 1,
                complete: which.is_some(),
            }));
        }
    }

    /// `ceil(total / page_size)`.
    fn pages(&self, total: u64) -> u32 {
        u32::try_from(total.div_ceil(u64::from(self.page_size))).unwrap_or(u32::MAX)
    }

    /// Reads the halves `a` and `b` of `window` (disjoint, so every relation is in exactly one)
    /// and merges them. `parent` is what reading the whole window cost before: (requests,
    /// re-read requests, drift re-reads).
    async fn read_halves(
        &self,
        window: Window,
        (a, b): (Window, Window),
        depth: u32,
        (requests, reread_requests, drift_rereads): (u32, u32, u32),
    ) -> Result<WindowOutcome, ApiError> {
        let mut merged = WindowRead {
            window,
            total_count: 0,
            relations: Vec::new(),
            rejected: Vec::new(),
            requests,
            reread_requests,
            pages: 0,
            drift_rereads,
            complete: true,
        };
        for half in [a, b] {
            // With no threshold a read always completes; pass anything else through unchanged.
            let read = match Box::pin(self.read_at_depth(half, u64::MAX, depth)).await? {
                WindowOutcome::Complete(read) => read,
                too_large @ WindowOutcome::TooLarge { .. } => return Ok(too_large),
            };
            merged.total_count += read.total_count;
            merged.relations.extend(read.relations);
            merged.rejected.extend(read.rejected);
            merged.requests = merged.requests.saturating_add(read.requests);
            // Every request of a half re-reads the window.
            merged.reread_requests = merged.reread_requests.saturating_add(read.requests);
            merged.drift_rereads = merged.drift_rereads.saturating_add(read.drift_rereads);
            merged.complete &= read.complete;
        }
        merged.pages = self.pages(merged.total_count);
        merged
            .relations
            .sort_by(|x, y| (&x.0, &x.1.qw_user_id).cmp(&(&y.0, &y.1.qw_user_id)));
        merged.rejected.sort();
        Ok(WindowOutcome::Complete(merged))
    }

    /// One pass over the pages of `window`, every row going into `seen`. Stops early when the
    /// union in `seen` is complete.
    async fn read_pass(
        &self,
        window: Window,
        split_threshold: u64,
        requests: &mut u32,
        seen: &mut Seen,
    ) -> Result<PassEnd, ApiError> {
        let tz = self.client.time_zone();
        let first = self
            .client
            .list_relations(&list_request(&window, tz, self.page_size, 1))
            .await?;
        *requests = requests.saturating_add(1);
        let total = first.total_count.unwrap_or(0);
        if total > split_threshold && window.secs() > 1 {
            return Ok(PassEnd::TooLarge(total));
        }
        seen.start_pass();
        seen.page_total(total);
        let mut pass = Pass {
            total,
            received: 0,
            drift: None,
        };
        let mut last = last_page(&first, total, self.page_size);
        pass.absorb(seen, 1, first.rows);
        let mut page_no = 1u32;
        while page_no < last {
            if seen.complete() {
                return Ok(PassEnd::UnionComplete);
            }
            page_no += 1;
            let mut page = self
                .client
                .list_relations(&list_request(&window, tz, self.page_size, page_no))
                .await?;
            *requests = requests.saturating_add(1);
            let rows = std::mem::take(&mut page.rows);
            let now = page.total_count.unwrap_or(0);
            seen.page_total(now);
            if now != total {
                pass.drifted(|| {
                    format!("totalCount changed from {total} to {now} (page {page_no})")
                });
                last = last.max(last_page(&page, now, self.page_size));
            }
            let page_last = last_page(&page, now, self.page_size);
            if page_no > page_last && !rows.is_empty() {
                pass.drifted(|| {
                    format!("page {page_no} is past totalPage {page_last} but has rows")
                });
            }
            if rows.is_empty() && page_no < last {
                pass.drifted(|| format!("page {page_no} is empty before the last page {last}"));
                break;
            }
            pass.absorb(seen, page_no, rows);
        }
        if pass.received != pass.total {
            let received = pass.received;
            pass.drifted(|| format!("{received} rows received for totalCount {total}"));
        }
        Ok(match pass.drift {
            None => PassEnd::Clean,
            Some(_) if seen.complete() => PassEnd::UnionComplete,
            Some(why) => PassEnd::Drifted(why),
        })
    }
}
