//! `tanma-connector sim`: command-line flags (each also an `SIM_*` environment variable) and the
//! run loop.

use std::net::SocketAddr;

use chrono::{DateTime, Duration, Utc};

use super::config::{BulkImports, MutationRates, SimConfig};
use super::faults::FaultConfig;
use super::handle::SimHandle;

/// Flags of `tanma-connector sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    /// Dataset seed (same seed + flags → same dataset).
    #[arg(long, env = "SIM_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Customers in the initial dataset.
    #[arg(long, env = "SIM_CUSTOMERS", default_value_t = 10_000)]
    pub customers: u32,
    /// Staff members.
    #[arg(long, env = "SIM_STAFF", default_value_t = 200)]
    pub staff: u16,
    /// Start of the initial add times (RFC 3339); default `end` minus `days`.
    #[arg(long, env = "SIM_START")]
    pub start: Option<DateTime<Utc>>,
    /// End of the initial add times (RFC 3339); default now.
    #[arg(long, env = "SIM_END")]
    pub end: Option<DateTime<Utc>>,
    /// Days of history when `start` is not given.
    #[arg(long, env = "SIM_DAYS", default_value_t = 30)]
    pub days: u32,
    /// Accepted `appId`.
    #[arg(long, env = "SIM_APP_ID", default_value = "sim-app")]
    pub app_id: String,
    /// Shared secret requests must be signed with.
    #[arg(
        long,
        env = "SIM_APP_KEY",
        default_value = "sim-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub app_key: String,
    /// IANA time zone of `since`/`before`.
    #[arg(long, env = "SIM_TIME_ZONE", default_value = "Asia/Shanghai")]
    pub time_zone: chrono_tz::Tz,
    /// Largest accepted `pageSize`.
    #[arg(long, env = "SIM_MAX_PAGE_SIZE", default_value_t = 100)]
    pub max_page_size: u32,
    /// Largest accepted clock skew of `timestamp`, seconds.
    #[arg(long, env = "SIM_MAX_CLOCK_SKEW_SECS", default_value_t = 300)]
    pub max_clock_skew_secs: u64,
    /// New relations per second.
    #[arg(long, env = "SIM_NEW_PER_SEC", default_value_t = 1.0)]
    pub new_per_sec: f64,
    /// Late relations per second.
    #[arg(long, env = "SIM_LATE_PER_SEC", default_value_t = 0.2)]
    pub late_per_sec: f64,
    /// Profile changes per second.
    #[arg(long, env = "SIM_CHANGED_PER_SEC", default_value_t = 2.0)]
    pub changed_per_sec: f64,
    /// Relation removals per second.
    #[arg(long, env = "SIM_REMOVED_PER_SEC", default_value_t = 0.05)]
    pub removed_per_sec: f64,
    /// How far back late add times go, seconds (0 = anywhere since `start`).
    #[arg(long, env = "SIM_LATE_LOOKBACK_SECS", default_value_t = 3600)]
    pub late_lookback_secs: u64,
    /// Start with background mutations paused.
    #[arg(long, env = "SIM_PAUSED", default_value_t = false)]
    pub paused: bool,
    /// Probability of an HTTP 5xx answer.
    #[arg(long, env = "SIM_FAULT_5XX", default_value_t = 0.0)]
    pub fault_5xx: f64,
    /// Probability of a slow answer.
    #[arg(long, env = "SIM_FAULT_SLOW", default_value_t = 0.0)]
    pub fault_slow: f64,
    /// Delay of a slow answer, ms.
    #[arg(long, env = "SIM_SLOW_MS", default_value_t = 15_000)]
    pub slow_ms: u64,
    /// Probability of a malformed body.
    #[arg(long, env = "SIM_FAULT_MALFORMED", default_value_t = 0.0)]
    pub fault_malformed: f64,
    /// Probability of a non-zero business code.
    #[arg(long, env = "SIM_FAULT_ERROR_CODE", default_value_t = 0.0)]
    pub fault_error_code: f64,
    /// That business code.
    #[arg(long, env = "SIM_ERROR_CODE", default_value_t = 1500)]
    pub error_code: i64,
    /// Probability of paging drift on pages ≥ 2.
    #[arg(long, env = "SIM_FAULT_DRIFT", default_value_t = 0.0)]
    pub fault_drift: f64,
    /// Probability that a request orders rows sharing an add time at random (a new order per
    /// request, as SQL `ORDER BY addTime LIMIT/OFFSET` may with ties); 1 = every request.
    #[arg(long, env = "SIM_FAULT_UNSTABLE_ORDER", default_value_t = 0.0)]
    pub fault_unstable_order: f64,
    /// Bulk imports: add-time seconds (chosen from the seed) that each hold `--bulk-rows`
    /// relations of new customers, on top of `--customers`.
    #[arg(long, env = "SIM_BULK_SECONDS", default_value_t = 0)]
    pub bulk_seconds: u32,
    /// Relations in each bulk second.
    #[arg(long, env = "SIM_BULK_ROWS", default_value_t = 0)]
    pub bulk_rows: u32,
    /// Requests per second before the rate-limit code (0 = off).
    #[arg(long, env = "SIM_RATE_LIMIT_QPS", default_value_t = 0.0)]
    pub rate_limit_qps: f64,
    /// Rate-limit burst (0 = one second's worth).
    #[arg(long, env = "SIM_RATE_LIMIT_BURST", default_value_t = 0)]
    pub rate_limit_burst: u32,
    /// Business code of a rate-limited request.
    #[arg(long, env = "SIM_RATE_LIMIT_CODE", default_value_t = 1006)]
    pub rate_limit_code: i64,
    /// Share of relations served as bad rows (null externalUserId, null qwUserId or a field
    /// with a null id); the same relations on every read.
    #[arg(long, env = "SIM_FAULT_BAD_ROW", default_value_t = 0.0)]
    pub fault_bad_row: f64,
}

