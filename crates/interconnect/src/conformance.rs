//! The conformance kit (`peyvand conformance`): checks a provider's interconnect endpoint
//! against the requirements of `docs/protocol/` that can be observed from outside, and says
//! pass or fail for each.
//!
//! The kit acts as a provider of its own: with the registry's admin token it licenses a
//! temporary provider (`conformance-<random>`), enrols it, waits for the target to list it,
//! sends well-formed and deliberately broken requests, suspends itself to see the target
//! refuse it, and revokes the licence at the end. So it needs the regulator's admin token:
//! it is the regulator's tool for checking a provider before and while it is licensed.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use peyvand_registry::model::IssueLicence;
use peyvand_registry::{Directory, DirectoryProvider, RegistryClient};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::{Value, json};

use crate::peers::request_target;
use crate::protocol::{HEADER_NONCE, HEADER_PROVIDER, HEADER_SIGNATURE, HEADER_TARGET, HEADER_TIMESTAMP, PROTOCOL};
use crate::signing::{Signed, new_nonce};
use crate::tls::{TlsIdentity, client_config};

const PROVIDER_PATH: &str = "/interconnect/v1/provider";
const LOOKUP_PATH: &str = "/interconnect/v1/lookup";
/// How often the kit asks again while it waits for the target's directory to change.
const POLL: Duration = Duration::from_millis(200);

/// What the kit needs.
#[derive(Debug, Clone)]
pub struct KitConfig {
    /// The target's endpoint as the directory lists it, or the id of a provider.
    pub target: String,
    /// The registry's URL and an admin token for it.
    pub registry: String,
    pub admin_token: String,
    /// How long to wait for the target to see a change of the directory (a new licence, a
    /// suspension): at least its refresh interval.
    pub wait: Duration,
}

/// The result of one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The requirement's identifier in `docs/protocol/` (`TRANSPORT-10`).
    pub requirement: &'static str,
    /// What was checked.
    pub check: &'static str,
    pub passed: bool,
    /// What was seen, when it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Why the kit could not run at all (as opposed to a requirement failing).
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("the registry: {0}")]
    Registry(String),
    #[error("the target: {0}")]
    Target(String),
    #[error("setting up the kit's provider: {0}")]
    Setup(String),
}

/// The kit's own provider: its licence id, keys and HTTP client to the target.
struct Caller {
    id: String,
    signing: Ed25519KeyPair,
    http: reqwest::Client,
    target: DirectoryProvider,
}

/// One request as the kit sends it; each field can be bent to break one rule.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: &'static str,
    from: String,
    to: String,
    timestamp: i64,
    nonce: String,
    body: Vec<u8>,
}

/// An answer: the HTTP status and the error code, if any (`-` otherwise), and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    body: Value,
}

impl Caller {
    fn request(&self, method: Method, path: &'static str, body: Option<Value>) -> Request {
        Request {
            method,
            path,
            from: self.id.clone(),
            to: self.target.id.clone(),
            timestamp: peyvand_service::now_millis(),
            nonce: new_nonce(),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        }
    }

    fn sign(&self, request: &Request, key: &Ed25519KeyPair) -> String {
        Signed {
            method: request.method.as_str(),
            path_and_query: &self.target_of(request.path).1,
            from: &request.from,
            to: &request.to,
            timestamp: request.timestamp,
            nonce: &request.nonce,
            body: &request.body,
        }
        .sign(key)
    }

    /// The URL of `path` on the target, and the path the target receives (and verifies).
    fn target_of(&self, path: &str) -> (String, String) {
        match request_target(&self.target.endpoint, path) {
            Ok((url, path_and_query)) => (url.to_string(), path_and_query),
            // The directory's endpoints are validated URLs; the request then fails to send.
            Err(_) => (format!("{}{path}", self.target.endpoint), path.to_owned()),
        }
    }

