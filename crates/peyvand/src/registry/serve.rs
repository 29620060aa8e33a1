//! `peyvand registry serve`: the regulator's registry on embedded storage.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use peyvand_registry::{Registry, RegistryConfig};

use super::args::ServeArgs;
use crate::config::LogFormat;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    crate::serve::init_logging(LogFormat::Text);
    let config = RegistryConfig {
        directory_ttl: Duration::from_secs(args.directory_ttl_secs),
        certificate_validity: Duration::from_secs(args.certificate_validity_days.saturating_mul(86_400)),
        enrolment_token_ttl: Duration::from_secs(args.enrolment_token_ttl_hours.saturating_mul(3600)),
    };
    let opened = Registry::open(&args.data, config)
        .await
        .with_context(|| format!("cannot open the registry in {}", args.data.display()))?;
    let registry = opened.registry;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let config = peyvand_http::listener::https_config(&read(cert)?, &read(key)?)
                .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
            Some(config)
        }
        _ => None,
    };
    let descriptors = peyvand_http::listener::reserve_descriptors(peyvand_http::listener::DEFAULT_RESERVED_DESCRIPTORS);
    let limits = peyvand_http::listener::ConnectionLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        max_per_address: usize::try_from(args.max_connections_per_address).unwrap_or(usize::MAX),
        exempt: Vec::new(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let key = registry.key_info();
    {
        // Standard output carries these lines for scripts; logs go to standard error.
        let mut out = std::io::stdout().lock();
        if let Some(path) = &opened.new_admin_token {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            writeln!(out, "ADMIN-TOKEN {}", path.display())?;
        }
        writeln!(out, "REGISTRY-KEY {}", key.public_key)?;
        writeln!(out, "LISTENING {scheme}://{address}")?;
        out.flush()?;
    }
    if let Some(path) = &opened.new_admin_token {
        tracing::info!(path = %path.display(), "a new admin token was written to its file (mode 0600); only its hash is kept");
    }
    if opened.new_ca {
        let ca = args.data.join(peyvand_registry::ca::CA_CERT_FILE);
        tracing::info!(path = %ca.display(), "a new certificate authority was made");
    }
    if opened.new_signing_key {
        tracing::info!(key_id = %key.key_id, "a new signing key was made");
    }
    tracing::info!(open_files = descriptors.limit, for_clients = descriptors.for_clients, "the open-file limit");
    tokio::spawn(registry.clone().keep_directory_fresh());
    let router = peyvand_registry::http::router(registry);
    match tls {
        Some(tls) => {
            tracing::info!(%address, data = %args.data.display(), key_id = %key.key_id, "the registry is serving HTTPS");
            peyvand_registry::http::serve_https(listener, tls, router, limits, crate::serve::shutdown_signal()).await?;
        }
        None => {
            tracing::info!(%address, data = %args.data.display(), key_id = %key.key_id, "the registry is serving plain HTTP: give it --tls-cert and --tls-key, or terminate TLS in front");
            peyvand_registry::http::serve(listener, router, limits, crate::serve::shutdown_signal()).await?;
        }
    }
    tracing::info!("the registry stopped");
    Ok(())
}
