//! The `peyvand registry` commands and their arguments, as clap sees them.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The default registry address, for the commands and for `serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
pub const DEFAULT_DATA: &str = "./registry-data";

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Runs the registry: licences, the audit log, and the signed directory.
    #[command(after_help = "Example:\n  peyvand registry serve --data /var/lib/peyvand-registry --listen 0.0.0.0:8090")]
    Serve(ServeArgs),
    /// Issues, lists, shows and changes licences (admin API).
    Licence {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Shows the audit log of licence changes, oldest first (admin API).
    #[command(after_help = "Example:\n  peyvand registry audit --provider damavand --limit 20")]
    Audit {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        query: AuditArgs,
    },
    /// Revokes one certificate the registry's CA issued (admin API).
    Certificate {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: CertificateCommand,
    },
    /// For a provider: makes a key and a certificate signing request, exchanges it and a
    /// one-time enrolment token for a certificate, and writes them to a directory.
    #[command(
        after_help = "Example:\n  peyvand registry enrol --provider damavand --token pve_... --out ./damavand-tls"
    )]
    Enrol(EnrolArgs),
    /// Fetches the directory, verifies its signature and expiry, and prints it.
    #[command(after_help = "Example:\n  peyvand registry directory --key \"$PEYVAND_REGISTRY_KEY\"")]
    Directory {
        /// The registry to talk to.
        #[arg(long, env = "PEYVAND_REGISTRY", default_value = "http://127.0.0.1:8090")]
        registry: String,
        /// The registry's public key (base64) to verify against; without it, the key the
        /// registry itself serves is used, which proves less.
        #[arg(long, env = "PEYVAND_REGISTRY_KEY")]
        key: Option<String>,
        /// A CA certificate (PEM) to trust for the registry's HTTPS, besides the system's.
        #[arg(long, env = "PEYVAND_REGISTRY_CA")]
        registry_ca: Option<PathBuf>,
    },
}

/// Options of `peyvand registry serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the registry keeps its database, signing key and admin token.
    #[arg(long, env = "PEYVAND_REGISTRY_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "PEYVAND_REGISTRY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// How long a signed directory stays valid, in seconds (at least 60).
    #[arg(long, env = "PEYVAND_DIRECTORY_TTL_SECS", default_value_t = 86_400)]
    pub directory_ttl_secs: u64,
    /// How long a provider's TLS certificate is valid, in days.
    #[arg(long, env = "PEYVAND_CERTIFICATE_VALIDITY_DAYS", default_value_t = 90)]
    pub certificate_validity_days: u64,
    /// How long an enrolment token can be used, in hours.
    #[arg(long, env = "PEYVAND_ENROLMENT_TOKEN_TTL_HOURS", default_value_t = 24)]
    pub enrolment_token_ttl_hours: u64,
    /// Serve HTTPS only, with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, env = "PEYVAND_REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "PEYVAND_REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Options of `peyvand registry enrol`.
