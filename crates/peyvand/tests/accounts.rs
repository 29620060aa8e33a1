//! Sign-up and sign-in, codes and their limits, the PIN, devices, profiles, settings,
//! contacts, account deletion, and what malformed requests get — against the real server.

mod common;

use common::{Server, code_of, eventually, person, sign_in};
use peyvand_api::{Audience, ErrorCode, ProfileUpdate, SettingsUpdate, SignInRequest};
use peyvand_client::Client;

fn sign_in_request(phone: &str, code: &str, pin: Option<&str>) -> SignInRequest {
    SignInRequest { phone: phone.into(), code: code.into(), device_name: Some("test".into()), pin: pin.map(Into::into) }
}

#[tokio::test]
async fn every_accepted_phone_form_signs_in_to_the_same_account_and_bad_ones_are_refused() {
    let server = Server::start_with(
        &common::temp_dir("forms"),
        &[
            ("PEYVAND_SERVICE__LIMITS__CODES_PER_NUMBER_PER_HOUR", "100"),
            ("PEYVAND_SERVICE__LIMITS__CODES_PER_NUMBER_FROM_ADDRESS_PER_HOUR", "100"),
        ],
    );
    let client = Client::new(&server.url).expect("client");
    let mut ids = Vec::new();
    for form in ["09121234567", "+98 912 123 4567", "0098-912-123-4567", "۰۹۱۲۱۲۳۴۵۶۷", "٠٩١٢١٢٣٤٥٦٧", "9121234567"]
    {
        // The OTP line names the normalised number.
        let code = server.new_code(&client, form, "+989121234567").await;
        // Codes typed in Persian digits work too.
        let persian_code: String =
            code.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + 0x06F0).unwrap_or(c)).collect();
        let signed = client.sign_in(&sign_in_request(form, &persian_code, None)).await.expect(form);
        assert_eq!(signed.account.phone, "+989121234567");
        ids.push(signed.account.id);
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one account: {ids:?}");
    for bad in ["", "hello", "0912-abc-4567", "0912123", "091212345678901", "02112345678", "+0123"] {
        assert_eq!(code_of(client.request_code(bad).await), ErrorCode::InvalidPhone, "{bad:?}");
    }
}

#[tokio::test]
async fn wrong_codes_burn_the_code_and_used_codes_do_not_work_twice() {
    // Five guesses per code; one address may make them all here.
    let server = Server::start_with(
        &common::temp_dir("burn"),
        &[("PEYVAND_SERVICE__CODE_MAX_ATTEMPTS", "5"), ("PEYVAND_SERVICE__LIMITS__CODE_ATTEMPTS_PER_ADDRESS", "100")],
    );
    let client = Client::new(&server.url).expect("client");
    let phone = "+989121110001";
    let code = server.new_code(&client, phone, phone).await;
    let wrong = if code == "00000" { "11111" } else { "00000" };
    for _ in 0..4 {
        assert_eq!(code_of(client.sign_in(&sign_in_request(phone, wrong, None)).await), ErrorCode::InvalidCode);
    }
    assert_eq!(code_of(client.sign_in(&sign_in_request(phone, wrong, None)).await), ErrorCode::TooManyAttempts);
    // The right code no longer works: it was burnt.
    assert_eq!(code_of(client.sign_in(&sign_in_request(phone, &code, None)).await), ErrorCode::InvalidCode);

    let code = server.new_code(&client, phone, phone).await;
    let signed = client.sign_in(&sign_in_request(phone, &code, None)).await.expect("signed in");
    assert!(signed.new_account);
    assert_eq!(code_of(client.sign_in(&sign_in_request(phone, &code, None)).await), ErrorCode::InvalidCode);
    // No code was ever sent to this number.
    assert_eq!(code_of(client.sign_in(&sign_in_request("+989121110002", "12345", None)).await), ErrorCode::InvalidCode);
}

#[tokio::test]
async fn codes_expire() {
    let server = Server::start_with(
        &common::temp_dir("expiry"),
        &[
            ("PEYVAND_SERVICE__CODE_TTL_SECS", "1"),
            ("PEYVAND_SERVICE__CODE_MAX_ATTEMPTS", "100000"),
            ("PEYVAND_SERVICE__LIMITS__CODE_ATTEMPTS_PER_ADDRESS", "100000"),
        ],
    );
    let client = Client::new(&server.url).expect("client");
    let phone = "+989121110003";
    let code = server.new_code(&client, phone, phone).await;
    let wrong = if code == "00000" { "11111" } else { "00000" };
    eventually("the code expires", || async {
        client.sign_in(&sign_in_request(phone, wrong, None)).await.err().and_then(|e| e.code())
            == Some(ErrorCode::CodeExpired)
    })
    .await;
    assert_eq!(code_of(client.sign_in(&sign_in_request(phone, &code, None)).await), ErrorCode::InvalidCode);
}

