//! The interconnect between providers, end to end: `peyvand demo` runs a registry and three
//! licensed providers (alborz, damavand, sahand) that talk over mutual TLS with signed
//! requests; the tests use the client API of each, the registry's admin API, and (for the
//! refusals) hand-made requests from a licensed test provider.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::demo::Demo;
use common::{DEADLINE, eventually};
use peyvand_api::{Audience, ErrorCode, ReachableList, SettingsUpdate};
use peyvand_interconnect::protocol::{
    HEADER_NONCE, HEADER_PROVIDER, HEADER_SIGNATURE, HEADER_TARGET, HEADER_TIMESTAMP,
};
use peyvand_interconnect::signing::{Signed, new_nonce};
use peyvand_interconnect::tls::{TlsIdentity, client_config};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const ALI: &str = "+989121000001";
const BABAK: &str = "+989121000002";
const CYRUS: &str = "+989121000003";

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
    // On his own messenger, the number is found as a local account.
    let own = ali.lookup(BABAK).await.expect("lookup");
    assert_eq!(found_on(&own), vec![], "Babak has not opted in");

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

/// A provider the test licenses and enrols itself, to send hand-made requests.
struct Tester {
    signing: Ed25519KeyPair,
    http: reqwest::Client,
}

impl Tester {
    async fn enrol(demo: &Demo, id: &str, target: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        let signing = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let public = STANDARD.encode(signing.public_key().as_ref());
        let domain = format!("{id}.example");
        let until = peyvand_service::now_millis() + 86_400_000;
        let (status, body) = demo
            .admin(
                Method::POST,
                "/v1/admin/licences",
                json!({"provider_id": id, "name": id, "domain": domain, "endpoint": format!("https://{domain}"),
                       "contact": "test", "licence_number": format!("T-{id}"), "valid_until": until,
                       "signing_keys": [public], "capabilities": ["discovery"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (_, token) =
            demo.admin(Method::POST, &format!("/v1/admin/licences/{id}/enrolment-tokens"), Value::Null).await;
        let (key, csr) = peyvand_registry::ca::generate_key_and_csr(id, &domain).expect("csr");
        let registry = peyvand_registry::RegistryClient::new(&demo.registry, None).expect("registry client");
        let certificate = registry.enrol(token["token"].as_str().expect("token"), &csr, None).await.expect("enrolled");
        let identity = TlsIdentity::new(&certificate.certificate, &key, &certificate.ca_certificate).expect("identity");
        Self { signing, http: client_to(&identity, &certificate.ca_certificate, target) }
    }
}

fn client_to(identity: &TlsIdentity, ca: &str, target: &str) -> reqwest::Client {
    let tls = client_config(identity, ca, target, &format!("{target}.example"), Vec::new()).expect("tls");
    reqwest::Client::builder().use_preconfigured_tls(tls).timeout(DEADLINE).build().expect("client")
}

/// What a hand-made request carries.
struct Outgoing<'a> {
    from: &'a str,
    to: &'a str,
    timestamp: i64,
    nonce: String,
    body: Vec<u8>,
}

impl Outgoing<'_> {
    fn signed<'s>(&'s self, path: &'s str) -> Signed<'s> {
        Signed {
            method: "POST",
            path_and_query: path,
            from: self.from,
            to: self.to,
            timestamp: self.timestamp,
            nonce: &self.nonce,
            body: &self.body,
        }
    }
}

async fn send(http: &reqwest::Client, url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut request = http.post(url).header("content-type", "application/json").body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the request got an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or("-"))
}

#[tokio::test]
async fn peers_must_be_listed_active_signed_and_new() {
    let demo = Demo::start(&[]);
    let ali = demo.sign_in("alborz", ALI).await;
    ali.update_settings(&interconnect(Audience::Everybody)).await.expect("on");
    let alborz = demo.url("alborz");
    let endpoint = alborz.replace("http://", "https://");
    let path = "/interconnect/v1/lookup";
    let url = format!("{endpoint}{path}");
    let tester = Tester::enrol(&demo, "tester", "alborz").await;
    let body = serde_json::to_vec(&json!({"phone": ALI, "requester_phone": BABAK})).expect("json");
    let fresh = || Outgoing {
        from: "tester",
        to: "alborz",
        timestamp: peyvand_service::now_millis(),
        nonce: new_nonce(),
        body: body.clone(),
    };
    let headers = |o: &Outgoing<'_>, signature: String| {
        vec![
            (HEADER_PROVIDER, o.from.to_owned()),
            (HEADER_TARGET, o.to.to_owned()),
            (HEADER_TIMESTAMP, o.timestamp.to_string()),
            (HEADER_NONCE, o.nonce.clone()),
            (HEADER_SIGNATURE, signature),
        ]
    };

