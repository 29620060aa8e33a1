//! `peyvand registry enrol`: what a provider runs to get (or renew) its TLS certificate. It
//! makes a new ECDSA P-256 key and a certificate signing request naming the provider's domain
//! and id, sends the request with the one-time enrolment token, and writes the key (mode
//! 0600), the request, the certificate, the chain and the CA certificate. The key never leaves
//! this machine; nothing is written unless the registry issued the certificate.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use peyvand_registry::keys::{decode_public_key, write_secret};
use peyvand_registry::{RegistryClient, verify_directory};
use serde::Serialize;

use super::args::EnrolArgs;

/// The files `enrol` writes in its output directory.
pub const KEY_FILE: &str = "key.pem";
pub const CSR_FILE: &str = "csr.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";
pub const CA_FILE: &str = "ca.pem";

#[derive(Serialize)]
struct Enrolled<'a> {
    provider_id: &'a str,
    serial: &'a str,
    not_after: i64,
    directory: String,
}

pub async fn run(args: EnrolArgs, json: bool) -> Result<()> {
    let client = super::client(&args.registry, None, args.registry_ca.as_deref())?;
    let domain = match args.domain {
        Some(domain) => domain,
        None => listed_domain(&client, &args.provider_id).await?,
    };
    let (key_pem, csr_pem) = peyvand_registry::ca::generate_key_and_csr(&args.provider_id, &domain)
        .map_err(|e| anyhow!("cannot make the key and request: {e}"))?;
    let certificate = client.enrol(args.token.trim(), &csr_pem, None).await?;
    write_files(&args.out, &key_pem, &csr_pem, &certificate.certificate, &certificate.ca_certificate)?;
    let summary = Enrolled {
        provider_id: &certificate.provider_id,
        serial: &certificate.serial,
        not_after: certificate.not_after,
        directory: args.out.display().to_string(),
    };
    let text = if json {
        serde_json::to_string_pretty(&summary)?
    } else {
        format!(
            "certificate {} for `{}` ({domain}), valid until {}, written to {}",
            summary.serial,
            summary.provider_id,
            peyvand_registry::time::format_millis(summary.not_after),
            summary.directory
        )
    };
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// The provider's domain as the directory lists it, verified with the key the registry serves.
async fn listed_domain(client: &RegistryClient, provider_id: &str) -> Result<String> {
    let key = client.registry_key().await?;
    let key = decode_public_key(&key.public_key).map_err(|why| anyhow!("the registry's key: {why}"))?;
    let signed = client.directory().await?;
    let directory =
        verify_directory(&signed.body, &signed.signature, &key).context("the directory failed verification")?;
    let provider = directory
        .provider(provider_id)
        .ok_or_else(|| anyhow!("the directory lists no provider `{provider_id}`; pass --domain"))?;
    Ok(provider.domain.clone())
}

fn write_files(dir: &Path, key_pem: &str, csr_pem: &str, cert_pem: &str, ca_pem: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_secret(&dir.join(KEY_FILE), key_pem.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    let chain = format!("{}\n{}", cert_pem.trim_end(), ca_pem);
    for (name, text) in [(CSR_FILE, csr_pem), (CERT_FILE, cert_pem), (CHAIN_FILE, chain.as_str()), (CA_FILE, ca_pem)] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
