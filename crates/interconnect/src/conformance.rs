//! The conformance kit (`peyvand conformance`): checks a provider's interconnect endpoint
//! against the requirements of `docs/protocol/` that can be observed from outside, and says
//! pass or fail for each.
//!
//! The kit acts as a provider of its own: with the registry's admin token it licenses a
//! temporary provider (`conformance-<random>`), enrols it, waits for the target to list it,
//! sends well-formed and deliberately broken requests, suspends itself to see the target
//! refuse it, and at the end revokes the licence and delists it, which leaves the directory
//! as it was. So it needs the regulator's admin token: it is the regulator's tool for
//! checking a provider before and while it is licensed.
//!
//! The kit has no people on the target, so of direct chats (`delivery.md`) it checks what the
//! target must refuse, and how. Everyone it invites, reports or sends a message to is a
//! fictional number the target's own lookup does not find, so that a run reaches nobody real.
//! It also acts as a forging hub, sending events "by" the target's own people, which the
//! target must refuse (and reports to its operator).

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
use crate::signing::{Signed, new_nonce, sign_bytes};
use crate::tls::{TlsIdentity, client_config};
use peyvand_service::federation::wire::{Action, Envelope, ORIGIN_VERSION, RoomId, event_form};

const PROVIDER_PATH: &str = "/interconnect/v1/provider";
const LOOKUP_PATH: &str = "/interconnect/v1/lookup";
const INVITE_PATH: &str = "/interconnect/v1/invite";
const SUBMIT_PATH: &str = "/interconnect/v1/submit";
const TRANSACTIONS_PATH: &str = "/interconnect/v1/transactions";
const TYPING_PATH: &str = "/interconnect/v1/typing";
const REPORTS_PATH: &str = "/interconnect/v1/reports";
const MEDIA_PATH: &str = "/interconnect/v1/media";
/// The size limit every receiver has for a request body (transport.md, [TRANSPORT-12]).
const SIZE_LIMIT: usize = 64 * 1024;
/// How often the kit asks again while it waits for the target's directory to change.
const POLL: Duration = Duration::from_millis(200);

/// What the kit needs.
#[derive(Debug, Clone)]
pub struct KitConfig {
    /// The target's endpoint as the directory lists it, or the id of a provider.
    pub target: String,
    /// The registry, with an admin token.
    pub registry: RegistryClient,
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
    pub check: String,
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
    path: std::borrow::Cow<'static, str>,
    from: String,
    to: String,
    timestamp: i64,
    nonce: String,
    body: Vec<u8>,
    /// Whether the body is sent with `Content-Type: application/json`.
    json: bool,
}

/// An answer: the HTTP status and the error code, if any (`-` otherwise), and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    body: Value,
}

impl Caller {
    fn request(&self, method: Method, path: impl Into<std::borrow::Cow<'static, str>>, body: Option<Value>) -> Request {
        Request {
            method,
            path: path.into(),
            from: self.id.clone(),
            to: self.target.id.clone(),
            timestamp: peyvand_service::now_millis(),
            nonce: new_nonce(),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            json: true,
        }
    }

