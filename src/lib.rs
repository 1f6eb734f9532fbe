//! # tanma-connector
//!
//! Turns Tanma SCRM's polled customer API into an exactly-once Avro change stream in Kafka.
//!
//! ```text
//! planner ──windows──▶ fetchers (N, rate-limited) ──window results, in plan order──▶ applier
//!                                                                                   │
//!       state store ◀── apply after commit ── publisher ◀── unit of work ◀── diff ◀─┘
//!                                               (one Kafka transaction:
//!                                                events + state records + checkpoint)
//! ```
//!
//! * [`upstream`]: signing, the HTTP client, reading every page of one window.
//! * [`plan`]: which windows to read next (forward, lookback, re-scans), and the checkpoint.
//! * [`customer`]: the customer model, its canonical form and fingerprint, and the diff.
//! * [`state`]: what the connector believes each customer looks like, restored from the
//!   compacted state topic.
//! * [`encode`]: Avro encoding of events and snapshots, schema-registry framing.
//! * [`publish`]: the transactional producer and topic management.
//! * [`pipeline`]: the loop that ties the stages together.
//! * [`ops`]: metrics, health, logging, shutdown.
//! * [`backoff`]: exponential backoff with jitter, for every retry loop.
//! * [`sim`]: a faithful simulator of the Tanma API, for tests, the demo and benchmarks.
//!
//! The guarantee: events, state records and the checkpoint of one unit of work are committed in
//! one Kafka transaction, so a crash, a restart or a fenced zombie never loses or duplicates an
//! event. `docs/DESIGN.md` carries the argument.

#![warn(missing_docs)]

pub mod backoff;
pub mod commands;
pub mod config;
pub mod customer;
pub mod encode;
pub mod error;
pub mod ops;
pub mod pipeline;
pub mod plan;
pub mod publish;
pub mod sim;
pub mod state;
pub mod upstream;
