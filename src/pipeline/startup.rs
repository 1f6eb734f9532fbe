//! The start-up sequence. Its order is part of the delivery guarantee:
//!
//! 1. topics exist with the right configs (state and checkpoint compacted);
//! 2. schemas registered (an incompatible schema stops the start);
//! 3. the log is fenced (Kafka: `init_transactions` fences any older instance with the same
//!    `transactional.id` and aborts its open transaction, so that nothing it wrote can still
//!    commit);
//! 4. the checkpoint is read, read_committed, to the end of its topic;
//! 5. the state store is restored from the state topic, read_committed, to the end.
//!
//! After 3, the committed content of the topics can only change through us; 4 and 5 therefore
//! see the same, last committed, transaction.
//!
//! Steps 3–5 are [`Connector::recover`], which the main loop also runs when a unit failed after
//! its commit (or with an unknown outcome): recovering in-process is exactly a restart.

use std::time::Instant;

use tracing::info;

use crate::config::Config;
use crate::encode::{Codec, Framing};
use crate::ops::Health;
use crate::plan::{Checkpoint, Planner};
use crate::publish::ensure_topics;
use crate::state::StateStore;
use crate::upstream::client::ApiClient;
use crate::upstream::window_reader::WindowReader;

use super::deletions::Deletions;
use super::ports::{KafkaLog, TransactionalLog, WindowSource};
use super::{Connector, PipelineError};

/// Runs the start-up sequence against Kafka and the API and returns a connector ready to poll.
pub async fn build(cfg: Config, health: Health) -> Result<Connector, PipelineError> {
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
    let reader = WindowReader::new(ApiClient::new(&cfg.api)?, &cfg.api);
    let log = KafkaLog::new(&cfg);
    Connector::start(cfg, reader, log, codec, health).await
}

impl<S: WindowSource, L: TransactionalLog> Connector<S, L> {
    /// Steps 3–5 of the start-up sequence over any source and log: fence, read the
    /// checkpoint, restore the state. The connector is then ready to [`Connector::run`].
    pub async fn start(
        cfg: Config,
        source: S,
        log: L,
        codec: Codec,
        health: Health,
    ) -> Result<Self, PipelineError> {
        let t0 = Instant::now();
        let store = StateStore::open(&cfg.state.dir)?;
        let planner = Planner::new(&cfg.windows, None)?;
        let cfg_windows = cfg.windows.clone();
        let mut connector = Connector {
            cfg,
            source,
            planner,
            store,
            log,
            codec,
            health,
            faults: None,
            dead_letters: Default::default(),
            deletions: Deletions::new(&cfg_windows),
        };
        connector.recover().await?;
        info!(
            startup_ms = t0.elapsed().as_millis() as u64,
            "Connector started."
        );
        Ok(connector)
    }

    /// Makes the local state equal to what the log holds, as a restart does: fences the log
    /// (resolving any transaction in doubt), reads the last committed checkpoint into a new
    /// planner and restores the state store from the state records. Until it returns, the
    /// connector is not ready.
    pub async fn recover(&mut self) -> Result<(), PipelineError> {
        self.health
            .set_ready(false, "fencing older writers (init_transactions)");
        self.log.fence().await?;

        self.health.set_ready(false, "reading the dead letters");
        let dead_letters = self.log.read_dead_letters().await?;
        self.dead_letters.extend(dead_letters);

        self.health.set_ready(false, "reading the checkpoint");
        let checkpoint = match self.log.read_checkpoint().await? {
            Some(bytes) => Some(Checkpoint::from_bytes(&bytes)?),
            None => None,
        };
        match &checkpoint {
            Some(c) => {
                info!(watermark = %c.watermark, "Resuming from the last committed checkpoint.")
            }
            None => {
                info!(start = %self.cfg.windows.start_time, "No checkpoint: starting from windows.start_time.")
            }
        }
        let planner = Planner::new(&self.cfg.windows, checkpoint)?;

        self.health.set_ready(false, "restoring state");
        let stats = self.log.restore_state(&mut self.store).await?;
        self.store.emit_gauges();
        info!(
            records = stats.records,
            customers = stats.customers,
            secs = stats.elapsed.as_secs_f64(),
            "State restored."
        );
        self.planner = planner;
        // Counts of absences are kept only for what this process saw committed; start again.
        self.deletions.reset();
        self.health.set_ready(true, "running");
        Ok(())
    }
}