    fn sign(&self, request: &Request, key: &Ed25519KeyPair) -> String {
        Signed {
            method: request.method.as_str(),
            path_and_query: &self.target_of(&request.path).1,
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
            .request(request.method.clone(), self.target_of(&request.path).0)
            .header(HEADER_PROVIDER, &request.from)
            .header(HEADER_TARGET, &request.to)
            .header(HEADER_TIMESTAMP, request.timestamp.to_string())
            .header(HEADER_NONCE, &request.nonce);
        if let Some(signature) = signature {
            builder = builder.header(HEADER_SIGNATURE, signature);
        }
        let body = body.unwrap_or(&request.body);
        if request.json && !body.is_empty() {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        if !body.is_empty() {
            builder = builder.body(body.to_vec());
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

/// A licensed provider of the kit's kind (`conformance-<random>`), for tests and tools that
/// need to speak to a provider as a peer: it signs requests with its own key, and can keep a
/// signed request to send it again (a replay). [`KitProvider::withdraw`] revokes its licence
/// and delists it.
pub struct KitProvider {
    caller: Caller,
}

impl std::fmt::Debug for KitProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitProvider").field("id", &self.caller.id).field("target", &self.caller.target.id).finish()
    }
}

/// A request signed once, that can be sent any number of times.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    request: Request,
    signature: String,
}

impl KitProvider {
    /// Licenses and enrols a new provider at the registry (with its admin token) and readies
    /// calls to `target` (its id or endpoint in the directory).
    pub async fn enrol(registry: &RegistryClient, target: &str) -> Result<Self, KitError> {
        Self::enrol_with(registry, target, Vec::new()).await
    }

    /// [`KitProvider::enrol`] with a licence that lists `capabilities` (`chat`, so that the
    /// target's people can open rooms with the provider's).
    pub async fn enrol_with(
        registry: &RegistryClient,
        target: &str,
        capabilities: Vec<String>,
    ) -> Result<Self, KitError> {
        let listing = directory(registry).await?;
        let target = find_target(&listing, target)?;
        Ok(Self { caller: enrol(registry, &listing, target, capabilities).await? })
    }

    /// `submission` (`{"room", "user", "user_name", "action"}`) with this provider's origin
    /// signature of the event its action makes.
    pub fn with_submission_origin(&self, submission: Value) -> Value {
        with_submission_origin(&self.caller, submission)
    }

    /// This provider's id.
    pub fn id(&self) -> &str {
        &self.caller.id
    }

    /// Calls the target at another endpoint from now on (it moved, say after a restart).
    pub fn retarget(&mut self, endpoint: &str) {
        self.caller.target.endpoint = endpoint.trim_end_matches('/').to_owned();
    }

    /// Waits until the target answers this provider (it has read the directory that lists
    /// it), for at most `wait`.
    pub async fn wait_until_known(&self, wait: Duration) -> Result<(), String> {
        let request = || self.caller.request(Method::GET, PROVIDER_PATH, None);
        let answer = until(&self.caller, wait, request, |a| matches!(a, Ok(a) if a.status == 200)).await;
        expect(&answer, 200, "-")
    }

    /// `POST path` with `body`, signed now with a fresh nonce.
    pub fn sign_post(&self, path: &'static str, body: Value) -> SignedRequest {
        let request = self.caller.request(Method::POST, path, Some(body));
        let signature = self.caller.sign(&request, &self.caller.signing);
        SignedRequest { request, signature }
    }

    /// `GET path`, signed now with a fresh nonce.
    pub fn sign_get(&self, path: impl Into<std::borrow::Cow<'static, str>>) -> SignedRequest {
        let request = self.caller.request(Method::GET, path, None);
        let signature = self.caller.sign(&request, &self.caller.signing);
        SignedRequest { request, signature }
    }

    /// A transaction's body with an origin signature by this provider on every event that is
    /// well-formed (as a hub signs its own people's events).
    pub fn with_origins(&self, transaction: Value) -> Value {
        with_origins(&self.caller, transaction)
    }

    /// Sends a signed request (again, if it was sent before); the HTTP status and JSON body.
    pub async fn send(&self, request: &SignedRequest) -> Result<(u16, Value), String> {
        let answer = self.caller.send(None, &request.request, Some(request.signature.clone()), None).await?;
        Ok((answer.status, answer.body))
    }

    /// Revokes this provider's licence and takes it out of the directory.
    pub async fn withdraw(self, registry: &RegistryClient) -> Result<(), KitError> {
        withdraw(registry, &self.caller.id, "test provider withdrawn").await
    }
}

/// The origin signature by the kit of a room event or an action's event (`envelope` is
/// `{"room", "event"}`), if it is well-formed.
fn origin_of(caller: &Caller, envelope: &Value) -> Option<Value> {
    let envelope: Envelope = serde_json::from_value(envelope.clone()).ok()?;
    let form = event_form(&envelope.room, &envelope.event);
    Some(json!({"v": ORIGIN_VERSION, "provider": caller.id, "signature": sign_bytes(&caller.signing, &form)}))
}

/// `transaction` with the kit's origin on every well-formed event without one.
fn with_origins(caller: &Caller, mut transaction: Value) -> Value {
    if let Some(events) = transaction.get_mut("events").and_then(Value::as_array_mut) {
        for envelope in events {
            if envelope.get("origin").is_none()
                && let Some(origin) = origin_of(caller, envelope)
                && let Some(object) = envelope.as_object_mut()
            {
                object.insert("origin".into(), origin);
            }
        }
    }
    transaction
}

fn find_target(listing: &Directory, wanted: &str) -> Result<DirectoryProvider, KitError> {
    let wanted = wanted.trim().trim_end_matches('/');
    listing
        .providers
        .iter()
        .find(|p| p.id == wanted || p.endpoint.trim_end_matches('/') == wanted)
        .cloned()
        .ok_or_else(|| KitError::Target(format!("no provider in the directory has the id or endpoint `{wanted}`")))
}

/// Revokes the kit's licence `id` and delists it, so that the directory is left as the kit
/// found it.
async fn withdraw(registry: &RegistryClient, id: &str, reason: &str) -> Result<(), KitError> {
    registry.revoke(id, reason).await.map_err(|e| KitError::Registry(e.to_string()))?;
    registry.delist(id, reason).await.map_err(|e| KitError::Registry(e.to_string()))?;
    Ok(())
}

fn expect(answer: &Result<Answer, String>, status: u16, code: &str) -> Result<(), String> {
    match answer {
        Ok(a) if a.status == status && a.code == code => Ok(()),
        Ok(a) => Err(format!("expected {status} {code}, got {} {}: {}", a.status, a.code, a.body)),
        Err(e) => Err(e.clone()),
    }
}

fn outcome(requirement: &'static str, check: impl Into<String>, result: Result<(), String>) -> Outcome {
    let (passed, detail) = match result {
        Ok(()) => (true, String::new()),
        Err(detail) => (false, detail),
    };
    Outcome { requirement, check: check.into(), passed, detail }
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
    let registry = &config.registry;
    let listing = directory(registry).await?;
    let target = find_target(&listing, &config.target)?;

    let caller = enrol(registry, &listing, target, Vec::new()).await?;
    let result = checks(registry, &listing, &caller, config.wait).await;
    if let Err(e) = withdraw(registry, &caller.id, "conformance run finished").await {
        tracing::warn!(error = %e, provider = %caller.id, "cannot revoke the kit's licence");
    }
    Ok(result)
}

/// Licenses and enrols the kit's own provider.
async fn enrol(
    registry: &RegistryClient,
    listing: &Directory,
    target: DirectoryProvider,
    capabilities: Vec<String>,
) -> Result<Caller, KitError> {
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
        // For the kit none: real providers' lookups must not ask it, and answering needs none.
        capabilities,
        reason: Some("conformance run".into()),
    };
    registry.issue(&licence).await.map_err(|e| KitError::Registry(e.to_string()))?;
    match finish_enrolment(registry, listing, target, &id, &domain, signing).await {
        Ok(caller) => Ok(caller),
        Err(e) => {
            if let Err(revoke) = withdraw(registry, &id, "conformance run could not start").await {
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

    // Direct chats: what a provider with no people on the target can see of them.
    out.extend(delivery_checks(caller).await);
    out.extend(media_checks(caller).await);
    out.extend(version_checks(caller).await);

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

/// One of the direct-chat endpoints, with a harmless request the target answers with
/// something other than `bad_request`, so that a broken variant of it shows whether the body
/// is checked.
struct Endpoint {
    path: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    /// A top-level field the kit gives the wrong type, then leaves out.
    field: &'static str,
}

/// An address of one of the kit's own people: on the kit's provider, so it names nobody real.
fn kit_person(caller: &Caller) -> String {
    format!("+98999{:07}@{}", rand::random::<u32>() % 10_000_000, caller.id)
}

/// A fictional number: the North American plan keeps 555-0100 to 555-0199 for fiction.
fn fictional_phone() -> String {
    format!("+1202555{:04}", 100 + rand::random::<u32>() % 100)
}

/// A room id far above any chat id a provider has given (they count up from 1).
fn unused_room_id() -> i64 {
    1_000_000_000_000 + i64::from(rand::random::<u32>())
}

fn new_transaction_id() -> String {
    format!("conformance-{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// An address on the target that its lookup does not find for `requester` (no account, or
/// not reachable for them): the person every refusal check below invites or reports, so that
/// the kit never reaches anyone real.
async fn unreachable_person(caller: &Caller, requester: &str) -> Result<String, String> {
    let requester_phone = requester.rsplit_once('@').map_or(requester, |(phone, _)| phone);
    for _ in 0..5 {
        let phone = fictional_phone();
        let body = json!({"phone": phone, "requester_phone": requester_phone});
        let answer = caller.signed(&caller.request(Method::POST, LOOKUP_PATH, Some(body))).await;
        expect(&answer, 200, "-").map_err(|e| format!("a lookup of {phone}: {e}"))?;
        if answer.as_ref().is_ok_and(|a| a.body["found"] == false) {
            return Ok(format!("{phone}@{}", caller.target.id));
        }
    }
    Err("the target's lookup found five fictional numbers: the kit has no unreachable person to use".into())
}

/// Sends `body` to `path`, signed; a transaction's events carry the kit's origin signature
/// (unless they have an origin already).
async fn post(caller: &Caller, path: &'static str, body: Value) -> Result<Answer, String> {
    let body = if path == TRANSACTIONS_PATH { with_origins(caller, body) } else { body };
    caller.signed(&caller.request(Method::POST, path, Some(body))).await
}

/// `submission` with the kit's origin signature of the event its action makes.
fn with_submission_origin(caller: &Caller, mut submission: Value) -> Value {
    let action: Option<Action> = serde_json::from_value(submission["action"].clone()).ok();
    let room: Option<RoomId> = serde_json::from_value(submission["room"].clone()).ok();
    let user = submission["user"].as_str().unwrap_or_default().to_owned();
    let signature = match (action, room) {
        (Some(action), Some(room)) => sign_bytes(&caller.signing, &event_form(&room, &action.expected_event(&user))),
        _ => String::new(),
    };
    if let Some(object) = submission.as_object_mut() {
        object.insert("origin".into(), json!({"v": ORIGIN_VERSION, "provider": caller.id, "signature": signature}));
    }
    submission
}

/// Sends raw bytes to `path`, signed, with or without `Content-Type: application/json`.
async fn post_raw(caller: &Caller, path: &'static str, body: Vec<u8>, json: bool) -> Result<Answer, String> {
    let mut request = caller.request(Method::POST, path, None);
    request.body = body;
    request.json = json;
    caller.signed(&request).await
}

/// Each of `bodies` (labelled) is answered `status` with `code`.
async fn all_answered(
    caller: &Caller,
    path: &'static str,
    bodies: Vec<(&str, Value)>,
    status: u16,
    code: &str,
) -> Result<(), String> {
    for (label, body) in bodies {
        expect(&post(caller, path, body).await, status, code).map_err(|e| format!("{label}: {e}"))?;
    }
    Ok(())
}

/// Each of `bodies` (labelled) is refused with `bad_request`.
async fn all_bad_requests(caller: &Caller, path: &'static str, bodies: Vec<(&str, Value)>) -> Result<(), String> {
    all_answered(caller, path, bodies, 400, "bad_request").await
}

/// `body` with `field` set to `value` (`None`: removed).
fn with(body: &Value, field: &str, value: Option<Value>) -> Value {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        match value {
            Some(value) => object.insert(field.to_owned(), value),
            None => object.remove(field),
        };
    }
    body
}

/// The transport and body checks every direct-chat endpoint shares.
async fn endpoint_checks(caller: &Caller, endpoint: &Endpoint, out: &mut Vec<Outcome>) {
    let path = endpoint.path;
    let request = caller.request(Method::POST, path, Some(endpoint.body.clone()));
    out.push(outcome(
        "TRANSPORT-6",
        format!("POST {path} without a signature is refused with invalid_signature"),
        expect(&caller.send(None, &request, None, None).await, 401, "invalid_signature"),
    ));
    let first = caller.signed(&request).await;
    let again = caller.signed(&request).await;
    out.push(outcome(
        "TRANSPORT-10",
        format!("POST {path} sent twice with one nonce is refused the second time with replayed_request"),
        expect(&first, endpoint.status, endpoint.code).and_then(|()| expect(&again, 409, "replayed_request")),
    ));

    let mut result = Ok(());
    let malformed = br#"{"room": {"hub": "#.to_vec();
    for (label, bytes, json) in
        [("malformed JSON", malformed, true), ("no Content-Type", endpoint.body.to_string().into_bytes(), false)]
    {
        if result.is_ok() {
            result = expect(&post_raw(caller, path, bytes, json).await, 400, "bad_request")
                .map_err(|e| format!("{label}: {e}"));
        }
    }
    if result.is_ok() {
        result = all_bad_requests(
            caller,
            path,
            vec![
                ("an unknown field", with(&endpoint.body, "conformance", Some(json!(true)))),
                ("a field of the wrong type", with(&endpoint.body, endpoint.field, Some(json!(42)))),
                ("a missing field", with(&endpoint.body, endpoint.field, None)),
            ],
        )
        .await;
    }
    out.push(outcome(
        "EP-10",
        format!(
            "POST {path} refuses malformed JSON, a body without Content-Type: application/json, an unknown field, \
             a field of the wrong type and a missing field with bad_request"
        ),
        result,
    ));
}

/// The refusal a transaction's answer lists for event `index`: its code.
fn refusal(answer: &Result<Answer, String>, index: u64) -> Result<String, String> {
    expect(answer, 200, "-")?;
    let body = answer.as_ref().map(|a| a.body.clone()).unwrap_or_default();
    body["refused"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["index"] == index))
        .and_then(|r| r["code"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("event {index} is not listed as refused: {body}"))
}

fn refused_with(answer: &Result<Answer, String>, indexes: &[u64], code: &str) -> Result<(), String> {
    for &index in indexes {
        let got = refusal(answer, index)?;
        if got != code {
            return Err(format!("event {index} was refused with {got}, not {code}"));
        }
    }
    Ok(())
}

/// A version of the protocol the target does not speak, and a version-1 path it does not define.
async fn version_checks(caller: &Caller) -> Vec<Outcome> {
    let v2 = caller.signed(&caller.request(Method::GET, "/interconnect/v2/provider", None)).await;
    let unknown = caller.signed(&caller.request(Method::GET, "/interconnect/v1/conformance-unknown", None)).await;
    vec![
        outcome(
            "EP-21",
            "a request for a protocol version the target does not speak (/interconnect/v2/provider) is refused \
             with unsupported_version",
            expect(&v2, 400, "unsupported_version"),
        ),
        outcome(
            "EP-21",
            "a version-1 path that the protocol does not define is refused with not_found",
            expect(&unknown, 404, "not_found"),
        ),
    ]
}

/// The checks of the media endpoint (media.md) that a provider with no room on the target can
/// make: every fetch is one the target must refuse, and how it refuses is what is checked.
async fn media_checks(caller: &Caller) -> Vec<Outcome> {
    let target = caller.target.id.as_str();
    let get = |query: String| async move {
        caller.signed(&caller.request(Method::GET, format!("{MEDIA_PATH}?{query}"), None)).await
    };
    let hosted = get(format!("hub={target}&room={}&seq=1&variant=content", unused_room_id())).await;
    let followed = get(format!("hub={}&room={}&seq=1&variant=thumbnail", caller.id, unused_room_id())).await;
    let variant = get(format!("hub={target}&room={}&seq=1&variant=poster", unused_room_id())).await;
    let missing = get(format!("hub={target}&room={}", unused_room_id())).await;
    vec![
        outcome(
            "MEDIA-5",
            "a media file of a room the caller takes no part in (hosted by the target, or by the caller and not \
             followed by the target) is refused with forbidden",
            expect(&hosted, 403, "forbidden").and_then(|()| expect(&followed, 403, "forbidden")),
        ),
        outcome(
            "MEDIA-5",
            "a media request with an unknown variant, or without its seq, is refused with bad_request",
            expect(&variant, 400, "bad_request").and_then(|()| expect(&missing, 400, "bad_request")),
        ),
    ]
}

/// The checks of the direct-chat endpoints (endpoints.md, delivery.md) that a provider with
/// no people on the target can make: the kit's people and rooms exist nowhere, so every
/// request is one the target must refuse, and how it refuses is what is checked.
async fn delivery_checks(caller: &Caller) -> Vec<Outcome> {
    let mut out = Vec::new();
    let kit = caller.id.as_str();
    let target = caller.target.id.as_str();
    let me = kit_person(caller);
    let unreachable = match unreachable_person(caller, &me).await {
        Ok(address) => address,
        Err(e) => {
            out.push(outcome("DELIVERY-5", "the direct-chat checks could run", Err(e)));
            return out;
        }
    };
    // Addresses that are not the caller's (for `from`, `user`, `reporter`), and not the
    // target's (for `to`, `reported`).
    let foreign_to_caller = format!("+98999{:07}@{target}", rand::random::<u32>() % 10_000_000);
    let foreign_to_target = format!("{}@{kit}", fictional_phone());
    let kit_room = || json!({"hub": kit, "id": unused_room_id()});
    let target_room = || json!({"hub": target, "id": unused_room_id()});
    let read = json!({"type": "read", "user": me, "up_to": 1});
    let reason = "conformance kit: a test report about a number that should have no account; please ignore";

    let invite = json!({"room": kit_room(), "from": me, "from_name": "Conformance kit", "to": unreachable});
    let submit = with_submission_origin(
        caller,
        json!({"room": target_room(), "user": me, "user_name": "Conformance kit", "action": {"type": "read", "up_to": 1}}),
    );
    let transaction =
        with_origins(caller, json!({"id": new_transaction_id(), "events": [{"room": kit_room(), "event": read}]}));
    let typing = json!({"room": kit_room(), "user": me});
    let report = json!({"reporter": me, "reported": unreachable, "reason": reason});
    let endpoints = [
        Endpoint { path: INVITE_PATH, body: invite.clone(), status: 404, code: "not_found", field: "to" },
        Endpoint { path: SUBMIT_PATH, body: submit.clone(), status: 404, code: "not_found", field: "action" },
        Endpoint { path: TRANSACTIONS_PATH, body: transaction, status: 200, code: "-", field: "events" },
        Endpoint { path: TYPING_PATH, body: typing.clone(), status: 404, code: "not_found", field: "user" },
        Endpoint { path: REPORTS_PATH, body: report.clone(), status: 404, code: "not_found", field: "reason" },
    ];
    for endpoint in &endpoints {
        endpoint_checks(caller, endpoint, &mut out).await;
    }

    // Invitations.
    out.push(outcome(
        "DELIVERY-5",
        "an invitation to a number the target's lookup does not find for the inviter (no account, or not \
         opted in) is refused with not_found",
        expect(&post(caller, INVITE_PATH, invite.clone()).await, 404, "not_found"),
    ));
    out.push(outcome(
        "EP-11",
        "an invitation to a room whose hub is not the caller is refused with bad_request",
        expect(&post(caller, INVITE_PATH, with(&invite, "room", Some(target_room()))).await, 400, "bad_request"),
    ));
    out.push(outcome(
        "DELIVERY-4",
        "an invitation from an address of another provider than the caller is refused with bad_request",
        expect(
            &post(caller, INVITE_PATH, with(&invite, "from", Some(json!(foreign_to_caller)))).await,
            400,
            "bad_request",
        ),
    ));
    out.push(outcome(
        "EP-11",
        "an invitation to an address that is not the target's (another provider's, or no address) is refused \
         with bad_request",
        all_bad_requests(
            caller,
            INVITE_PATH,
            vec![
                ("another provider's address", with(&invite, "to", Some(json!(foreign_to_target)))),
                ("no address", with(&invite, "to", Some(json!("somebody")))),
            ],
        )
        .await,
    ));

    // Submissions.
    out.push(outcome(
        "DELIVERY-9",
        "a submission for a room the target does not host is refused with not_found",
        expect(&post(caller, SUBMIT_PATH, submit.clone()).await, 404, "not_found"),
    ));
    out.push(outcome(
        "EP-11",
        "a submission for a room whose hub is not the target is refused with bad_request",
        expect(&post(caller, SUBMIT_PATH, with(&submit, "room", Some(kit_room()))).await, 400, "bad_request"),
    ));
    out.push(outcome(
        "DELIVERY-4",
        "a submission by an address of another provider than the caller is refused with bad_request",
        expect(
            &post(caller, SUBMIT_PATH, with(&submit, "user", Some(json!(foreign_to_caller)))).await,
            400,
            "bad_request",
        ),
    ));
    out.push(outcome(
        "EP-10",
        "a submission whose action has an unknown field or an unknown type is refused with bad_request",
        all_bad_requests(
            caller,
            SUBMIT_PATH,
            vec![
                (
                    "an unknown field in the action",
                    with(&submit, "action", Some(json!({"type": "read", "up_to": 1, "conformance": true}))),
                ),
                ("an unknown action", with(&submit, "action", Some(json!({"type": "poke"})))),
            ],
        )
        .await,
    ));

    // Transactions: one whose every event must be refused, each for its own reason.
    let message = |recipient: &str| {
        json!({"type": "message", "seq": 1, "sender": me, "sender_name": "Conformance kit", "recipient": recipient,
            "client_id": "conformance-1", "content": {"type": "text", "text": "conformance"},
            "sent_at": peyvand_service::now_millis()})
    };
    let mixed = json!({"id": new_transaction_id(), "events": [
        {"room": kit_room(), "event": read},
        {"room": target_room(), "event": read},
        {"room": kit_room(), "event": message(&unreachable)},
        {"room": kit_room(), "event": {"type": "reaction", "seq": 1, "user": me, "emoji": "👍"}},
    ]});
    let answer = post(caller, TRANSACTIONS_PATH, mixed.clone()).await;
    let listed = expect(&answer, 200, "-").and_then(|()| {
        let body = answer.as_ref().map(|a| a.body.clone()).unwrap_or_default();
        let refused = body["refused"].as_array().cloned().unwrap_or_default();
        let complete = refused.iter().all(|r| r["index"].is_u64() && r["code"].is_string() && r["message"].is_string());
        let indexes: Vec<u64> = refused.iter().filter_map(|r| r["index"].as_u64()).collect();
        (complete && indexes == [0, 1, 2, 3]).then_some(()).ok_or_else(|| format!("answered {body}"))
    });
    out.push(outcome(
        "DELIVERY-12",
        "a transaction whose events are all refused is answered 200, listing each event by index, code and \
         message, in order",
        listed,
    ));
    // A forging hub: events "by" the target's own people (a number with no account there: the
    // check comes before the room's and the person's), which the target never submitted.
    let forged = json!({"id": new_transaction_id(), "events": [
        {"room": kit_room(), "event": {"type": "message", "seq": 1, "sender": unreachable, "sender_name": "",
            "recipient": me, "client_id": "conformance-forged", "content": {"type": "text", "text": "conformance"},
            "sent_at": peyvand_service::now_millis()}},
        {"room": kit_room(), "event": {"type": "reaction", "seq": 1, "user": unreachable, "emoji": "👍"}},
        {"room": kit_room(), "event": {"type": "read", "user": unreachable, "up_to": 1}},
    ]});
    out.push(outcome(
        "DELIVERY-18",
        "events attributed to the target's own people that it did not submit (a message, a reaction, a read \
         receipt) are refused with forged_event, whether or not it follows the room",
        refused_with(&post(caller, TRANSACTIONS_PATH, forged).await, &[0, 1, 2], "forged_event"),
    ));
    // Origin signatures: on an event by the kit's own person, missing, of an unknown version,
    // by another key, or naming another provider than the person's.
    let mine = json!({"room": kit_room(), "event": read});
    let origin = origin_of(caller, &mine).unwrap_or_default();
    let stranger = new_key().map(|key| sign_bytes(&key, b"conformance")).unwrap_or_default();
    let with_origin = |origin: Value| with(&mine, "origin", Some(origin));
    let origins = json!({"id": new_transaction_id(), "events": [
        with(&mine, "origin", None),
        with_origin(with(&origin, "v", Some(json!(99)))),
        with_origin(with(&origin, "signature", Some(json!(stranger)))),
        with_origin(with(&origin, "provider", Some(json!(target)))),
    ]});
    // Sent as is: `post` would sign the event that has no origin.
    let refusals = caller.signed(&caller.request(Method::POST, TRANSACTIONS_PATH, Some(origins))).await;
    out.push(outcome(
        "DELIVERY-21",
        "an event without an origin signature, with one by a key not listed for its person's provider, or \
         naming another provider than its person's, is refused with forged_event",
        refused_with(&refusals, &[0, 2, 3], "forged_event"),
    ));
    out.push(outcome(
        "DELIVERY-21",
        "an event whose origin signature has an unknown version is refused with unsupported_version",
        refused_with(&refusals, &[1], "unsupported_version"),
    ));
    out.push(outcome(
        "EP-17",
        "events for a room the target does not follow (other than a message) are refused one by one with \
         not_found, not the transaction as a whole",
        refused_with(&answer, &[0, 3], "not_found"),
    ));
    out.push(outcome(
        "DELIVERY-1",
        "an event for a room whose hub is not the caller is refused with bad_request",
        refused_with(&answer, &[1], "bad_request"),
    ));
    out.push(outcome(
        "DELIVERY-7",
        "a message for a room the target has no copy of, to a person the sender may not reach, is refused \
         with not_found, as the invitation would be",
        refused_with(&answer, &[2], "not_found"),
    ));
    let again = post(caller, TRANSACTIONS_PATH, mixed).await;
    out.push(outcome(
        "EP-16",
        "a transaction id sent again is answered {\"refused\": []}: its events are not applied (nor refused) again",
        expect(&again, 200, "-").and_then(|()| match &again {
            Ok(a) if a.body == json!({"refused": []}) => Ok(()),
            Ok(a) => Err(format!("answered {}", a.body)),
            Err(e) => Err(e.clone()),
        }),
    ));
    let event = |event: Value| json!({"room": kit_room(), "event": event});
    let one_bad = |bad: Value| json!({"id": new_transaction_id(), "events": [event(read.clone()), bad]});
    out.push(outcome(
        "EP-10",
        "a transaction with one malformed event (an unknown field in the event or its envelope, an unknown \
         type) is refused as a whole with bad_request",
        all_bad_requests(
            caller,
            TRANSACTIONS_PATH,
            vec![
                ("an unknown field in an event", one_bad(event(with(&read, "conformance", Some(json!(true)))))),
                ("an unknown field in an envelope", one_bad(with(&event(read.clone()), "conformance", Some(json!(1))))),
                ("an unknown event type", one_bad(event(json!({"type": "poke", "user": me})))),
            ],
        )
        .await,
    ));
    let loose_room = json!({"hub": kit, "id": unused_room_id(), "conformance": true});
    let loose = json!({"id": new_transaction_id(), "events": [{"room": loose_room, "event": read}]});
    out.push(outcome(
        "EP-10",
        "an unknown field inside a room is ignored (the event is refused with not_found only because the \
         target does not follow the room)",
        refused_with(&post(caller, TRANSACTIONS_PATH, loose).await, &[0], "not_found"),
    ));
    let with_id = |id: &str| json!({"id": id, "events": [event(read.clone())]});
    out.push(outcome(
        "EP-10",
        "a transaction id that is not 1 to 128 printable ASCII characters other than space is refused with \
         bad_request",
        all_bad_requests(
            caller,
            TRANSACTIONS_PATH,
            vec![
                ("an empty id", with_id("")),
                ("an id of 129 characters", with_id(&"a".repeat(129))),
                ("an id with a space", with_id("conformance id")),
                ("an id with a non-ASCII character", with_id("conformance-é")),
            ],
        )
        .await,
    ));
    // The size limit: exactly 64 KiB (padded with white space, which JSON allows) is accepted.
    let padded = |size: usize| {
        let mut body = with_id(&new_transaction_id()).to_string().into_bytes();
        body.resize(size.max(body.len()), b' ');
        body
    };
    out.push(outcome(
        "TRANSPORT-12",
        "a transaction of exactly 64 KiB is accepted",
        expect(&post_raw(caller, TRANSACTIONS_PATH, padded(SIZE_LIMIT), true).await, 200, "-"),
    ));
    out.push(outcome(
        "TRANSPORT-12",
        "a transaction one byte over 64 KiB is refused with payload_too_large",
        expect(&post_raw(caller, TRANSACTIONS_PATH, padded(SIZE_LIMIT + 1), true).await, 413, "payload_too_large"),
    ));

    // Typing.
    out.push(outcome(
        "DELIVERY-9",
        "typing in a room the target neither hosts nor follows is refused with not_found",
        all_answered(
            caller,
            TYPING_PATH,
            vec![
                ("a room of the caller", typing.clone()),
                ("a room of the target", with(&typing, "room", Some(target_room()))),
            ],
            404,
            "not_found",
        )
        .await,
    ));
    let elsewhere = json!({"hub": format!("not-{kit}"), "id": 1});
    out.push(outcome(
        "EP-11",
        "typing in a room whose hub is neither the target nor the caller is refused with bad_request",
        expect(&post(caller, TYPING_PATH, with(&typing, "room", Some(elsewhere))).await, 400, "bad_request"),
    ));

    // Reports.
    out.push(outcome(
        "EP-12",
        "a report about a number the target's lookup does not find for the reporter is refused with not_found",
        expect(&post(caller, REPORTS_PATH, report.clone()).await, 404, "not_found"),
    ));
    out.push(outcome(
        "DELIVERY-4",
        "a report by an address of another provider than the caller is refused with bad_request",
        expect(
            &post(caller, REPORTS_PATH, with(&report, "reporter", Some(json!(foreign_to_caller)))).await,
            400,
            "bad_request",
        ),
    ));
    out.push(outcome(
        "EP-11",
        "a report about an address that is not the target's (another provider's, or no address) is refused \
         with bad_request",
        all_bad_requests(
            caller,
            REPORTS_PATH,
            vec![
                ("another provider's address", with(&report, "reported", Some(json!(foreign_to_target)))),
                ("no address", with(&report, "reported", Some(json!("somebody")))),
            ],
        )
        .await,
    ));
    out
}
