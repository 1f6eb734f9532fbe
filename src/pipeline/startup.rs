//! The start-up sequence. Its order is part of the delivery guarantee:
//!
//! 1. topics exist with the right configs (state and checkpoint compacted);
//! 2. schemas registered (an incompatible schema stops the start);
//! 3. `init_transactions`: fences any older instance with the same `transactional.id` and aborts
//!    its open transaction, so that nothing it wrote can still commit;
//! 4. the checkpoint is read, read_committed, to the end of its topic;
//! 5. the state store is restored from the state topic, read_committed, to the end.
//!
//! After 3, the committed content of the topics can only change through us; 4 and 5 therefore
//! see the same, last committed, transaction.

use std::time::{Duration, Instant};

use tracing::info;

use crate::config::Config;
use crate::encode::{Codec, Framing};
use crate::ops::Health;
use crate::plan::{Checkpoint, Planner};
use crate::publish::{client_config, ensure_topics, read_latest, TransactionalProducer};
use crate::state::{restore, StateStore};
use crate::upstream::client::ApiClient;
use crate::upstream::window_reader::WindowReader;

use super::{Connector, PipelineError};

/// Runs the start-up sequence and returns a connector ready to poll.
pub async fn build(cfg: Config, health: Health) -> Result<Connector, PipelineError> {
    let t0 = Instant::now();
    health.set_ready(false, "verifying topics");
    ensure_topics(&cfg.kafka, &cfg.topics).await?;

    health.set_ready(false, "registering schemas");
    let framing = match &cfg.schema_registry.url {
        Some(_) => {
            crate::encode::register_schemas(
                &cfg.schema_registry,
                &cfg.topics.events,
                &cfg.topics.state,
            )
            .await?
        }
        None => Framing::SingleObject,
    };
    let codec = Codec::new(framing)?;

    health.set_ready(false, "initialising the transactional producer");
    let producer = TransactionalProducer::new(&cfg.kafka).await?;

    health.set_ready(false, "reading the checkpoint");
    let timeout = Duration::from_millis(cfg.state.restore_timeout_ms);
    let checkpoint = match read_latest(
        &cfg.kafka,
        &cfg.topics.checkpoint,
        &cfg.kafka.transactional_id,
        timeout,
    )
    .await?
    {
        Some(bytes) => Some(Checkpoint::from_bytes(&bytes)?),
        None => None,
    };
    match &checkpoint {
        Some(c) => info!(watermark = %c.watermark, "Resuming from the last committed checkpoint."),
        None => {
            info!(start = %cfg.windows.start_time, "No checkpoint: starting from windows.start_time.")
        }
    }

    health.set_ready(false, "restoring state");
    let mut store = StateStore::open(&cfg.state.dir)?;
    let stats = restore(
        client_config(&cfg.kafka),
        &cfg.topics.state,
        &mut store,
        timeout,
        |done, total| {
            tracing::debug!(done, total, "Restoring state.");
        },
    )
    .await?;
    metrics::gauge!("tanma_state_restore_duration_seconds").set(stats.elapsed.as_secs_f64());
    metrics::gauge!("tanma_customers_tracked").set(store.customers() as f64);
    info!(
        records = stats.records,
        customers = stats.customers,
        secs = stats.elapsed.as_secs_f64(),
        "State restored."
    );

    let client = ApiClient::new(&cfg.api)?;
    let reader = WindowReader::new(client, &cfg.api);
    let planner = Planner::new(&cfg.windows, checkpoint)?;
    health.set_ready(true, "running");
    info!(
        startup_ms = t0.elapsed().as_millis() as u64,
        "Connector started."
    );
    Ok(Connector {
        cfg,
        reader,
        planner,
        store,
        producer,
        codec,
        health,
    })
}
