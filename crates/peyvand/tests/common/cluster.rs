//! Several `peyvand serve` nodes sharing the machine's PostgreSQL (a schema of their own,
//! dropped at the end) and NATS (a subject prefix of their own).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::path::Path;

use super::{Server, temp_dir};

/// The PostgreSQL the tests use; the test script makes sure it runs.
pub fn postgres_url() -> String {
    std::env::var("PEYVAND_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn nats_url() -> String {
    std::env::var("PEYVAND_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Runs SQL on the test database with `psql`.
pub fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([postgres_url().as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql is installed");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The first column of the first row a query returns (empty when none), with `psql`.
pub fn psql_value(sql: &str) -> String {
    let out = Command::new("psql")
        .args([postgres_url().as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-t", "-A", "-c", sql])
        .output()
        .expect("psql is installed");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned()
}

/// A PostgreSQL schema for one test, dropped when this goes.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("peyvand_it_{label}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        psql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"));
        Self { name }
    }

    /// The storage URL that puts a node's tables in this schema.
    pub fn storage_url(&self) -> String {
        let base = postgres_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([postgres_url().as_str(), "-q", "-c", &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)])
            .output();
    }
}

/// Nodes of one cluster.
pub struct Cluster {
    pub nodes: Vec<Server>,
    env: Vec<(String, String)>,
    pub schema: Schema,
}

impl Cluster {
    /// Starts `n` nodes on a new schema and subject prefix, with extra configuration `env`.
    pub fn start(label: &str, n: usize, env: &[(&str, &str)]) -> Self {
        let schema = Schema::new(label);
        let mut all: Vec<(String, String)> = vec![
            ("PEYVAND_STORAGE".into(), schema.storage_url()),
            ("PEYVAND_BUS".into(), nats_url()),
            ("PEYVAND_BUS_PREFIX".into(), schema.name.replace('_', "-")),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut cluster = Self { nodes: Vec::new(), env: all, schema };
        for _ in 0..n {
            cluster.add_node();
        }
        cluster
    }

    pub fn add_node(&mut self) -> &Server {
        self.add_node_on(&temp_dir("node"))
    }

    /// Adds a node whose data directory is `data` (prepared by the caller).
    pub fn add_node_on(&mut self, data: &Path) -> &Server {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.nodes.push(Server::start_with(data, &env));
        self.nodes.last().expect("just added")
    }
}

/// A NATS server of a test's own, which it can stop and start again on the same port.
pub struct PrivateNats {
    pub port: u16,
    child: Child,
}

impl PrivateNats {
    pub fn start(port: u16) -> Self {
        let binary = if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" };
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/services installs it)");
        let deadline = Instant::now() + super::DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the private nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
