//! Starting and stopping a simulator: the HTTP server and the background mutation task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{SimConfig, SimError};
use super::control::SimControl;
use super::dataset::Dataset;
use super::faults::Faults;
use super::mutations::{MutationCause, MutationKind, World};
use super::state::{ApiSettings, Counters, Shared};

/// A running simulator. Dropping it stops it (without waiting); prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    addr: SocketAddr,
    control: SimControl,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
    mutator: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn invalid(e: SimError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

impl SimHandle {
    /// Generates the dataset, binds `listen` (port 0 picks a free port) and starts serving.
    pub async fn start(cfg: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
        cfg.validate().map_err(invalid)?;
        let started = std::time::Instant::now();
        let gen_cfg = cfg.clone();
        let data = tokio::task::spawn_blocking(move || Dataset::generate(&gen_cfg))
            .await
            .map_err(|e| {
                invalid(SimError::Generate {
                    reason: e.to_string(),
                })
            })?;
        tracing::info!(
            customers = data.customers(),
            relations = data.visible(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simulator dataset generated"
        );
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let renderer = data.renderer.clone();
        let shared = Arc::new(Shared {
            world: RwLock::new(World::new(
                data,
                cfg.mutation_log_capacity,
                cfg.start.timestamp(),
            )),
            renderer,
            faults: Mutex::new(Faults::new(cfg.faults.clone(), cfg.seed)),
            api: ApiSettings {
                app_id: cfg.app_id.clone(),
                app_key: SecretString::from(cfg.app_key.clone()),
                time_zone: cfg.time_zone,
                max_page_size: cfg.max_page_size,
                max_clock_skew_secs: cfg.max_clock_skew_secs,
            },
            rates: cfg.mutations,
            paused: AtomicBool::new(cfg.start_paused),
            counters: Counters::default(),
            cancel: cancel.clone(),
        });
        let app = super::app::router(shared.clone());
        let stop = cancel.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        let mutator = tokio::spawn(mutate(shared.clone(), cancel.clone()));
        tracing::info!(%addr, app_id = %cfg.app_id, "simulator listening");
        Ok(SimHandle {
            addr,
            control: SimControl { shared },
            cancel,
            server: Some(server),
            mutator: Some(mutator),
        })
    }

    /// `http://127.0.0.1:PORT` (the bound address).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// In-process control: pause/resume, faults, truth, apply.
    pub fn control(&self) -> &SimControl {
        &self.control
    }

    /// Stops serving (in-flight slow answers are cut short) and waits up to 5 s for the tasks.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in [self.server.take(), self.mutator.take()]
            .into_iter()
            .flatten()
        {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The background mutation task: every 100 ms, applies the due number of each kind.
async fn mutate(sh: Arc<Shared>, cancel: CancellationToken) {
    let rates = sh.rates;
    let kinds = [
        (MutationKind::New, rates.new_per_sec),
        (MutationKind::Late, rates.late_per_sec),
        (MutationKind::Changed, rates.changed_per_sec),
        (MutationKind::Removed, rates.removed_per_sec),
    ];
    if kinds.iter().all(|(_, r)| *r <= 0.0) {
        return;
    }
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut credit = [0f64; 4];
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = cancel.cancelled() => return,
        }
        if sh.paused.load(Ordering::SeqCst) {
            continue;
        }
        let now = Utc::now();
        let mut w = sh.write();
        for ((kind, rate), credit) in kinds.iter().zip(credit.iter_mut()) {
            *credit += rate * tick.as_secs_f64();
            while *credit >= 1.0 {
                *credit -= 1.0;
                w.random(
                    *kind,
                    MutationCause::Scheduled,
                    rates.late_lookback_secs,
                    now,
                );
            }
        }
    }
}
