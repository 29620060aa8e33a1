//! The servers under test: `peyvand serve` children (one, or several nodes of a cluster) with
//! fresh data and limits high enough that the bench measures the server, not its abuse limits.
//! Each node's standard output carries `LISTENING <url>` and one `OTP <phone> <code>` line per
//! sign-in code it sent; a thread per node reads them into one map that sign-ups wait on.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::sync::oneshot;

use crate::backends::{Bus, Schema, Storage, bus_prefix, check_nodes, run_label};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Every limit of `[service.limits]`: a load test from one address would trip them all.
pub(crate) const LIMITS: &[&str] = &[
    "CODES_PER_NUMBER_PER_HOUR",
    "CODES_PER_BLOCK_PER_HOUR",
    "CODES_PER_ADDRESS_PER_HOUR",
    "SIGN_INS_PER_ADDRESS_PER_HOUR",
    "PIN_ATTEMPTS_PER_HOUR",
    "NEW_CHATS_WITH_STRANGERS_PER_DAY",
    "MESSAGES_PER_MINUTE",
    "CONTACT_LOOKUPS_PER_DAY",
];
pub(crate) const GENEROUS: &str = "1000000000";
/// The caps of `[connections]`: the bench opens its many clients from loopback addresses,
/// many streams per address, and would trip them too. (The open-file limit, less
/// `reserved_descriptors`, still caps the connections of a node.)
pub(crate) const CONNECTION_CAPS: &[&str] = &["MAX", "MAX_PER_ADDRESS", "STREAMS_PER_ACCOUNT", "STREAMS_PER_DEVICE"];

/// A line of the server's standard output.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Listening(&'a str),
    Otp { phone: &'a str, code: &'a str },
    Other,
}

fn parse_line(line: &str) -> Line<'_> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("LISTENING"), Some(url), None) => Line::Listening(url),
        (Some("OTP"), Some(phone), Some(code)) => Line::Otp { phone, code },
        _ => Line::Other,
    }
}

enum Slot {
    Arrived(String),
    Awaited(oneshot::Sender<String>),
}

/// Sign-in codes by phone number; the code may arrive before or after someone waits for it.
#[derive(Default)]
pub struct Codes {
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codes").finish_non_exhaustive()
    }
}

impl Codes {
    pub(crate) fn arrived(&self, phone: &str, code: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.remove(phone) {
            Some(Slot::Awaited(waiter)) => {
                let _ = waiter.send(code.to_owned());
            }
            _ => {
                slots.insert(phone.to_owned(), Slot::Arrived(code.to_owned()));
            }
        }
    }

    /// The code sent to `phone`, waiting up to `timeout` for it.
    pub async fn take(&self, phone: &str, timeout: Duration) -> anyhow::Result<String> {
        let waiting = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Slot::Arrived(code)) = slots.remove(phone) {
                return Ok(code);
            }
            let (tx, rx) = oneshot::channel();
            slots.insert(phone.to_owned(), Slot::Awaited(tx));
            rx
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err(_)) => bail!("the server stopped before printing the code for {phone}"),
            Err(_) => bail!("no code for {phone} within {timeout:?}"),
        }
    }
}

/// How to start the servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub peyvand: PathBuf,
    /// Where the servers keep their data and logs; a fresh directory under the system's
    /// temporary directory when left out.
    pub data: Option<PathBuf>,
    /// Keep the fresh data directory and the PostgreSQL schema after the run.
    pub keep_data: bool,
    pub storage: Storage,
    pub bus: Bus,
    pub nodes: usize,
}

/// One running `peyvand serve`; stopped when dropped.
#[derive(Debug)]
pub struct Node {
    child: Child,
    pub address: SocketAddr,
    pub base_url: String,
    data: PathBuf,
}