impl From<SimArgs> for SimConfig {
    fn from(a: SimArgs) -> SimConfig {
        let end = a.end.unwrap_or_else(|| {
            let now = Utc::now();
            DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
        });
        let start = a.start.unwrap_or(end - Duration::days(i64::from(a.days)));
        SimConfig {
            seed: a.seed,
            customers: a.customers,
            staff: a.staff,
            start,
            end,
            app_id: a.app_id,
            app_key: a.app_key,
            time_zone: a.time_zone,
            max_page_size: a.max_page_size,
            max_clock_skew_secs: a.max_clock_skew_secs,
            mutations: MutationRates {
                new_per_sec: a.new_per_sec,
                late_per_sec: a.late_per_sec,
                changed_per_sec: a.changed_per_sec,
                removed_per_sec: a.removed_per_sec,
                late_lookback_secs: a.late_lookback_secs,
            },
            start_paused: a.paused,
            mutation_log_capacity: 1_000_000,
            faults: FaultConfig {
                http_5xx: a.fault_5xx,
                slow: a.fault_slow,
                slow_ms: a.slow_ms,
                malformed: a.fault_malformed,
                error_code: a.fault_error_code,
                error_code_value: a.error_code,
                drift: a.fault_drift,
                unstable_order: a.fault_unstable_order,
                rate_limit_qps: a.rate_limit_qps,
                rate_limit_burst: a.rate_limit_burst,
                rate_limit_code: a.rate_limit_code,
                bad_row: a.fault_bad_row,
                ..FaultConfig::default()
            },
            bulk: BulkImports {
                seconds: a.bulk_seconds,
                rows: a.bulk_rows,
            },
        }
    }
}

/// Runs a simulator until `shutdown` completes.
pub async fn run(
    args: SimArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = args.listen;
    let cfg = SimConfig::from(args);
    cfg.validate()?;
    let handle = SimHandle::start(cfg, listen)
        .await
        .map_err(|e| anyhow::anyhow!("simulator cannot start on {listen}: {e}"))?;
    let stats = handle.control().stats();
    tracing::info!(
        base_url = %handle.base_url(),
        customers = stats.customers,
        relations = stats.relations,
        "simulator ready; truth at /_sim/truth, control under /_sim/"
    );
    shutdown.await;
    tracing::info!("simulator shutting down");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn defaults_make_a_valid_config_and_flags_apply() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        let cfg = SimConfig::from(cli.sim);
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.faults.rate_limit_code, 1006);
        assert!(
            !format!("{cfg:?}").contains("sim-secret"),
            "Debug hides the key"
        );

        let cli = Cli::try_parse_from([
            "x",
            "--start",
            "2024-01-01T00:00:00Z",
            "--end",
            "2024-02-01T00:00:00Z",
            "--time-zone",
            "UTC",
            "--fault-drift",
            "0.5",
            "--fault-bad-row",
            "0.25",
            "--fault-unstable-order",
            "1",
            "--bulk-seconds",
            "4",
            "--bulk-rows",
            "1500",
        ])
        .unwrap();
        let cfg = SimConfig::from(cli.sim);
        assert_eq!(cfg.time_zone, chrono_tz::UTC);
        assert_eq!(cfg.faults.drift, 0.5);
        assert_eq!(cfg.faults.bad_row, 0.25);
        assert_eq!(cfg.faults.unstable_order, 1.0);
        assert_eq!(
            cfg.bulk,
            BulkImports {
                seconds: 4,
                rows: 1500
            }
        );
        assert_eq!((cfg.end - cfg.start).num_days(), 31);
        let bad = Cli::try_parse_from(["x", "--fault-5xx", "2"]).unwrap();
        assert!(SimConfig::from(bad.sim).validate().is_err());
        let bad = Cli::try_parse_from(["x", "--bulk-seconds", "2"]).unwrap();
        let e = SimConfig::from(bad.sim).validate().unwrap_err().to_string();
        assert!(e.contains("bulk: seconds and rows"), "{e}");
    }
}