#[tokio::test]
async fn code_requests_are_limited_per_number_per_block_and_per_address() {
    let server = Server::start_with(
        &common::temp_dir("limits"),
        &[
            ("PEYVAND_SERVICE__LIMITS__CODES_PER_NUMBER_PER_HOUR", "2"),
            ("PEYVAND_SERVICE__LIMITS__CODES_PER_BLOCK_PER_HOUR", "4"),
            ("PEYVAND_SERVICE__LIMITS__CODES_PER_ADDRESS_PER_HOUR", "7"),
        ],
    );
    let client = Client::new(&server.url).expect("client");
    client.request_code("+989121230001").await.expect("1st");
    client.request_code("+989121230001").await.expect("2nd");
    let refused = client.request_code("+989121230001").await.expect_err("3rd for the number");
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited));
    assert!(refused.retry_after().is_some_and(|d| d.as_secs() >= 1), "tells when to retry");
    assert_eq!(server.codes_sent("+989121230001"), 2, "no SMS for a refused request");
    // Same operator block (all but the last four digits): two more pass, then the block is shut.
    client.request_code("+989121230002").await.expect("block 3");
    client.request_code("+989121230003").await.expect("block 4");
    assert_eq!(code_of(client.request_code("+989121230004").await), ErrorCode::RateLimited);
    // Another block passes until the address itself runs out.
    client.request_code("+989351230001").await.expect("address 7");
    assert_eq!(code_of(client.request_code("+989351230002").await), ErrorCode::RateLimited);
}

#[tokio::test]
async fn a_pin_is_needed_on_new_devices_once_set() {
    let server = Server::start();
    let phone = "+989121110010";
    let first = sign_in(&server, phone, "phone").await;
    assert_eq!(code_of(first.set_pin("12", None).await), ErrorCode::InvalidPin, "too short");
    first.set_pin("4321", None).await.expect("pin set");
    assert!(first.me().await.expect("me").has_pin);
    assert_eq!(code_of(first.set_pin("9999", None).await), ErrorCode::PinRequired, "changing needs the old one");
    assert_eq!(code_of(first.set_pin("9999", Some("0000")).await), ErrorCode::InvalidPin);

    let second = Client::new(&server.url).expect("client");
    let code = server.new_code(&second, phone, phone).await;
    assert_eq!(code_of(second.sign_in(&sign_in_request(phone, &code, None)).await), ErrorCode::PinRequired);
    assert_eq!(code_of(second.sign_in(&sign_in_request(phone, &code, Some("1111"))).await), ErrorCode::InvalidPin);
    let signed = second.sign_in(&sign_in_request(phone, &code, Some("4321"))).await.expect("with the PIN");
    assert!(!signed.new_account);

    first.remove_pin("4321").await.expect("removed");
    assert!(!first.me().await.expect("me").has_pin);
}

