//! The update stream: resuming after disconnects with nothing lost or doubled, long poll,
//! re-sync, and `kill -9` under load losing no acknowledged message.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, code_of, pair, text};
use peyvand_api::{ErrorCode, Event, HistoryQuery, Message, StreamFrame};
use peyvand_client::{Client, UpdateStream};

/// Reads frames until `ready`, returning the message seqs (of `chat_id`) seen before it.
async fn until_ready(stream: &mut UpdateStream, chat_id: i64, cursors: &mut Vec<i64>) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let frame = tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("frame in time");
        match frame.expect("open").expect("frame") {
            StreamFrame::Ready { .. } => return seqs,
            StreamFrame::Update { update } => {
                cursors.extend(update.cursor);
                if let Event::MessageNew { message } = update.event
                    && message.chat_id == chat_id
                {
                    seqs.push(message.seq);
                }
            }
            StreamFrame::ResyncRequired { cursor } => panic!("resync at {cursor}"),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Every message of a chat, paging forwards.
async fn all_messages(client: &Client, chat_id: i64) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m.seq);
        let page = client
            .history(chat_id, &HistoryQuery { after: Some(after), limit: Some(200), ..Default::default() })
            .await
            .expect("page")
            .messages;
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test]
async fn a_client_resumes_from_its_cursor_with_nothing_lost_or_doubled() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121330001", "+989121330002").await;
    let total = 60;

    // Ali sends while Sara's device connects and drops abruptly several times.
    let sender = {
        let client = ali.client.clone();
        tokio::spawn(async move {
            for i in 1..=total {
                client.send(chat.id, &text(&format!("r{i}"), &format!("پیام {i}"))).await.expect("send");
            }
        })
    };
    let mut cursor = 0;
    let mut seen: Vec<i64> = Vec::new();
    let mut cursors: Vec<i64> = Vec::new();
    let mut connections = 0;
    while seen.len() < total {
        connections += 1;
        let mut stream = sara.client.updates_ws(cursor).await.expect("ws");
        seen.extend(until_ready(&mut stream, chat.id, &mut cursors).await);
        // Take a few live updates, then vanish without a close frame.
        for _ in 0..(connections % 4) {
            match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
                Ok(Some(Ok(StreamFrame::Update { update }))) => {
                    cursors.extend(update.cursor);
                    if let Event::MessageNew { message } = update.event {
                        seen.push(message.seq);
                    }
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => break,
            }
        }
        cursor = cursors.last().copied().unwrap_or(cursor);
        drop(stream);
        assert!(connections < 500, "made no progress");
    }
    sender.await.expect("sender");
    assert_eq!(
        seen,
        (1..=total as i64).collect::<Vec<_>>(),
        "every message once, in order, over {connections} connections"
    );
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors strictly increase across reconnects");
}