    // Properly signed: answered (once alborz's directory lists the new licence), and only once.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (good, good_headers, answer) = loop {
        let good = fresh();
        let good_headers = headers(&good, good.signed(path).sign(&tester.signing));
        let answer = send(&tester.http, &url, &good_headers, &good.body).await;
        if code(&answer) != (403, "peer_not_listed") {
            break (good, good_headers, answer);
        }
        assert!(std::time::Instant::now() < deadline, "alborz never learnt of the new licence");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["user"]["address"], format!("{ALI}@alborz"));
    assert_eq!(code(&send(&tester.http, &url, &good_headers, &good.body).await), (409, "replayed_request"));

    // Unsigned.
    let unsigned = send(&tester.http, &url, &[(HEADER_PROVIDER, "tester".to_owned())], &body).await;
    assert_eq!(code(&unsigned), (401, "invalid_signature"));
    // Signed by a key that is not the provider's.
    let stranger =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key").as_ref())
            .expect("key");
    let forged = fresh();
    let answer = send(&tester.http, &url, &headers(&forged, forged.signed(path).sign(&stranger)), &forged.body).await;
    assert_eq!(code(&answer), (401, "invalid_signature"));
    // A body changed after signing.
    let changed = fresh();
    let signature = changed.signed(path).sign(&tester.signing);
    let other_body = serde_json::to_vec(&json!({"phone": CYRUS, "requester_phone": BABAK})).expect("json");
    assert_eq!(
        code(&send(&tester.http, &url, &headers(&changed, signature), &other_body).await),
        (401, "invalid_signature")
    );
    // Signed for another provider.
    let elsewhere = Outgoing { to: "sahand", ..fresh() };
    let mut elsewhere_headers = headers(&elsewhere, elsewhere.signed(path).sign(&tester.signing));
    elsewhere_headers[1].1 = "alborz".to_owned();
    assert_eq!(code(&send(&tester.http, &url, &elsewhere_headers, &body).await), (401, "invalid_signature"));
    // Claiming to be another provider than the certificate says.
    let impostor = Outgoing { from: "damavand", ..fresh() };
    let answer =
        send(&tester.http, &url, &headers(&impostor, impostor.signed(path).sign(&tester.signing)), &body).await;
    assert_eq!(code(&answer), (401, "invalid_signature"));
    // Signed long ago (and so never replayable later).
    let stale = Outgoing { timestamp: peyvand_service::now_millis() - 10 * 60 * 1000, ..fresh() };
    let answer = send(&tester.http, &url, &headers(&stale, stale.signed(path).sign(&tester.signing)), &body).await;
    assert_eq!(code(&answer), (401, "stale_request"));

    // Without a client certificate (plain HTTP on the same port): not a listed provider.
    let plain = send(&reqwest::Client::new(), &format!("{alborz}{path}"), &good_headers, &body).await;
    assert_eq!(code(&plain), (403, "peer_not_listed"));
    // A certificate from another CA does not even complete the handshake.
    let rogue_dir = common::temp_dir("rogue-ca");
    let (rogue_ca, _) =
        peyvand_registry::ca::CertificateAuthority::load_or_create(&rogue_dir, peyvand_service::now_millis())
            .expect("rogue CA");
    let (key, csr) = peyvand_registry::ca::generate_key_and_csr("tester", "tester.example").expect("csr");
    let issued = rogue_ca
        .issue(&csr, "tester", "tester.example", peyvand_service::now_millis(), Duration::from_secs(86_400))
        .expect("rogue certificate");
    let rogue_identity = TlsIdentity::new(&issued.pem, &key, rogue_ca.certificate_pem()).expect("identity");
    let directory_ca =
        reqwest::get(format!("{}/v1/ca.pem", demo.registry)).await.expect("ca").text().await.expect("pem");
    let rogue = client_to(&rogue_identity, &directory_ca, "alborz");
    let attempt = fresh();
    let refused = rogue
        .post(&url)
        .headers(reqwest::header::HeaderMap::new())
        .header(HEADER_SIGNATURE, attempt.signed(path).sign(&tester.signing))
        .body(body.clone())
        .send()
        .await;
    assert!(refused.is_err(), "a certificate from another CA is refused in the handshake");
    let _ = std::fs::remove_dir_all(&rogue_dir);

    // Suspended: refused within a refresh, with its certificate still valid.
    licence_action(&demo, "tester", "suspend").await;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let attempt = fresh();
        let answer =
            send(&tester.http, &url, &headers(&attempt, attempt.signed(path).sign(&tester.signing)), &body).await;
        if code(&answer) == (403, "peer_not_active") {
            break;
        }
        assert_eq!(answer.0, 200, "{}", answer.1);
        assert!(std::time::Instant::now() < deadline, "the suspension never reached alborz");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