#[tokio::test]
async fn devices_are_listed_and_signed_out_one_by_one_or_everywhere() {
    let server = Server::start();
    let phone = "+989121110020";
    let phone_device = sign_in(&server, phone, "phone").await;
    let laptop = sign_in(&server, phone, "laptop").await;
    let tablet = sign_in(&server, phone, "tablet").await;
    let devices = laptop.devices().await.expect("devices").devices;
    assert_eq!(devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), vec!["phone", "laptop", "tablet"]);
    assert_eq!(devices.iter().filter(|d| d.current).map(|d| d.name.as_str()).collect::<Vec<_>>(), vec!["laptop"]);

    laptop.revoke_device(devices[0].id).await.expect("revoke phone");
    assert_eq!(code_of(phone_device.me().await), ErrorCode::Unauthorized);
    assert_eq!(code_of(laptop.revoke_device(devices[0].id).await), ErrorCode::NotFound);
    tablet.sign_out().await.expect("sign out");
    assert_eq!(code_of(tablet.me().await), ErrorCode::Unauthorized);
    // Signing out everywhere also ends the open update streams, after telling them why.
    let mut stream = laptop.updates_ws(0).await.expect("ws");
    laptop.revoke_all_devices().await.expect("everywhere");
    assert_eq!(code_of(laptop.me().await), ErrorCode::Unauthorized);
    let mut told = false;
    loop {
        match tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("the stream ends in time") {
            Some(Ok(peyvand_api::StreamFrame::Update { update })) => {
                told |= update.event == peyvand_api::Event::SignedOut { device_id: None };
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(told, "the stream said it was signed out");
    assert_eq!(
        code_of(Client::new(&server.url).expect("client").with_token("nonsense").me().await),
        ErrorCode::Unauthorized
    );
}

#[tokio::test]
async fn profiles_usernames_and_people_search_fold_persian() {
    let server = Server::start();
    let ali = person(&server, "+989121110030").await;
    let sara = person(&server, "+989121110031").await;
    let me = ali
        .client
        .update_profile(&ProfileUpdate {
            display_name: Some("علي رضايي".into()),
            username: Some("@Ali_Rezaei".into()),
            bio: Some("سلام".into()),
        })
        .await
        .expect("profile");
    assert_eq!((me.display_name.as_str(), me.username.as_deref()), ("علي رضايي", Some("Ali_Rezaei")));
    let taken =
        sara.client.update_profile(&ProfileUpdate { username: Some("ali_rezaei".into()), ..Default::default() }).await;
    assert_eq!(code_of(taken), ErrorCode::UsernameTaken);
    for bad in ["ab", "1abcdef", "علی_رضا", "has space"] {
        let result =
            sara.client.update_profile(&ProfileUpdate { username: Some(bad.into()), ..Default::default() }).await;
        assert_eq!(code_of(result), ErrorCode::InvalidUsername, "{bad}");
    }
    let long_name = "ن".repeat(65);
    let result =
        sara.client.update_profile(&ProfileUpdate { display_name: Some(long_name), ..Default::default() }).await;
    assert_eq!(code_of(result), ErrorCode::InvalidProfile);
    // Names that show nothing, or flip the text after them, are refused; Persian's ZWNJ is not.
    for spoof in ["\u{200F}\u{200E}", "\u{200B}\u{200B}", "\u{3164}", "\u{2800}", "علی\u{202E}ﺍﺭﺎﺳ", "\u{2067}سارا"]
    {
        let result =
            sara.client.update_profile(&ProfileUpdate { display_name: Some(spoof.into()), ..Default::default() }).await;
        assert_eq!(code_of(result), ErrorCode::InvalidProfile, "{spoof:?}");
    }
    let zwnj = "سارا نیک\u{200C}نام";
    let me = sara.client.update_profile(&ProfileUpdate { display_name: Some(zwnj.into()), ..Default::default() }).await;
    assert_eq!(me.expect("a name with a ZWNJ").display_name, zwnj);

    let found = sara.client.resolve("@ALI_REZAEI").await.expect("by username, any case");
    assert_eq!(found.id, ali.id);
    assert_eq!(found.phone, None, "phone hidden from non-contacts by default");
    // Persian-folded people search: ی/ي and ZWNJ do not matter.
    let hits = sara.client.search_users("رضا\u{200c}یی").await.expect("search");
    assert_eq!(hits.users.iter().map(|u| u.id).collect::<Vec<_>>(), vec![ali.id]);
    // Removing the username frees it.
    ali.client
        .update_profile(&ProfileUpdate { username: Some(String::new()), ..Default::default() })
        .await
        .expect("remove");
    sara.client
        .update_profile(&ProfileUpdate { username: Some("ali_rezaei".into()), ..Default::default() })
        .await
        .expect("free now");
}

#[tokio::test]
async fn contacts_import_finds_only_people_whose_settings_allow_it() {
    let server =
        Server::start_with(&common::temp_dir("contacts"), &[("PEYVAND_SERVICE__LIMITS__CONTACT_LOOKUPS_PER_DAY", "6")]);
    let ali = person(&server, "+989121110040").await;
    let sara = person(&server, "+989121110041").await;
    let reza = person(&server, "+989121110042").await;
    reza.client
        .update_settings(&SettingsUpdate { phone_discovery: Some(Audience::Contacts), ..Default::default() })
        .await
        .expect("closed");
    // Sara keeps the default (everybody); Reza lets only his contacts find him, not yet Ali.
    let imported = ali
        .client
        .import_contacts(vec![
            "۰۹۱۲۱۱۱۰۰۴۱".into(),
            "+98 912 111 0042".into(),
            "not a number".into(),
            "09121119999".into(),
        ])
        .await
        .expect("import")
        .contacts;
    assert_eq!(imported[0].user.as_ref().map(|u| u.id), Some(sara.id));
    assert_eq!(imported[0].phone.as_deref(), Some("+989121110041"));
    assert!(imported[1].user.is_none(), "Reza only lets his contacts find him");
    assert!(imported[2].phone.is_none() && imported[2].user.is_none());
    assert!(imported[3].user.is_none(), "nobody has that number");
    // Once Reza adds Ali, Ali can find him.
    reza.client.import_contacts(vec!["09121110040".into()]).await.expect("reza adds ali");
    let contacts = ali.client.contacts().await.expect("contacts").users;
    assert_eq!(contacts.iter().map(|u| u.id).collect::<Vec<_>>(), vec![sara.id, reza.id]);
    assert_eq!(ali.client.resolve("09121110042").await.expect("resolve").id, reza.id);
    // The daily lookup budget (6) is spent: 3 valid numbers + 1 resolve = 4; 3 more is too many.
    let flood =
        ali.client.import_contacts(vec!["09121110050".into(), "09121110051".into(), "09121110052".into()]).await;
    assert_eq!(code_of(flood), ErrorCode::RateLimited);
    ali.client.remove_contact(sara.id).await.expect("remove");
    assert_eq!(ali.client.contacts().await.expect("contacts").users.len(), 1);
}

#[tokio::test]
async fn deleting_an_account_erases_it_and_keeps_what_others_received() {
    let server = Server::start();
    let ali = person(&server, "+989121110060").await;
    let sara = person(&server, "+989121110061").await;
    ali.client
        .update_profile(&ProfileUpdate { username: Some("ali_deleted".into()), ..Default::default() })
        .await
        .expect("profile");
    let chat = ali.client.open_direct(sara.id).await.expect("chat");
    ali.client.send_text(chat.id, "پیام آخر").await.expect("sent");
    ali.client.delete_account().await.expect("deleted");
    assert_eq!(code_of(ali.client.me().await), ErrorCode::Unauthorized);
    let seen = sara.client.user(ali.id).await.expect("tombstone");
    assert!(seen.deleted && seen.display_name.is_empty() && seen.username.is_none());
    assert_eq!(code_of(sara.client.resolve("@ali_deleted").await), ErrorCode::NotFound);
    let history = sara.client.history(chat.id, &Default::default()).await.expect("history").messages;
    assert_eq!(history.len(), 1, "the recipient keeps the conversation");
    assert_eq!(code_of(sara.client.send_text(chat.id, "hello?").await), ErrorCode::NotFound);
    // The number can start over as a new account.
    let again = person(&server, "+989121110060").await;
    assert_ne!(again.id, ali.id);
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clean_errors() {
    let server = Server::start();
    let ali = person(&server, "+989121110070").await;
    let token = ali.client.token().expect("token").to_owned();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", server.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post("/v1/auth/code", b"{not json".to_vec()), 400, "bad_request"),
        (post("/v1/auth/code", b"{\"phone\": 42}".to_vec()), 400, "bad_request"),
        (post("/v1/auth/code", b"[]".to_vec()), 400, "bad_request"),
        (
            post("/v1/chats/1/messages", b"{\"content\": {\"type\": \"text\", \"text\": \"x\"}}".to_vec()),
            400,
            "bad_request",
        ),
        (post("/v1/chats/not-a-number/messages", b"{}".to_vec()), 400, "bad_request"),
        (http.get(format!("{}/v1/chats/1/messages?limit=lots", server.url)).bearer_auth(&token), 400, "bad_request"),
        (http.get(format!("{}/v1/no/such/thing", server.url)), 404, "not_found"),
        (http.put(format!("{}/v1/chats", server.url)).bearer_auth(&token), 405, "method_not_allowed"),
        (http.get(format!("{}/v1/me", server.url)), 401, "unauthorized"),
        (http.get(format!("{}/v1/me", server.url)).header("authorization", "Basic abc"), 401, "unauthorized"),
        (post("/v1/auth/code", "{\"phone\": \"\u{0000}\"}".as_bytes().to_vec()), 400, "bad_request"),
    ];
    for (i, (request, status, code)) in cases.into_iter().enumerate() {
        let response = request.send().await.expect("answered");
        assert_eq!(response.status().as_u16(), status, "case {i}");
        let body: serde_json::Value =
            response.json().await.unwrap_or_else(|e| panic!("case {i}: JSON error body: {e}"));
        assert_eq!(body["error"]["code"], code, "case {i}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i}");
    }
    // An oversized body is refused from its declared length, before it is read.
    let response = raw_request(&server.url, "POST /v1/auth/code HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n{\"phone\": \"").await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    // One that does not declare its length is cut off as it is read.
    let chunk = "x".repeat(70 * 1024);
    let head = format!(
        "POST /v1/auth/code HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    let response = raw_request(&server.url, &head).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // The server is still fine.
    ali.client.me().await.expect("still serving");
    let doc: serde_json::Value =
        http.get(format!("{}/v1/openapi.json", server.url)).send().await.expect("doc").json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/v1/chats/{chat_id}/messages"]["post"].is_object());
    // The server's address opened in a browser: a page saying what it is, linking the API.
    let home = http.get(format!("{}/", server.url)).send().await.expect("home");
    assert_eq!(home.status(), 200);
    let content_type = home.headers()["content-type"].to_str().expect("type").to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(home.headers()["content-security-policy"].to_str().expect("csp").contains("default-src 'none'"));
    let page = home.text().await.expect("page");
    assert!(
        page.contains("پیوند") && page.contains("Peyvand") && page.contains(r#"href="/v1/openapi.json""#),
        "{page}"
    );
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing loaded from elsewhere");
    let metrics =
        http.get(format!("{}/metrics", server.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("peyvand_sign_ins_total 1"), "{metrics}");
}

/// A one-endpoint HTTP server that records the JSON bodies posted to it.
async fn sms_gateway() -> (String, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/send", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(split) = text.find("\r\n\r\n") else { continue };
                    let length = text[..split]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < split + 4 + length {
                        continue;
                    }
                    let body =
                        serde_json::from_slice(&buf[split + 4..split + 4 + length]).unwrap_or(serde_json::Value::Null);
                    let _ = tx.send(body);
                    let _ =
                        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                    return;
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn codes_can_go_to_an_http_sms_gateway() {
    let (url, mut posted) = sms_gateway().await;
    let server =
        Server::start_with(&common::temp_dir("sms"), &[("PEYVAND_SMS__GATEWAY", "http"), ("PEYVAND_SMS__URL", &url)]);
    let client = Client::new(&server.url).expect("client");
    client.request_code("0912 111 0080").await.expect("code sent through the gateway");
    let body = tokio::time::timeout(common::DEADLINE, posted.recv()).await.expect("posted in time").expect("a body");
    assert_eq!(body["to"], "+989121110080");
    let code = body["code"].as_str().expect("code").to_owned();
    assert!(body["text"].as_str().is_some_and(|t| t.contains(&code)));
    assert_eq!(server.codes_sent("+989121110080"), 0, "nothing on the console");
    client.sign_in(&sign_in_request("+989121110080", &code, None)).await.expect("the gateway's code works");
}

/// Writes `head` on a new connection and returns what the server answers before closing.
async fn raw_request(url: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.expect("connect");
    socket.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(common::DEADLINE, socket.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&answer).contains("}}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_the_forwarded_client() {
    let server = Server::start_with(
        &common::temp_dir("proxy"),
        &[("PEYVAND_TRUSTED_PROXIES", "127.0.0.1"), ("PEYVAND_SERVICE__LIMITS__CODES_PER_ADDRESS_PER_HOUR", "2")],
    );
    let http = reqwest::Client::new();
    let ask = |client_ip: &'static str, phone: &'static str| {
        http.post(format!("{}/v1/auth/code", server.url))
            .header("x-forwarded-for", client_ip)
            .json(&serde_json::json!({ "phone": phone }))
            .send()
    };
    assert_eq!(ask("1.1.1.1", "09121110090").await.expect("sent").status(), 200);
    assert_eq!(ask("1.1.1.1", "09121110091").await.expect("sent").status(), 200);
    assert_eq!(ask("1.1.1.1", "09121110092").await.expect("sent").status(), 429, "this client's third");
    assert_eq!(
        ask("2.2.2.2", "09121110093").await.expect("sent").status(),
        200,
        "another client behind the same proxy"
    );
}

#[tokio::test]
async fn importing_a_hidden_number_does_not_reveal_whose_it_is() {
    let server = Server::start();
    let ali = person(&server, "+989121110100").await;
    let sara = person(&server, "+989121110101").await;
    sara.client
        .update_settings(&SettingsUpdate { phone_discovery: Some(Audience::Nobody), ..Default::default() })
        .await
        .expect("hidden");
    let imported = ali.client.import_contacts(vec!["09121110101".into()]).await.expect("import").contacts;
    assert!(imported[0].user.is_none());
    let seen = ali.client.user(sara.id).await.expect("profile by id");
    assert_eq!((seen.phone, seen.is_contact), (None, false), "the saved number is not linked to the account");
}

#[tokio::test]
async fn a_stranger_asking_and_guessing_for_a_number_leaves_its_owner_able_to_sign_in() {
    let server = Server::start_with(&common::temp_dir("stranger"), &[("PEYVAND_TRUSTED_PROXIES", "127.0.0.1")]);
    let (phone, e164) = ("09121110095", "+989121110095");
    let http = reqwest::Client::new();
    let post = |path: &'static str, from: &'static str, body: serde_json::Value| {
        http.post(format!("{}{path}", server.url)).header("x-forwarded-for", from).json(&body).send()
    };
    let stranger = "1.1.1.1";
    let owner = "2.2.2.2";

    // The stranger asks for the number's codes until refused: five, then 429 with a wait.
    for _ in 0..5 {
        let sent = post("/v1/auth/code", stranger, serde_json::json!({ "phone": phone })).await.expect("sent");
        assert_eq!(sent.status(), 200);
    }
    let refused = post("/v1/auth/code", stranger, serde_json::json!({ "phone": phone })).await.expect("sent");
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["retry_after"].as_u64().is_some_and(|s| s > 0), "says when: {body}");

    // The owner still gets a code at once, and the stranger's guesses do not burn it.
    common::eventually("the stranger's codes are printed", || async { server.codes_sent(e164) == 5 }).await;
    let before = server.codes_sent(e164);
    let sent = post("/v1/auth/code", owner, serde_json::json!({ "phone": phone })).await.expect("sent");
    assert_eq!(sent.status(), 200, "the owner's allowance is their own");
    let code = server.code_after(e164, before);
    let wrong = if code.starts_with('1') { "22222" } else { "11111" };
    let guess = || post("/v1/auth/sign-in", stranger, serde_json::json!({ "phone": phone, "code": wrong }));
    for _ in 0..5 {
        let body: serde_json::Value = guess().await.expect("sent").json().await.expect("body");
        assert_eq!(body["error"]["code"], "invalid_code", "{body}");
    }
    let cut_off = guess().await.expect("sent");
    assert_eq!(cut_off.status(), 429);
    let body: serde_json::Value = cut_off.json().await.expect("body");
    assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
    assert!(body["error"]["retry_after"].as_u64().is_some_and(|s| s > 0), "says when: {body}");

    let signed =
        post("/v1/auth/sign-in", owner, serde_json::json!({ "phone": phone, "code": code })).await.expect("sent");
    assert_eq!(signed.status(), 200, "the owner signs in with the code the stranger could not burn");
}

/// A session left unused for longer than `session_idle_secs` (8 here) ends; one in use does
/// not, and the device list says when each device was last active.
async fn idle_sessions_end(server: &Server, phone: &str) {
    let started = peyvand_service::now_millis();
    let used = sign_in(server, phone, "phone").await;
    let idle = sign_in(server, phone, "old laptop").await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The phone keeps working while the laptop lies unused.
    while std::time::Instant::now() < until {
        used.me().await.expect("a session in use stays");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let ended = idle.me().await.expect_err("the unused session ended");
    assert_eq!(ended.code(), Some(ErrorCode::Unauthorized));
    assert!(ended.to_string().contains("8 seconds without use"), "says why: {ended}");
    let devices = used.devices().await.expect("devices").devices;
    assert_eq!(devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["phone"], "the laptop is signed out");
    assert!(devices[0].last_active > started + 4000, "the phone's last activity is recorded: {devices:?}");
}

const IDLE: [(&str, &str); 1] = [("PEYVAND_SERVICE__SESSION_IDLE_SECS", "8")];

#[tokio::test]
async fn idle_sessions_end_on_the_embedded_store() {
    idle_sessions_end(&Server::start_with(&common::temp_dir("idle"), &IDLE), "+989121110097").await;
}

#[tokio::test]
async fn idle_sessions_end_on_postgres_and_nats() {
    let cluster = common::cluster::Cluster::start("idle", 1, &IDLE);
    idle_sessions_end(&cluster.nodes[0], "+989121110098").await;
}
