//! Reads every page of one `[since, before)` window and checks that the pages agree.
//!
//! # Drift
//! The endpoint pages by page number over a live data set, so rows added or removed while a
//! window is being read shift the pages: a row may be skipped or seen twice. A pass over the
//! window has *drifted* when any of these is seen:
//!
//! * `totalCount` differs between pages;
//! * the same `(externalUserId, qwUserId)` comes back twice;
//! * a page before the last one is empty, or a page past `totalPage` has rows;
//! * at the end, the rows received (distinct relations plus rejected rows) differ from
//!   `totalCount`.
//!
//! A drifted window is read again from page 1, up to `api.max_drift_rereads` times
//! (`tanma_window_drift_rereads_total`). A clean pass is returned as it is. If the last pass
//! still drifts, the result is the union of every row seen across the passes, the latest content
//! winning, with [`WindowRead::drifted`] set: never fewer rows than were seen.
//!
//! # Requests
//! Pages are requested one after the other, and reading stops at the last page
//! (`pageNo >= totalPage`) without asking for the empty page past the end: a clean window costs
//! `ceil(totalCount / pageSize)` requests, and one request when it is empty.

use std::collections::{BTreeMap, HashMap};

use tracing::{debug, warn};

use crate::config::ApiConfig;
use crate::customer::canonical::relation_key_hash;
use crate::customer::Relation;
use crate::plan::Window;
use crate::upstream::api_error::ApiError;
use crate::upstream::client::ApiClient;
use crate::upstream::parse::{RelationPage, RowResult};
use crate::upstream::timefmt::list_request;

/// Reads whole windows through a shared [`ApiClient`].
#[derive(Debug, Clone)]
pub struct WindowReader {
    client: ApiClient,
    page_size: u32,
    max_drift_rereads: u32,
}

/// What reading a window came to.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutcome {
    /// Every page was read.
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
    /// `totalCount` of the last pass's first page.
    pub total_count: u64,
    /// Valid relations in canonical form (as [`Relation::from_row`] makes them), sorted by
    /// (externalUserId, qwUserId), each relation once.
    pub relations: Vec<(String, Relation)>,
    /// Rows that failed `Relation::from_row`: raw JSON of the row + the error text.
    pub rejected: Vec<RejectedRow>,
    /// Page requests made (`list_page` calls, all passes; HTTP retries inside a call not counted).
    pub requests: u32,
    /// Times the window was read again because its pages drifted.
    pub drift_rereads: u32,
    /// True if drift was still seen after `max_drift_rereads` re-reads (result is best effort:
    /// the union of everything seen).
    pub drifted: bool,
}

/// A row that could not be turned into a relation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedRow {
    /// The row as JSON (re-serialized from the parsed row).
    pub raw_json: String,
    /// Why it was rejected, naming the page and field.
    pub error: String,
}

type Key = (String, String);

/// One pass over a window.
#[derive(Default)]
struct Pass {
    total_count: u64,
    /// Relations in arrival order (sorted when the pass is returned).
    rows: Vec<(String, Relation)>,
    /// Position in `rows` by relation key hash, to spot a relation that comes back twice.
    seen: HashMap<u64, usize>,
    rejected: Vec<RejectedRow>,
    /// Why the pass drifted: the first sign seen.
    drift: Option<String>,
}

impl Pass {
    fn drifted(&mut self, why: impl FnOnce() -> String) {
        if self.drift.is_none() {
            self.drift = Some(why());
        }
    }

    /// Takes the rows of page `page_no`.
    fn absorb(&mut self, page_no: u32, rows: Vec<RowResult>) {
        for row in rows {
            match row {
                RowResult::Relation(ext, relation) => {
                    let hash = relation_key_hash(&ext, &relation.qw_user_id);
                    let again = self.seen.get(&hash).copied().filter(|&at| {
                        let (e, r) = &self.rows[at];
                        *e == ext && r.qw_user_id == relation.qw_user_id
                    });
                    match again {
                        // The later copy wins, as a map insert would.
                        Some(at) => {
                            self.rows[at].1 = relation;
                            self.drifted(|| format!("a relation came back twice (page {page_no})"));
                        }
                        None => {
                            self.seen.entry(hash).or_insert(self.rows.len());
                            self.rows.push((ext, relation));
                        }
                    }
                }
                RowResult::Rejected { raw_json, error } => self.rejected.push(RejectedRow {
                    raw_json,
                    error: format!("page {page_no}: {error}"),
                }),
            }
        }
    }

    /// The relations sorted by (externalUserId, qwUserId).
    fn into_sorted(mut self) -> Vec<(String, Relation)> {
        self.rows
            .sort_unstable_by(|x, y| (&x.0, &x.1.qw_user_id).cmp(&(&y.0, &y.1.qw_user_id)));
        self.rows
    }
}

enum PassOutcome {
    Done(Pass),
    TooLarge(u64),
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

/// How often a window whose pages keep drifting is halved (at most 2^3 = 8 parts) before the
/// reader settles for the union of the rows it saw.
const MAX_DRIFT_SPLIT_DEPTH: u32 = 3;

impl WindowReader {
    /// A reader using `api.page_size` and `api.max_drift_rereads`; the time zone is the client's.
    pub fn new(client: ApiClient, cfg: &ApiConfig) -> Self {
        WindowReader {
            client,
            page_size: cfg.page_size.max(1),
            max_drift_rereads: cfg.max_drift_rereads,
        }
    }

    /// The client this reader uses.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Reads every page of `window`. If the first page's totalCount exceeds `split_threshold`
    /// and the window is wider than one second, returns TooLarge without reading further.
    pub async fn read(
        &self,
        window: Window,
        split_threshold: u64,
    ) -> Result<WindowOutcome, ApiError> {
        self.read_at_depth(window, split_threshold, 0).await
    }

