//! The interconnect between providers, end to end: `peyvand demo` runs a registry and three
//! licensed providers (alborz, damavand, sahand) that talk over mutual TLS with signed
//! requests; the tests use the client API of each, the registry's admin API, and (for the
//! refusals) the conformance kit and hand-made TLS clients.

mod common;

use std::time::Duration;

use common::demo::Demo;
use common::external::External;
use common::{DEADLINE, eventually};
use peyvand_api::{Audience, ErrorCode, ReachableList, SettingsUpdate};
use peyvand_interconnect::conformance::KitProvider;
use peyvand_interconnect::tls::{TlsIdentity, client_config};
use peyvand_registry::RegistryClient;
use reqwest::Method;
use serde_json::{Value, json};

const ALI: &str = "+989121000001";
const BABAK: &str = "+989121000002";
const CYRUS: &str = "+989121000003";
const DARA: &str = "+989121000004";

fn found_on(list: &ReachableList) -> Vec<(String, String)> {
    list.reachable.iter().map(|r| (r.provider_id.clone(), r.address.clone())).collect()
}

fn interconnect(audience: Audience) -> SettingsUpdate {
    SettingsUpdate { interconnect: Some(audience), ..SettingsUpdate::default() }
}

async fn licence_action(demo: &Demo, provider: &str, action: &str) {
    let (status, body) =
        demo.admin(Method::POST, &format!("/v1/admin/licences/{provider}/{action}"), json!({"reason": "test"})).await;
    assert_eq!(status, 200, "{action} {provider}: {body}");
}

#[tokio::test]
async fn lookups_follow_consent_and_licences() {
    // Waiting for a refresh below repeats lookups: a higher limit than the default 60 an hour.
    let demo = Demo::start(&[("PEYVAND_INTERCONNECT__LIMITS__LOOKUPS_PER_USER_PER_HOUR", "400")]);
    let ali = demo.sign_in("alborz", ALI).await;
    let babak = demo.sign_in("damavand", BABAK).await;
    let cyrus = demo.sign_in("sahand", CYRUS).await;

    // Off by default: nobody elsewhere finds Ali, and the answer does not say he exists.
    assert_eq!(ali.settings().await.expect("settings").interconnect, Audience::Nobody);
    let list = babak.lookup("09121000001").await.expect("lookup");
    assert_eq!(found_on(&list), vec![]);
    assert!(list.unreachable.is_empty(), "{:?}", list.unreachable);

    // On for everybody.
    ali.update_profile(&peyvand_api::ProfileUpdate { display_name: Some("علی".into()), ..Default::default() })
        .await
        .expect("name");
    ali.update_settings(&interconnect(Audience::Everybody)).await.expect("on");
    let list = babak.lookup("۰۹۱۲۱۰۰۰۰۰۱").await.expect("lookup");
    assert_eq!(found_on(&list), vec![("alborz".to_owned(), format!("{ALI}@alborz"))]);
    assert_eq!(list.reachable[0].display_name, "علی");
    assert_eq!(list.reachable[0].provider_name, "پیام‌رسان البرز");
    assert!(!list.reachable[0].local);
    // Babak has not opted in: Ali does not find him on damavand.
    assert_eq!(found_on(&ali.lookup(BABAK).await.expect("lookup")), vec![], "Babak has not opted in");
    // A number on one's own messenger is found there (within phone discovery), as local.
    let dara = demo.sign_in("damavand", DARA).await;
    let dara_id = dara.me().await.expect("me").id;
    let local = babak.lookup(DARA).await.expect("lookup");
    assert_eq!(found_on(&local), vec![("damavand".to_owned(), format!("{DARA}@damavand"))]);
    assert!(local.reachable[0].local);
    assert_eq!(local.reachable[0].user_id, Some(dara_id));

    // Contacts only: Babak once Ali has his number, Cyrus never.
    ali.update_settings(&interconnect(Audience::Contacts)).await.expect("contacts");
    assert_eq!(found_on(&babak.lookup(ALI).await.expect("lookup")), vec![]);
    ali.import_contacts(vec![BABAK.to_owned()]).await.expect("import");
    assert_eq!(found_on(&babak.lookup(ALI).await.expect("lookup")).len(), 1);
    assert_eq!(found_on(&cyrus.lookup(ALI).await.expect("lookup")), vec![]);

    // Off again.
    ali.update_settings(&interconnect(Audience::Nobody)).await.expect("off");
    assert_eq!(found_on(&babak.lookup(ALI).await.expect("lookup")), vec![]);
    ali.update_settings(&interconnect(Audience::Everybody)).await.expect("on");
    babak.update_settings(&interconnect(Audience::Everybody)).await.expect("on");

    // Suspending damavand: within a refresh, alborz refuses damavand's calls, and sahand no
    // longer calls damavand.
    licence_action(&demo, "damavand", "suspend").await;
    eventually("alborz refuses suspended damavand", || async {
        let list = babak.lookup(ALI).await.expect("lookup");
        list.reachable.is_empty()
            && list.unreachable.iter().any(|f| f.provider_id == "alborz" && f.code == ErrorCode::PeerNotActive)
    })
    .await;
    // Damavand would answer (sahand is active), so finding nobody means sahand did not ask.
    eventually("sahand does not call suspended damavand", || async {
        let list = cyrus.lookup(BABAK).await.expect("lookup");
        list.reachable.is_empty() && list.unreachable.is_empty()
    })
    .await;
    // Reinstated: both ways work again, with the certificate it had.
    licence_action(&demo, "damavand", "reinstate").await;
    eventually("damavand reaches alborz again", || async {
        found_on(&babak.lookup(ALI).await.expect("lookup")).len() == 1
    })
    .await;
    eventually("sahand reaches damavand again", || async {
        found_on(&cyrus.lookup(BABAK).await.expect("lookup"))
            == vec![("damavand".to_owned(), format!("{BABAK}@damavand"))]
    })
    .await;

    // Lookups are limited per person.
    let mut limited = false;
    for _ in 0..=400 {
        if let Err(e) = cyrus.lookup(ALI).await {
            assert_eq!(e.code(), Some(ErrorCode::RateLimited));
            limited = true;
            break;
        }
    }
    assert!(limited, "a person's lookups are rate-limited");
}

