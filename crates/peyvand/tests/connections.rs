//! What one client can hold of a server: the header deadline, the caps on connections, and
//! that the server goes on serving everyone else while it refuses.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, code_of, temp_dir};
use peyvand_api::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The server's address, from its URL.
fn address(server: &Server) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().expect("address")
}

/// A TCP connection to `server` from the loopback address `from` (127.0.0.x: each is
/// another address to the server).
async fn connect_from(server: &Server, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).expect("bind");
    socket.connect(address(server)).await.expect("connect")
}

/// Waits until the server closes `stream` (end of stream or a reset), failing after
/// `within`; returns how long it took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // Whatever the server said before closing (nothing, for a header timeout).
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server did not close the connection within {within:?}"),
        }
    }
}

/// A metric's value on `server`'s metrics page.
async fn metric(server: &Server, name: &str) -> f64 {
    let page = common::metrics(&server.url).await;
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

/// An HTTP client whose connections come from `from`.
fn http_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(from)).build().expect("client")
}

#[tokio::test]
async fn a_client_sending_its_headers_a_byte_at_a_time_is_cut_off_at_the_deadline() {
    let server = Server::start_with(&temp_dir("slowloris"), &[("PEYVAND_CONNECTIONS__HEADER_READ_TIMEOUT_SECS", "1")]);
    let mut slow = connect_from(&server, Ipv4Addr::LOCALHOST).await;
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: peyvand\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut_off = false;
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        // Has the server closed it? (Peek without waiting longer than the pace.)
        let mut buffer = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(250), slow.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(n)) => panic!("the server answered a request it never finished: {:?}", &buffer[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < DEADLINE, "still open after {:?}", started.elapsed());
    }
    assert!(cut_off, "the whole request went through at a byte every 250 ms");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "cut off after {took:?}");
    assert!(metric(&server, "peyvand_connections_timed_out_total").await >= 1.0);
    // The server still answers.
    let health = reqwest::get(format!("{}/readyz", server.url)).await.expect("readyz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_and_others_are_served() {
    let server = Server::start_with(&temp_dir("per-address"), &[("PEYVAND_CONNECTIONS__MAX_PER_ADDRESS", "4")]);
    let busy = Ipv4Addr::new(127, 0, 0, 2);
    // Four connections from one address, each in the middle of its headers.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(&server, busy).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: p").await.expect("write");
        held.push(stream);
    }
    // Every one is counted before the extras come (they are accepted one after another).
    common::eventually("four connections open", || async { metric(&server, "peyvand_connections_open").await >= 4.0 })
        .await;
    // The extras are closed at once, without an answer.
    for _ in 0..3 {
        let mut extra = connect_from(&server, busy).await;
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n").await;
        let took = closed_within(&mut extra, Duration::from_secs(5)).await;
        assert!(took < Duration::from_secs(2), "refused after {took:?}");
    }
    assert!(metric(&server, "peyvand_connections_refused_total{reason=\"per_address\"}").await >= 3.0);
    // Everyone else is served, signing in included.
    let other = http_from(Ipv4Addr::new(127, 0, 0, 3));
    let ready = other.get(format!("{}/readyz", server.url)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let person = common::person(&server, "+989121340001").await;
    person.client.me().await.expect("me");
    // The held connections still finish their requests.
    for stream in &mut held {
        stream.write_all(b"eyvand\r\nConnection: close\r\n\r\n").await.expect("write");
        let mut answer = String::new();
        tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer)).await.expect("in time").expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Once they are gone, the address may connect again.
    drop(held);
    common::eventually("the address is served again", || async {
        http_from(busy).get(format!("{}/healthz", server.url)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn connections_past_the_overall_cap_are_refused_until_one_closes() {
    let server = Server::start_with(&temp_dir("overall"), &[("PEYVAND_CONNECTIONS__MAX", "3")]);
    let mut held = Vec::new();
    for i in 0..3u8 {
        let mut stream = connect_from(&server, Ipv4Addr::new(127, 0, 1, i + 1)).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
        held.push(stream);
    }
    let mut extra = connect_from(&server, Ipv4Addr::new(127, 0, 1, 9)).await;
    let took = closed_within(&mut extra, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    drop(held);
    common::eventually("served again once the others closed", || async {
        reqwest::get(format!("{}/healthz", server.url)).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(metric(&server, "peyvand_connections_refused_total{reason=\"overall\"}").await >= 1.0);
}

#[tokio::test]
async fn update_streams_past_a_device_or_account_cap_are_refused_with_too_many_streams() {
    let server = Server::start_with(
        &temp_dir("streams"),
        &[("PEYVAND_CONNECTIONS__STREAMS_PER_DEVICE", "2"), ("PEYVAND_CONNECTIONS__STREAMS_PER_ACCOUNT", "3")],
    );
    let phone = "+989121340101";
    let laptop = common::sign_in(&server, phone, "laptop").await;
    let phone_app = common::sign_in(&server, phone, "phone").await;
    let first = laptop.updates_ws(0).await.expect("first stream");
    let _second = laptop.updates_ws(0).await.expect("second stream");
    // The device's cap: refused before the upgrade, with the code.
    assert_eq!(code_of(laptop.updates_ws(0).await), ErrorCode::TooManyStreams);
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/updates/ws", server.url))
        .bearer_auth(laptop.token().expect("token"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answer");
    assert_eq!(raw.status(), 429);
    // Another device of the account has the account's last place, then the account's cap.
    let _third = phone_app.updates_ws(0).await.expect("third stream");
    assert_eq!(code_of(phone_app.updates_ws(0).await), ErrorCode::TooManyStreams);
    // A long poll is a stream too.
    assert_eq!(code_of(phone_app.poll_updates(0, Duration::from_secs(1)).await), ErrorCode::TooManyStreams);
    // Another account is not affected.
    let other = common::person(&server, "+989121340102").await;
    let _theirs = other.client.updates_ws(0).await.expect("another account's stream");
    // A closed stream gives its place back.
    first.close().await.expect("closed");
    common::eventually("a place is free again", || async { phone_app.updates_ws(0).await.is_ok() }).await;
    assert!(metric(&server, "peyvand_streams_refused_total").await >= 4.0);
}

#[tokio::test]
async fn a_stopping_server_answers_the_sends_it_began_and_closes_streams_with_going_away() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let mut server = Server::start_with(&temp_dir("going-away"), &[]);
    let (ali, sara, chat) = common::pair(&server, "+989121340201", "+989121340202").await;
    let mut request =
        format!("{}/v1/updates/ws?after=0", server.url.replace("http://", "ws://")).into_client_request().expect("url");
    let bearer = format!("Bearer {}", ali.client.token().expect("token"));
    request.headers_mut().insert("authorization", bearer.parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("stream");
    // Live first (`ready`), then sends on the socket, then SIGTERM at once.
    loop {
        let frame =
            tokio::time::timeout(DEADLINE, socket.next()).await.expect("in time").expect("open").expect("frame");
        if let WsMessage::Text(text) = frame
            && text.as_str().contains("\"ready\"")
        {
            break;
        }
    }
    let sends = 20u64;
    for request in 1..=sends {
        let frame = peyvand_api::ClientFrame::Send {
            request,
            chat_id: chat.id,
            message: common::text(&format!("going-away-{request}"), &format!("message {request}")),
        };
        socket.send(WsMessage::Text(serde_json::to_string(&frame).expect("json").into())).await.expect("send");
    }
    let stopping = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    let mut acknowledged = Vec::new();
    let close = loop {
        let frame = tokio::time::timeout(DEADLINE, socket.next()).await.expect("a frame before the deadline");
        match frame {
            Some(Ok(WsMessage::Text(text))) => {
                if let Ok(peyvand_api::StreamFrame::Sent { message, .. }) = serde_json::from_str(text.as_str()) {
                    acknowledged.push(message.seq);
                }
            }
            Some(Ok(WsMessage::Close(close))) => break close,
            Some(Ok(_)) => {}
            other => panic!("the stream ended without a close frame: {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    let (mut server, status) = stopping.await.expect("stopped");
    assert!(status.success(), "the server exited with {status}");
    // Everything it acknowledged is stored.
    server.start_again();
    let sara =
        peyvand_client::Client::new(&server.url).expect("client").with_token(sara.client.token().expect("token"));
    let history = sara
        .history(chat.id, &peyvand_api::HistoryQuery { limit: Some(100), ..Default::default() })
        .await
        .expect("history");
    let stored: Vec<i64> = history.messages.iter().map(|m| m.seq).collect();
    for seq in &acknowledged {
        assert!(stored.contains(seq), "acknowledged message {seq} is missing from {stored:?}");
    }
}

#[tokio::test]
async fn metrics_are_served_to_the_operator_only() {
    let http = reqwest::Client::new();
    // With a token (as the harness configures every server): on the client port, to it only.
    let server = Server::start();
    let url = format!("{}/metrics", server.url);
    let anonymous = http.get(&url).send().await.expect("answer");
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = http.get(&url).bearer_auth("peyvand-test-metrics-tokem").send().await.expect("answer");
    assert_eq!(wrong.status(), 401);
    // A person's session token is not the operator's.
    let person = common::person(&server, "+989121340301").await;
    let session = http.get(&url).bearer_auth(person.client.token().expect("token")).send().await.expect("answer");
    assert_eq!(session.status(), 401);
    assert!(common::metrics(&server.url).await.contains("peyvand_connections_open "));

    // With an operator's address and no token: there, and not on the client port at all.
    let server = Server::start_with(&temp_dir("metrics-listen"), &[("PEYVAND_METRICS__LISTEN", "127.0.0.1:0")]);
    let operator = server.operator_metrics_url().expect("a METRICS line");
    assert_ne!(operator, format!("{}/metrics", server.url));
    let page = http.get(&operator).send().await.expect("answer");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("peyvand_http_responses_total"));
    let hidden = http.get(format!("{}/metrics", server.url)).send().await.expect("answer");
    assert_eq!(hidden.status(), 404);
    // The operator's address serves nothing else.
    let other = http.get(operator.replace("/metrics", "/v1/me")).send().await.expect("answer");
    assert_eq!(other.status(), 404);

    // A token file others can read is refused at start, saying why.
    let dir = temp_dir("metrics-open-token");
    let file = dir.join("token");
    std::fs::write(&file, "0123456789abcdef0123").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .env("PEYVAND_METRICS__TOKEN_FILE", &file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
