//! Direct chats across messengers, end to end: `peyvand demo` runs a registry and three
//! licensed providers; the hub of a room is the provider where it was started, the other
//! keeps a copy fed by the hub's durable, per-peer queue. The outage test adds two providers
//! run as separate `peyvand serve` processes so that one can be down while the other restarts.

mod common;

use common::cluster::{Cluster, psql_value};
use common::demo::Demo;
use common::external::External;
use common::{DEADLINE, Server, eventually, temp_dir};
use peyvand_api::{
    Audience, Chat, Content, Delivery, DeliveryState, ErrorCode, Event, HistoryQuery, Message, SettingsUpdate,
    StreamFrame,
};
use peyvand_client::{Client, UpdateStream};
use peyvand_interconnect::conformance::KitProvider;
use peyvand_registry::RegistryClient;
use reqwest::Method;
use serde_json::json;

const ALI: &str = "+989122000001";
const BABAK: &str = "+989122000002";
const CYRUS: &str = "+989122000003";
const DARA: &str = "+989122000004";

fn consent(audience: Audience) -> SettingsUpdate {
    SettingsUpdate { interconnect: Some(audience), ..SettingsUpdate::default() }
}

fn text(t: &str) -> Content {
    Content::Text { text: t.to_owned() }
}

async fn history(client: &Client, chat_id: i64) -> Vec<Message> {
    let query = HistoryQuery { before: None, after: Some(0), limit: Some(200) };
    client.history(chat_id, &query).await.expect("history").messages
}

fn texts(messages: &[Message]) -> Vec<(i64, String)> {
    messages.iter().map(|m| (m.seq, m.content.text().unwrap_or("<deleted>").to_owned())).collect()
}

/// Retries `f` until it gives something, within the deadline.
async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until_within(what, DEADLINE, f).await
}

