//! `peyvand demo`: the whole interconnect on one machine. A registry and three licensed
//! providers, each with its own embedded storage, enrolled with the registry's CA and talking
//! to each other over mutual TLS. Prints `READY` lines for scripts, and the sign-in codes as
//! `OTP <number> <code>` lines as `serve` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use peyvand_interconnect::InterconnectConfig;
use peyvand_registry::model::{IssueLicence, UpdateLicence};
use peyvand_registry::{ErrorCode, Registry, RegistryConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::serve::{Server, init_logging, shutdown_signal};

/// The demo's actor in the registry's audit log.
const ACTOR: &str = "demo";
/// The demo's providers: id, name, licence number.
const PROVIDERS: [(&str, &str, &str); 3] = [
    ("alborz", "پیام‌رسان البرز", "DEMO-1"),
    ("damavand", "پیام‌رسان دماوند", "DEMO-2"),
    ("sahand", "پیام‌رسان سهند", "DEMO-3"),
];
const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The registry listens on this port and the providers on the three after it; 0 picks free
    /// ports.
    #[arg(long, default_value_t = 8090)]
    pub base_port: u16,
    /// Where everything is kept (a folder each for the registry and the providers), so that a
    /// second run goes on where the first stopped [default: a new temporary folder].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// How often the providers fetch the registry's directory; a suspension reaches them
    /// within this.
    #[arg(long, default_value_t = 5)]
    pub directory_refresh_secs: u64,
}

async fn bind(base: u16, offset: u16) -> anyhow::Result<TcpListener> {
    let port = if base == 0 { 0 } else { base.checked_add(offset).context("--base-port is too high")? };
    TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("cannot listen on 127.0.0.1:{port}"))
}

fn ready(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The demo's folder when it made one itself: removed when the demo ends, however it ends
/// (Ctrl-C, SIGTERM, an error), since it holds the CA's private key and the admin token.
struct TempData(PathBuf);

impl Drop for TempData {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(%error, data = %self.0.display(), "cannot remove the demo's temporary folder");
        }
    }
}

/// Creates `dir` (and its parents) readable by its owner only: it will hold keys and tokens.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    init_logging(crate::config::LogFormat::Text);
    // Listen for Ctrl-C and SIGTERM from the start: a signal while the providers start stops
    // the demo as cleanly as one after.
    let (signal, mut on_signal) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal.send(true);
    });
    let (data, _temporary) = match &args.data {
        Some(dir) => {
            create_private_dir(dir)?;
            (dir.clone(), None)
        }
        None => {
            let dir = std::env::temp_dir().join(format!(
                "peyvand-demo-{}-{}",
                std::process::id(),
                peyvand_service::now_millis()
            ));
            create_private_dir(&dir)?;
            (dir.clone(), Some(TempData(dir)))
        }
    };
    let (stop, stopped) = watch::channel(false);
    let mut servers = tokio::select! {
        started = start(&args, &data, stopped) => started?,
        _ = on_signal.wait_for(|s| *s) => return Ok(()),
    };
    tokio::select! {
        _ = on_signal.wait_for(|s| *s) => {}
        Some(ended) = servers.join_next() => {
            let _ = stop.send(true);
            return match ended {
                Ok(Ok(())) => Err(anyhow::anyhow!("a demo service stopped by itself")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::Error::new(e).context("a demo service failed")),
            };
        }
    }
    let _ = stop.send(true);
    // Let every server finish what it was doing, but not forever.
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while servers.join_next().await.is_some() {} }).await;
    Ok(())
}

/// Starts the registry and the providers; each serves until `stopped` turns true.
async fn start(
    args: &DemoArgs,
    data: &Path,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    let registry_dir = data.join("registry");
    let opened = Registry::open(&registry_dir, RegistryConfig::default())
        .await
        .with_context(|| format!("cannot open the registry in {}", registry_dir.display()))?;
    let registry = opened.registry;
    let registry_listener = bind(args.base_port, 0).await?;
    let registry_url = format!("http://{}", registry_listener.local_addr()?);
    tokio::spawn(registry.clone().keep_directory_fresh());
    let mut servers = tokio::task::JoinSet::new();
    {
        let router = peyvand_registry::http::router(registry.clone());
        let shutdown = until_stopped();
        servers.spawn(async move {
            peyvand_registry::http::serve(registry_listener, router, shutdown).await.context("the registry failed")
        });
    }
    let admin_token = peyvand_registry::keys::admin_token_path(&registry_dir);
    if admin_token.exists() {
        ready(format_args!("ADMIN-TOKEN {}", admin_token.display()))?;
    }
    ready(format_args!("READY registry {registry_url}"))?;

    let mut started = Vec::new();
    for (offset, (id, name, number)) in (1u16..).zip(PROVIDERS) {
        let listener = bind(args.base_port, offset).await?;
        let endpoint = format!("https://{}", listener.local_addr()?);
        license(&registry, id, name, number, &endpoint).await?;
        let token = registry.create_enrolment_token(ACTOR, id).await?.token;
        let config = provider_config(data, id, &registry_url, &registry, token, args.directory_refresh_secs)?;
        started.push((id, Server::start_on(config, listener).await.with_context(|| format!("provider `{id}`"))?));
    }
    // Each provider enrolled after those before it had fetched the directory: bring every one
    // up to date, so that all know each other's keys and certificates once they say READY.
    for (id, server) in started {
        if let Some(interconnect) = &server.interconnect {
            interconnect.refresh_directory().await.with_context(|| format!("provider `{id}`"))?;
        }
        ready(format_args!("READY provider {id} http://{}", server.address))?;
        let shutdown = until_stopped();
        servers.spawn(async move { server.serve(shutdown).await });
    }
    tracing::info!(data = %data.display(), "the demo is running: Ctrl-C stops it");
    Ok(servers)
}

/// Issues the provider's licence, or (on a later run over the same data) points it at this
/// run's endpoint.
async fn license(registry: &Registry, id: &str, name: &str, number: &str, endpoint: &str) -> anyhow::Result<()> {
    let request = IssueLicence {
        provider_id: id.to_owned(),
        name: name.to_owned(),
        domain: format!("{id}.example"),
        endpoint: endpoint.to_owned(),
        contact: format!("ops@{id}.example"),
        licence_number: number.to_owned(),
        valid_from: None,
        valid_until: peyvand_service::now_millis() + YEAR_MS,
        signing_keys: Vec::new(),
        capabilities: peyvand_interconnect::CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        reason: Some("peyvand demo".to_owned()),
    };
    match registry.issue(ACTOR, request).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == ErrorCode::ProviderExists => {
            let licence = registry.licence(id).await?;
            if licence.endpoint != endpoint {
                let change = UpdateLicence {
                    endpoint: Some(endpoint.to_owned()),
                    reason: Some("peyvand demo: new port".to_owned()),
                    ..UpdateLicence::default()
                };
                registry.update(ACTOR, id, change).await?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn provider_config(
    data: &Path,
    id: &str,
    registry_url: &str,
    registry: &Registry,
    token: String,
    refresh_secs: u64,
) -> anyhow::Result<Config> {
    // `PEYVAND_*` variables tune every provider of the demo alike (limits, say).
    let base = Config::load(None)?;
    Ok(Config {
        data: data.join(id),
        interconnect: InterconnectConfig {
            provider_id: id.to_owned(),
            registry: registry_url.to_owned(),
            registry_key: registry.key_info().public_key,
            enrolment_token: Some(token),
            directory_refresh_secs: refresh_secs.max(1),
            ..base.interconnect
        },
        ..base
    })
}