/// A client may send on its update stream instead of one HTTP request per message: answers
/// carry the frame's `request` number, sends to one chat are stored in the order sent (even
/// past the 64 the server runs at once), retries are idempotent, and every bad frame gets an
/// `error` frame while the stream stays open.
#[tokio::test]
async fn a_client_sends_on_its_update_stream() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121330101", "+989121330102").await;
    let mut stream = ali.client.updates_ws(0).await.expect("ws");
    until_ready(&mut stream, chat.id, &mut Vec::new()).await;

    let total = 150_u64;
    for i in 1..=total {
        stream.send(i, chat.id, text(&format!("w{i}"), &format!("پیام {i}"))).await.expect("frame out");
    }
    stream.send(1000, chat.id, text("w1", "another text under w1's id")).await.expect("frame out");
    stream.send(1001, chat.id + 1000, text("x1", "no such chat")).await.expect("frame out");
    stream.send(1002, chat.id, text("", "no client id")).await.expect("frame out");
    stream.send(1003, chat.id, text("x3", &"ب".repeat(4097))).await.expect("frame out");
    stream.send(1004, chat.id, text("w7", "پیام 7")).await.expect("frame out");
    stream.send_raw("hello").await.expect("frame out");
    stream.send_raw(r#"{"frame":"send","request":1005}"#).await.expect("frame out");
    stream.send_raw(r#"{"frame":"edit","request":1006,"chat_id":1}"#).await.expect("frame out");
    let big = "a".repeat(65 * 1024);
    let big = format!(
        r#"{{"frame":"send","request":1007,"chat_id":{},"message":{{"client_id":"x7","content":{{"type":"text","text":"{big}"}}}}}}"#,
        chat.id
    );
    stream.send_raw(&big).await.expect("frame out");

    let mut sent: BTreeMap<u64, (bool, Message)> = BTreeMap::new();
    let mut errors: BTreeMap<Option<u64>, ErrorCode> = BTreeMap::new();
    let mut own_updates = 0;
    while sent.len() + errors.len() < total as usize + 9 {
        let frame = tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("answers in time");
        match frame.expect("open").expect("frame") {
            StreamFrame::Sent { request, created, message } => {
                assert!(sent.insert(request, (created, message)).is_none(), "one answer per request");
            }
            StreamFrame::Error { request, error } => {
                assert!(errors.insert(request, error.code).is_none(), "one answer per request");
            }
            StreamFrame::Update { update } => {
                own_updates += usize::from(matches!(update.event, Event::MessageNew { .. }))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected_errors = BTreeMap::from([
        (None, ErrorCode::BadRequest),
        (Some(1000), ErrorCode::IdempotencyConflict),
        (Some(1001), ErrorCode::NotFound),
        (Some(1002), ErrorCode::BadRequest),
        (Some(1003), ErrorCode::InvalidContent),
        (Some(1005), ErrorCode::BadRequest),
        (Some(1006), ErrorCode::BadRequest),
        (Some(1007), ErrorCode::PayloadTooLarge),
    ]);
    assert_eq!(errors, expected_errors);
    let seqs: Vec<i64> = (1..=total)
        .map(|i| {
            let (created, message) = &sent[&i];
            assert!(created, "request {i} stored a new message");
            assert_eq!(message.client_id, format!("w{i}"));
            message.seq
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "stored in the order sent: {seqs:?}");
    let (created, retry) = &sent[&1004];
    assert!(!created, "a retry is not a new message");
    assert_eq!(retry.seq, sent[&7].1.seq, "a retry gets the message stored the first time");

    // The stream is still open and usable, and Sara has each message exactly once, in order.
    stream.send(2000, chat.id, text("w-last", "آخر")).await.expect("frame out");
    loop {
        let frame = tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("an answer in time");
        match frame.expect("open").expect("frame") {
            StreamFrame::Sent { request: 2000, created: true, .. } => break,
            StreamFrame::Update { update } => {
                own_updates += usize::from(matches!(update.event, Event::MessageNew { .. }))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let history: Vec<String> = all_messages(&sara.client, chat.id).await.into_iter().map(|m| m.client_id).collect();
    let mut expected: Vec<String> = (1..=total).map(|i| format!("w{i}")).collect();
    expected.push("w-last".into());
    assert_eq!(history, expected);
    assert!(own_updates <= expected.len(), "no update twice on the sender's own stream");

    // Operators see the requests, and the API document describes the frames.
    let http = reqwest::Client::new();
    let metrics = common::metrics(&server.url).await;
    assert!(metrics.lines().any(|l| l == "peyvand_websocket_frames_received_total 160"), "{metrics}");
    let doc: serde_json::Value =
        http.get(format!("{}/v1/openapi.json", server.url)).send().await.expect("doc").json().await.expect("json");
    assert!(doc["components"]["schemas"]["ClientFrame"].is_object(), "ClientFrame is documented");
}

#[tokio::test]
async fn long_poll_waits_for_the_next_update_and_follows_the_same_cursor() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121330011", "+989121330012").await;
    let start = sara.client.state().await.expect("state").cursor;
    let empty = sara.client.poll_updates(start, Duration::ZERO).await.expect("poll");
    assert!(empty.updates.is_empty() && empty.cursor == start);

    let waiting = {
        let client = sara.client.clone();
        tokio::spawn(async move { client.poll_updates(start, Duration::from_secs(30)).await })
    };
    ali.client.send_text(chat.id, "wake up").await.expect("send");
    let page =
        tokio::time::timeout(common::DEADLINE, waiting).await.expect("answered in time").expect("task").expect("poll");
    let got: Vec<_> = page
        .updates
        .iter()
        .filter(|u| matches!(&u.event, Event::MessageNew { message } if message.content.text() == Some("wake up")))
        .collect();
    assert_eq!(got.len(), 1);
    assert!(page.cursor > start);
    let nothing_new = sara.client.poll_updates(page.cursor, Duration::ZERO).await.expect("poll");
    assert!(nothing_new.updates.is_empty());
    assert_eq!(code_of(sara.client.poll_updates(page.cursor + 1000, Duration::ZERO).await), ErrorCode::ResyncRequired);
}

#[tokio::test]
async fn a_client_too_far_behind_is_told_to_resync() {
    // Keep no updates past a restart (pruning runs at start), so old cursors are gone.
    let mut server = Server::start_with(
        &common::temp_dir("resync"),
        &[("PEYVAND_SERVICE__UPDATE_RETENTION_SECS", "0"), ("PEYVAND_SERVICE__UPDATE_RETENTION_MIN", "0")],
    );
    let (ali, sara, chat) = pair(&server, "+989121330021", "+989121330022").await;
    for i in 0..3 {
        ali.client.send_text(chat.id, &format!("old {i}")).await.expect("send");
    }
    let sara_token = sara.client.token().expect("token").to_owned();
    server.restart();
    let sara = Client::new(&server.url).expect("client").with_token(sara_token);
    common::eventually("old updates pruned", || async {
        sara.poll_updates(1, Duration::ZERO).await.err().and_then(|e| e.code()) == Some(ErrorCode::ResyncRequired)
    })
    .await;
    let mut stream = sara.updates_ws(1).await.expect("ws");
    let frame =
        tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("in time").expect("frame").expect("ok");
    let StreamFrame::ResyncRequired { cursor } = frame else { panic!("expected resync, got {frame:?}") };
    assert_eq!(cursor, sara.state().await.expect("state").cursor);
    // Resuming from the cursor it was given works.
    let mut stream = sara.updates_ws(cursor).await.expect("ws");
    let frame =
        tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("in time").expect("frame").expect("ok");
    assert_eq!(frame, StreamFrame::Ready { cursor });
    assert_eq!(all_messages(&sara, chat.id).await.len(), 3, "history is still there");
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let mut server =
        Server::start_with(&common::temp_dir("kill9"), &[("PEYVAND_SERVICE__LIMITS__MESSAGES_PER_MINUTE", "1000000")]);
    let (ali, sara, chat) = pair(&server, "+989121330031", "+989121330032").await;
    let acked: Arc<Mutex<BTreeMap<String, (i64, String)>>> = Arc::default();
    let in_flight: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let senders: Vec<_> = (0..8)
        .map(|task| {
            let (client, acked, in_flight) = (ali.client.clone(), acked.clone(), in_flight.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let (id, body) = (format!("k{task}-{i}"), format!("load {task} {i}"));
                    match client.send(chat.id, &text(&id, &body)).await {
                        Ok(sent) => {
                            acked.lock().expect("lock").insert(id, (sent.message.seq, body));
                        }
                        Err(_) => {
                            in_flight.lock().expect("lock").push((id, body));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    common::eventually("a few hundred acknowledged sends", || async { acked.lock().expect("lock").len() >= 300 }).await;
    server.kill9();
    for sender in senders {
        sender.await.expect("sender stops on the dead server");
    }
    let acked = acked.lock().expect("lock").clone();

    server.restart();
    let ali = Client::new(&server.url).expect("client").with_token(ali.client.token().expect("token").to_owned());
    let sara = Client::new(&server.url).expect("client").with_token(sara.client.token().expect("token").to_owned());
    // Clients retry what they never heard back about, with the same client ids.
    let in_flight = in_flight.lock().expect("lock").clone();
    for (id, body) in in_flight {
        ali.send(chat.id, &text(&id, &body)).await.expect("retry after restart");
    }
    let stored = all_messages(&sara, chat.id).await;
    let by_id: BTreeMap<&str, &Message> = stored.iter().map(|m| (m.client_id.as_str(), m)).collect();
    for (id, (seq, body)) in &acked {
        let message = by_id.get(id.as_str()).unwrap_or_else(|| panic!("acknowledged message {id} lost"));
        assert_eq!((message.seq, message.content.text()), (*seq, Some(body.as_str())), "{id}");
    }
    let unique: HashSet<&str> = stored.iter().map(|m| m.client_id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "no message stored twice");
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gaps"
    );
    assert!(stored.len() >= acked.len());
    // Sara's update stream replays every stored message once.
    let mut stream = sara.updates_ws(0).await.expect("ws");
    let mut cursors = Vec::new();
    let replayed = until_ready(&mut stream, chat.id, &mut cursors).await;
    assert_eq!(replayed, (1..=stored.len() as i64).collect::<Vec<_>>());
}

/// A server metric's value, from its `/metrics` page.
async fn metric(server: &Server, name: &str) -> u64 {
    let page = common::metrics(&server.url).await;
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_resumes_with_nothing_lost() {
    let server = Server::start_with(
        &common::temp_dir("stuck"),
        &[("PEYVAND_STREAM_WRITE_TIMEOUT_SECS", "3"), ("PEYVAND_SERVICE__LIMITS__MESSAGES_PER_MINUTE", "1000000")],
    );
    let (ali, sara, chat) = pair(&server, "+989121330041", "+989121330042").await;

    // Sara's stream, on a socket with the smallest receive buffer, read up to `ready` and then
    // never again: what the server sends piles up in its own socket buffer.
    let address: std::net::SocketAddr =
        server.url.trim_start_matches("http://").trim_end_matches('/').parse().expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let tcp = socket.connect(address).await.expect("connect");
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{address}/v1/updates/ws"
    ))
    .expect("request");
    let bearer = format!("Bearer {}", sara.client.token().expect("token"));
    request.headers_mut().insert("authorization", bearer.parse().expect("header"));
    let (mut stuck, _) = tokio_tungstenite::client_async(request, tcp).await.expect("handshake");
    let cursor = loop {
        let frame = tokio::time::timeout(common::DEADLINE, futures_util::StreamExt::next(&mut stuck))
            .await
            .expect("ready in time")
            .expect("open")
            .expect("frame");
        if let Ok(StreamFrame::Ready { cursor }) = serde_json::from_str(frame.to_text().expect("text")) {
            break cursor;
        }
    };
    assert_eq!(metric(&server, "peyvand_websockets_open").await, 1);

    // The longest messages to Sara until the server gives up on her stream (a few MB fill the
    // buffers; the bound only stops a server that never gives up).
    let body = "ب".repeat(peyvand_core::MAX_TEXT_CHARS);
    let mut sent = 0;
    while metric(&server, "peyvand_websocket_write_timeouts_total").await == 0 {
        assert!(sent < 5_000, "{sent} messages and the stream is still being written to");
        let batch = (sent..sent + 50).map(|i| {
            let (client, message) = (ali.client.clone(), text(&format!("s{i}"), &body));
            async move { client.send(chat.id, &message).await }
        });
        for result in futures_util::future::join_all(batch).await {
            result.expect("sent");
        }
        sent += 50;
    }
    common::eventually("the stuck stream closed", || async { metric(&server, "peyvand_websockets_open").await == 0 })
        .await;

    // Back, Sara resumes from her cursor: every message, once, in order.
    let mut stream = sara.client.updates_ws(cursor).await.expect("ws");
    let mut cursors = Vec::new();
    let seqs = until_ready(&mut stream, chat.id, &mut cursors).await;
    assert_eq!(seqs, (1..=sent as i64).collect::<Vec<_>>());
    drop(stuck);
}
