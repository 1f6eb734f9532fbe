//! The `tanma-connector` binary: argument parsing and exit codes only; everything else is in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tanma_connector::commands::{self, exit_code};
use tanma_connector::config::Config;
use tanma_connector::{ops, sim};

/// Turns Tanma SCRM's polled customer API into an exactly-once Avro change stream in Kafka.
#[derive(Debug, Parser)]
#[command(name = "tanma-connector", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the connector until SIGTERM/SIGINT.
    Run(ConfigArg),
    /// Run the Tanma API simulator (for tests, the demo and benchmarks).
    Sim(Box<sim::SimArgs>),
    /// Validate the configuration, build the librdkafka clients, then try the API and the
    /// broker; list every problem.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Stop after validating and building the librdkafka client configurations: nothing
        /// is contacted (CI, image builds, admission checks).
        #[arg(long)]
        offline: bool,
    },
    /// Print committed change events as JSON lines (read_committed).
    Tail {
        #[command(flatten)]
        config: ConfigArg,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this many seconds without a new event.
        #[arg(long)]
        idle_timeout_secs: Option<u64>,
        /// Start at the end of the topic instead of the beginning.
        #[arg(long)]
        from_end: bool,
    },
    /// Print a customer's current snapshot from the state topic.
    State {
        #[command(flatten)]
        config: ConfigArg,
        /// The customer's externalUserId.
        external_user_id: String,
    },
    /// Audit the committed events against the simulator's truth (lost / duplicated / spurious /
    /// not deleted / wrongly deleted).
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Base URL of the simulator whose truth API to compare with.
        #[arg(long)]
        sim_url: String,
        /// Keep re-checking until clean or this many seconds have passed.
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
        /// Also compare the state topic's latest snapshots with the truth and the events (and
        /// check that customers gone from the truth were tombstoned).
        #[arg(long)]
        state: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Config file: TOML, or JSON if its name ends in .json. Every key can be overridden by
    /// TANMA_SECTION__KEY.
    #[arg(long, short, env = "TANMA_CONFIG")]
    config: Option<PathBuf>,
}

fn load(arg: &ConfigArg) -> Result<Config, i32> {
    Config::load(arg.config.as_deref()).map_err(|e| {
        eprintln!("{e}");
        exit_code::CONFIG
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(exit_code::INTERNAL as u8);
        }
    };
    let code = runtime.block_on(async_main(cli));
    ExitCode::from(code as u8)
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, i32> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            eprintln!("{what}: {e}");
            Err(exit_code::KAFKA_FATAL)
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            Err(exit_code::INTERNAL)
        }
    }
}

async fn async_main(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(arg) => {
            let cfg = match load(&arg) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = ops::logging::init(&cfg.ops.log_level, &cfg.ops.log_format) {
                eprintln!("{e}");
                return exit_code::CONFIG;
            }
            let shutdown = match ops::shutdown::on_signals() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return exit_code::INTERNAL;
                }
            };
            commands::run::run(cfg, shutdown).await
        }
        Command::Sim(args) => {
            let _ = ops::logging::init("info", "auto");
            let shutdown = match ops::shutdown::on_signals() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return exit_code::INTERNAL;
                }
            };
            match sim::run(*args, async move { shutdown.cancelled().await }).await {
                Ok(()) => exit_code::OK,
                Err(e) => {
                    eprintln!("simulator: {e:#}");
                    exit_code::INTERNAL
                }
            }
        }
        Command::CheckConfig { config, offline } => match load(&config) {
            Ok(cfg) => commands::check::check(&cfg, offline).await,
            Err(code) => code,
        },
        Command::Tail {
            config,
            max,
            idle_timeout_secs,
            from_end,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = commands::inspect::TailOptions {
                max,
                idle_timeout: idle_timeout_secs.map(Duration::from_secs),
                from_end,
            };
            let codec = match commands::reader_codec(&cfg).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tail: {e}");
                    return exit_code::KAFKA_FATAL;
                }
            };
            match blocking("tail", move || commands::inspect::tail(&cfg, &codec, opts)).await {
                Ok(_) => exit_code::OK,
                Err(code) => code,
            }
        }
        Command::State {
            config,
            external_user_id,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let id = external_user_id.clone();
            let codec = match commands::reader_codec(&cfg).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("state: {e}");
                    return exit_code::KAFKA_FATAL;
                }
            };
            match blocking("state", move || commands::inspect::state(&cfg, &codec, &id)).await {
                Ok(Some(v)) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    exit_code::OK
                }
                Ok(None) => {
                    eprintln!("no snapshot for {external_user_id}");
                    exit_code::INTERNAL
                }
                Err(code) => code,
            }
        }
        Command::Verify {
            config,
            sim_url,
            wait_secs,
            state,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = commands::verify::VerifyOptions { state };
            commands::verify::run_with(&cfg, &sim_url, Duration::from_secs(wait_secs), opts).await
        }
    }
}