    /// Sends with the given signature (`None`: unsigned), over `http` (the kit's mutual-TLS
    /// client unless another is given).
    async fn send(
        &self,
        http: Option<&reqwest::Client>,
        request: &Request,
        signature: Option<String>,
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let mut builder = http
            .unwrap_or(&self.http)
            .request(request.method.clone(), self.target_of(request.path).0)
            .header(HEADER_PROVIDER, &request.from)
            .header(HEADER_TARGET, &request.to)
            .header(HEADER_TIMESTAMP, request.timestamp.to_string())
            .header(HEADER_NONCE, &request.nonce);
        if let Some(signature) = signature {
            builder = builder.header(HEADER_SIGNATURE, signature);
        }
        let body = body.unwrap_or(&request.body);
        if !body.is_empty() {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        let response = builder.send().await.map_err(|e| format!("no answer: {e}"))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("-").to_owned();
        Ok(Answer { status, code, body })
    }

    async fn signed(&self, request: &Request) -> Result<Answer, String> {
        self.send(None, request, Some(self.sign(request, &self.signing)), None).await
    }
}

fn expect(answer: &Result<Answer, String>, status: u16, code: &str) -> Result<(), String> {
    match answer {
        Ok(a) if a.status == status && a.code == code => Ok(()),
        Ok(a) => Err(format!("expected {status} {code}, got {} {}: {}", a.status, a.code, a.body)),
        Err(e) => Err(e.clone()),
    }
}

fn outcome(requirement: &'static str, check: &'static str, result: Result<(), String>) -> Outcome {
    let (passed, detail) = match result {
        Ok(()) => (true, String::new()),
        Err(detail) => (false, detail),
    };
    Outcome { requirement, check, passed, detail }
}

fn new_key() -> Result<Ed25519KeyPair, KitError> {
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KitError::Setup("no randomness".into()))?;
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KitError::Setup("a fresh key does not load".into()))
}

async fn directory(registry: &RegistryClient) -> Result<Directory, KitError> {
    let key = registry.registry_key().await.map_err(|e| KitError::Registry(e.to_string()))?;
    let key = STANDARD.decode(&key.public_key).map_err(|e| KitError::Registry(e.to_string()))?;
    let signed = registry.directory().await.map_err(|e| KitError::Registry(e.to_string()))?;
    signed.verify(&key).map_err(|e| KitError::Registry(e.to_string()))
}

/// Runs every check; `Err` only when the kit cannot run at all.
pub async fn run(config: &KitConfig) -> Result<Vec<Outcome>, KitError> {
    let registry = RegistryClient::new(&config.registry, Some(config.admin_token.clone()))
        .map_err(|e| KitError::Registry(e.to_string()))?;
    let listing = directory(&registry).await?;
    let wanted = config.target.trim().trim_end_matches('/');
    let target = listing
        .providers
        .iter()
        .find(|p| p.id == wanted || p.endpoint.trim_end_matches('/') == wanted)
        .cloned()
        .ok_or_else(|| KitError::Target(format!("no provider in the directory has the id or endpoint `{wanted}`")))?;

    let caller = enrol(&registry, &listing, target).await?;
    let result = checks(&registry, &listing, &caller, config.wait).await;
    if let Err(e) = registry.revoke(&caller.id, "conformance run finished").await {
        tracing::warn!(error = %e, provider = %caller.id, "cannot revoke the kit's licence");
    }
    Ok(result)
}

/// Licenses and enrols the kit's own provider.
async fn enrol(registry: &RegistryClient, listing: &Directory, target: DirectoryProvider) -> Result<Caller, KitError> {
    let id = format!("conformance-{}", hex::encode(rand::random::<[u8; 4]>()));
    let domain = format!("{id}.invalid");
    let signing = new_key()?;
    let licence = IssueLicence {
        provider_id: id.clone(),
        name: "Peyvand conformance kit".into(),
        domain: domain.clone(),
        endpoint: format!("https://{domain}"),
        contact: "the regulator".into(),
        licence_number: id.to_ascii_uppercase(),
        valid_from: None,
        valid_until: peyvand_service::now_millis() + 24 * 3_600_000,
        signing_keys: vec![STANDARD.encode(signing.public_key().as_ref())],
        // None: real providers' lookups must not ask the kit, and answering needs none.
        capabilities: Vec::new(),
        reason: Some("conformance run".into()),
    };
    registry.issue(&licence).await.map_err(|e| KitError::Registry(e.to_string()))?;
    match finish_enrolment(registry, listing, target, &id, &domain, signing).await {
        Ok(caller) => Ok(caller),
        Err(e) => {
            if let Err(revoke) = registry.revoke(&id, "conformance run could not start").await {
                tracing::warn!(error = %revoke, provider = %id, "cannot revoke the kit's licence");
            }
            Err(e)
        }
    }
}