impl Node {
    /// Starts a node with its data and log in `data`, feeding the codes it prints to `codes`.
    fn start(peyvand: &Path, data: PathBuf, backends: &NodeBackends, codes: Arc<Codes>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let log_path = data.join("server.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        // `/metrics` is for operators: the bench reads it with a token of its own.
        let token_file = data.join("metrics-token");
        crate::metrics::write_token_file(&token_file)
            .with_context(|| format!("cannot write {}", token_file.display()))?;
        let mut command = Command::new(peyvand);
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--storage")
            .arg(&backends.storage)
            .arg("--bus")
            .arg(&backends.bus)
            // Set even for the in-process bus: one inherited from the environment must not
            // put a bench run on a deployment's subjects.
            .env("PEYVAND_BUS_PREFIX", &backends.bus_prefix)
            .env("PEYVAND_METRICS__TOKEN_FILE", &token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for limit in LIMITS {
            command.env(format!("PEYVAND_SERVICE__LIMITS__{limit}"), GENEROUS);
        }
        for cap in CONNECTION_CAPS {
            command.env(format!("PEYVAND_CONNECTIONS__{cap}"), GENEROUS);
        }
        if std::env::var_os("PEYVAND_LOG").is_none() {
            command.env("PEYVAND_LOG", "warn");
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {}", peyvand.display()))?;
        let stdout = child.stdout.take().context("the server's standard output is not piped")?;
        let (listening_tx, listening_rx) = mpsc::channel();
        std::thread::Builder::new().name("server-stdout".into()).spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match parse_line(&line) {
                    Line::Listening(url) => {
                        let _ = listening_tx.send(url.to_owned());
                    }
                    Line::Otp { phone, code } => codes.arrived(phone, code),
                    Line::Other => {}
                }
            }
        })?;
        let mut node = Self { child, address: SocketAddr::from(([127, 0, 0, 1], 0)), base_url: String::new(), data };
        let url = match listening_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the server did not print LISTENING within {START_TIMEOUT:?}; see {}", log_path.display())
            }
            // Its standard output closed: it stopped, most likely unable to reach its storage or
            // bus, and said why at the end of its log.
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                "the server stopped before listening; the end of {}:\n{}",
                log_path.display(),
                log_tail(&log_path)
            ),
        };
        let authority = url.strip_prefix("http://").with_context(|| format!("unexpected LISTENING url {url}"))?;
        node.address = authority.parse().with_context(|| format!("unexpected LISTENING address {authority}"))?;
        node.base_url = url;
        Ok(node)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                bail!("the server {} exited ({status}); see {}", self.base_url, self.data.join("server.log").display())
            }
        }
    }
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    const LINES: usize = 10;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How every node of a run reaches its storage and bus, as `peyvand serve` takes them.
struct NodeBackends {
    storage: String,
    bus: String,
    bus_prefix: String,
}

/// The servers under test: one node, or several sharing a PostgreSQL schema and a NATS subject
/// prefix. All of it (processes, fresh data directory, schema) goes when this is dropped,
/// unless kept.
#[derive(Debug)]
pub struct Servers {
    nodes: Vec<Node>,
    /// Codes from every node: a code is printed by whichever node was asked for it.
    pub codes: Arc<Codes>,
    data: PathBuf,
    remove_data: bool,
    storage: &'static str,
    bus: &'static str,
    /// Set when the run is on PostgreSQL.
    schema: Option<Schema>,
    /// Set when the run is on NATS.
    bus_prefix: Option<String>,
}

/// The setup of a run, as reported.
#[derive(Debug, Clone)]
pub struct Setup {
    pub storage: &'static str,
    pub bus: &'static str,
    pub nodes: usize,
}

impl Setup {
    /// `2 nodes, storage postgres, bus nats`.
    pub fn line(&self) -> String {
        let nodes = if self.nodes == 1 { "1 node".to_owned() } else { format!("{} nodes", self.nodes) };
        format!("{nodes}, storage {}, bus {}", self.storage, self.bus)
    }
}

pub(crate) fn fresh_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("peyvand-bench-{}-{nanos}", std::process::id()))
}

/// `peyvand` beside this executable, as cargo and installs lay them out.
pub fn default_peyvand() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|dir| dir.join("peyvand")))
        .unwrap_or_else(|| PathBuf::from("peyvand"))
}

