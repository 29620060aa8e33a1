//! The server's configuration: defaults, then a TOML file, then `PEYVAND_*` environment
//! variables, then command-line flags, each overriding the one before.
//!
//! Any key can be set from the environment: `PEYVAND_LISTEN` sets `listen`, and nested keys
//! use a double underscore, so `PEYVAND_SERVICE__LIMITS__CODES_PER_NUMBER_PER_HOUR=10` sets
//! `[service.limits] codes_per_number_per_hour`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use peyvand_interconnect::InterconnectConfig;
use peyvand_service::ServiceConfig;
use serde::Deserialize;

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address to listen on.
    pub listen: String,
    /// Where the embedded storage keeps its files.
    pub data: PathBuf,
    /// `embedded` (SQLite under `data`, the default) or a PostgreSQL URL,
    /// `postgres://user:password@host:port/database`, shared by every node of a cluster.
    pub storage: String,
    /// Connections each node keeps to PostgreSQL; 0 picks twice this machine's cores.
    pub storage_pool_size: usize,
    /// The embedded storage's writer thread's nice value, -20 to 19 (0 leaves it as the server
    /// was started). Every write passes through that one thread; a negative value keeps it
    /// running when the cores are busy. Needs root, `CAP_SYS_NICE` or `RLIMIT_NICE`
    /// (systemd's `LimitNICE=`); without, the writer runs as started and the log says so.
    pub storage_writer_nice: i32,
    /// `in-process` (one node, the default) or NATS, `nats://host:port` (several addresses
    /// separated by commas), which carries updates between the nodes of a cluster.
    pub bus: String,
    /// The first tokens of every NATS subject this deployment uses, so that several
    /// deployments can share a NATS.
    pub bus_prefix: String,
    /// Where media (photos, voice messages, videos, files) is kept: `embedded` (files under
    /// `data`/media, the default) or an S3-compatible bucket, `s3://bucket/prefix`, shared by
    /// every node of a cluster, reached as `[s3]` says.
    pub media: String,
    /// The S3-compatible object store for `media = "s3://..."`: endpoint, region, credentials.
    pub s3: peyvand_media::storage::S3Settings,
    /// `text` or `json` logs, on standard error.
    pub log_format: LogFormat,
    /// Load balancers or proxies whose `X-Forwarded-For` header names the real client, for
    /// per-address limits. A list in the file; comma-separated in `PEYVAND_TRUSTED_PROXIES`.
    #[serde(deserialize_with = "addresses")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seconds a frame may wait for an update stream's client to take it before the stream
    /// is closed (the client resumes from its cursor when it reconnects).
    pub stream_write_timeout_secs: u64,
    /// Caps on clients' connections, and the header deadline.
    pub connections: ConnectionsConfig,
    /// Where `/metrics` is served, and to whom.
    pub metrics: MetricsConfig,
    pub sms: SmsConfig,
    pub service: ServiceConfig,
    /// The link to other licensed messengers; off unless `provider_id` is set.
    pub interconnect: InterconnectConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data: PathBuf::from("data"),
            storage: "embedded".into(),
            storage_pool_size: 0,
            storage_writer_nice: -10,
            bus: "in-process".into(),
            bus_prefix: "peyvand".into(),
            media: "embedded".into(),
            s3: Default::default(),
            log_format: LogFormat::Text,
            trusted_proxies: Vec::new(),
            stream_write_timeout_secs: peyvand_server::DEFAULT_STREAM_WRITE_TIMEOUT.as_secs(),
            connections: ConnectionsConfig::default(),
            metrics: MetricsConfig::default(),
            sms: SmsConfig::default(),
            service: ServiceConfig::default(),
            interconnect: InterconnectConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[connections]`: what clients' connections may hold, on the one port that serves the
/// client API and the interconnect.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Seconds a client may take to send a request's headers; also how long an idle
    /// kept-alive connection stays open.
    pub header_read_timeout_secs: u64,
    /// Connections open at once, at most.
    pub max: usize,
    /// Connections open at once from one address, at most (an IPv6 address counts by its
    /// /64; `trusted_proxies` count only against `max`).
    pub max_per_address: usize,
    /// File descriptors kept from client connections (for the storage, the bus, calls to other
    /// providers and the registry), out of the open-file limit, which is raised to its hard
    /// limit at start-up.
    pub reserved_descriptors: usize,
    /// Update streams (WebSockets and long polls) one account may hold open on this server
    /// (each node of a cluster counts its own).
    pub streams_per_account: usize,
    /// ... one device (session) may hold open.
    pub streams_per_device: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        use peyvand_http::listener as l;
        Self {
            header_read_timeout_secs: l::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
            max: l::DEFAULT_MAX_CONNECTIONS,
            max_per_address: l::DEFAULT_MAX_PER_ADDRESS,
            reserved_descriptors: l::DEFAULT_RESERVED_DESCRIPTORS,
            streams_per_account: peyvand_server::DEFAULT_STREAMS_PER_ACCOUNT,
            streams_per_device: peyvand_server::DEFAULT_STREAMS_PER_DEVICE,
        }
    }
}

impl ConnectionsConfig {
    pub fn stream_limits(&self) -> peyvand_server::StreamLimits {
        peyvand_server::StreamLimits { per_account: self.streams_per_account, per_device: self.streams_per_device }
    }

    /// The listener's limits; `exempt` (the trusted proxies) count only against `max`.
    pub fn limits(&self, exempt: &[std::net::IpAddr]) -> peyvand_http::listener::ConnectionLimits {
        peyvand_http::listener::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            max_connections: self.max,
            max_per_address: self.max_per_address,
            exempt: exempt.to_vec(),
        }
    }
}

/// `[metrics]`: `/metrics` is for operators. Without `listen` or `token_file` it is served
/// nowhere.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// An address of the operator's (a private network, or loopback) to serve `/metrics` on,
    /// apart from the client port; port 0 picks a free port, printed as `METRICS <url>` before
    /// `LISTENING`.
    pub listen: Option<String>,
    /// A file holding a bearer token (at least 16 characters; readable by its owner only,
    /// mode 0600): `/metrics` is then also served on the client port, to requests with
    /// `Authorization: Bearer <token>`, and asks for it on `listen` too.
    pub token_file: Option<PathBuf>,
}

/// The shortest metrics token accepted.
const MIN_TOKEN_CHARS: usize = 16;

impl MetricsConfig {
    /// The token in `token_file`, checked: the file is readable by its owner only, and the
    /// token long enough and of visible ASCII.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read metrics.token_file {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                bail!(
                    "metrics.token_file {} may be read by others (mode {:o}): chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
        }
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
            bail!(
                "metrics.token_file {} must hold one token of at least {MIN_TOKEN_CHARS} visible ASCII characters",
                path.display()
            );
        }
        Ok(Some(token.to_owned()))
    }
}

/// How sign-in codes reach people.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `console` (print `OTP <number> <code>` on standard output) or `http`.
    pub gateway: SmsGateway,
    /// For `http`: the gateway's URL, which receives a JSON POST per code.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmsGateway {
    #[default]
    Console,
    Http,
}

/// The top-level keys, which are the only `PEYVAND_*` variables read as configuration (others,
/// like `PEYVAND_SERVER`, belong to the client).
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data",
    "storage",
    "storage_pool_size",
    "storage_writer_nice",
    "bus",
    "bus_prefix",
    "media",
    "s3",
    "log_format",
    "trusted_proxies",
    "stream_write_timeout_secs",
    "connections",
    "metrics",
    "sms",
    "interconnect",
    "service",
];

/// Where the storage is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    Embedded,
    Postgres(String),
}

/// How updates travel between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusKind {
    InProcess,
    Nats(String),
}

/// IP addresses as a list, or as one comma-separated string (as an environment variable
/// gives them).
fn addresses<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<std::net::IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| item.parse().map_err(|_| serde::de::Error::custom(format!("{item:?} is not an IP address"))))
        .collect()
}

/// Reads a scalar the way TOML would (number, boolean), else as a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_owned())
}

fn overlay_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("PEYVAND_") else { continue };
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        if !path.first().is_some_and(|k| TOP_LEVEL_KEYS.contains(&k.as_str())) {
            continue;
        }
        let mut node = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(next) = entry else {
                bail!("environment variable {name}: {part} is not a section");
            };
            node = next;
        }
        if let Some(last) = path.last() {
            node.insert(last.clone(), env_value(&value));
        }
    }
    Ok(())
}

impl Config {
    /// Loads the configuration from an optional file and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| format!("{} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut table, std::env::vars())?;
        let config: Config = toml::Value::Table(table).try_into().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn storage_kind(&self) -> anyhow::Result<StorageKind> {
        match self.storage.trim() {
            "" | "embedded" | "sqlite" => Ok(StorageKind::Embedded),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StorageKind::Postgres(url.to_owned()))
            }
            _ => bail!("storage must be \"embedded\" or a postgres:// URL"),
        }
    }

    pub fn bus_kind(&self) -> anyhow::Result<BusKind> {
        match self.bus.trim() {
            "" | "in-process" => Ok(BusKind::InProcess),
            urls if urls.split(',').all(|u| u.trim().starts_with("nats://")) => Ok(BusKind::Nats(urls.to_owned())),
            _ => bail!("bus must be \"in-process\" or nats:// URLs separated by commas"),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.storage_kind()?;
        self.bus_kind()?;
        if self.sms.gateway == SmsGateway::Http && self.sms.url.as_deref().is_none_or(str::is_empty) {
            bail!("sms.gateway = \"http\" needs sms.url");
        }
        if !peyvand_store::sqlite::NICE_RANGE.contains(&self.storage_writer_nice) {
            let (low, high) = peyvand_store::sqlite::NICE_RANGE.into_inner();
            bail!("storage_writer_nice must be {low} to {high}");
        }
        if self.stream_write_timeout_secs == 0 {
            bail!("stream_write_timeout_secs must be positive");
        }
        let c = &self.connections;
        if c.header_read_timeout_secs == 0 || c.max == 0 || c.max_per_address == 0 {
            bail!(
                "connections.header_read_timeout_secs, connections.max and connections.max_per_address must be positive"
            );
        }
        if self.metrics.listen.as_deref().is_some_and(|l| l.trim().is_empty()) {
            bail!("metrics.listen must be an address such as 127.0.0.1:9464");
        }
        self.metrics.token()?;
        if c.streams_per_account == 0 || c.streams_per_device == 0 {
            bail!("connections.streams_per_account and connections.streams_per_device must be positive");
        }
        let s = &self.service;
        if !(4..=8).contains(&s.code_length) {
            bail!("service.code_length must be 4 to 8");
        }
        if s.code_ttl_secs == 0 || s.code_max_attempts == 0 {
            bail!("service.code_ttl_secs and service.code_max_attempts must be positive");
        }
        if s.presence_heartbeat_secs == 0 {
            bail!("service.presence_heartbeat_secs must be positive");
        }
        if s.catch_up_reads == 0 {
            bail!("service.catch_up_reads must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_from(toml_text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut table: toml::Table = toml_text.parse()?;
        overlay_env(&mut table, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))?;
        let config: Config = toml::Value::Table(table).try_into()?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let config = load_from(
            "listen = \"0.0.0.0:9000\"\n[service.limits]\ncodes_per_number_per_hour = 3\n",
            &[
                ("PEYVAND_SERVICE__LIMITS__CODES_PER_NUMBER_PER_HOUR", "7"),
                ("PEYVAND_DATA", "/var/lib/peyvand"),
                ("PEYVAND_SERVER", "http://ignored"),
                ("PEYVAND_HOME", "/ignored"),
            ],
        )
        .expect("valid");
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.data, PathBuf::from("/var/lib/peyvand"));
        assert_eq!(config.service.limits.codes_per_number_per_hour, 7);
        assert_eq!(config.service.code_length, 5);
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.stream_write_timeout_secs, 30);
        let config = load_from("", &[("PEYVAND_STREAM_WRITE_TIMEOUT_SECS", "2")]).expect("valid");
        assert_eq!(config.stream_write_timeout_secs, 2);
    }

    #[test]
    fn trusted_proxies_from_a_list_or_a_comma_separated_variable() {
        let from_file = load_from("trusted_proxies = [\"10.0.0.1\", \"::1\"]", &[]).expect("valid");
        assert_eq!(from_file.trusted_proxies.len(), 2);
        let from_env = load_from("", &[("PEYVAND_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")]).expect("valid");
        assert_eq!(from_env.trusted_proxies.len(), 2);
        assert!(load_from("trusted_proxies = [\"not an ip\"]", &[]).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(load_from("lisen = \"x\"", &[]).is_err());
        assert!(load_from("[service]\ncode_length = 2", &[]).is_err());
        assert!(load_from("[service]\ncatch_up_reads = 0", &[]).is_err());
        assert_eq!(load_from("[service]\ncatch_up_reads = 3", &[]).expect("valid").service.catch_up_reads, 3);
        assert!(load_from("[sms]\ngateway = \"http\"", &[]).is_err());
        assert!(load_from("stream_write_timeout_secs = 0", &[]).is_err());
        assert!(load_from("[connections]\nmax_per_address = 0", &[]).is_err());
        assert!(load_from("[connections]\nheader_read_timeout_secs = 0", &[]).is_err());
        assert!(load_from("[connections]\nmaximum = 3", &[]).is_err());
        let connections = load_from("[connections]\nmax = 9", &[("PEYVAND_CONNECTIONS__MAX_PER_ADDRESS", "3")])
            .expect("valid")
            .connections;
        assert_eq!((connections.max, connections.max_per_address, connections.header_read_timeout_secs), (9, 3, 15));
        assert!(load_from("storage_writer_nice = -21", &[]).is_err());
        assert!(load_from("", &[("PEYVAND_STORAGE_WRITER_NICE", "20")]).is_err());
        assert_eq!(load_from("", &[("PEYVAND_STORAGE_WRITER_NICE", "0")]).expect("valid").storage_writer_nice, 0);
        assert_eq!(load_from("", &[]).expect("valid").storage_writer_nice, -10);
        assert!(load_from("", &[("PEYVAND_SERVICE__NOPE", "1")]).is_err());
        assert!(load_from("storage = \"mysql://x\"", &[]).is_err());
        assert!(load_from("bus = \"nats://a:4222,redis://b\"", &[]).is_err());
    }

    #[test]
    fn the_metrics_token_file_must_be_private_and_hold_a_real_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("peyvand-metrics-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        let with = |text: &str, mode: u32| {
            std::fs::write(&file, text).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            load_from(&format!("[metrics]\ntoken_file = {:?}", file.display().to_string()), &[])
        };
        let config = with("0123456789abcdef-token\n", 0o600).expect("valid");
        assert_eq!(config.metrics.token().expect("token").as_deref(), Some("0123456789abcdef-token"));
        assert!(with("0123456789abcdef-token", 0o644).is_err(), "readable by others");
        assert!(with("short", 0o600).is_err(), "too short");
        assert!(with("0123456789 abcdef token", 0o600).is_err(), "not one token");
        assert!(load_from("[metrics]\ntoken_file = \"/nonexistent/token\"", &[]).is_err());
        assert!(load_from("[metrics]\nlisten = \"\"", &[]).is_err());
        assert!(load_from("", &[]).expect("valid").metrics.token().expect("none").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The names of a struct's fields, as serde knows them.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct's field names are read"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(serde::de::Error::custom("field names read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let mut fields = Vec::new();
        let _ = <Config as serde::Deserialize>::deserialize(FieldNames(&mut fields));
        fields.sort_unstable();
        let mut keys = TOP_LEVEL_KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(keys, fields, "TOP_LEVEL_KEYS lists every top-level setting");
        let config = load_from(
            "",
            &[
                ("PEYVAND_MEDIA", "s3://peyvand-media/node"),
                ("PEYVAND_S3__ENDPOINT", "http://127.0.0.1:9000"),
                ("PEYVAND_S3__ALLOW_HTTP", "true"),
            ],
        )
        .expect("valid");
        assert_eq!(config.media, "s3://peyvand-media/node");
        assert_eq!(config.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(config.s3.allow_http);
    }

    #[test]
    fn storage_and_bus_from_the_file_or_the_environment() {
        let default = load_from("", &[]).expect("valid");
        assert_eq!(default.storage_kind().expect("kind"), StorageKind::Embedded);
        assert_eq!(default.bus_kind().expect("kind"), BusKind::InProcess);
        let cluster = load_from(
            "storage = \"postgres://db.internal/peyvand\"",
            &[("PEYVAND_BUS", "nats://n1:4222, nats://n2:4222")],
        )
        .expect("valid");
        assert_eq!(
            cluster.storage_kind().expect("kind"),
            StorageKind::Postgres("postgres://db.internal/peyvand".into())
        );
        assert!(matches!(cluster.bus_kind().expect("kind"), BusKind::Nats(urls) if urls.contains("n2")));
    }
}
