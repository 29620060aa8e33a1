//! Where the servers under test keep their data and how updates travel between them: the
//! embedded storage and the in-process bus (one node), or a PostgreSQL and a NATS that several
//! nodes share. A run on PostgreSQL gets a schema of its own and a run on NATS a subject prefix
//! of its own, so that a run never sees another's data or updates (nor those of a test suite
//! or a deployment on the same PostgreSQL and NATS).

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::progress::say;

/// `--storage`: `embedded` or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Embedded,
    Postgres(String),
}

impl FromStr for Storage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "embedded" => Ok(Self::Embedded),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres(url.to_owned()))
            }
            _ => Err("expected \"embedded\" or a postgres:// URL".into()),
        }
    }
}

impl Storage {
    /// The kind, for reports (never the URL, which may hold a password).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// `--bus`: `in-process` or NATS URLs separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    InProcess,
    Nats(String),
}

impl FromStr for Bus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "in-process" => Ok(Self::InProcess),
            urls if urls.split(',').all(|url| url.trim().starts_with("nats://")) => Ok(Self::Nats(urls.to_owned())),
            _ => Err("expected \"in-process\" or nats:// URLs separated by commas".into()),
        }
    }
}

impl Bus {
    /// The kind, for reports (never the URLs, which may hold credentials).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::Nats(_) => "nats",
        }
    }
}

/// Whether `nodes` nodes can run on `storage` and `bus`: several nodes are one messenger only
/// when they share both, which the embedded storage and the in-process bus cannot be.
pub fn check_nodes(nodes: usize, storage: &Storage, bus: &Bus) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if nodes > 1 && !(matches!(storage, Storage::Postgres(_)) && matches!(bus, Bus::Nats(_))) {
        bail!(
            "--nodes {nodes} needs a storage and a bus that the nodes share: --storage postgres://... and \
             --bus nats://... (the embedded storage and the in-process bus belong to one process)"
        );
    }
    Ok(())
}

/// What names this run's schema and subject prefix: the process id tells concurrent runs
/// apart, the time tells this run from an earlier one with the same process id.
pub fn run_label() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{}_{seconds}", std::process::id())
}

/// The NATS subject prefix of the run labelled `label` (subject tokens may hold `-`).
pub fn bus_prefix(label: &str) -> String {
    format!("peyvand-bench-{}", label.replace('_', "-"))
}

/// A PostgreSQL schema made for one run, dropped with this value unless kept.
#[derive(Debug)]
pub struct Schema {
    url: String,
    pub name: String,
    keep: bool,
}

impl Schema {
    /// Creates the schema of the run labelled `label` on the database at `url`.
    pub fn create(url: &str, label: &str, keep: bool) -> anyhow::Result<Self> {
        let name = format!("peyvand_bench_{label}");
        psql(url, &format!("CREATE SCHEMA {name}"))?;
        Ok(Self { url: url.to_owned(), name, keep })
    }

    /// The storage URL that puts the servers' tables in this schema.
    pub fn storage_url(&self) -> String {
        with_search_path(&self.url, &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = psql(&self.url, &format!("DROP SCHEMA {} CASCADE", self.name)) {
            say(&format!("could not drop the schema {}: {e:#}", self.name));
        }
    }
}

/// `url` with libpq's `options` parameter setting `search_path` for every connection, so that
/// the servers create and find their tables in `schema` without knowing about it.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// Runs one SQL command with `psql`, which spares the bench a PostgreSQL client of its own.
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    // -X: a ~/.psqlrc must not change what runs.
    let output = Command::new("psql")
        .arg(url)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (is it installed?)")?;
    if !output.status.success() {
        bail!("psql failed on `{sql}`: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_bus_options() {
        assert_eq!("embedded".parse::<Storage>(), Ok(Storage::Embedded));
        assert_eq!(
            "postgres://postgres@127.0.0.1:5432/test".parse::<Storage>(),
            Ok(Storage::Postgres("postgres://postgres@127.0.0.1:5432/test".into()))
        );
        assert!("postgresql://db/x".parse::<Storage>().is_ok());
        assert!("sqlite".parse::<Storage>().is_err());
        assert_eq!("in-process".parse::<Bus>(), Ok(Bus::InProcess));
        assert_eq!("nats://a:4222,nats://b:4222".parse::<Bus>(), Ok(Bus::Nats("nats://a:4222,nats://b:4222".into())));
        assert!("nats://a:4222,redis://b".parse::<Bus>().is_err());
    }

    #[test]
    fn several_nodes_need_a_shared_storage_and_bus() {
        let postgres = Storage::Postgres("postgres://db/x".into());
        let nats = Bus::Nats("nats://n:4222".into());
        assert!(check_nodes(1, &Storage::Embedded, &Bus::InProcess).is_ok());
        assert!(check_nodes(1, &postgres, &Bus::InProcess).is_ok());
        assert!(check_nodes(3, &postgres, &nats).is_ok());
        assert!(check_nodes(0, &postgres, &nats).is_err());
        assert!(check_nodes(2, &postgres, &Bus::InProcess).is_err());
        assert!(check_nodes(2, &Storage::Embedded, &nats).is_err());
    }

    #[test]
    fn the_schema_goes_into_the_url() {
        assert_eq!(
            with_search_path("postgres://postgres@127.0.0.1:5432/test", "peyvand_bench_1_2"),
            "postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dpeyvand_bench_1_2"
        );
        assert_eq!(
            with_search_path("postgres://db/test?sslmode=disable", "s"),
            "postgres://db/test?sslmode=disable&options=-c%20search_path%3Ds"
        );
    }

    #[test]
    fn the_prefix_is_one_valid_subject_token() {
        assert_eq!(bus_prefix("123_456"), "peyvand-bench-123-456");
    }
}
