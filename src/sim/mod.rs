//! A faithful simulator of the Tanma API, for tests, the demo and benchmarks.
//!
//! ```text
//!  client ──POST /api/v2/customer/qw-list-by-create-time──▶ app (rate limit, faults, sign,
//!                                                            skew, params, page)
//!                                                              │ read lock
//!  /_sim/ control & truth ◀──────────────▶ World { Dataset, mutation log } ◀── mutation task
//!                                                              │ write lock
//! ```
//!
//! * [`dataset`]: compact relation records (ids only) and an index sorted by `(addTime,
//!   externalUserId, qwUserId)`; window lookups are two binary searches.
//! * [`content`]: rows rendered on the fly from `(seed, customer, staff, version)`.
//! * [`mutations`]: new / late / changed / removed relations and the mutation log.
//! * [`faults`]: HTTP 5xx, slow answers, malformed bodies, business codes, rate limit, paging
//!   drift, an unstable order of rows that share an add time (as SQL paging with ties gives).
//! * Bulk imports ([`BulkImports`]): seconds holding thousands of relations.
//! * [`control`]: [`SimControl`] and the `/_sim/` HTTP API.
//!
//! The same seed and configuration always give the same dataset; mutation choices are also
//! seeded, so the same sequence of mutation requests gives the same changes.

mod app;
mod cli;
mod config;
mod content;
mod control;
mod dataset;
mod faults;
mod handle;
mod mutations;
mod pools;
mod state;

pub use app::{CODE_BAD_PARAM, CODE_BAD_SIGNATURE, CODE_CLOCK_SKEW};
pub use cli::{run, SimArgs};
pub use config::{BulkImports, MutationRates, SimConfig, SimError};
pub use control::{SimControl, TruthRow};
pub use faults::{bad_row_kind, BadRowKind, FaultConfig};
pub use handle::SimHandle;
pub use mutations::{ApplyError, ApplyRequest, MutationCause, MutationKind, MutationRecord};
pub use state::SimStats;
