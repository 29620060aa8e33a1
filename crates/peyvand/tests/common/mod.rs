//! Test harness: the real `peyvand serve` binary on an ephemeral port, with its standard
//! output (the LISTENING line and OTP lines) read on a thread.

#![allow(dead_code)]

pub mod cluster;
pub mod demo;
pub mod external;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait in the tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The bearer token of every test server's `/metrics` ([`metrics_token_file`]).
pub const METRICS_TOKEN: &str = "peyvand-test-metrics-token";

/// A file holding [`METRICS_TOKEN`], readable by its owner only, as the server requires; the
/// harness gives it to every server it starts (`PEYVAND_METRICS__TOKEN_FILE`).
pub fn metrics_token_file() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let file = temp_dir("metrics-token").join("token");
        std::fs::write(&file, METRICS_TOKEN).expect("write the metrics token");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        file
    })
    .clone()
}

/// A server's `/metrics` page (`base_url` is its client port), read with the token.
pub async fn metrics(base_url: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base_url}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics")
        .error_for_status()
        .expect("metrics with the token")
        .text()
        .await
        .expect("text")
}

/// A fresh, empty directory under the system's temporary directory.
pub fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "peyvand-it-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[derive(Default)]
struct Seen {
    listening: Option<String>,
    /// The `METRICS <url>` line, when `[metrics] listen` is set.
    metrics: Option<String>,
    codes: HashMap<String, Vec<String>>,
    exited: bool,
}

/// A running server process.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    env: Vec<(String, String)>,
    /// Remove the data directory when dropped (not when handing it to a restarted server).
    owns_data: bool,
}

impl Server {
    /// Starts a server on a new data directory.
    pub fn start() -> Self {
        Self::start_with(&temp_dir("data"), &[])
    }

    /// Starts a server on `data` with extra environment variables (configuration).
    pub fn start_with(data: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(data, env, "127.0.0.1:0")
    }