    /// [`WindowReader::read`]; `depth` counts how often a drifting window has been halved.
    async fn read_at_depth(
        &self,
        window: Window,
        split_threshold: u64,
        depth: u32,
    ) -> Result<WindowOutcome, ApiError> {
        let mut requests = 0u32;
        let mut drift_rereads = 0u32;
        let mut union: BTreeMap<Key, Relation> = BTreeMap::new();
        let mut union_rejected: Vec<RejectedRow> = Vec::new();
        loop {
            let mut pass = match self
                .read_pass(window, split_threshold, &mut requests)
                .await?
            {
                PassOutcome::Done(pass) => pass,
                PassOutcome::TooLarge(total_count) => {
                    debug!(%window, total_count, split_threshold, "Window too large; to be split.");
                    return Ok(WindowOutcome::TooLarge {
                        window,
                        total_count,
                    });
                }
            };
            let Some(why) = pass.drift.take() else {
                let (total_count, rejected) =
                    (pass.total_count, std::mem::take(&mut pass.rejected));
                return Ok(WindowOutcome::Complete(WindowRead {
                    window,
                    total_count,
                    relations: pass.into_sorted(),
                    rejected,
                    requests,
                    drift_rereads,
                    drifted: false,
                }));
            };
            for (ext, r) in std::mem::take(&mut pass.rows) {
                union.insert((ext, r.qw_user_id.clone()), r);
            }
            union_rejected.append(&mut pass.rejected);
            if drift_rereads >= self.max_drift_rereads {
                // Fewer pages drift less: read the two halves, each with its own re-read budget.
                let halves = window.split().filter(|_| depth < MAX_DRIFT_SPLIT_DEPTH);
                if let Some((a, b)) = halves {
                    warn!(%window, drift_rereads, reason = %why, "Window pages still drift after every re-read; reading it in two halves.");
                    return self
                        .read_halves(window, (a, b), depth + 1, requests, drift_rereads)
                        .await;
                }
                union_rejected.sort();
                union_rejected.dedup();
                warn!(%window, drift_rereads, reason = %why, relations = union.len(), "Window pages still drift after every re-read; keeping the union of all rows seen.");
                return Ok(WindowOutcome::Complete(WindowRead {
                    window,
                    total_count: pass.total_count,
                    relations: union.into_iter().map(|((ext, _), r)| (ext, r)).collect(),
                    rejected: union_rejected,
                    requests,
                    drift_rereads,
                    drifted: true,
                }));
            }
            drift_rereads += 1;
            metrics::counter!("tanma_window_drift_rereads_total").increment(1);
            warn!(%window, reread = drift_rereads, reason = %why, "Window pages drifted while being read; reading it again.");
        }
    }

    /// Reads the halves `a` and `b` of `window` (disjoint, so every relation is in exactly one)
    /// and merges them.
    async fn read_halves(
        &self,
        window: Window,
        (a, b): (Window, Window),
        depth: u32,
        requests: u32,
        drift_rereads: u32,
    ) -> Result<WindowOutcome, ApiError> {
        let mut merged = WindowRead {
            window,
            total_count: 0,
            relations: Vec::new(),
            rejected: Vec::new(),
            requests,
            drift_rereads,
            drifted: false,
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
            merged.drift_rereads = merged.drift_rereads.saturating_add(read.drift_rereads);
            merged.drifted |= read.drifted;
        }
        merged
            .relations
            .sort_by(|x, y| (&x.0, &x.1.qw_user_id).cmp(&(&y.0, &y.1.qw_user_id)));
        Ok(WindowOutcome::Complete(merged))
    }

    /// One pass over every page of `window`.
    async fn read_pass(
        &self,
        window: Window,
        split_threshold: u64,
        requests: &mut u32,
    ) -> Result<PassOutcome, ApiError> {
        let tz = self.client.time_zone();
        let first = self
            .client
            .list_relations(&list_request(&window, tz, self.page_size, 1))
            .await?;
        *requests = requests.saturating_add(1);
        let total = first.total_count.unwrap_or(0);
        if total > split_threshold && window.secs() > 1 {
            return Ok(PassOutcome::TooLarge(total));
        }
        let mut pass = Pass {
            total_count: total,
            ..Pass::default()
        };
        let mut last = last_page(&first, total, self.page_size);
        pass.absorb(1, first.rows);
        let mut page_no = 1u32;
        while page_no < last {
            page_no += 1;
            let mut page = self
                .client
                .list_relations(&list_request(&window, tz, self.page_size, page_no))
                .await?;
            *requests = requests.saturating_add(1);
            let rows = std::mem::take(&mut page.rows);
            if page.total_count != Some(total) {
                let now = page.total_count.unwrap_or(0);
                pass.drifted(|| {
                    format!("totalCount changed from {total} to {now} (page {page_no})")
                });
                last = last.max(last_page(&page, now, self.page_size));
            }
            let page_last = last_page(&page, page.total_count.unwrap_or(0), self.page_size);
            if page_no > page_last && !rows.is_empty() {
                pass.drifted(|| {
                    format!("page {page_no} is past totalPage {page_last} but has rows")
                });
            }
            if rows.is_empty() && page_no < last {
                pass.drifted(|| format!("page {page_no} is empty before the last page {last}"));
                break;
            }
            pass.absorb(page_no, rows);
        }
        let received = (pass.rows.len() + pass.rejected.len()) as u64;
        if received != total {
            pass.drifted(|| format!("{received} rows received for totalCount {total}"));
        }
        Ok(PassOutcome::Done(pass))
    }
}
