//! The regulator's registry: the real `peyvand registry serve` binary on an ephemeral port,
//! driven over HTTP and through the `peyvand registry` commands as subprocesses: licences
//! and their transitions, the audit log, the admin token, stable error codes, the signed
//! directory, and a restart.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peyvand_registry::keys::{decode_public_key, decode_signature};
use peyvand_registry::verify_directory;
use serde_json::{Value, json};

mod common;

use common::{DEADLINE, temp_dir};

/// A running `peyvand registry serve`.
struct Registry {
    child: Child,
    url: String,
    data: PathBuf,
    /// The `ADMIN-TOKEN` line: printed only at the start that made the token.
    token_file: Option<PathBuf>,
    /// The `REGISTRY-KEY` line.
    public_key: String,
    /// The CA certificate the commands trust for the registry's HTTPS, if it serves HTTPS.
    ca: Option<PathBuf>,
}

impl Registry {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    /// Starts with extra `peyvand registry serve` arguments.
    fn start_with(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peyvand"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("PEYVAND_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peyvand registry serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut token_file, mut public_key) = (None, None);
        let deadline = Instant::now() + DEADLINE;
        let url = loop {
            let left = deadline.checked_duration_since(Instant::now()).expect("the registry printed LISTENING in time");
            let line = rx.recv_timeout(left).expect("the registry printed LISTENING");
            match line.split_once(' ') {
                Some(("ADMIN-TOKEN", path)) => token_file = Some(PathBuf::from(path)),
                Some(("REGISTRY-KEY", key)) => public_key = Some(key.to_owned()),
                Some(("LISTENING", url)) => break url.to_owned(),
                _ => {}
            }
        };
        let public_key = public_key.expect("REGISTRY-KEY line");
        Self { child, url, data: data.to_owned(), token_file, public_key, ca: None }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn token(&self) -> String {
        let path = self.data.join("admin-token");
        std::fs::read_to_string(path).expect("admin token file").trim().to_owned()
    }