async fn until_within<T, F, Fut>(what: &str, limit: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = f().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The chat with a person on `provider`, once it is in the list.
async fn chat_with(client: &Client, provider: &str) -> Chat {
    until(&format!("a chat with someone on {provider}"), || async {
        let chats = client.chats().await.expect("chats").chats;
        chats
            .into_iter()
            .find(|c| c.peer.as_ref().and_then(|p| p.messenger.as_ref()).is_some_and(|m| m.provider_id == provider))
    })
    .await
}

async fn wait_history(client: &Client, chat_id: i64, what: &str, check: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last = history(client, chat_id).await;
        if check(&last) {
            return last;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {:?}", texts(&last));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn wait_typing(stream: &mut UpdateStream, chat_id: i64, user_id: i64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = tokio::time::timeout(left, stream.next()).await.expect("typing in time");
        if let StreamFrame::Update { update } = frame.expect("open").expect("frame")
            && update.event == (Event::Typing { chat_id, user_id })
        {
            return;
        }
    }
}

#[tokio::test]
async fn direct_chats_across_messengers() {
    let demo = Demo::start(&[]);
    let ali = demo.sign_in("alborz", ALI).await;
    let babak = demo.sign_in("damavand", BABAK).await;
    let cyrus = demo.sign_in("sahand", CYRUS).await;
    let babak_address = format!("{BABAK}@damavand");

    // Nobody has opted in: Ali may not start one, and Babak cannot be reached.
    let refused = ali.open_address(&babak_address).await.expect_err("Ali has not opted in");
    assert_eq!(refused.code(), Some(ErrorCode::PrivacyRestricted));
    ali.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let refused = ali.open_address(&babak_address).await.expect_err("Babak has not opted in");
    assert_eq!(refused.code(), Some(ErrorCode::NotFound), "{refused}");
    babak.update_settings(&consent(Audience::Everybody)).await.expect("on");

    // Ali starts the room: alborz is its hub. The client learns where Babak is.
    let chat = ali.open_address(&babak_address).await.expect("open");
    let peer = chat.peer.clone().expect("peer");
    let messenger = peer.messenger.clone().expect("on another messenger");
    assert_eq!((messenger.provider_id.as_str(), messenger.address.as_str()), ("damavand", babak_address.as_str()));
    assert_eq!(messenger.name, "پیام‌رسان دماوند");
    let babak_here = peer.id;
    let mut ali_stream = ali.updates_ws(0).await.expect("ws");
    let mut babak_stream = babak.updates_ws(0).await.expect("ws");

    let first = peyvand_api::SendMessage {
        client_id: "hello-1".into(),
        content: Some(text("سلام بابک")),
        reply_to: None,
        forward: None,
        media: None,
    };
    let sent = ali.send(chat.id, &first).await.expect("send");
    assert!(sent.created);
    let again = ali.send(chat.id, &first).await.expect("retry");
    assert!(!again.created);
    assert_eq!(again.message.seq, sent.message.seq);

    // Babak's copy: same seq, sender is his stand-in for Ali.
    let copy = chat_with(&babak, "alborz").await;
    let ali_there = copy.peer.clone().expect("peer").id;
    let seen = wait_history(&babak, copy.id, "the first message", |h| h.len() == 1).await;
    assert_eq!(texts(&seen), vec![(1, "سلام بابک".to_owned())]);
    assert_eq!(seen[0].sender_id, ali_there);

    // Receipts, both ways (before Babak writes: writing marks one's chat read).
    babak.mark_delivered(copy.id, 1).await.expect("delivered");
    babak.mark_read(copy.id, 1).await.expect("read");
    eventually("Ali sees Babak's receipts", || async {
        let c = ali.chat(chat.id).await.expect("chat");
        c.peer_delivered_up_to >= 1 && c.peer_read_up_to == 1
    })
    .await;
    eventually("Babak's own copy shows what he read", || async {
        babak.chat(copy.id).await.expect("chat").read_up_to == 1
    })
    .await;
    // Babak (the follower) replies: the hub orders it, both copies agree.
    let reply = peyvand_api::SendMessage {
        client_id: "reply-1".into(),
        content: Some(text("سلام علی")),
        reply_to: Some(1),
        forward: None,
        media: None,
    };
    let answered = babak.send(copy.id, &reply).await.expect("reply");
    assert_eq!((answered.message.seq, answered.message.reply_to), (2, Some(1)));
    assert!(!babak.send(copy.id, &reply).await.expect("retry").created);
    let at_hub = wait_history(&ali, chat.id, "the reply", |h| h.len() == 2).await;
    assert_eq!(at_hub[1].sender_id, babak_here);
    assert_eq!(at_hub[1].reply_to, Some(1));

    // Edits, both ways.
    babak.edit(copy.id, 2, text("سلام علی جان")).await.expect("edit");
    wait_history(&ali, chat.id, "Babak's edit", |h| h[1].content == text("سلام علی جان") && h[1].edited_at.is_some())
        .await;
    ali.edit(chat.id, 1, text("سلام بابک جان")).await.expect("edit");
    wait_history(&babak, copy.id, "Ali's edit", |h| h[0].content == text("سلام بابک جان")).await;
    // Only the sender edits, wherever the message was written.
    let refused = babak.edit(copy.id, 1, text("نه")).await.expect_err("not his");
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));

    // Reactions, both ways.
    ali.react(chat.id, 2, "👍").await.expect("react");
    wait_history(&babak, copy.id, "Ali's reaction", |h| {
        h[1].reactions.iter().any(|r| r.user_id == ali_there && r.emoji == "👍")
    })
    .await;
    let mine = babak.react(copy.id, 1, "❤️").await.expect("react");
    assert!(mine.reactions.iter().any(|r| r.emoji == "❤️"));
    wait_history(&ali, chat.id, "Babak's reaction", |h| h[0].reactions.iter().any(|r| r.user_id == babak_here)).await;
    babak.unreact(copy.id, 1).await.expect("unreact");
    wait_history(&ali, chat.id, "Babak's reaction removed", |h| h[0].reactions.is_empty()).await;

    ali.mark_read(chat.id, 2).await.expect("read");
    eventually("Babak sees Ali's read receipt", || async {
        babak.chat(copy.id).await.expect("chat").peer_read_up_to == 2
    })
    .await;

    // Typing, both ways (ephemeral, live only).
    babak.typing(copy.id).await.expect("typing");
    wait_typing(&mut ali_stream, chat.id, babak_here).await;
    ali.typing(chat.id).await.expect("typing");
    wait_typing(&mut babak_stream, copy.id, ali_there).await;

    // Delete for everyone, from the follower.
    babak.delete_message(copy.id, 2, true).await.expect("delete");
    let gone = wait_history(&ali, chat.id, "the deletion", |h| h[1].content == Content::Deleted).await;
    assert_eq!(gone.len(), 2);
    wait_history(&babak, copy.id, "the deletion in Babak's copy", |h| h[1].content == Content::Deleted).await;

    // B↔C: Cyrus accepts only his contacts. Babak starts this room: damavand is its hub.
    cyrus.update_settings(&consent(Audience::Contacts)).await.expect("contacts only");
    let cyrus_address = format!("{CYRUS}@sahand");
    let refused = babak.open_address(&cyrus_address).await.expect_err("not in Cyrus's contacts");
    assert_eq!(refused.code(), Some(ErrorCode::NotFound));
    cyrus.import_contacts(vec![BABAK.to_owned()]).await.expect("import");
    let bc = babak.open_address(&cyrus_address).await.expect("open");
    babak.send_text(bc.id, "درود کوروش").await.expect("send");
    let cb = chat_with(&cyrus, "damavand").await;
    wait_history(&cyrus, cb.id, "Babak's message", |h| texts(h) == vec![(1, "درود کوروش".to_owned())]).await;
    cyrus.mark_read(cb.id, 1).await.expect("read");
    eventually("Babak sees Cyrus's read receipt", || async {
        babak.chat(bc.id).await.expect("chat").peer_read_up_to == 1
    })
    .await;
    // Babak too accepts messages only from his contacts: Cyrus, on another messenger, counts
    // once Babak has his number.
    let only_contacts = SettingsUpdate { messages: Some(Audience::Contacts), ..SettingsUpdate::default() };
    babak.update_settings(&only_contacts).await.expect("contacts only");
    let refused = cyrus.send_text(cb.id, "درود بابک").await.expect_err("not in Babak's contacts");
    assert_eq!(refused.code(), Some(ErrorCode::PrivacyRestricted));
    babak.import_contacts(vec![CYRUS.to_owned()]).await.expect("import");
    cyrus.send_text(cb.id, "درود بابک").await.expect("answer");
    wait_history(&babak, bc.id, "Cyrus's answer", |h| h.len() == 2 && h[1].content == text("درود بابک")).await;
    let everybody = SettingsUpdate { messages: Some(Audience::Everybody), ..SettingsUpdate::default() };
    babak.update_settings(&everybody).await.expect("everybody");

    // Turning consent off stops new deliveries: Ali's message stays at the hub, Babak's copy
    // refuses it, and Babak can no longer write to Ali... until he turns it on again.
    babak.update_settings(&consent(Audience::Nobody)).await.expect("off");
    ali.send_text(chat.id, "هنوز هستی؟").await.expect("stored at the hub");
    eventually("damavand refused the message", || async {
        let text = common::metrics(&demo.url("alborz")).await;
        text.lines().any(|l| l == "peyvand_interconnect_refused_total{peer=\"damavand\"} 1")
    })
    .await;
    assert_eq!(history(&babak, copy.id).await.len(), 2);

    // A provider whose licence does not offer chats is not invited to any.
    let (status, body) = demo
        .admin(
            Method::POST,
            "/v1/admin/licences",
            json!({
                "provider_id": "sabalan", "name": "Sabalan", "domain": "sabalan.example",
                "endpoint": "https://127.0.0.1:1", "contact": "ops@sabalan.example",
                "licence_number": "TEST-5", "valid_until": peyvand_service::now_millis() + 86_400_000,
                "capabilities": ["discovery"], "reason": "test: discovery only",
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    until("alborz lists sabalan without chats", || async {
        let refused = ali.open_address(&format!("{DARA}@sabalan")).await.expect_err("no chats with sabalan");
        (refused.code() == Some(ErrorCode::PeerNotCapable)).then_some(())
    })
    .await;

    // Reports reach the reported person's provider.
    ali.report(babak_here, "پیام ناخواسته").await.expect("report");
    let refused = ali.report(babak_here, "").await.expect_err("a reason is needed");
    assert_eq!(refused.code(), Some(ErrorCode::BadRequest));
    // Only about someone one shares a chat with: damavand refuses Dara's report on Babak.
    let dara = demo.sign_in("alborz", DARA).await;
    let refused = dara.report(babak_here, "spam").await.expect_err("no chat with Babak");
    assert_eq!(refused.code(), Some(ErrorCode::NotFound));
}

/// The events waiting in a provider's queue towards `peer`, from its metrics.
async fn queued_for(provider: &External, peer: &str) -> u64 {
    peer_metric(&provider.server, "queue_events", peer).await
}

/// One of a node's `peyvand_interconnect_*{peer=...}` figures (0 if it has none).
async fn peer_metric(node: &Server, name: &str, peer: &str) -> u64 {
    let text = common::metrics(&node.url).await;
    let prefix = format!("peyvand_interconnect_{name}{{peer=\"{peer}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse().expect("a count"))
}

#[tokio::test]
async fn a_peer_down_gets_everything_in_order_exactly_once() {
    let demo = Demo::start(&[]);
    let mut kavir = External::start(&demo, "kavir", "TEST-1").await;
    let mut zagros = External::start(&demo, "zagros", "TEST-2").await;
    let ali = kavir.sign_in(ALI).await;
    let babak = zagros.sign_in(BABAK).await;
    ali.update_settings(&consent(Audience::Everybody)).await.expect("on");
    babak.update_settings(&consent(Audience::Everybody)).await.expect("on");

    // Ali (on kavir, the hub) and Babak (on zagros) chat, once each provider knows the other's
    // endpoint.
    let chat = until("kavir reaches zagros", || async {
        // Refused (unknown_provider, peer_unavailable) until each directory lists the other.
        ali.open_address(&format!("{BABAK}@zagros")).await.ok()
    })
    .await;
    ali.send_text(chat.id, "پیام ۱").await.expect("send");
    let copy = chat_with(&babak, "kavir").await;
    wait_history(&babak, copy.id, "the first message", |h| h.len() == 1).await;

    // zagros goes down; Ali writes, edits and reacts meanwhile; kavir restarts in between.
    zagros.server.kill9();
    ali.send_text(chat.id, "پیام ۲").await.expect("queued");
    ali.send_text(chat.id, "پیام ۳").await.expect("queued");
    kavir.restart(&demo).await;
    let ali = common::sign_in(&kavir.server, ALI, "after restart").await;
    ali.edit(chat.id, 2, text("پیام ۲ (ویرایش)")).await.expect("queued edit");
    ali.send_text(chat.id, "پیام ۴").await.expect("queued");
    ali.react(chat.id, 1, "🙏").await.expect("queued reaction");
    // Five events wait (a sixth if zagros went down before kavir heard its answer).
    assert!(queued_for(&kavir, "zagros").await >= 5);

    // zagros is back: everything arrives, in order, once.
    zagros.restart(&demo).await;
    let babak = zagros.sign_in(BABAK).await;
    let seen = wait_history(&babak, copy.id, "the catch-up", |h| {
        h.len() == 4 && h[0].reactions.len() == 1 && h[1].edited_at.is_some()
    })
    .await;
    assert_eq!(
        texts(&seen),
        vec![
            (1, "پیام ۱".to_owned()),
            (2, "پیام ۲ (ویرایش)".to_owned()),
            (3, "پیام ۳".to_owned()),
            (4, "پیام ۴".to_owned()),
        ]
    );
    assert_eq!(seen[0].reactions[0].emoji, "🙏");
    // The new messages arrived on Babak's stream in order, each once.
    let page = babak.poll_updates(0, std::time::Duration::from_millis(0)).await.expect("updates");
    let new: Vec<i64> = page
        .updates
        .iter()
        .filter_map(|u| match &u.event {
            Event::MessageNew { message } if message.chat_id == copy.id => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(new, vec![1, 2, 3, 4]);
    eventually("kavir's queue is empty", || async { queued_for(&kavir, "zagros").await == 0 }).await;
}

/// A provider run as a cluster of two nodes (PostgreSQL and NATS) sends its events to a peer
/// from one node at a time: after an outage during which both nodes queued events, the peer
/// gets each event once (the nodes' delivery counts add up to the events), in order; and when
/// the node delivering dies, the other takes over once its lease lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_delivers_to_a_peer_from_one_node_at_a_time() {
    let demo = Demo::start(&[]);
    let mut zagros = External::start(&demo, "zagros", "TEST-4").await;
    let mut env = External::licence(&demo, "kavir", "TEST-3").await;
    // A short call timeout makes a short lease (2 × timeout + 10 s).
    env.push(("PEYVAND_INTERCONNECT__REQUEST_TIMEOUT_SECS", "1".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cluster = Cluster::start("leases", 1, &env);
    // The second node shares the first one's keys and certificate, as a cluster's nodes do.
    let keys = temp_dir("kavir-2");
    std::fs::create_dir_all(keys.join("interconnect")).expect("mkdir");
    for file in ["signing.pk8", "tls.pem"] {
        let from = cluster.nodes[0].data.join("interconnect").join(file);
        std::fs::copy(&from, keys.join("interconnect").join(file)).expect("copy the node's keys");
    }
    cluster.add_node_on(&keys);
    let kavir = External { id: "kavir", server: cluster.nodes.remove(0) };
    kavir.publish_endpoint(&demo).await;
    let second = cluster.nodes.remove(0);

    let ali = kavir.sign_in(ALI).await;
    let ali_2 = Client::new(&second.url).expect("client").with_token(ali.token().expect("signed in").to_owned());
    let babak = zagros.sign_in(BABAK).await;
    ali.update_settings(&consent(Audience::Everybody)).await.expect("on");
    babak.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let chat =
        until("kavir reaches zagros", || async { ali.open_address(&format!("{BABAK}@zagros")).await.ok() }).await;
    ali.send_text(chat.id, "پیام 1").await.expect("send");
    let copy = chat_with(&babak, "kavir").await;
    wait_history(&babak, copy.id, "the first message", |h| h.len() == 1).await;

    // zagros goes down; Ali writes through both nodes, so both have events for it.
    zagros.server.kill9();
    for n in 2..=13 {
        let through = if n % 2 == 0 { &ali } else { &ali_2 };
        through.send_text(chat.id, &format!("پیام {n}")).await.expect("queued");
    }
    zagros.restart(&demo).await;
    let babak = zagros.sign_in(BABAK).await;
    let expected: Vec<(i64, String)> = (1..=13).map(|n| (n, format!("پیام {n}"))).collect();
    let seen = wait_history(&babak, copy.id, "the catch-up", |h| h.len() == 13).await;
    assert_eq!(texts(&seen), expected);
    eventually("the queue is empty", || async { queued_for(&kavir, "zagros").await == 0 }).await;
    let delivered = peer_metric(&kavir.server, "delivered_total", "zagros").await
        + peer_metric(&second, "delivered_total", "zagros").await;
    assert_eq!(delivered, 13, "each event sent once, by one node or the other");

    // zagros goes down again; the node that takes the lease dies; the other takes over.
    zagros.server.kill9();
    let errors = peer_metric(&kavir.server, "errors_total", "zagros").await;
    for n in 14..=16 {
        ali.send_text(chat.id, &format!("پیام {n}")).await.expect("queued");
    }
    // The first node has tried (and failed) to deliver again, and holds the lease through its
    // retries.
    eventually("the first node tried zagros", || async {
        peer_metric(&kavir.server, "errors_total", "zagros").await > errors
    })
    .await;
    let first_node = std::fs::read_to_string(kavir.server.data.join("node-id")).expect("the node's id");
    let holder = format!(
        "SELECT holder FROM {}.delivery_leases WHERE peer = 'zagros' AND until > {}",
        cluster.schema.name,
        peyvand_service::now_millis()
    );
    assert_eq!(psql_value(&holder), first_node.trim(), "the first node holds the lease");
    drop(kavir);
    zagros.restart(&demo).await;
    let babak = zagros.sign_in(BABAK).await;
    until_within("the second node delivers", std::time::Duration::from_secs(60), || async {
        (history(&babak, copy.id).await.len() == 16).then_some(())
    })
    .await;
    let seen = history(&babak, copy.id).await;
    let expected: Vec<(i64, String)> = (1..=16).map(|n| (n, format!("پیام {n}"))).collect();
    assert_eq!(texts(&seen), expected);
    eventually("the second node's queue is empty", || async {
        peer_metric(&second, "queue_events", "zagros").await == 0
    })
    .await;
}

/// The serials of a provider's certificates at the registry, oldest first.
async fn certificates_of(demo: &Demo, id: &str) -> Vec<String> {
    let (status, body) =
        demo.admin(Method::GET, &format!("/v1/admin/licences/{id}/certificates"), serde_json::Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let list = body["certificates"].as_array().expect("certificates");
    list.iter().map(|c| c["serial"].as_str().expect("serial").to_owned()).collect()
}

/// A provider renews its certificate by itself (signed with its key, no token) and puts the
/// new one to use at once, for its calls and its listener: once the regulator revokes the old
/// one, chats with another messenger still work both ways. It renews once, not at every
/// directory refresh.
#[tokio::test]
async fn a_provider_renews_its_certificate_and_keeps_chatting() {
    let demo = Demo::start(&[]);
    // Every certificate is due for renewal.
    let kavir =
        External::start_with(&demo, "kavir", "TEST-6", &[("PEYVAND_INTERCONNECT__CERTIFICATE_RENEW_DAYS", "100000")])
            .await;
    let serials = until("kavir renews its certificate", || async {
        let serials = certificates_of(&demo, "kavir").await;
        (serials.len() >= 2).then_some(serials)
    })
    .await;
    let (status, body) = demo
        .admin(
            Method::POST,
            &format!("/v1/admin/certificates/{}/revoke", serials[0]),
            json!({"reason": "test: the first certificate is retired"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Both providers know of the revocation before they talk.
    let health: serde_json::Value =
        reqwest::get(format!("{}/healthz", demo.registry)).await.expect("health").json().await.expect("json");
    let version = health["directory_version"].as_u64().expect("version");
    for node in [kavir.server.url.clone(), demo.url("alborz")] {
        eventually("the revocation reaches every provider", || async {
            let metrics = common::metrics(&node).await;
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("peyvand_interconnect_directory_version "))
                .is_some_and(|v| v.parse::<u64>().expect("a version") >= version)
        })
        .await;
    }

    // kavir calls alborz with its new certificate, and alborz calls kavir's listener.
    let ali = kavir.sign_in(ALI).await;
    let babak = demo.sign_in("alborz", BABAK).await;
    ali.update_settings(&consent(Audience::Everybody)).await.expect("on");
    babak.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let chat =
        until("kavir reaches alborz", || async { ali.open_address(&format!("{BABAK}@alborz")).await.ok() }).await;
    ali.send_text(chat.id, "گواهی نو").await.expect("send");
    let copy = chat_with(&babak, "kavir").await;
    wait_history(&babak, copy.id, "the message", |h| h.len() == 1).await;
    babak.send_text(copy.id, "رسید").await.expect("answer through kavir's listener");
    wait_history(&ali, chat.id, "the answer", |h| h.len() == 2).await;
    assert_eq!(certificates_of(&demo, "kavir").await, serials[..2], "renewed once, not at every refresh");
}

const HANA: &str = "+989122000005";

/// How many abuse reports a provider keeps about `reported` (on its embedded store, or in the
/// cluster's schema).
fn reports_about(target: &External, cluster: Option<&Cluster>, reported: &str) -> u64 {
    let sql = |table: &str| format!("SELECT COUNT(*) FROM {table} WHERE reported = '{reported}'");
    let value = match cluster {
        Some(cluster) => psql_value(&sql(&format!("{}.reports", cluster.schema.name))),
        None => {
            let out = std::process::Command::new("sqlite3")
                .arg(target.server.data.join("peyvand.db"))
                .arg(sql("reports"))
                .output()
                .expect("sqlite3 is installed");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    value.parse().expect("a count")
}

/// A hub that forges: a licensed provider that hosts a room with Hana (on `target`) sends her
/// provider events "by" Hana she never sent (a message, a reaction, an edit and a deletion of
/// her message, a read receipt), a second message at a seq the copy already holds, and one of
/// its own person's messages with a signature that is not its own. Each
/// is refused (`forged_event`, `seq_conflict`), reported and counted; what Hana did send
/// through the hub is accepted, and her history shows only what was really said.
async fn a_forging_hub_is_refused(demo: &Demo, target: &External, cluster: Option<&Cluster>) {
    let registry = RegistryClient::new(&demo.registry, Some(demo.admin_token.clone())).expect("registry client");
    let mut hub = KitProvider::enrol(&registry, target.id).await.expect("a licensed forging hub");
    hub.retarget(&target.server.url.replace("http://", "https://"));
    hub.wait_until_known(DEADLINE).await.expect("the target lists the hub");
    let hana = target.sign_in(HANA).await;
    hana.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let hana_address = format!("{HANA}@{}", target.id);
    let kit_person = format!("+12025550160@{}", hub.id());
    let room = json!({"hub": hub.id(), "id": 1});
    let post = |path: &'static str, body: serde_json::Value| {
        let request = hub.sign_post(path, body);
        let hub = &hub;
        async move { hub.send(&request).await.expect("answered") }
    };
    let (status, answer) = post(
        "/interconnect/v1/invite",
        json!({"room": room, "from": kit_person, "from_name": "Hub", "to": hana_address}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let message = |seq: i64, sender: &str, client_id: &str, body: &str| {
        let recipient = if sender == kit_person { hana_address.clone() } else { kit_person.clone() };
        json!({"type": "message", "seq": seq, "sender": sender, "sender_name": "", "recipient": recipient,
            "client_id": client_id, "content": {"type": "text", "text": body}, "sent_at": peyvand_service::now_millis()})
    };
    // Every event carries the hub's origin signature, unless it has another origin.
    let transaction = |id: &str, events: Vec<serde_json::Value>| {
        let events: Vec<_> = events
            .into_iter()
            .map(|e| match e.get("origin").cloned() {
                Some(origin) => json!({"room": room, "event": e["event"], "origin": origin}),
                None => json!({"room": room, "event": e}),
            })
            .collect();
        hub.with_origins(json!({"id": id, "events": events}))
    };
    let (status, answer) =
        post("/interconnect/v1/transactions", transaction("t1", vec![message(1, &kit_person, "hub-1", "سلام")])).await;
    assert_eq!((status, &answer), (200, &json!({"refused": []})));
    let copy = chat_with(&hana, hub.id()).await;
    wait_history(&hana, copy.id, "the hub's message", |h| h.len() == 1).await;

    // Hana answers: her provider records the submission, then cannot reach the hub (its
    // licence's endpoint resolves nowhere); the hub has it all the same.
    hana.send(copy.id, &common::text("hana-1", "جواب")).await.expect_err("the hub does not answer");

    let (status, answer) = post(
        "/interconnect/v1/transactions",
        transaction(
            "t2",
            vec![
                message(2, &hana_address, "hana-1", "جواب"),
                message(3, &hana_address, "forged-1", "پیام جعلی"),
                json!({"type": "reaction", "seq": 1, "user": hana_address, "emoji": "👍"}),
                json!({"type": "edit", "seq": 2, "content": {"type": "text", "text": "ویرایش جعلی"}, "edited_at": 1}),
                json!({"type": "delete", "seq": 2}),
                json!({"type": "read", "user": hana_address, "up_to": 1}),
                message(1, &kit_person, "hub-other", "پیام دیگر"),
                // The hub's own person's message, but with a signature that is not the hub's.
                json!({"event": message(3, &kit_person, "hub-3", "امضای جعلی"),
                    "origin": {"v": 1, "provider": hub.id(), "signature": "AAAA"}}),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let refused: Vec<(u64, String)> = answer["refused"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|r| (r["index"].as_u64().expect("index"), r["code"].as_str().expect("code").to_owned()))
        .collect();
    let expected: Vec<(u64, String)> = [1, 2, 3, 4, 5]
        .into_iter()
        .map(|i| (i, "forged_event".to_owned()))
        .chain([(6, "seq_conflict".to_owned()), (7, "forged_event".to_owned())])
        .collect();
    assert_eq!(refused, expected, "{answer}");
    let seen = wait_history(&hana, copy.id, "Hana's own answer", |h| h.len() == 2).await;
    assert_eq!(texts(&seen), vec![(1, "سلام".to_owned()), (2, "جواب".to_owned())]);
    assert!(seen.iter().all(|m| m.reactions.is_empty() && m.edited_at.is_none()), "{seen:?}");
    assert_eq!(seen[1].sender_id, hana.me().await.expect("me").id);

    assert_eq!(peer_metric(&target.server, "forged_events_total", hub.id()).await, 6);
    assert_eq!(peer_metric(&target.server, "seq_conflicts_total", hub.id()).await, 1);
    assert_eq!(reports_about(target, cluster, hub.id()), 7, "each refusal is reported");
    hub.withdraw(&registry).await.expect("withdrawn");
}

#[tokio::test]
async fn a_forging_hub_is_refused_embedded() {
    let demo = Demo::start(&[]);
    let target = External::start(&demo, "kavir", "TEST-F1").await;
    a_forging_hub_is_refused(&demo, &target, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forging_hub_is_refused_postgres() {
    let demo = Demo::start(&[]);
    let (target, cluster) = External::start_on_cluster(&demo, "kavir", "TEST-F2").await;
    a_forging_hub_is_refused(&demo, &target, Some(&cluster)).await;
}

const IRIS: &str = "+989122000006";

/// The first row of `sql` on a provider's store (embedded, or the cluster's schema, whose
/// name replaces `{schema}.`), one column.
fn store_value(target: &External, cluster: Option<&Cluster>, sql: &str) -> String {
    match cluster {
        Some(cluster) => psql_value(&sql.replace("{schema}.", &format!("{}.", cluster.schema.name))),
        None => {
            let out = std::process::Command::new("sqlite3")
                .arg(target.server.data.join("peyvand.db"))
                .arg(sql.replace("{schema}.", ""))
                .output()
                .expect("sqlite3 is installed");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned()
        }
    }
}

/// A hub passes a follower's origin on: a licensed provider whose person is in a room hosted
/// on `target` submits a message with its origin signature; the hub takes it, and the event
/// it queues carries that same origin (so that another follower could check it), while a
/// submission altered after signing, or with an unknown version, is refused.
async fn a_hub_passes_on_its_followers_origins(demo: &Demo, target: &External, cluster: Option<&Cluster>) {
    let registry = RegistryClient::new(&demo.registry, Some(demo.admin_token.clone())).expect("registry client");
    let mut follower =
        KitProvider::enrol_with(&registry, target.id, vec!["chat".into()]).await.expect("a licensed follower");
    follower.retarget(&target.server.url.replace("http://", "https://"));
    follower.wait_until_known(DEADLINE).await.expect("the target lists the follower");
    let iris = target.sign_in(IRIS).await;
    iris.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let person = format!("+12025550170@{}", follower.id());
    // Iris opens the room, hosted on her provider; its invitation cannot reach the follower
    // (the licence's endpoint resolves nowhere), but the room is there.
    until("the hub lists the follower", || async {
        iris.open_address(&person).await.err().filter(|e| e.code() != Some(ErrorCode::UnknownProvider))
    })
    .await;
    let chat = chat_with(&iris, follower.id()).await;
    let room = json!({"hub": target.id, "id": chat.id});
    let submission = follower.with_submission_origin(json!({"room": room, "user": person, "user_name": "Follower",
        "action": {"type": "send", "client_id": "f-1", "content": {"type": "text", "text": "از آن سو"}}}));
    let submit = |body: serde_json::Value| {
        let request = follower.sign_post("/interconnect/v1/submit", body);
        let follower = &follower;
        async move { follower.send(&request).await.expect("answered") }
    };
    let mut altered = submission.clone();
    altered["action"]["content"]["text"] = json!("چیز دیگر");
    let (status, answer) = submit(altered).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("forged_event")), "{answer}");
    let mut unknown = submission.clone();
    unknown["origin"]["v"] = json!(2);
    let (status, answer) = submit(unknown).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("unsupported_version")), "{answer}");
    let (status, answer) = submit(submission.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["event"]["seq"], 1, "{answer}");
    wait_history(&iris, chat.id, "the follower's message", |h| h.len() == 1).await;

    let queued = store_value(
        target,
        cluster,
        &format!("SELECT body FROM {{schema}}.outbound WHERE peer = '{}' AND body LIKE '%f-1%'", follower.id()),
    );
    let queued: serde_json::Value = serde_json::from_str(&queued).expect("a queued event");
    assert_eq!(queued["event"]["client_id"], "f-1");
    assert_eq!(queued["origin"], submission["origin"], "the follower's origin, unchanged");
    follower.withdraw(&registry).await.expect("withdrawn");
}

#[tokio::test]
async fn a_hub_passes_on_its_followers_origins_embedded() {
    let demo = Demo::start(&[]);
    let target = External::start(&demo, "kavir", "TEST-O1").await;
    a_hub_passes_on_its_followers_origins(&demo, &target, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_passes_on_its_followers_origins_postgres() {
    let demo = Demo::start(&[]);
    let (target, cluster) = External::start_on_cluster(&demo, "kavir", "TEST-O2").await;
    a_hub_passes_on_its_followers_origins(&demo, &target, Some(&cluster)).await;
}

const DELIVERY_DEADLINE: &str = "PEYVAND_INTERCONNECT__DELIVERY_DEADLINE_SECS";

async fn licence_action(demo: &Demo, provider: &str, action: &str) {
    let (status, body) =
        demo.admin(Method::POST, &format!("/v1/admin/licences/{provider}/{action}"), json!({"reason": "test"})).await;
    assert_eq!(status, 200, "{action} {provider}: {body}");
}

/// Waits until `node` uses the registry's current directory.
async fn directory_reaches(demo: &Demo, node: &Server) {
    let health: serde_json::Value =
        reqwest::get(format!("{}/healthz", demo.registry)).await.expect("health").json().await.expect("json");
    let version = health["directory_version"].as_u64().expect("version");
    eventually("the directory reaches the provider", || async {
        common::metrics(&node.url)
            .await
            .lines()
            .find_map(|l| l.strip_prefix("peyvand_interconnect_directory_version "))
            .is_some_and(|v| v.parse::<u64>().expect("a version") >= version)
    })
    .await;
}

/// Waits until message `seq` of the chat stands as `check` wants, within `limit`.
async fn delivery_of(
    client: &Client,
    chat_id: i64,
    seq: i64,
    limit: std::time::Duration,
    check: impl Fn(&Delivery) -> bool,
) -> Delivery {
    until_within(&format!("the delivery of #{seq}"), limit, || async {
        let message = client.message(chat_id, seq).await.expect("message");
        message.delivery.filter(|d| check(d))
    })
    .await
}

/// Waits on a stream for the update saying that message `seq` of the chat is in `state`.
async fn delivery_update(stream: &mut UpdateStream, chat_id: i64, seq: i64, state: DeliveryState) -> Delivery {
    let deadline = tokio::time::Instant::now() + 2 * DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = tokio::time::timeout(left, stream.next()).await.expect("the delivery's update in time");
        if let StreamFrame::Update { update } = frame.expect("open").expect("frame")
            && let Event::MessageDelivery { chat_id: c, seq: s, delivery } = update.event
            && (c, s, delivery.state) == (chat_id, seq, state)
        {
            return delivery;
        }
    }
}

/// The CLI of someone signed in with `client`: a `PEYVAND_HOME` holding the
/// session, as `peyvand login` saves it.
async fn cli_home(client: &Client, phone: &str) -> std::path::PathBuf {
    let home = temp_dir("cli");
    let me = client.me().await.expect("me");
    let device = client.devices().await.expect("devices").devices.into_iter().find(|d| d.current).expect("this one");
    // The file name `peyvand login` gives a server's session (cli/session.rs), from the
    // client's base URL.
    let url = client.base_url().to_string();
    let fnv = url.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let readable: String = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let sessions = home.join("sessions");
    std::fs::create_dir_all(&sessions).expect("sessions");
    let session = json!({
        "server": url, "token": client.token().expect("signed in"), "device_id": device.id,
        "user_id": me.id, "phone": phone,
    });
    std::fs::write(sessions.join(format!("{readable}-{fnv:016x}.json")), session.to_string()).expect("session");
    home
}

/// Runs the CLI with `home`'s session on `server`; its exit success and standard output.
fn cli(home: &std::path::Path, server: &Server, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .args(args)
        .env("PEYVAND_HOME", home)
        .env("PEYVAND_SERVER", &server.url)
        .env_remove("PEYVAND_OUTPUT")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run peyvand");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "peyvand {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout)
}

/// Runs `peyvand listen` with `home`'s session (from the start of the stream) until it prints
/// a line that `last` accepts, within the deadline; the lines it printed.
fn listen_until(home: &std::path::Path, server: &Server, last: impl Fn(&str) -> bool) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peyvand"))
        .arg("listen")
        .env("PEYVAND_HOME", home)
        .env("PEYVAND_SERVER", &server.url)
        .env_remove("PEYVAND_OUTPUT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("listen");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("listen printed no such line: {lines:?}"));
        let done = last(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// What a sender sees of a message to another messenger, with the hub `kavir` configured
/// with a delivery deadline of [`SHORT_DEADLINE`] seconds: delivered once the peer has it;
/// queued with the reason while the peer is suspended or stopped, failed with that reason
/// after the deadline (and never delivered later, unless sent again with its client id);
/// delivered when the peer is back in time;
/// each change sent to the sender's devices; the CLI saying all of it.
async fn the_sender_sees_where_messages_stand(demo: &Demo, kavir: &External, zagros: &mut External) {
    let ali = kavir.sign_in(ALI).await;
    let babak = zagros.sign_in(BABAK).await;
    ali.update_settings(&consent(Audience::Everybody)).await.expect("on");
    babak.update_settings(&consent(Audience::Everybody)).await.expect("on");
    let chat =
        until("kavir reaches zagros", || async { ali.open_address(&format!("{BABAK}@zagros")).await.ok() }).await;
    // zagros knows where kavir is too.
    directory_reaches(demo, &zagros.server).await;
    let mut ali_stream = ali.updates_ws(ali.state().await.expect("state").cursor).await.expect("ws");
    let deadline = std::time::Duration::from_secs(SHORT_DEADLINE);
    let past_deadline = deadline + DEADLINE;

    // Delivered: pending when stored, delivered once zagros has it, and Ali's device is told.
    let sent = ali.send_text(chat.id, "یک").await.expect("send");
    assert_eq!(sent.message.delivery, Some(Delivery::pending(None)));
    let told = delivery_update(&mut ali_stream, chat.id, 1, DeliveryState::Delivered).await;
    assert_eq!(told, Delivery::delivered());
    assert_eq!(ali.message(chat.id, 1).await.expect("message").delivery, Some(Delivery::delivered()));
    // What Babak received carries no delivery; what he sends to the room kavir hosts is
    // delivered when kavir answers; and at kavir it is a received message.
    let copy = chat_with(&babak, "kavir").await;
    let seen = wait_history(&babak, copy.id, "the first message", |h| h.len() == 1).await;
    assert_eq!(seen[0].delivery, None);
    // Each side's messages name the sender on the other messenger by address.
    assert_eq!(seen[0].sender_address, Some(format!("{ALI}@kavir")));
    assert_eq!(sent.message.sender_address, None, "Ali is on this messenger");
    let reply = babak.send_text(copy.id, "دو").await.expect("reply");
    assert_eq!(reply.message.delivery, Some(Delivery::delivered()));
    let at_hub = wait_history(&ali, chat.id, "the reply", |h| h.len() == 2).await;
    assert_eq!(at_hub[1].delivery, None);
    assert_eq!(at_hub[1].sender_address, Some(format!("{BABAK}@zagros")));
    let live = loop {
        let frame = tokio::time::timeout(DEADLINE, ali_stream.next()).await.expect("the reply in time");
        if let StreamFrame::Update { update } = frame.expect("open").expect("frame")
            && let Event::MessageNew { message } = update.event
            && message.seq == 2
        {
            break message;
        }
    };
    assert_eq!(live.sender_address, Some(format!("{BABAK}@zagros")));

    // zagros is suspended: queued with the reason, then failed after the deadline.
    licence_action(demo, "zagros", "suspend").await;
    directory_reaches(demo, &kavir.server).await;
    let sent = ali.send_text(chat.id, "سه").await.expect("stored");
    let delivery = sent.message.delivery.expect("a delivery");
    assert_eq!((delivery.state, delivery.reason), (DeliveryState::Pending, Some(ErrorCode::PeerNotActive)));
    // The CLI says it is queued and why, in text and in JSON.
    let home = cli_home(&ali, ALI).await;
    let recipient = format!("chat:{}", chat.id);
    let (_, out) = cli(&home, &kavir.server, &["send", &recipient, "چهار"]);
    assert!(out.contains("[queued: peer_not_active]"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("queued: ") && l.ends_with("(peer_not_active)")), "{out}");
    let (_, out) = cli(&home, &kavir.server, &["--output", "json", "send", &recipient, "پنج"]);
    let printed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(printed["seq"], 5);
    assert_eq!(printed["delivery"]["state"], "pending");
    assert_eq!(printed["delivery"]["reason"], "peer_not_active");
    let told = delivery_update(&mut ali_stream, chat.id, 3, DeliveryState::Failed).await;
    assert_eq!(told.reason, Some(ErrorCode::PeerNotActive));
    for seq in 3..=5 {
        let failed = delivery_of(&ali, chat.id, seq, past_deadline, |d| d.state == DeliveryState::Failed).await;
        assert_eq!(failed.reason, Some(ErrorCode::PeerNotActive), "#{seq}");
    }
    let (_, out) = cli(&home, &kavir.server, &["history", &recipient]);
    assert!(out.lines().any(|l| l.starts_with("#1 ") && l.ends_with("[delivered]")), "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with("[failed: peer_not_active]")).count(), 3, "{out}");

    // zagros is back in the registry but stopped: queued as unreachable; back within the
    // deadline, it gets the message, and never the failed ones.
    licence_action(demo, "zagros", "reinstate").await;
    directory_reaches(demo, &kavir.server).await;
    zagros.server.kill9();
    ali.send_text(chat.id, "شش").await.expect("stored");
    let waiting = delivery_of(&ali, chat.id, 6, DEADLINE, |d| d.reason == Some(ErrorCode::PeerUnavailable)).await;
    assert_eq!(waiting.state, DeliveryState::Pending);
    zagros.restart(demo).await;
    delivery_update(&mut ali_stream, chat.id, 6, DeliveryState::Delivered).await;
    let babak = zagros.sign_in(BABAK).await;
    let seen = wait_history(&babak, copy.id, "the message sent while zagros was down", |h| h.len() == 3).await;
    assert_eq!(texts(&seen), vec![(1, "یک".to_owned()), (2, "دو".to_owned()), (6, "شش".to_owned())]);
    // Sending a failed message again (the same client id) queues it again.
    let failed = ali.message(chat.id, 3).await.expect("message");
    let again = peyvand_api::SendMessage {
        client_id: failed.client_id.clone(),
        content: Some(failed.content.clone()),
        reply_to: None,
        forward: None,
        media: None,
    };
    let resent = ali.send(chat.id, &again).await.expect("sent again");
    assert!(!resent.created);
    assert_eq!(resent.message.delivery.map(|d| d.state), Some(DeliveryState::Pending));
    delivery_update(&mut ali_stream, chat.id, 3, DeliveryState::Delivered).await;
    let seen = wait_history(&babak, copy.id, "the message sent again", |h| h.len() == 4).await;
    assert_eq!(texts(&seen)[2], (3, "سه".to_owned()));

    // Stopped past the deadline: failed as unreachable.
    zagros.server.kill9();
    ali.send_text(chat.id, "هفت").await.expect("stored");
    let failed = delivery_of(&ali, chat.id, 7, past_deadline, |d| d.state == DeliveryState::Failed).await;
    assert_eq!(failed.reason, Some(ErrorCode::PeerUnavailable));
    assert!(failed.detail.as_deref().is_some_and(|d| d.contains("given up")), "{failed:?}");
    let (_, out) = cli(&home, &kavir.server, &["history", &recipient]);
    assert!(out.lines().any(|l| l.starts_with("#7 ") && l.ends_with("[failed: peer_unavailable]")), "{out}");
    // `listen` shows each message as it stands and each change as it came.
    let lines = listen_until(&home, &kavir.server, |l| l.contains(" #7 failed: ") && l.ends_with("(peer_unavailable)"));
    let has = |what: &dyn Fn(&str) -> bool| lines.iter().any(|l| what(l));
    assert!(has(&|l| l.contains("#6 ") && l.ends_with("[delivered]")), "{lines:?}");
    assert!(has(&|l| l.contains(" #6 queued: ") && l.ends_with("(peer_unavailable)")), "{lines:?}");
    assert!(has(&|l| l.contains(" #6 delivered")), "{lines:?}");
    assert!(has(&|l| l.contains(" #3 failed: ") && l.ends_with("(peer_not_active)")), "{lines:?}");

    // The API document describes the delivery and its update.
    let doc = reqwest::get(format!("{}/v1/openapi.json", kavir.server.url)).await.expect("doc");
    let doc: serde_json::Value = doc.json().await.expect("json");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Delivery"].is_object() && schemas["DeliveryState"].is_object(), "{schemas}");
    assert!(schemas["Event"].to_string().contains("message_delivery"), "the update is documented");
}

/// The delivery deadline of the hubs in the delivery tests, in seconds.
const SHORT_DEADLINE: u64 = 8;

#[tokio::test]
async fn the_sender_sees_where_messages_to_another_messenger_stand() {
    let demo = Demo::start(&[]);
    let deadline = SHORT_DEADLINE.to_string();
    let kavir = External::start_with(&demo, "kavir", "TEST-7", &[(DELIVERY_DEADLINE, &deadline)]).await;
    let mut zagros = External::start(&demo, "zagros", "TEST-8").await;
    the_sender_sees_where_messages_stand(&demo, &kavir, &mut zagros).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_sees_where_messages_to_another_messenger_stand_on_postgres() {
    let demo = Demo::start(&[]);
    let mut zagros = External::start(&demo, "zagros", "TEST-10").await;
    let mut env = External::licence(&demo, "kavir", "TEST-9").await;
    env.push((DELIVERY_DEADLINE, SHORT_DEADLINE.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cluster = Cluster::start("delivery", 1, &env);
    let kavir = External { id: "kavir", server: cluster.nodes.remove(0) };
    kavir.publish_endpoint(&demo).await;
    the_sender_sees_where_messages_stand(&demo, &kavir, &mut zagros).await;
}
