//! `peyvand demo` as a test fixture: a registry and three providers in one process, their
//! `READY` lines read for the URLs, `OTP` lines for sign-in codes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};

use super::{Ended, temp_dir, wait_for as wait};

#[derive(Default)]
struct Lines {
    registry: Option<String>,
    admin_token: Option<PathBuf>,
    providers: HashMap<String, String>,
    codes: HashMap<String, Vec<String>>,
    exited: bool,
}

/// A running `peyvand demo --base-port 0`.
pub struct Demo {
    child: Child,
    pub data: PathBuf,
    pub registry: String,
    pub admin_token: String,
    lines: Arc<(Mutex<Lines>, Condvar)>,
}

/// The demo's providers.
pub const PROVIDERS: [&str; 3] = ["alborz", "damavand", "sahand"];

impl Demo {
    /// Starts the demo with providers refreshing the directory every second, configured by
    /// `env` (`PEYVAND_*` variables) besides.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::launch(env, Some(temp_dir("demo")))
    }

    /// Starts the demo without `--data`, so that it makes its own folder under `tmp` (as
    /// `TMPDIR`); `data` is then that folder, found from the admin token's path.
    pub fn start_in_temporary(tmp: &std::path::Path) -> Self {
        Self::launch(&[("TMPDIR", tmp.to_str().expect("a UTF-8 path"))], None)
    }

    fn launch(env: &[(&str, &str)], data: Option<PathBuf>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_peyvand"));
        command.args(["demo", "--base-port", "0", "--directory-refresh-secs", "1"]);
        if let Some(data) = &data {
            command.arg("--data").arg(data);
        }
        let mut child = command
            .env("PEYVAND_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peyvand demo");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cond) = &*sink;
                let mut seen = lock.lock().expect("lock");
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["READY", "registry", url] => seen.registry = Some((*url).to_owned()),
                    ["READY", "provider", id, url] => {
                        seen.providers.insert((*id).to_owned(), (*url).to_owned());
                    }
                    ["ADMIN-TOKEN", path] => seen.admin_token = Some(PathBuf::from(path)),
                    ["OTP", phone, code, _messenger] => {
                        seen.codes.entry((*phone).to_owned()).or_default().push((*code).to_owned())
                    }
                    _ => {}
                }
                cond.notify_all();
            }
            let (lock, cond) = &*sink;
            lock.lock().expect("lock").exited = true;
            cond.notify_all();
        });
        let ready = wait(&lines, |l| (l.providers.len() == PROVIDERS.len()).then(|| l.registry.clone()).flatten())
            .expect("the demo printed a READY line for the registry and every provider");
        let token_file = wait(&lines, |l| l.admin_token.clone()).expect("ADMIN-TOKEN line");
        let admin_token = std::fs::read_to_string(&token_file).expect("admin token").trim().to_owned();
        // The token is `<data>/registry/admin-token`.
        let data = data.unwrap_or_else(|| {
            token_file.parent().and_then(std::path::Path::parent).expect("the demo's folder").to_owned()
        });
        Self { child, data, registry: ready, admin_token, lines }
    }

    /// The client API URL of a provider.
    pub fn url(&self, provider: &str) -> String {
        self.lines.0.lock().expect("lock").providers.get(provider).cloned().expect("a demo provider")
    }

    /// How many sign-in codes were sent to `phone` (E.164), by any provider.
    pub fn codes_sent(&self, phone: &str) -> usize {
        self.lines.0.lock().expect("lock").codes.get(phone).map_or(0, Vec::len)
    }

    /// The code sent to `phone` after `before` others had been, once its OTP line is read.
    pub fn code_after(&self, phone: &str, before: usize) -> Option<String> {
        wait(&self.lines, |l| l.codes.get(phone).and_then(|c| c.get(before).cloned()))
    }

    /// Signs `phone` (E.164) in on `provider` through the code flow.
    pub async fn sign_in(&self, provider: &str, phone: &str) -> peyvand_client::Client {
        let client = peyvand_client::Client::new(&self.url(provider)).expect("client");
        let before = self.lines.0.lock().expect("lock").codes.get(phone).map_or(0, Vec::len);
        client.request_code(phone).await.expect("code requested");
        let code = wait(&self.lines, |l| l.codes.get(phone).and_then(|c| c.get(before).cloned())).expect("OTP line");
        let signed = client
            .sign_in(&peyvand_api::SignInRequest { phone: phone.into(), code, device_name: None, pin: None })
            .await
            .expect("signed in");
        client.with_token(signed.token)
    }

    /// A call to the registry's admin API; the status and JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.registry))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("admin call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

impl Demo {
    /// Stops the demo with SIGTERM, as a service manager would, and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = std::time::Instant::now() + super::DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the demo did not exit after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Ended for Lines {
    fn ended(&self) -> bool {
        self.exited
    }
}
