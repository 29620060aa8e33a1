//! Cluster mode: several nodes on the machine's PostgreSQL and NATS. People on different
//! nodes chat with receipts, typing and presence; a node killed with `kill -9` mid-traffic
//! loses nothing, and its clients resume on the other nodes with every acknowledged message
//! delivered exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::cluster::{Cluster, PrivateNats};
use common::{DEADLINE, Person, person, text};
use peyvand_api::{Event, StreamFrame, Update};
use peyvand_client::{Client, UpdateStream};

/// The same person's session, used through another node.
fn via(person: &Person, node: &common::Server) -> Client {
    Client::new(&node.url).expect("client").with_token(person.client.token().expect("signed in").to_owned())
}

/// The next update on a stream, skipping the `ready` frame.
async fn next_update(stream: &mut UpdateStream) -> Update {
    loop {
        let frame = tokio::time::timeout(DEADLINE, stream.next()).await.expect("a frame in time");
        match frame.expect("stream open").expect("valid frame") {
            StreamFrame::Update { update } => return update,
            StreamFrame::Ready { .. } => {}
            StreamFrame::ResyncRequired { cursor } => panic!("resync at {cursor}"),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Waits for an update that `want` accepts, ignoring others.
async fn wait_for(stream: &mut UpdateStream, what: &str, want: impl Fn(&Event) -> bool) -> Update {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        let update = next_update(stream).await;
        if want(&update.event) {
            return update;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_on_different_nodes_chat_with_receipts_typing_and_presence() {
    let cluster = Cluster::start("chat", 3, &[]);
    let [n1, n2, n3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let ali = person(n1, "+989121500001").await;
    let sara = person(n2, "+989121500002").await;
    let reza = person(n3, "+989121500003").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");

    let mut ali_stream = ali.client.updates_ws(0).await.expect("ws on node 1");
    let mut sara_stream = sara.client.updates_ws(0).await.expect("ws on node 2");

    // A message sent through node 1 reaches Sara live on node 2, once.
    let sent = ali.client.send(chat.id, &text("c1", "سلام از گره یک")).await.expect("send").message;
    let got = wait_for(&mut sara_stream, "the message on node 2", |e| matches!(e, Event::MessageNew { .. })).await;
    let Event::MessageNew { message } = got.event else { unreachable!() };
    assert_eq!((message.seq, message.content.text()), (sent.seq, Some("سلام از گره یک")));

    // Receipts and typing from node 2 reach Ali on node 1.
    sara.client.mark_delivered(chat.id, sent.seq).await.expect("delivered");
    wait_for(
        &mut ali_stream,
        "the delivery receipt",
        |e| matches!(e, Event::Delivered { user_id, up_to, .. } if *user_id == sara.id && *up_to == sent.seq),
    )
    .await;
    sara.client.mark_read(chat.id, sent.seq).await.expect("read");
    wait_for(
        &mut ali_stream,
        "the read receipt",
        |e| matches!(e, Event::Read { user_id, up_to, .. } if *user_id == sara.id && *up_to == sent.seq),
    )
    .await;
    sara.client.typing(chat.id).await.expect("typing");
    let typing = wait_for(&mut ali_stream, "typing", |e| matches!(e, Event::Typing { .. })).await;
    assert_eq!(typing.event, Event::Typing { chat_id: chat.id, user_id: sara.id });
    assert!(typing.cursor.is_none(), "typing is not stored");

    // Sara's second device, on node 3, gets her read too (multi-device across nodes).
    let sara_on_3 = via(&sara, n3);
    let mut sara_stream_3 = sara_on_3.updates_ws(0).await.expect("ws on node 3");
    let reply = sara_on_3.send(chat.id, &text("c2", "جواب از گره سه")).await.expect("send via node 3").message;
    for stream in [&mut ali_stream, &mut sara_stream] {
        wait_for(stream, "the reply", |e| matches!(e, Event::MessageNew { message } if message.seq == reply.seq)).await;
    }
    ali.client.mark_read(chat.id, reply.seq).await.expect("read");
    wait_for(
        &mut sara_stream_3,
        "Ali's read receipt on node 3",
        |e| matches!(e, Event::Read { user_id, up_to, .. } if *user_id == ali.id && *up_to == reply.seq),
    )
    .await;

    // Presence is cluster-wide: Reza, on node 3, sees Ali (streaming on node 1) online, and
    // offline once Ali's only stream closes.
    assert!(reza.client.user(ali.id).await.expect("profile").presence.expect("visible").online);
    drop(ali_stream);
    common::eventually("Ali offline everywhere", || async {
        !reza.client.user(ali.id).await.expect("profile").presence.expect("visible").online
    })
    .await;
    wait_for(
        &mut sara_stream,
        "Ali's presence change",
        |e| matches!(e, Event::Presence { user_id, presence } if *user_id == ali.id && !presence.online),
    )
    .await;

    for node in &cluster.nodes {
        let ready = reqwest::get(format!("{}/readyz", node.url)).await.expect("readyz");
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.expect("json");
        assert_eq!(body["bus"]["kind"], "nats");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_the_others_with_every_message_exactly_once() {
    let mut cluster = Cluster::start("kill", 3, &[]);
    let ali = person(&cluster.nodes[0], "+989121500011").await;
    let sara = person(&cluster.nodes[2], "+989121500012").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");
    let total = 150;

    // Sara follows her stream on node 3, which will die.
    let mut stream = sara.client.updates_ws(0).await.expect("ws on node 3");

    // Ali sends through all three nodes in turn, the one that will die included; a send that
    // fails (its node was killed) is retried on the next node with the same client id, as a
    // client behind a load balancer does. Each acknowledged seq is recorded.
    let acked: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let sender = {
        let senders = [ali.client.clone(), via(&ali, &cluster.nodes[1]), via(&ali, &cluster.nodes[2])];
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut node = 0;
            for i in 0..total {
                let id = format!("k{i}");
                let message = text(&id, &format!("پیام {i}"));
                let sent = loop {
                    node = (node + 1) % senders.len();
                    match senders[node].send(chat.id, &message).await {
                        Ok(sent) => break sent,
                        Err(e) => assert!(node == 2, "only the killed node may fail: {e}"),
                    }
                };
                acked.lock().expect("lock").insert(sent.message.seq, id);
            }
        })
    };

    // Read some live, then kill node 3 while traffic flows.
    let mut cursor = 0;
    let mut seen: Vec<i64> = Vec::new();
    let take = |update: Update, cursor: &mut i64, seen: &mut Vec<i64>| {
        if let Some(c) = update.cursor {
            assert!(c > *cursor, "cursors only grow: {c} after {cursor}");
            *cursor = c;
        }
        if let Event::MessageNew { message } = update.event {
            seen.push(message.seq);
        }
    };
    while seen.len() < 20 {
        let update = next_update(&mut stream).await;
        take(update, &mut cursor, &mut seen);
    }
    cluster.nodes[2].kill9();
    // What was already in flight may still arrive; then the connection ends.
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(DEADLINE, stream.next()).await {
        if let StreamFrame::Update { update } = frame {
            take(update, &mut cursor, &mut seen);
        }
    }

    // Sara's device reconnects to node 2 from its cursor.
    let sara_on_2 = via(&sara, &cluster.nodes[1]);
    let mut stream = sara_on_2.updates_ws(cursor).await.expect("ws on node 2");
    sender.await.expect("sender");
    while seen.len() < total {
        let update = next_update(&mut stream).await;
        take(update, &mut cursor, &mut seen);
    }
    let acked: Vec<i64> = acked.lock().expect("lock").keys().copied().collect();
    assert_eq!(acked.len(), total);
    assert_eq!(seen, acked, "every acknowledged message exactly once, in order");
    // Nothing more is pending: a message sent now is the next thing Sara sees.
    let last = ali.client.send(chat.id, &text("after", "آخر")).await.expect("send").message;
    let update = wait_for(&mut stream, "the last message", |e| matches!(e, Event::MessageNew { .. })).await;
    assert!(matches!(update.event, Event::MessageNew { message } if message.seq == last.seq));
}

#[tokio::test]
async fn a_node_refuses_to_start_without_its_postgres_or_nats() {
    let no_db = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", "postgres://peyvand:secret@127.0.0.1:1/none"])
        .env("PEYVAND_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&no_db.stderr);
    assert!(!no_db.status.success());
    assert!(err.contains("PostgreSQL") && err.contains("127.0.0.1") && !err.contains("secret"), "{err}");

    let schema = common::cluster::Schema::new("nobus");
    let no_bus = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(["serve", "--listen", "127.0.0.1:0", "--storage", &schema.storage_url(), "--bus", "nats://127.0.0.1:1"])
        .env("PEYVAND_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&no_bus.stderr);
    assert!(!no_bus.status.success());
    assert!(err.contains("NATS") && err.contains("127.0.0.1:1"), "{err}");

    // `peyvand migrate` brings the schema up to date, and again changes nothing.
    for _ in 0..2 {
        let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
            .args(["migrate", "--storage", &schema.storage_url()])
            .env("PEYVAND_LOG", "error")
            .output()
            .expect("run");
        assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
        assert!(String::from_utf8_lossy(&migrate.stdout).contains("up to date"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_people_of_a_dead_node_go_offline_when_it_is_reaped() {
    let mut cluster = Cluster::start("reap", 2, &[("PEYVAND_SERVICE__PRESENCE_HEARTBEAT_SECS", "1")]);
    let ali = person(&cluster.nodes[0], "+989121500021").await;
    let sara = person(&cluster.nodes[1], "+989121500022").await;
    ali.client.open_direct(sara.id).await.expect("open");
    let stream = sara.client.updates_ws(0).await.expect("ws on node 2");
    common::eventually("Sara online", || async {
        ali.client.user(sara.id).await.expect("profile").presence.expect("visible").online
    })
    .await;
    let mut ali_stream = ali.client.updates_ws(0).await.expect("ws on node 1");
    cluster.nodes[1].kill9();
    drop(stream);
    // Three missed heartbeats later, node 1 reaps node 2 and tells Ali.
    wait_for(
        &mut ali_stream,
        "Sara offline",
        |e| matches!(e, Event::Presence { user_id, presence } if *user_id == sara.id && !presence.online),
    )
    .await;
    assert!(!ali.client.user(sara.id).await.expect("profile").presence.expect("visible").online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_delays_updates_between_nodes_but_loses_none() {
    let nats = PrivateNats::start(PrivateNats::free_port());
    let cluster = Cluster::start("natsdown", 2, &[("PEYVAND_BUS", &nats.url())]);
    let ali = person(&cluster.nodes[0], "+989121500031").await;
    let sara = person(&cluster.nodes[1], "+989121500032").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");
    let mut stream = sara.client.updates_ws(0).await.expect("ws on node 2");
    let first = ali.client.send(chat.id, &text("n1", "پیش از قطعی")).await.expect("send").message;
    wait_for(
        &mut stream,
        "the first message",
        |e| matches!(e, Event::MessageNew { message } if message.seq == first.seq),
    )
    .await;

    let port = nats.port;
    drop(nats);
    let ready = |url: String| async move {
        let response = reqwest::get(format!("{url}/readyz")).await.expect("readyz");
        (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("json"))
    };
    common::eventually("node 1 reports its bus down, and still serves", || async {
        let (status, body) = ready(cluster.nodes[0].url.clone()).await;
        status == 200 && body["status"] == "degraded" && body["bus"]["ok"] == false && body["storage"]["ok"] == true
    })
    .await;
    // Storage still works, so sends are accepted and stored during the outage.
    let during = ali.client.send(chat.id, &text("n2", "در قطعی")).await.expect("send during the outage").message;

    let _nats = PrivateNats::start(port);
    common::eventually("both nodes healthy again", || async {
        ready(cluster.nodes[0].url.clone()).await.1["status"] == "ok"
            && ready(cluster.nodes[1].url.clone()).await.1["status"] == "ok"
    })
    .await;
    // What was published into the outage reaches Sara once her node re-reads the store.
    wait_for(
        &mut stream,
        "the message sent during the outage",
        |e| matches!(e, Event::MessageNew { message } if message.seq == during.seq),
    )
    .await;
    let after = ali.client.send(chat.id, &text("n3", "پس از قطعی")).await.expect("send").message;
    let next = wait_for(&mut stream, "the next message", |e| matches!(e, Event::MessageNew { .. })).await;
    assert!(matches!(next.event, Event::MessageNew { message } if message.seq == after.seq), "nothing twice");
}
