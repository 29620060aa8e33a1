//! `peyvand serve`: the messenger server.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use peyvand_bus::{Bus, InProcessBus, NatsBus};
use peyvand_core::url::redact_credentials;
use peyvand_http::listener::{DualListener, TlsSlot, reserve_descriptors};
use peyvand_interconnect::Interconnect;
use peyvand_service::{CodeSender, ConsoleCodeSender, HttpCodeSender, Service};
use peyvand_store::Store;
use peyvand_store::postgres::{PgOptions, PgStore};
use peyvand_store::sqlite::{SqliteOptions, SqliteStore};

use crate::config::{BusKind, Config, LogFormat, SmsGateway, StorageKind};

/// Where the storage is; shared by `serve` and `migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// A TOML configuration file.
    #[arg(long, env = "PEYVAND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded storage keeps its files [default: ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `embedded` [default] or `postgres://user:password@host:port/database`.
    #[arg(long)]
    pub storage: Option<String>,
}

/// Options of `peyvand serve`; each overrides the configuration file and the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The address to listen on [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
    /// `in-process` [default] or `nats://host:port[,nats://...]` for a cluster of nodes.
    #[arg(long)]
    pub bus: Option<String>,
}

impl StorageArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        if let Some(storage) = &self.storage {
            config.storage = storage.clone();
            config.storage_kind()?;
        }
        Ok(config)
    }
}

/// Opens the configured storage, bringing its schema up to date.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.storage_kind()? {
        StorageKind::Embedded => Arc::new(
            SqliteStore::open_with(&config.data, &SqliteOptions { writer_nice: config.storage_writer_nice })
                .with_context(|| format!("cannot open the storage in {}", config.data.display()))?,
        ),
        StorageKind::Postgres(url) => {
            let mut options = PgOptions::default();
            if config.storage_pool_size > 0 {
                options.pool_size = config.storage_pool_size;
            }
            Arc::new(PgStore::connect_with(&url, options).await.context("cannot use PostgreSQL")?)
        }
    })
}

async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match config.bus_kind()? {
        BusKind::InProcess => Arc::new(InProcessBus::new()),
        BusKind::Nats(urls) => Arc::new(NatsBus::connect(&urls, &config.bus_prefix).await?),
    })
}

/// `peyvand migrate`: brings the storage's schema up to date and exits. `serve` does the same
/// at start; this is for operators who upgrade the schema before rolling out new nodes.
pub async fn migrate(args: StorageArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    init_logging(config.log_format);
    open_store(&config).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "the storage's schema is up to date")?;
    Ok(())
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) fn init_logging(format: LogFormat) {
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
    let mut config = args.storage.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(bus) = args.bus {
        config.bus = bus;
        config.bus_kind()?;
    }
    init_logging(config.log_format);
    let server = Server::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        // Before LISTENING, which says the server is ready: a script that waits for it has both.
        if let Some(metrics) = server.metrics_address() {
            writeln!(out, "METRICS http://{metrics}/metrics")?;
        }
        writeln!(out, "LISTENING http://{}", server.address)?;
        out.flush()?;
    }
    server.serve(shutdown_signal()).await
}

/// A messenger server that is listening, with its background work running, and not yet
/// answering: [`Server::serve`] does that. `peyvand serve` runs one; `peyvand demo` several.
#[derive(Debug)]
pub struct Server {
    pub address: std::net::SocketAddr,
    listener: DualListener,
    router: axum::Router,
    going_away: peyvand_server::GoingAway,
    /// The operator's address for `/metrics`, when configured, and what it serves.
    operator: Option<(std::net::SocketAddr, DualListener, axum::Router)>,
    service: Service,
    /// The link to other messengers, when configured.
    pub interconnect: Option<Interconnect>,
}