impl Servers {
    pub fn start(options: &ServerOptions) -> anyhow::Result<Self> {
        check_nodes(options.nodes, &options.storage, &options.bus)?;
        let remove_data = options.data.is_none() && !options.keep_data;
        let data = options.data.clone().unwrap_or_else(fresh_dir);
        std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let label = run_label();
        // Built up step by step so that whatever was made is undone if a later step fails.
        let mut servers = Self {
            nodes: Vec::with_capacity(options.nodes),
            codes: Arc::new(Codes::default()),
            data,
            remove_data,
            storage: options.storage.kind(),
            bus: options.bus.kind(),
            schema: None,
            bus_prefix: None,
        };
        let storage = match &options.storage {
            Storage::Embedded => "embedded".to_owned(),
            Storage::Postgres(url) => {
                let schema = Schema::create(url, &label, options.keep_data)?;
                let url = schema.storage_url();
                servers.schema = Some(schema);
                url
            }
        };
        let prefix = bus_prefix(&label);
        let bus = match &options.bus {
            Bus::InProcess => "in-process".to_owned(),
            Bus::Nats(urls) => {
                servers.bus_prefix = Some(prefix.clone());
                urls.clone()
            }
        };
        let backends = NodeBackends { storage, bus, bus_prefix: prefix };
        // One after another, so that only the first node finds the schema empty and brings it
        // up to date.
        for i in 0..options.nodes {
            let dir = if options.nodes == 1 { servers.data.clone() } else { servers.data.join(format!("node-{i}")) };
            let node = Node::start(&options.peyvand, dir, &backends, servers.codes.clone())?;
            servers.nodes.push(node);
        }
        Ok(servers)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node that person (or connection) `i` uses: people take turns over the nodes, so
    /// that the two people of a pair are on different nodes whenever there are several.
    pub fn node_for(&self, i: usize) -> &Node {
        &self.nodes[i % self.nodes.len()]
    }

    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Node::pid).collect()
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.address).collect()
    }

    pub fn base_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base_url.clone()).collect()
    }

    /// The directory for the run's files (each node's data and log is in it, or is it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Whether the servers keep their data in the embedded storage (a run on PostgreSQL has a
    /// schema of its own).
    pub fn embedded_storage(&self) -> bool {
        self.schema.is_none()
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(|s| s.name.as_str())
    }

    pub fn bus_prefix(&self) -> Option<&str> {
        self.bus_prefix.as_deref()
    }

    pub fn setup(&self) -> Setup {
        Setup { storage: self.storage, bus: self.bus, nodes: self.nodes.len() }
    }

    /// Whether every node is still running (they should be, for the whole bench).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.nodes.iter_mut().try_for_each(Node::check_alive)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // The nodes stop first: they write in the directory and hold connections to the schema.
        // The schema, a field, is dropped after this.
        self.nodes.clear();
        if self.remove_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_lines() {
        assert_eq!(parse_line("LISTENING http://127.0.0.1:4321"), Line::Listening("http://127.0.0.1:4321"));
        assert_eq!(parse_line("OTP +989120000001 04213"), Line::Otp { phone: "+989120000001", code: "04213" });
        assert_eq!(parse_line("something else entirely"), Line::Other);
    }

    #[tokio::test]
    async fn a_code_is_found_whether_it_comes_before_or_after_the_wait() {
        let codes = Arc::new(Codes::default());
        codes.arrived("+989120000001", "11111");
        assert_eq!(codes.take("+989120000001", Duration::from_secs(1)).await.expect("arrived"), "11111");

        let waiter = {
            let codes = codes.clone();
            tokio::spawn(async move { codes.take("+989120000002", Duration::from_secs(5)).await })
        };
        // The waiter may or may not have registered yet: both orders must work.
        tokio::task::yield_now().await;
        codes.arrived("+989120000002", "22222");
        assert_eq!(waiter.await.expect("joined").expect("arrived"), "22222");

        assert!(codes.take("+989120000003", Duration::from_millis(10)).await.is_err());
    }
}