/// The directory's providers and revoked serials, as the registry serves them now.
async fn listed(demo: &Demo) -> (Value, Value) {
    let directory: Value =
        reqwest::get(format!("{}/v1/directory", demo.registry)).await.expect("directory").json().await.expect("json");
    (directory["providers"].clone(), directory["revoked_certificates"].clone())
}

/// Runs `peyvand conformance` against `target`; its outcomes.
async fn run_kit(demo: &Demo, target: &str) -> Vec<Value> {
    let token_file = demo.data.join("registry").join("admin-token");
    let endpoint = demo.url(target).replace("http://", "https://");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(["--output", "json", "conformance", "--wait-secs", "20", "--target", &endpoint, "--registry"])
        .arg(&demo.registry)
        .arg("--token-file")
        .arg(&token_file)
        .env("PEYVAND_LOG", "warn")
        .output()
        .await
        .expect("run the kit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let outcomes: Vec<Value> = serde_json::from_str(&stdout).expect("JSON outcomes");
    let failed: Vec<&Value> = outcomes.iter().filter(|o| o["passed"] != true).collect();
    assert!(failed.is_empty(), "{failed:?}");
    outcomes
}

/// `peyvand conformance` against one of the demo's providers: every check passes, twice in a
/// row against the same registry, and each run leaves the directory as it found it (its
/// licence revoked and delisted).
#[tokio::test]
async fn the_conformance_kit_passes_against_peyvand() {
    let demo = Demo::start(&[]);
    let before = listed(&demo).await;
    let outcomes = run_kit(&demo, "damavand").await;
    let stdout = serde_json::to_string(&outcomes).expect("json");
    let passed: Vec<&str> = outcomes.iter().filter_map(|o| o["requirement"].as_str()).collect();
    for requirement in [
        "TRANSPORT-1",
        "TRANSPORT-2",
        "TRANSPORT-5",
        "TRANSPORT-6",
        "TRANSPORT-9",
        "TRANSPORT-10",
        "TRANSPORT-12",
        "EP-4",
        "EP-10",
        "EP-11",
        "EP-12",
        "EP-16",
        "EP-17",
        "DELIVERY-1",
        "DELIVERY-4",
        "DELIVERY-5",
        "DELIVERY-7",
        "DELIVERY-9",
        "DELIVERY-12",
        "DELIVERY-18",
        "DELIVERY-21",
        "MEDIA-5",
        "EP-21",
    ] {
        assert!(passed.contains(&requirement), "{requirement} was checked: {stdout}");
    }
    // Every direct-chat endpoint is checked for signatures, replays and its body.
    for path in ["invite", "submit", "transactions", "typing", "reports"] {
        for requirement in ["TRANSPORT-6", "TRANSPORT-10", "EP-10"] {
            let needle = format!("POST /interconnect/v1/{path} ");
            assert!(
                outcomes
                    .iter()
                    .any(|o| o["requirement"] == requirement
                        && o["check"].as_str().is_some_and(|c| c.starts_with(&needle))),
                "{requirement} was checked on {path}: {stdout}"
            );
        }
    }
    assert_eq!(listed(&demo).await, before, "the first run leaves the directory as it was");
    run_kit(&demo, "damavand").await;
    assert_eq!(listed(&demo).await, before, "so does the second");

    let (_, licences) = demo.admin(Method::GET, "/v1/admin/licences", Value::Null).await;
    let kit: Vec<&Value> = licences["licences"]
        .as_array()
        .expect("licences")
        .iter()
        .filter(|l| l["provider_id"].as_str().is_some_and(|id| id.starts_with("conformance-")))
        .collect();
    assert_eq!(kit.len(), 2, "one licence per run, kept in the registry");
    for licence in kit {
        assert_eq!(licence["status"], "revoked", "the kit withdraws its licence: {licence}");
        assert!(licence["delisted_at"].is_i64(), "and delists it: {licence}");
    }
}

/// What the kit cannot check with a licensed identity: a caller without a client
/// certificate (plain HTTP on the same port) and one whose certificate comes from another CA.
#[tokio::test]
async fn callers_without_a_registry_certificate_are_refused() {
    let demo = Demo::start(&[]);
    let alborz = demo.url("alborz");
    let path = "/interconnect/v1/provider";
    let plain = reqwest::get(format!("{alborz}{path}")).await.expect("answer");
    assert_eq!(plain.status().as_u16(), 403);
    let body: Value = plain.json().await.expect("json");
    assert_eq!(body["error"]["code"], "peer_not_listed");

    let rogue_dir = common::temp_dir("rogue-ca");
    let now = peyvand_service::now_millis();
    let (rogue_ca, _) = peyvand_registry::ca::CertificateAuthority::load_or_create(&rogue_dir, now).expect("rogue CA");
    let (key, csr) = peyvand_registry::ca::generate_key_and_csr("alborz", "alborz.example").expect("csr");
    let issued =
        rogue_ca.issue(&csr, "alborz", "alborz.example", now, Duration::from_secs(86_400)).expect("certificate");
    let rogue = TlsIdentity::new(&issued.pem, &key, rogue_ca.certificate_pem()).expect("identity");
    let real_ca = reqwest::get(format!("{}/v1/ca.pem", demo.registry)).await.expect("ca").text().await.expect("pem");
    let tls = client_config(Some(&rogue), &real_ca, "alborz", "alborz.example", Vec::new()).expect("tls");
    let client = reqwest::Client::builder().use_preconfigured_tls(tls).timeout(DEADLINE).build().expect("client");
    let endpoint = alborz.replace("http://", "https://");
    assert!(client.get(format!("{endpoint}{path}")).send().await.is_err(), "another CA's certificate is refused");
    let _ = std::fs::remove_dir_all(&rogue_dir);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn the_demo_keeps_its_secrets_private_and_removes_its_own_folder_on_sigterm() {
    let tmp = common::temp_dir("demo-tmp");
    let mut demo = Demo::start_in_temporary(&tmp);
    let data = demo.data.clone();
    assert!(data.starts_with(&tmp), "the demo made its folder under TMPDIR: {}", data.display());
    assert_eq!(mode(&data), 0o700, "the demo's folder is its owner's only");
    let secrets: Vec<_> = files_under(&data)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.contains("key") || name.contains("token") || name.starts_with("tls")
        })
        .collect();
    // The registry's signing key, CA key and admin token, and each provider's keys.
    assert!(secrets.len() >= 3, "keys and tokens found: {secrets:?}");
    for secret in &secrets {
        let public =
            secret.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("public") || n.ends_with(".pub"));
        if !public {
            assert_eq!(mode(secret) & 0o077, 0, "{} is readable by others", secret.display());
        }
    }
    let status = demo.terminate();
    assert!(status.success(), "the demo exits cleanly on SIGTERM: {status}");
    assert!(!data.exists(), "the demo removed {} on SIGTERM", data.display());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The registry's admin client for the demo's registry.