    /// Runs `peyvand registry ARGS` against this registry with the admin token file.
    fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        let mut command = Command::new(env!("CARGO_BIN_EXE_peyvand"));
        match &self.ca {
            Some(ca) => command.env("PEYVAND_REGISTRY_CA", ca),
            None => command.env_remove("PEYVAND_REGISTRY_CA"),
        };
        let child = command
            .args(&all)
            .env("PEYVAND_REGISTRY", &self.url)
            .env("PEYVAND_REGISTRY_TOKEN_FILE", self.data.join("admin-token"))
            .env_remove("PEYVAND_REGISTRY_TOKEN")
            .env_remove("PEYVAND_OUTPUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start peyvand registry");
        finish(child, &all)
    }

    /// A command with `--output json` that must succeed; what it printed.
    fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--output", "json"]);
        let output = self.cli(&all);
        assert!(output.status.success(), "{all:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{all:?} printed no JSON: {e}"))
    }

    /// A command that must fail; its standard error.
    fn cli_fails(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(!output.status.success(), "{args:?} should have failed");
        String::from_utf8(output.stderr).expect("UTF-8")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a command to end, killing it after the deadline.
fn finish(mut child: Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peyvand {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// An HTTP call with an optional bearer token: the status and the JSON body.
async fn call(method: reqwest::Method, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The directory as served, verified with the key from the `REGISTRY-KEY` line; also checks
/// that `/v1/directory.sig` carries the same signature. The registry may re-sign between the
/// two requests (a licence starting or ending, the half-life refresh): then they are asked again.
async fn directory(registry: &Registry) -> peyvand_registry::Directory {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = reqwest::get(format!("{}/v1/directory", registry.url)).await.expect("directory");
        assert_eq!(response.status().as_u16(), 200);
        let header = response.headers()["peyvand-signature"].to_str().expect("ascii").to_owned();
        let body = response.bytes().await.expect("body");
        let signature = decode_signature(&header).expect("base64 signature");
        let key = decode_public_key(&registry.public_key).expect("base64 key");
        let document = verify_directory(&body, &signature, &key).expect("the directory verifies");
        let sig_file = reqwest::get(format!("{}/v1/directory.sig", registry.url)).await.expect("sig").text().await;
        if sig_file.expect("text").trim() == header {
            return document;
        }
        assert!(std::time::Instant::now() < deadline, "/v1/directory.sig never matched the served directory");
    }
}

/// `licence issue` with every field given.
fn issue_args<'a>(
    id: &'a str,
    name: &'a str,
    domain: &'a str,
    endpoint: &'a str,
    contact: &'a str,
    number: &'a str,
    valid_until: &'a str,
) -> Vec<&'a str> {
    vec![
        "licence",
        "issue",
        "--id",
        id,
        "--name",
        name,
        "--domain",
        domain,
        "--endpoint",
        endpoint,
        "--contact",
        contact,
        "--number",
        number,
        "--valid-until",
        valid_until,
    ]
}

/// `licence issue` for the provider the tests use most, valid until `until`.
fn issue_bale(until: &str) -> Vec<&str> {
    issue_args("bale", "پیام‌رسان بله", "bale.ir", "https://ic.bale.ir", "ops@bale.ir", "CRA-1404-001", until)
}

fn in_a_year() -> String {
    let at = peyvand_registry::time::now_millis() + 365 * 86_400_000;
    peyvand_registry::time::format_millis(at)
}

#[tokio::test]
async fn licences_audit_and_the_signed_directory() {
    let data = temp_dir("registry");
    let mut registry = Registry::start(&data);
    let token = registry.token();
    assert_eq!(registry.token_file.as_deref().map(|p| p.ends_with("admin-token")), Some(true));
    assert!(token.starts_with("pvr_"));
    #[cfg(unix)]
    for file in ["admin-token", "registry-key.pk8"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join(file)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let key_info = call(reqwest::Method::GET, &format!("{}/v1/registry-key", registry.url), None, None).await.1;
    assert_eq!(key_info["public_key"], registry.public_key.as_str());
    assert_eq!(key_info["algorithm"], "ed25519");
    let first = directory(&registry).await;
    assert!(first.providers.is_empty());

    // Issue through the CLI (Persian name, Persian digits in the date).
    let until = in_a_year();
    let issued = registry.cli_json(&[issue_bale(&until).as_slice(), &["--capability", "messages"]].concat());
    assert_eq!(issued["provider_id"], "bale");
    assert_eq!(issued["name"], "پیام‌رسان بله");
    assert_eq!(issued["status"], "active");
    assert_eq!(issued["endpoint"], "https://ic.bale.ir/");
    let persian_date = registry.cli_json(&issue_args(
        "eitaa",
        "ایتا",
        "eitaa.ir",
        "http://127.0.0.1:9001",
        "+98 21 0000 0000",
        "CRA-1404-002",
        "۲۰۹۹-۰۱-۰۱",
    ));
    assert_eq!(persian_date["valid_until"], 4_070_908_800_000i64);

    // And over HTTP.
    let admin = format!("{}/v1/admin", registry.url);
    let rubika = json!({
        "provider_id": "rubika", "name": "روبیکا", "domain": "rubika.ir", "endpoint": "https://ic.rubika.ir/",
        "contact": "ops@rubika.ir", "licence_number": "CRA-1404-003",
        "valid_until": peyvand_registry::time::now_millis() + 86_400_000,
    });
    let (status, body) =
        call(reqwest::Method::POST, &format!("{admin}/licences"), Some(&token), Some(rubika.clone())).await;
    assert_eq!(status, 201, "{body}");

    let after_issue = directory(&registry).await;
    assert_eq!(after_issue.version, first.version + 3);
    assert_eq!(after_issue.providers.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["bale", "eitaa", "rubika"]);

    // Listing, in text and JSON.
    let listed = registry.cli_json(&["licence", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let text = registry.cli(&["licence", "list"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("bale  active  CRA-1404-001") && text.contains("پیام‌رسان بله"), "{text}");

    // Keys and capabilities, set by the CLI, reach the directory.
    let key = peyvand_registry::keys::encode_base64(&[5; 32]);
    let with_keys = registry.cli_json(&["licence", "set-keys", "bale", &key, "--reason", "operator's key"]);
    assert_eq!(with_keys["signing_keys"], json!([key]));
    registry.cli_json(&["licence", "update", "bale", "--capabilities", "messages,discovery"]);
    let bale = directory(&registry).await;
    let entry = bale.provider("bale").expect("bale listed");
    assert_eq!(entry.signing_keys, vec![key.clone()]);
    assert_eq!(entry.capabilities, vec!["discovery", "messages"]);
    assert_eq!(bale.version, after_issue.version + 2);

    // Suspend, reinstate, revoke; each moves the directory on.
    let suspended = registry.cli_json(&["licence", "suspend", "bale", "--reason", "late statistics"]);
    assert_eq!(suspended["status"], "suspended");
    let listing = directory(&registry).await;
    assert_eq!(listing.version, bale.version + 1);
    assert_eq!(listing.provider("bale").map(|p| p.status.as_str()), Some("suspended"));
    let stderr = registry.cli_fails(&["licence", "suspend", "bale", "--reason", "again"]);
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    registry.cli_json(&["licence", "reinstate", "bale", "--reason", "statistics received"]);
    assert_eq!(directory(&registry).await.provider("bale").map(|p| p.status.as_str()), Some("active"));
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{admin}/licences/rubika/revoke"),
        Some(&token),
        Some(json!({"reason": "licence terms broken"})),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")));
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{admin}/licences/rubika/reinstate"),
        Some(&token),
        Some(json!({"reason": "changed our mind"})),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("invalid_transition")));
    let revoked = directory(&registry).await;
    assert_eq!(revoked.provider("rubika").map(|p| p.status.as_str()), Some("revoked"));

    // The audit log: every change, with actor, time and reason.
    let log = registry.cli_json(&["audit"]);
    let entries = log.as_array().expect("entries");
    let actions: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap_or(""), e["provider_id"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        actions,
        [
            ("issue", "bale"),
            ("issue", "eitaa"),
            ("issue", "rubika"),
            ("update", "bale"),
            ("update", "bale"),
            ("suspend", "bale"),
            ("reinstate", "bale"),
            ("revoke", "rubika"),
        ]
    );
    let now = peyvand_registry::time::now_millis();
    for entry in entries {
        assert_eq!(entry["actor"], "admin");
        let at = entry["at"].as_i64().expect("time");
        assert!(at > now - 60_000 && at <= now, "{entry}");
    }
    assert_eq!(entries[5]["reason"], "late statistics");
    assert_eq!(entries[5]["before"]["status"], "active");
    assert_eq!(entries[5]["after"]["status"], "suspended");
    let only_rubika = registry.cli_json(&["audit", "--provider", "rubika"]);
    assert_eq!(only_rubika.as_array().map(Vec::len), Some(2));
    let text = String::from_utf8(registry.cli(&["audit", "--provider", "bale"]).stdout).expect("utf-8");
    assert!(text.contains(" admin suspend bale: late statistics"), "{text}");

    // `peyvand registry directory` verifies and prints, against a pinned key too.
    let printed = registry.cli_json(&["directory", "--key", &registry.public_key]);
    assert_eq!(printed["version"].as_u64(), Some(revoked.version));
    let wrong_key = peyvand_registry::keys::encode_base64(&[1; 32]);
    let stderr = registry.cli_fails(&["directory", "--key", &wrong_key]);
    assert!(stderr.contains("signature does not verify"), "{stderr}");

    // Data, key and token survive a restart; the same directory is served.
    registry.stop();
    let mut registry = Registry::start(&data);
    assert!(registry.token_file.is_none(), "no new token at a restart");
    assert_eq!(registry.token(), token);
    let again = directory(&registry).await;
    assert_eq!(again, revoked);
    assert_eq!(registry.cli_json(&["licence", "list"]).as_array().map(Vec::len), Some(3));
    assert_eq!(registry.cli_json(&["audit"]).as_array().map(Vec::len), Some(8));
    let shown = registry.cli_json(&["licence", "show", "bale"]);
    assert_eq!(shown["signing_keys"], json!([key]));
    registry.cli_json(&["licence", "suspend", "eitaa", "--reason", "after the restart"]);
    assert_eq!(directory(&registry).await.version, again.version + 1);

    // A revoked licence is delisted: out of the directory, kept in the registry; only once,
    // and only a revoked one.
    let stderr = registry.cli_fails(&["licence", "delist", "eitaa", "--reason", "not revoked"]);
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    let delisted = registry.cli_json(&["licence", "delist", "rubika", "--reason", "no longer of interest"]);
    assert!(delisted["delisted_at"].is_i64(), "{delisted}");
    let listing = directory(&registry).await;
    assert!(listing.provider("rubika").is_none(), "delisted");
    assert_eq!(listing.version, again.version + 2);
    let stderr = registry.cli_fails(&["licence", "delist", "rubika", "--reason", "again"]);
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    let text = String::from_utf8(registry.cli(&["licence", "show", "rubika"]).stdout).expect("utf-8");
    assert!(text.contains("revoked (delisted "), "{text}");
    let log = registry.cli_json(&["audit", "--provider", "rubika"]);
    assert_eq!(log.as_array().and_then(|l| l.last()).map(|e| e["action"].clone()), Some(json!("delist")));
    registry.stop();
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn the_admin_api_refuses_strangers_and_bad_input() {
    let data = temp_dir("registry-refusals");
    let registry = Registry::start(&data);
    let token = registry.token();
    let licences = format!("{}/v1/admin/licences", registry.url);

    for bad in [None, Some("pvr_not-the-token"), Some("")] {
        let (status, body) = call(reqwest::Method::GET, &licences, bad, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{bad:?}");
    }
    let (status, body) = call(reqwest::Method::GET, &format!("{}/v1/admin/audit", registry.url), None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let stderr = Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(["registry", "licence", "list", "--registry", &registry.url])
        .env("PEYVAND_REGISTRY_TOKEN", "pvr_wrong")
        .env_remove("PEYVAND_REGISTRY_TOKEN_FILE")
        .current_dir(&data)
        .output()
        .expect("run");
    assert!(!stderr.status.success());
    assert!(String::from_utf8_lossy(&stderr.stderr).contains("unauthorized"));

    let good = json!({
        "provider_id": "bale", "name": "بله", "domain": "bale.ir", "endpoint": "https://ic.bale.ir",
        "contact": "ops@bale.ir", "licence_number": "L-1",
        "valid_until": peyvand_registry::time::now_millis() + 86_400_000,
    });
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("provider_id", json!("Bale")), 400, "invalid_provider_id"),
        (with("name", json!("  ")), 400, "invalid_name"),
        (with("domain", json!("bale")), 400, "invalid_domain"),
        (with("endpoint", json!("http://ic.bale.ir")), 400, "invalid_endpoint"),
        (with("contact", json!("")), 400, "invalid_contact"),
        (with("licence_number", json!("L 1")), 400, "invalid_licence_number"),
        (with("valid_until", json!(1)), 400, "invalid_validity"),
        (with("signing_keys", json!(["short"])), 400, "invalid_signing_key"),
        (with("capabilities", json!(["Bad Capability"])), 400, "invalid_capability"),
        (with("unknown_field", json!(1)), 400, "bad_request"),
        (json!({"provider_id": "bale"}), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = call(reqwest::Method::POST, &licences, Some(&token), Some(body)).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{answer}");
    }
    let (status, _) = call(reqwest::Method::POST, &licences, Some(&token), Some(good.clone())).await;
    assert_eq!(status, 201);
    let (status, body) = call(reqwest::Method::POST, &licences, Some(&token), Some(good.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("provider_exists")));
    let other = |id: &str| {
        let mut body = good.clone();
        body["provider_id"] = json!(id);
        body
    };
    let (status, body) = call(reqwest::Method::POST, &licences, Some(&token), Some(other("eitaa"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("licence_number_taken")));
    let mut same_domain = other("eitaa");
    same_domain["licence_number"] = json!("L-2");
    let (status, body) = call(reqwest::Method::POST, &licences, Some(&token), Some(same_domain)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("domain_taken")));
    let (status, body) =
        call(reqwest::Method::POST, &format!("{licences}/bale/suspend"), Some(&token), Some(json!({"reason": ""})))
            .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_reason")));
    let (status, body) = call(reqwest::Method::GET, &format!("{licences}/nobody"), Some(&token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = call(reqwest::Method::GET, &format!("{}/v1/nothing", registry.url), None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let stderr = registry.cli_fails(&issue_args("x", "x", "x.ir", "https://x.ir", "c", "N-9", "2099-01-01"));
    assert!(stderr.contains("invalid_provider_id"), "{stderr}");
    let stderr = registry.cli_fails(&issue_args("xy", "x", "x.ir", "https://x.ir", "c", "N-9", "next year"));
    assert!(stderr.contains("is not a date"), "{stderr}");

    // Only the one good issue was recorded.
    let (_, log) = call(reqwest::Method::GET, &format!("{}/v1/admin/audit", registry.url), Some(&token), None).await;
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(1));
    drop(registry);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_licence_that_runs_out_is_listed_as_expired() {
    let data = temp_dir("registry-expiry");
    let registry = Registry::start(&data);
    let token = registry.token();
    let ends = peyvand_registry::time::now_millis() + 1_500;
    let body = json!({
        "provider_id": "soroush", "name": "سروش", "domain": "soroush.ir", "endpoint": "https://ic.soroush.ir",
        "contact": "ops@soroush.ir", "licence_number": "L-7", "valid_until": ends,
    });
    let (status, _) =
        call(reqwest::Method::POST, &format!("{}/v1/admin/licences", registry.url), Some(&token), Some(body)).await;
    assert_eq!(status, 201);
    let issued = directory(&registry).await;
    assert_eq!(issued.provider("soroush").map(|p| p.status.as_str()), Some("active"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = directory(&registry).await;
        if now.provider("soroush").map(|p| p.status.as_str()) == Some("expired") {
            assert_eq!(now.version, issued.version + 1);
            break;
        }
        assert!(Instant::now() < deadline, "the licence never showed as expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = registry.cli_json(&["licence", "show", "soroush"]);
    assert_eq!((shown["status"].as_str(), shown["directory_status"].as_str()), (Some("active"), Some("expired")));
    drop(registry);
    let _ = std::fs::remove_dir_all(&data);
}

/// The certificate authority: the CA made at first start, an enrolment token made with
/// `licence enrol`, a provider enrolling with `peyvand registry enrol`, the certificate in the
/// directory, a reused token refused, and a revoked licence's serial listed as revoked.
#[tokio::test]
async fn providers_enrol_for_certificates_that_revocation_lists() {
    let data = temp_dir("registry-ca");
    let registry = Registry::start(&data);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("ca-key.pem")).expect("CA key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let ca_file = std::fs::read_to_string(data.join("ca-cert.pem")).expect("CA certificate");
    let served_ca = reqwest::get(format!("{}/v1/ca.pem", registry.url)).await.expect("ca").text().await.expect("text");
    assert_eq!(served_ca, ca_file);
    assert!(served_ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let until = in_a_year();
    registry.cli_json(&issue_bale(&until));
    let before = directory(&registry).await;
    assert_eq!(before.provider("bale").and_then(|p| p.certificate.clone()), None);

    let output = registry.cli(&["licence", "enrol", "bale"]);
    assert!(output.status.success(), "enrol token: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned();
    assert!(token.starts_with("pve_"), "{token}");

    let out = data.join("provider-bale");
    let enrolled =
        registry.cli_json(&["enrol", "--token", &token, "--provider", "bale", "--out", out.to_str().expect("path")]);
    let serial = enrolled["serial"].as_str().expect("serial").to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("key.pem")).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cert = std::fs::read_to_string(out.join("cert.pem")).expect("cert.pem");
    let chain = std::fs::read_to_string(out.join("chain.pem")).expect("chain.pem");
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(chain.starts_with(cert.trim_end()) && chain.ends_with(&ca_file));
    assert!(std::fs::read_to_string(out.join("csr.pem")).expect("csr").contains("CERTIFICATE REQUEST"));

    let listed = directory(&registry).await;
    assert_eq!(listed.version, before.version + 1);
    let bale = listed.provider("bale").expect("bale listed");
    assert_eq!(bale.certificate_serial.as_deref(), Some(serial.as_str()));
    assert_eq!(bale.certificate.as_deref(), Some(cert.as_str()));

    // The token was used up: the CLI and the API both say so with the stable code.
    let again = data.join("provider-bale-again");
    let stderr =
        registry.cli_fails(&["enrol", "--token", &token, "--provider", "bale", "--out", again.to_str().expect("path")]);
    assert!(stderr.contains("invalid_enrolment_token"), "{stderr}");
    assert!(!again.exists(), "nothing is written when enrolment fails");
    let csr = std::fs::read_to_string(out.join("csr.pem")).expect("csr");
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{}/v1/enrol", registry.url),
        None,
        Some(json!({"token": token, "csr": csr})),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("invalid_enrolment_token")));
    let (status, body) =
        call(reqwest::Method::POST, &format!("{}/v1/admin/licences/bale/enrolment-tokens", registry.url), None, None)
            .await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));

    // Revoking the licence revokes its certificate.
    registry.cli_json(&["licence", "revoke", "bale", "--reason", "licence terms broken"]);
    let revoked = directory(&registry).await;
    assert_eq!(revoked.revoked_certificates, vec![serial.clone()]);
    assert_eq!(revoked.provider("bale").and_then(|p| p.certificate.clone()), None);
    let certificates = registry.cli_json(&["licence", "certificates", "bale"]);
    assert_eq!(certificates[0]["serial"].as_str(), Some(serial.as_str()));
    assert!(certificates[0]["revoked_at"].is_i64());
    let stderr = registry.cli_fails(&["licence", "enrol", "bale"]);
    assert!(stderr.contains("licence_not_active"), "{stderr}");

    let audit = registry.cli_json(&["audit", "--provider", "bale"]);
    let actions: Vec<&str> = audit.as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, vec!["issue", "enrolment_token", "certificate_issue", "revoke", "certificate_revoke"]);
    let _ = std::fs::remove_dir_all(&data);
}

/// With a certificate the registry serves HTTPS only: plain HTTP is refused; its commands and a
/// provider reach it by trusting the certificate's CA (`--registry-ca`, `registry_ca_file`),
/// and nothing reaches it without that trust.
#[tokio::test]
async fn the_registry_serves_https_only_when_given_a_certificate() {
    // A CA of the test's own issues the registry a certificate for `localhost`.
    let pki = temp_dir("registry-pki");
    let now = peyvand_registry::time::now_millis();
    let (ca, _) = peyvand_registry::ca::CertificateAuthority::load_or_create(&pki, now).expect("a CA");
    let (key, csr) = peyvand_registry::ca::generate_key_and_csr("registry", "localhost").expect("a CSR");
    let issued = ca.issue(&csr, "registry", "localhost", now, Duration::from_secs(3600)).expect("a certificate");
    let (cert_file, key_file) = (pki.join("registry.pem"), pki.join("registry-key.pem"));
    std::fs::write(&cert_file, &issued.pem).expect("write");
    std::fs::write(&key_file, &key).expect("write");
    let ca_file = pki.join(peyvand_registry::ca::CA_CERT_FILE);

    let data = temp_dir("registry-https");
    let tls = ["--tls-cert", cert_file.to_str().expect("path"), "--tls-key", key_file.to_str().expect("path")];
    let mut registry = Registry::start_with(&data, &tls);
    let plain = registry.url.replace("https://", "http://");
    assert!(registry.url.starts_with("https://127.0.0.1:"), "{}", registry.url);
    registry.url = registry.url.replace("127.0.0.1", "localhost");

    // Plain HTTP gets nothing.
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err(), "plain HTTP must be refused");
    // Without trusting the CA, the commands cannot reach it.
    let stderr = registry.cli_fails(&["licence", "list"]);
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");
    // Trusting it, they can.
    registry.ca = Some(ca_file.clone());
    let until = in_a_year();
    registry.cli_json(&issue_args(
        "sahel",
        "ساحل",
        "sahel.example",
        "https://127.0.0.1:1",
        "ops@sahel.example",
        "CRA-1404-090",
        &until,
    ));
    let listed = registry.cli_json(&["licence", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let output = registry.cli(&["licence", "enrol", "sahel"]);
    assert!(output.status.success(), "enrol token: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned();

    // A provider enrols over HTTPS and keeps the directory fresh.
    let env = [
        ("PEYVAND_INTERCONNECT__PROVIDER_ID", "sahel"),
        ("PEYVAND_INTERCONNECT__REGISTRY", registry.url.as_str()),
        ("PEYVAND_INTERCONNECT__REGISTRY_KEY", registry.public_key.as_str()),
        ("PEYVAND_INTERCONNECT__REGISTRY_CA_FILE", ca_file.to_str().expect("path")),
        ("PEYVAND_INTERCONNECT__ENROLMENT_TOKEN", token.as_str()),
        ("PEYVAND_INTERCONNECT__DIRECTORY_REFRESH_SECS", "1"),
    ];
    let provider = common::Server::start_with(&temp_dir("sahel"), &env);
    let certificates = registry.cli_json(&["licence", "certificates", "sahel"]);
    assert_eq!(certificates.as_array().map(Vec::len), Some(1), "{certificates}");
    let metrics = common::metrics(&provider.url).await;
    assert!(metrics.lines().any(|l| l.starts_with("peyvand_interconnect_directory_version ")), "{metrics}");
}

#[tokio::test]
async fn the_registry_cuts_off_slow_headers_and_caps_connections_per_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = temp_dir("registry-limits");
    let registry =
        Registry::start_with(&dir, &["--header-read-timeout-secs", "1", "--max-connections-per-address", "2"]);
    let address = registry.url.trim_start_matches("http://").to_owned();
    // Headers that never end are cut off at the deadline.
    let mut slow = tokio::net::TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: r").await.expect("write");
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(DEADLINE, slow.read(&mut buffer)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "the server answered unfinished headers: {read:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "cut off after {took:?}");
    // Two connections from one address are held; a third is closed at once.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
        held.push(stream);
    }
    let mut extra = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buffer)).await.expect("refused at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(held);
    // And it serves again.
    common::eventually("the registry serves again", || async {
        reqwest::get(format!("{}/healthz", registry.url)).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}