    fn launch(data: &Path, env: &[(&str, &str)], listen: &str) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_peyvand"))
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .envs(
                // The harness's token, unless the test configures the metrics itself.
                (!env.iter().any(|(k, _)| k.starts_with("PEYVAND_METRICS__")))
                    .then(|| ("PEYVAND_METRICS__TOKEN_FILE".to_owned(), metrics_token_file().display().to_string())),
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PEYVAND_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peyvand serve");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cond) = &*sink;
                let mut seen = lock.lock().expect("lock");
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("LISTENING"), Some(url), None) => seen.listening = Some(url.to_owned()),
                    (Some("METRICS"), Some(url), None) => seen.metrics = Some(url.to_owned()),
                    (Some("OTP"), Some(phone), Some(code)) => {
                        seen.codes.entry(phone.to_owned()).or_default().push(code.to_owned())
                    }
                    _ => {}
                }
                cond.notify_all();
            }
            let (lock, cond) = &*sink;
            lock.lock().expect("lock").exited = true;
            cond.notify_all();
        });
        let url = wait_for(&seen, |s| s.listening.clone()).expect("the server printed LISTENING");
        Self { child, url, data: data.to_owned(), seen, env, owns_data: true }
    }

    /// Asks for a sign-in code for `phone` (any form; `e164` is how the server prints it)
    /// and returns the code that request caused, once its OTP line has been read.
    pub async fn new_code(&self, client: &peyvand_client::Client, phone: &str, e164: &str) -> String {
        let before = self.codes_sent(e164);
        client.request_code(phone).await.expect("code requested");
        self.code_after(e164, before)
    }

    /// The code sent to `e164` after `before` others had been, waiting for its OTP line.
    pub fn code_after(&self, e164: &str, before: usize) -> String {
        wait_for(&self.seen, |s| s.codes.get(e164).and_then(|c| c.get(before).cloned()))
            .unwrap_or_else(|| panic!("no OTP line for {e164}"))
    }

    /// How many codes were sent to `e164`.
    pub fn codes_sent(&self, e164: &str) -> usize {
        self.seen.0.lock().expect("lock").codes.get(e164).map_or(0, Vec::len)
    }

    /// The operator's `/metrics` URL (the `METRICS` line), when `[metrics] listen` is set.
    pub fn operator_metrics_url(&self) -> Option<String> {
        self.seen.0.lock().expect("lock").metrics.clone()
    }

    /// `kill -9`: no chance to flush or shut down.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Stops the server as an operator does (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill is installed");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop within {DEADLINE:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new server process on the same data directory and configuration, once this
    /// one has stopped (after [`Server::terminate`]).
    pub fn start_again(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let next = Self::start_with(&self.data.clone(), &env);
        let mut old = std::mem::replace(self, next);
        old.owns_data = false;
    }

    /// Stops the server (`kill -9`), and returns a closure that starts it again on the same
    /// address, data directory and configuration: clients keep their URL.
    pub fn stop_for_restart(mut self) -> impl FnOnce() -> Self {
        self.kill9();
        self.owns_data = false;
        let address = self.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let (data, env) = (self.data.clone(), self.env.clone());
        move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut server = Self::launch(&data, &env, &address);
            server.owns_data = true;
            server
        }
    }

    /// Starts a new server process on the same data directory and configuration.
    pub fn restart(&mut self) {
        self.kill9();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let next = Self::start_with(&self.data.clone(), &env);
        let mut old = std::mem::replace(self, next);
        old.owns_data = false;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// What a process's output reader has seen, and whether the process has ended.
pub trait Ended {
    fn ended(&self) -> bool;
}

impl Ended for Seen {
    fn ended(&self) -> bool {
        self.exited
    }
}

/// Waits until `f` finds what it wants in what was seen; `None` once the process has ended
/// without it, or after [`DEADLINE`].
pub fn wait_for<S: Ended, T>(seen: &Arc<(Mutex<S>, Condvar)>, mut f: impl FnMut(&S) -> Option<T>) -> Option<T> {
    let (lock, cond) = &**seen;
    let deadline = Instant::now() + DEADLINE;
    let mut guard = lock.lock().expect("lock");
    loop {
        if let Some(v) = f(&guard) {
            return Some(v);
        }
        if guard.ended() {
            return None;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        guard = cond.wait_timeout(guard, left).expect("lock").0;
    }
}

/// Polls an async condition until it holds, or fails after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs `phone` (E.164) in through the real code flow and returns a client with its token.
pub async fn sign_in(server: &Server, phone: &str, device: &str) -> peyvand_client::Client {
    let client = peyvand_client::Client::new(&server.url).expect("client");
    let code = server.new_code(&client, phone, phone).await;
    let signed = client
        .sign_in(&peyvand_api::SignInRequest { phone: phone.into(), code, device_name: Some(device.into()), pin: None })
        .await
        .expect("signed in");
    client.with_token(signed.token)
}

/// A signed-in person: their client and account id.
pub struct Person {
    pub client: peyvand_client::Client,
    pub id: i64,
}

pub async fn person(server: &Server, phone: &str) -> Person {
    let client = sign_in(server, phone, "test").await;
    let id = client.me().await.expect("me").id;
    Person { client, id }
}

/// Two people signed up on `server`, and the direct chat the first opened with the second.
pub async fn pair(server: &Server, first: &str, second: &str) -> (Person, Person, peyvand_api::Chat) {
    let a = person(server, first).await;
    let b = person(server, second).await;
    let chat = a.client.open_direct(b.id).await.expect("open a direct chat");
    (a, b, chat)
}

/// The error code of a failed call.
pub fn code_of<T: std::fmt::Debug>(result: Result<T, peyvand_client::ClientError>) -> peyvand_api::ErrorCode {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("expected an API error, got {e}")),
    }
}

/// A text message to send with a chosen client id.
pub fn text(client_id: &str, body: &str) -> peyvand_api::SendMessage {
    peyvand_api::SendMessage {
        client_id: client_id.into(),
        content: Some(peyvand_api::Content::Text { text: body.into() }),
        reply_to: None,
        forward: None,
        media: None,
    }
}

/// Waits for a child to end, failing the test if it takes longer than the deadline.
pub fn finish(child: Child, what: &[&str]) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("peyvand {what:?} did not finish in time"))
        .expect("peyvand ran")
}