fn registry_admin(demo: &Demo) -> RegistryClient {
    RegistryClient::new(&demo.registry, Some(demo.admin_token.clone())).expect("registry client")
}

/// A signed request captured before the receiving provider restarts is refused after it
/// with `replayed_request`: the nonces seen are kept in the store, on each backend.
async fn replay_after_restart(demo: &Demo, mut target: External) {
    let registry = registry_admin(demo);
    let mut peer = KitProvider::enrol(&registry, target.id).await.expect("a licensed test provider");
    peer.retarget(&target.endpoint());
    peer.wait_until_known(DEADLINE).await.expect("the target lists the test provider");
    let body = json!({"phone": "+12025550150", "requester_phone": "+12025550151"});
    let captured = peer.sign_post("/interconnect/v1/lookup", body.clone());
    let (status, answer) = peer.send(&captured).await.expect("answered");
    assert_eq!((status, &answer["found"]), (200, &json!(false)), "{answer}");
    let (status, answer) = peer.send(&captured).await.expect("answered");
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("replayed_request")), "{answer}");

    target.restart(demo).await;
    peer.retarget(&target.endpoint());
    // The restarted server answers a new request, and still knows the old one.
    peer.wait_until_known(DEADLINE).await.expect("the restarted target answers");
    let (status, answer) = peer.send(&captured).await.expect("answered");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("replayed_request")),
        "replayed after a restart: {answer}"
    );
    let (status, _) = peer.send(&peer.sign_post("/interconnect/v1/lookup", body)).await.expect("answered");
    assert_eq!(status, 200, "a new request is answered");
    peer.withdraw(&registry).await.expect("withdrawn");
}

#[tokio::test]
async fn a_request_replayed_after_a_restart_is_refused_embedded() {
    let demo = Demo::start(&[]);
    let target = External::start(&demo, "kavir", "TEST-R1").await;
    replay_after_restart(&demo, target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_replayed_after_a_restart_is_refused_postgres() {
    let demo = Demo::start(&[]);
    let (target, _cluster) = External::start_on_cluster(&demo, "kavir", "TEST-R2").await;
    replay_after_restart(&demo, target).await;
}
