//! The server under test: a `peyvand serve` child with a fresh data directory and limits
//! high enough that the bench measures the server, not its abuse limits. Its standard output
//! carries `LISTENING <url>` and one `OTP <phone> <code>` line per sign-in code; a thread
//! reads them into a map that sign-ups wait on.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::sync::oneshot;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Every limit of `[service.limits]`: a load test from one address would trip them all.
const LIMITS: &[&str] = &[
    "CODES_PER_NUMBER_PER_HOUR",
    "CODES_PER_BLOCK_PER_HOUR",
    "CODES_PER_ADDRESS_PER_HOUR",
    "SIGN_INS_PER_ADDRESS_PER_HOUR",
    "PIN_ATTEMPTS_PER_HOUR",
    "NEW_CHATS_WITH_STRANGERS_PER_DAY",
    "MESSAGES_PER_MINUTE",
    "CONTACT_LOOKUPS_PER_DAY",
];
const GENEROUS: &str = "1000000000";

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
    fn arrived(&self, phone: &str, code: &str) {
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

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub peyvand: PathBuf,
    /// Where the server keeps its data; a fresh directory under the system's temporary
    /// directory when left out.
    pub data: Option<PathBuf>,
    pub keep_data: bool,
}

/// The running server; stopped (and its data removed unless kept) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    pub base_url: String,
    pub codes: Arc<Codes>,
    data: PathBuf,
    remove_data: bool,
}

fn fresh_dir() -> PathBuf {
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

impl Server {
    pub fn start(options: &ServerOptions) -> anyhow::Result<Self> {
        let remove_data = options.data.is_none() && !options.keep_data;
        let data = options.data.clone().unwrap_or_else(fresh_dir);
        std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let log_path = data.join("server.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(&options.peyvand);
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for limit in LIMITS {
            command.env(format!("PEYVAND_SERVICE__LIMITS__{limit}"), GENEROUS);
        }
        if std::env::var_os("PEYVAND_LOG").is_none() {
            command.env("PEYVAND_LOG", "warn");
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {}", options.peyvand.display()))?;
        let stdout = child.stdout.take().context("the server's standard output is not piped")?;
        let codes = Arc::new(Codes::default());
        let (listening_tx, listening_rx) = mpsc::channel();
        let reader_codes = codes.clone();
        std::thread::Builder::new().name("server-stdout".into()).spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match parse_line(&line) {
                    Line::Listening(url) => {
                        let _ = listening_tx.send(url.to_owned());
                    }
                    Line::Otp { phone, code } => reader_codes.arrived(phone, code),
                    Line::Other => {}
                }
            }
        })?;
        let mut server = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: String::new(),
            codes,
            data,
            remove_data,
        };
        let url = match listening_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => bail!("the server did not print LISTENING within {START_TIMEOUT:?}; see {}", log_path.display()),
        };
        let authority = url.strip_prefix("http://").with_context(|| format!("unexpected LISTENING url {url}"))?;
        server.address = authority.parse().with_context(|| format!("unexpected LISTENING address {authority}"))?;
        server.base_url = url;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Whether the server is still running (it should be, for the whole bench).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("the server exited ({status}); see {}", self.data.join("server.log").display()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