#[derive(Debug, Clone, Args)]
pub struct EnrolArgs {
    /// The registry to enrol with.
    #[arg(long, env = "PEYVAND_REGISTRY", default_value = "http://127.0.0.1:8090")]
    pub registry: String,
    /// The one-time enrolment token the regulator gave (`pve_...`).
    #[arg(long, env = "PEYVAND_ENROLMENT_TOKEN")]
    pub token: String,
    /// A CA certificate (PEM) to trust for the registry's HTTPS, besides the system's.
    #[arg(long, env = "PEYVAND_REGISTRY_CA")]
    pub registry_ca: Option<PathBuf>,
    /// The provider's id, as in its licence.
    #[arg(long = "provider")]
    pub provider_id: String,
    /// The provider's domain [default: the one the directory lists for the provider].
    #[arg(long)]
    pub domain: Option<String>,
    /// Where to write `key.pem` (mode 0600), `csr.pem`, `cert.pem`, `chain.pem` and `ca.pem`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Revokes a certificate by its serial (hex).
    #[command(after_help = "Example:\n  peyvand registry certificate revoke 3f2a9c... --reason 'key leaked'")]
    Revoke {
        /// The certificate's serial number in hex, as `licence certificates` lists it.
        serial: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
}

/// Where the registry is and the admin token to use.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The registry to talk to.
    #[arg(long, global = true, env = "PEYVAND_REGISTRY", default_value = "http://127.0.0.1:8090")]
    pub registry: String,
    /// A file holding the admin token [default: ./registry-data/admin-token, unless
    /// PEYVAND_REGISTRY_TOKEN holds the token itself].
    #[arg(long, global = true, env = "PEYVAND_REGISTRY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the registry's HTTPS, besides the system's.
    #[arg(long, global = true, env = "PEYVAND_REGISTRY_CA")]
    pub registry_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Issues a licence to a new provider.
    #[command(
        after_help = "Example:\n  peyvand registry licence issue --id alborz --name 'البرز' --domain alborz.example \\\n    --endpoint https://ic.alborz.example --contact ops@alborz.example --number L-1405-07 \\\n    --valid-until 2027-12-31 --capability messages --capability discovery"
    )]
    Issue(IssueArgs),
    /// Lists every licence.
    #[command(after_help = "Example:\n  peyvand registry licence list --output json")]
    List,
    /// Shows one licence.
    #[command(after_help = "Example:\n  peyvand registry licence show damavand")]
    Show {
        /// The provider's id (`damavand`).
        provider_id: String,
    },
    /// Suspends an active licence.
    #[command(after_help = "Example:\n  peyvand registry licence suspend damavand --reason 'overdue report'")]
    Suspend {
        /// The provider's id (`damavand`).
        provider_id: String,
        /// Why, for the audit log and the provider.
        #[arg(long)]
        reason: String,
    },
    /// Reinstates a suspended licence.
    #[command(after_help = "Example:\n  peyvand registry licence reinstate damavand --reason 'report filed'")]
    Reinstate {
        /// The provider's id (`damavand`).
        provider_id: String,
        /// Why, for the audit log and the provider.
        #[arg(long)]
        reason: String,
    },
    /// Revokes a licence, for good.
    #[command(after_help = "Example:\n  peyvand registry licence revoke damavand --reason 'ceased operating'")]
    Revoke {
        /// The provider's id (`damavand`).
        provider_id: String,
        /// Why, for the audit log and the provider.
        #[arg(long)]
        reason: String,
    },
    /// Replaces the provider's Ed25519 public signing keys (base64); none clears them.
    #[command(
        after_help = "Example:\n  peyvand registry licence set-keys damavand 0Kx3Uk4mKv2ZmHR0bQ0P0Yw8b9Jh8Yv3s1c9Xx2gk1A= --reason 'key rotation'"
    )]
    SetKeys {
        /// The provider's id (`damavand`).
        provider_id: String,
        /// The new public signing keys (base64 of the 32-byte Ed25519 key); none clears them.
        keys: Vec<String>,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Changes a licence's name, endpoint, contact, end of validity or capabilities.
    #[command(
        after_help = "Example:\n  peyvand registry licence update damavand --valid-until 2028-03-20 --reason renewal"
    )]
    Update(UpdateArgs),
    /// Makes a one-time enrolment token for the provider to get (or renew) its certificate
    /// with; prints it once.
    #[command(after_help = "Example:\n  peyvand registry licence enrol damavand")]
    Enrol {
        /// The provider's id (`damavand`).
        provider_id: String,
    },
    /// Lists the certificates issued to the provider.
    #[command(after_help = "Example:\n  peyvand registry licence certificates damavand")]
    Certificates {
        /// The provider's id (`damavand`).
        provider_id: String,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The provider's id: a lowercase DNS label (`bale`).
    #[arg(long = "id")]
    pub provider_id: String,
    /// The provider's name for people (Persian is fine).
    #[arg(long)]
    pub name: String,
    /// The provider's DNS domain (`bale.example`); its TLS certificate names it.
    #[arg(long)]
    pub domain: String,
    /// Where other providers reach it (https://, or http:// to 127.0.0.1 or localhost).
    #[arg(long)]
    pub endpoint: String,
    /// Who the regulator writes to about the licence (an e-mail address or phone number).
    #[arg(long)]
    pub contact: String,
    /// The licence number (unique).
    #[arg(long = "number")]
    pub licence_number: String,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC) [default: now].
    #[arg(long, value_parser = parse_date)]
    pub valid_from: Option<i64>,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    #[arg(long, value_parser = parse_date)]
    pub valid_until: i64,
    /// An Ed25519 public signing key (base64); repeat for more.
    #[arg(long = "signing-key")]
    pub signing_keys: Vec<String>,
    /// A capability (`messages`); repeat for more.
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The provider's id (`damavand`).
    pub provider_id: String,
    /// The provider's new name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// Where other providers reach it now (https://, or http:// to 127.0.0.1 or localhost).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Who the regulator writes to about the licence now.
    #[arg(long)]
    pub contact: Option<String>,
    /// The new end of validity: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    #[arg(long, value_parser = parse_date)]
    pub valid_until: Option<i64>,
    /// Replaces every capability: `--capabilities messages,discovery`; empty clears them.
    #[arg(long, num_args = 0..=1, value_delimiter = ',', require_equals = false)]
    pub capabilities: Option<Vec<String>>,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this provider's entries.
    #[arg(long = "provider")]
    pub provider_id: Option<String>,
    /// Only entries after this entry id.
    #[arg(long)]
    pub after: Option<i64>,
    /// At most this many entries (100 by default, 1000 at most).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// A UTC date or time as Unix milliseconds; Persian and Arabic-Indic digits are fine.
fn parse_date(input: &str) -> Result<i64, String> {
    let ascii: String = input.chars().map(|c| peyvand_core::text::ascii_digit(c).unwrap_or(c)).collect();
    peyvand_registry::time::parse_utc(&ascii)
        .ok_or_else(|| format!("{input:?} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"))
}