impl Server {
    /// Opens the storage and the bus, binds the address, starts the interconnect when one is
    /// configured (which may enrol with the registry), and starts the background work.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Self::start_on(config, tcp).await
    }

    /// [`Server::start`] on a socket that is already bound (`config.listen` is not used).
    pub async fn start_on(config: Config, tcp: tokio::net::TcpListener) -> anyhow::Result<Self> {
        let metrics_token = config.metrics.token()?;
        let operator_tcp = match &config.metrics.listen {
            Some(listen) => Some(
                tokio::net::TcpListener::bind(listen.trim())
                    .await
                    .with_context(|| format!("cannot listen on metrics.listen {listen}"))?,
            ),
            None => None,
        };
        let store = open_store(&config).await?;
        let bus = open_bus(&config).await?;
        let codes: Arc<dyn CodeSender> = match config.sms.gateway {
            SmsGateway::Console if config.interconnect.enabled() => {
                Arc::new(ConsoleCodeSender::for_messenger(config.interconnect.provider_id.trim()))
            }
            SmsGateway::Console => Arc::new(ConsoleCodeSender::default()),
            SmsGateway::Http => {
                Arc::new(HttpCodeSender::new(config.sms.url.clone().unwrap_or_default()).map_err(anyhow::Error::msg)?)
            }
        };
        let blobs = open_media(&config)?;
        let service = Service::new(store, bus, codes, config.service.clone()).with_blobs(blobs);
        let address = tcp.local_addr()?;
        let tls = TlsSlot::default();
        let interconnect = if config.interconnect.enabled() {
            let interconnect =
                Interconnect::start(config.interconnect.clone(), &config.data, service.clone(), tls.clone())
                    .await
                    .context("cannot start the interconnect")?;
            tokio::spawn(interconnect.clone().keep_directory_fresh());
            tokio::spawn(interconnect.clone().keep_delivering());
            Some(interconnect)
        } else {
            None
        };
        let descriptors = reserve_descriptors(config.connections.reserved_descriptors);
        let listener = DualListener::new(tcp, tls, config.connections.limits(&config.trusted_proxies))?;
        tracing::info!(
            %address,
            node = service.node_id(),
            storage = %storage_label(&config),
            bus = %bus_label(&config),
            media = %service.blob_store().map_or_else(String::new, |b| b.describe()),
            provider = interconnect.as_ref().map_or("-", |i| i.provider_id()),
            open_files = descriptors.limit,
            for_clients = descriptors.for_clients,
            "peyvand is serving"
        );
        if descriptors.limit > descriptors.was {
            tracing::debug!(from = descriptors.was, to = descriptors.limit, "raised the open-file limit");
        }
        spawn_background_work(&service);
        let front_end = peyvand_server::FrontEnd {
            trusted_proxies: config.trusted_proxies.clone(),
            stream_write_timeout: Duration::from_secs(config.stream_write_timeout_secs),
            connections: listener.stats(),
            stream_limits: config.connections.stream_limits(),
            going_away: peyvand_server::GoingAway::default(),
            metrics_access: peyvand_server::MetricsAccess::new(metrics_token),
        };
        let going_away = front_end.going_away.clone();
        let routers = peyvand_server::router(service.clone(), front_end, interconnect.clone());
        let operator = match operator_tcp {
            Some(tcp) => {
                let address = tcp.local_addr()?;
                let limits = peyvand_http::listener::ConnectionLimits::default();
                let listener = DualListener::new(tcp, TlsSlot::default(), limits)?;
                tracing::info!(%address, "serving /metrics for the operator");
                Some((address, listener, routers.operator))
            }
            None => None,
        };
        Ok(Self { address, listener, router: routers.client, going_away, operator, service, interconnect })
    }

    /// Answers requests until `shutdown` resolves, then finishes what it began (requests in
    /// progress; every WebSocket answers its client's requests and closes with 1001) and
    /// leaves the cluster.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let operator = self
            .operator
            .map(|(_, listener, router)| tokio::spawn(peyvand_http::serve(listener, router, std::future::pending())));
        let served = peyvand_server::serve(self.listener, self.router, self.going_away, shutdown).await;
        if let Some(operator) = operator {
            operator.abort();
        }
        served?;
        self.service.leave_cluster().await;
        tracing::info!(address = %self.address, "peyvand stopped");
        Ok(())
    }
}

impl Server {
    /// The operator's address for `/metrics`, when one is configured.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.operator.as_ref().map(|(address, _, _)| *address)
    }
}

/// Where media is kept: under the data directory, or in the configured S3 bucket.
fn open_media(config: &Config) -> anyhow::Result<peyvand_media::storage::BlobStore> {
    let location = config.media.trim();
    let embedded = location == "embedded" || location.is_empty();
    if embedded && matches!(config.storage_kind(), Ok(StorageKind::Postgres(_))) {
        tracing::warn!(
            "media is kept on this node's disk while the storage is PostgreSQL: in a cluster, every node \
             must share one S3 bucket (media = \"s3://...\"), or each serves only its own files"
        );
    }
    let blobs = if embedded {
        peyvand_media::storage::BlobStore::local(&config.data.join("media"))
    } else {
        peyvand_media::storage::BlobStore::open(location, &config.s3)
    };
    blobs.with_context(|| format!("cannot open the media storage {location}"))
}

/// Presence heartbeats, the pruning of old updates, and the media sweep.
fn spawn_background_work(service: &Service) {
    let sweeper = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(sweeper.config().media.sweep_secs.max(1)));
        loop {
            every.tick().await;
            match sweeper.sweep_media().await {
                Ok(swept) => tracing::debug!(?swept, "swept media"),
                Err(e) => tracing::warn!(error = %e, "sweeping media failed"),
            }
        }
    });
    let beating = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(beating.config().presence_heartbeat_secs));
        loop {
            every.tick().await;
            beating.presence_tick().await;
        }
    });
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
}

/// The storage for logs, without a password.
fn storage_label(config: &Config) -> String {
    match config.storage_kind() {
        Ok(StorageKind::Embedded) => format!("embedded in {}", config.data.display()),
        Ok(StorageKind::Postgres(url)) => redact_credentials(&url),
        Err(_) => "invalid".into(),
    }
}

fn bus_label(config: &Config) -> String {
    redact_credentials(&config.bus)
}

pub(crate) async fn shutdown_signal() {
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
