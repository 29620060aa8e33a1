//! The commands that talk to the registry's API: licences, the audit log, the directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use peyvand_registry::keys::decode_public_key;
use peyvand_registry::model::{AuditQuery, IssueLicence, Licence, UpdateLicence};
use peyvand_registry::{RegistryClient, verify_directory};
use serde::Serialize;

use super::args::{AuditArgs, CertificateCommand, Connection, DEFAULT_DATA, LicenceCommand};
use super::format;

/// The admin token: from `--token-file`, else `PEYVAND_REGISTRY_TOKEN`, else the file a
/// registry with the default data directory wrote.
pub(crate) fn admin_token(connection: &Connection) -> Result<String> {
    let from_file = |path: &Path| -> Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token from {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("the admin token file {} is empty", path.display());
        }
        Ok(token.to_owned())
    };
    if let Some(path) = &connection.token_file {
        return from_file(path);
    }
    if let Ok(token) = std::env::var("PEYVAND_REGISTRY_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_owned());
    }
    let default = PathBuf::from(DEFAULT_DATA).join(peyvand_registry::keys::ADMIN_TOKEN_FILE);
    if default.is_file() {
        return from_file(&default);
    }
    bail!(
        "no admin token: pass --token-file PATH (the registry wrote one to admin-token in its data directory) or set PEYVAND_REGISTRY_TOKEN"
    )
}

fn admin_client(connection: &Connection) -> Result<RegistryClient> {
    super::client(&connection.registry, Some(admin_token(connection)?), connection.registry_ca.as_deref())
}

/// Prints `value` as pretty JSON, or as the text `text` makes of it.
fn show<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
    use std::io::Write as _;
    let rendered = if json { serde_json::to_string_pretty(value)? } else { text(value) };
    let mut stdout = std::io::stdout().lock();
    if !rendered.is_empty() {
        writeln!(stdout, "{rendered}")?;
    }
    stdout.flush()?;
    Ok(())
}

fn show_licence(json: bool, licence: &Licence) -> Result<()> {
    show(json, licence, format::licence)
}

pub async fn licence(connection: &Connection, json: bool, command: LicenceCommand) -> Result<()> {
    let client = admin_client(connection)?;
    match command {
        LicenceCommand::Issue(args) => {
            let request = IssueLicence {
                provider_id: args.provider_id,
                name: args.name,
                domain: args.domain,
                endpoint: args.endpoint,
                contact: args.contact,
                licence_number: args.licence_number,
                valid_from: args.valid_from,
                valid_until: args.valid_until,
                signing_keys: args.signing_keys,
                capabilities: args.capabilities,
                reason: args.reason,
            };
            show_licence(json, &client.issue(&request).await?)
        }
        LicenceCommand::List => {
            let licences = client.licences().await?;
            show(json, &licences, |l| format::licence_table(l))
        }
        LicenceCommand::Show { provider_id } => show_licence(json, &client.licence(&provider_id).await?),
        LicenceCommand::Suspend { provider_id, reason } => {
            show_licence(json, &client.suspend(&provider_id, &reason).await?)
        }
        LicenceCommand::Reinstate { provider_id, reason } => {
            show_licence(json, &client.reinstate(&provider_id, &reason).await?)
        }
        LicenceCommand::Revoke { provider_id, reason } => {
            show_licence(json, &client.revoke(&provider_id, &reason).await?)
        }
        LicenceCommand::Delist { provider_id, reason } => {
            show_licence(json, &client.delist(&provider_id, &reason).await?)
        }
        LicenceCommand::SetKeys { provider_id, keys, reason } => {
            let request = UpdateLicence { signing_keys: Some(keys), reason, ..Default::default() };
            show_licence(json, &client.update(&provider_id, &request).await?)
        }
        LicenceCommand::Update(args) => {
            let capabilities =
                args.capabilities.map(|list| list.into_iter().filter(|c| !c.trim().is_empty()).collect());
            let request = UpdateLicence {
                name: args.name,
                endpoint: args.endpoint,
                contact: args.contact,
                valid_until: args.valid_until,
                signing_keys: None,
                capabilities,
                reason: args.reason,
            };
            show_licence(json, &client.update(&args.provider_id, &request).await?)
        }
        LicenceCommand::Enrol { provider_id } => {
            let token = client.create_enrolment_token(&provider_id).await?;
            if !json {
                super::note(format!(
                    "a one-time enrolment token for `{}`, valid until {}; it is shown only now",
                    token.provider_id,
                    peyvand_registry::time::format_millis(token.expires_at)
                ));
            }
            show(json, &token, |t| t.token.clone())
        }
        LicenceCommand::Certificates { provider_id } => {
            let certificates = client.certificates(&provider_id).await?;
            show(json, &certificates, |c| format::certificates(c))
        }
    }
}

pub async fn certificate(connection: &Connection, json: bool, command: CertificateCommand) -> Result<()> {
    let client = admin_client(connection)?;
    match command {
        CertificateCommand::Revoke { serial, reason } => {
            let certificate = client.revoke_certificate(&serial, &reason).await?;
            show(json, &certificate, |c| format::certificates(std::slice::from_ref(c)))
        }
    }
}

pub async fn audit(connection: &Connection, json: bool, args: AuditArgs) -> Result<()> {
    let client = admin_client(connection)?;
    let query = AuditQuery { provider_id: args.provider_id, after: args.after, limit: args.limit };
    let log = client.audit(&query).await?;
    show(json, &log.entries, |entries| format::audit(entries))
}

pub async fn directory(client: &RegistryClient, key: Option<&str>, json: bool) -> Result<()> {
    let public_key = match key {
        Some(key) => decode_public_key(key).map_err(|why| anyhow::anyhow!("--key: {why}"))?,
        None => {
            let served = client.registry_key().await?;
            super::note("verifying against the key the registry serves; pass --key to check against a key you trust");
            decode_public_key(&served.public_key).map_err(|why| anyhow::anyhow!("the registry's key: {why}"))?
        }
    };
    let signed = client.directory().await?;
    let directory =
        verify_directory(&signed.body, &signed.signature, &public_key).context("the directory failed verification")?;
    let key_id = peyvand_registry::keys::key_id(&public_key);
    show(json, &directory, |d| format::directory(d, &key_id))
}
