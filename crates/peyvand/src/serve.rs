//! `peyvand serve`: the messenger server.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use peyvand_bus::InProcessBus;
use peyvand_service::{CodeSender, ConsoleCodeSender, HttpCodeSender, Service};
use peyvand_store::sqlite::SqliteStore;

use crate::config::{Config, LogFormat, SmsGateway};

/// Options of `peyvand serve`; each overrides the configuration file and the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, env = "PEYVAND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded storage keeps its files [default: ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEYVAND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Standard output carries the OTP and LISTENING lines; logs go to standard error.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(data) = args.data {
        config.data = data;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    init_logging(config.log_format);
    let store = SqliteStore::open(&config.data)
        .with_context(|| format!("cannot open the storage in {}", config.data.display()))?;
    let codes: Arc<dyn CodeSender> = match config.sms.gateway {
        SmsGateway::Console => Arc::new(ConsoleCodeSender),
        SmsGateway::Http => {
            Arc::new(HttpCodeSender::new(config.sms.url.clone().unwrap_or_default()).map_err(anyhow::Error::msg)?)
        }
    };
    let service = Service::new(Arc::new(store), Arc::new(InProcessBus::new()), codes, config.service.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTENING http://{address}")?;
        out.flush()?;
    }
    tracing::info!(%address, data = %config.data.display(), "peyvand is serving");
    let pruner = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            every.tick().await;
            match pruner.prune_updates().await {
                Ok(n) => tracing::debug!(pruned = n, "pruned old updates"),
                Err(e) => tracing::warn!(error = %e, "pruning updates failed"),
            }
        }
    });
    peyvand_server::serve(listener, peyvand_server::router(service, config.trusted_proxies.clone()), shutdown_signal())
        .await?;
    tracing::info!("peyvand stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