async fn finish_enrolment(
    registry: &RegistryClient,
    listing: &Directory,
    target: DirectoryProvider,
    id: &str,
    domain: &str,
    signing: Ed25519KeyPair,
) -> Result<Caller, KitError> {
    let token = registry.create_enrolment_token(id).await.map_err(|e| KitError::Registry(e.to_string()))?;
    let (key, csr) =
        peyvand_registry::ca::generate_key_and_csr(id, domain).map_err(|e| KitError::Setup(e.to_string()))?;
    let certificate = registry.enrol(&token.token, &csr, None).await.map_err(|e| KitError::Registry(e.to_string()))?;
    let identity = TlsIdentity::new(&certificate.certificate, &key, &listing.ca_certificate)
        .map_err(|e| KitError::Setup(e.to_string()))?;
    let http = http_client(Some(&identity), &listing.ca_certificate, &target)?;
    Ok(Caller { id: id.to_owned(), signing, http, target })
}

fn http_client(
    identity: Option<&TlsIdentity>,
    ca: &str,
    target: &DirectoryProvider,
) -> Result<reqwest::Client, KitError> {
    let tls = client_config(identity, ca, &target.id, &target.domain, Vec::new())
        .map_err(|e| KitError::Setup(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| KitError::Setup(e.to_string()))
}

/// Asks until `done` holds for an answer, or `wait` passes (then the last answer is returned).
async fn until(
    caller: &Caller,
    wait: Duration,
    make: impl Fn() -> Request,
    done: impl Fn(&Result<Answer, String>) -> bool,
) -> Result<Answer, String> {
    let deadline = Instant::now() + wait;
    loop {
        let answer = caller.signed(&make()).await;
        if done(&answer) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn checks(registry: &RegistryClient, listing: &Directory, caller: &Caller, wait: Duration) -> Vec<Outcome> {
    let mut out = Vec::new();
    let provider_request = || caller.request(Method::GET, PROVIDER_PATH, None);
    // The target learns of the kit's licence at its next directory refresh.
    let first = until(caller, wait, provider_request, |a| !matches!(a, Ok(a) if a.code == "peer_not_listed")).await;
    let info = first.as_ref().map(|a| a.body.clone()).unwrap_or(Value::Null);
    out.push(outcome(
        "TRANSPORT-1",
        "a mutual TLS 1.3 connection with a CA certificate and a signed request is answered",
        expect(&first, 200, "-"),
    ));
    out.push(outcome(
        "EP-1",
        "GET /interconnect/v1/provider names the target's own id",
        (info["provider_id"] == caller.target.id.as_str())
            .then_some(())
            .ok_or_else(|| format!("provider_id is {}", info["provider_id"])),
    ));
    out.push(outcome(
        "EP-2",
        "GET /interconnect/v1/provider names the protocol version",
        (info["protocol"] == PROTOCOL).then_some(()).ok_or_else(|| format!("protocol is {}", info["protocol"])),
    ));

    // Transport: who may connect.
    let unauthenticated = match http_client(None, &listing.ca_certificate, &caller.target) {
        Ok(http) => {
            let request = provider_request();
            match caller.send(Some(&http), &request, Some(caller.sign(&request, &caller.signing)), None).await {
                Err(_) => Ok(()),
                Ok(a) => Err(format!("answered {} {} without a client certificate", a.status, a.code)),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    out.push(outcome("TRANSPORT-2", "a TLS connection without a client certificate is refused", unauthenticated));

    // Signatures.
    let request = provider_request();
    out.push(outcome(
        "TRANSPORT-6",
        "an unsigned request is refused with invalid_signature",
        expect(&caller.send(None, &request, None, None).await, 401, "invalid_signature"),
    ));
    let stranger = new_key();
    let forged = match &stranger {
        Ok(key) => {
            let request = provider_request();
            expect(&caller.send(None, &request, Some(caller.sign(&request, key)), None).await, 401, "invalid_signature")
        }
        Err(e) => Err(e.to_string()),
    };
    out.push(outcome("TRANSPORT-8", "a request signed with a key not listed for the sender is refused", forged));
    let lookup_body = json!({"phone": "+989990000000", "requester_phone": "+989990000001"});
    let request = caller.request(Method::POST, LOOKUP_PATH, Some(lookup_body.clone()));
    let altered = json!({"phone": "+989990000002", "requester_phone": "+989990000001"}).to_string();
    out.push(outcome(
        "TRANSPORT-7",
        "a request whose body changed after signing is refused",
        expect(
            &caller.send(None, &request, Some(caller.sign(&request, &caller.signing)), Some(altered.as_bytes())).await,
            401,
            "invalid_signature",
        ),
    ));
    let mut elsewhere = provider_request();
    elsewhere.to = format!("not-{}", caller.target.id);
    out.push(outcome(
        "TRANSPORT-11",
        "a request addressed to another provider is refused",
        expect(&caller.signed(&elsewhere).await, 401, "invalid_signature"),
    ));
    let mut impostor = provider_request();
    impostor.from = caller.target.id.clone();
    out.push(outcome(
        "TRANSPORT-11",
        "a request claiming another sender than its certificate is refused",
        expect(&caller.signed(&impostor).await, 401, "invalid_signature"),
    ));
    let mut stale = provider_request();
    stale.timestamp -= 10 * 60 * 1000;
    out.push(outcome(
        "TRANSPORT-9",
        "a request signed 10 minutes ago is refused with stale_request",
        expect(&caller.signed(&stale).await, 401, "stale_request"),
    ));
    let once = provider_request();
    let first = caller.signed(&once).await;
    let again = caller.signed(&once).await;
    out.push(outcome(
        "TRANSPORT-10",
        "the same request sent twice is refused the second time with replayed_request",
        expect(&first, 200, "-").and_then(|()| expect(&again, 409, "replayed_request")),
    ));

    // The lookup endpoint.
    let request = caller.request(Method::POST, LOOKUP_PATH, Some(lookup_body));
    let answer = caller.signed(&request).await;
    out.push(outcome(
        "EP-4",
        "a lookup of a number with no account answers found: false",
        expect(&answer, 200, "-").and_then(|()| match &answer {
            Ok(a) if a.body["found"] == false => Ok(()),
            Ok(a) => Err(format!("answered {}", a.body)),
            Err(e) => Err(e.clone()),
        }),
    ));
    let bad_phone = caller.request(
        Method::POST,
        LOOKUP_PATH,
        Some(json!({"phone": "not a number", "requester_phone": "+989990000001"})),
    );
    out.push(outcome(
        "EP-9",
        "a lookup of something that is not a phone number is refused with invalid_phone",
        expect(&caller.signed(&bad_phone).await, 400, "invalid_phone"),
    ));
    let unknown_field = caller.request(
        Method::POST,
        LOOKUP_PATH,
        Some(json!({"phone": "+989990000000", "requester_phone": "+989990000001", "extra": 1})),
    );
    out.push(outcome(
        "EP-9",
        "a lookup with an unknown field is refused with bad_request",
        expect(&caller.signed(&unknown_field).await, 400, "bad_request"),
    ));

    // Licences: a suspended caller is refused within one refresh.
    let suspended = match registry.suspend(&caller.id, "conformance: suspension").await {
        Ok(_) => {
            let answer =
                until(caller, wait, provider_request, |a| matches!(a, Ok(a) if a.code == "peer_not_active")).await;
            expect(&answer, 403, "peer_not_active")
        }
        Err(e) => Err(format!("cannot suspend the kit's licence: {e}")),
    };
    out.push(outcome("TRANSPORT-5", "a caller whose licence is suspended is refused with peer_not_active", suspended));
    out
}
