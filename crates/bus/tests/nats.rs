//! The NATS bus against the machine's NATS (`PEYVAND_TEST_NATS`, default
//! nats://127.0.0.1:4222). What an outage does is tested end to end, with server nodes, in
//! crates/peyvand/tests/cluster.rs.

use std::sync::Arc;
use std::time::Duration;

use peyvand_api::{Event, Update};
use peyvand_bus::{Bus, NatsBus, Received, Subscription};

fn nats_url() -> String {
    std::env::var("PEYVAND_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A subject prefix of this test's own, so parallel tests and runs never see each other.
fn prefix(name: &str) -> String {
    format!("peyvand-test.{}.{name}", std::process::id())
}

fn update(cursor: i64) -> Arc<Update> {
    Arc::new(Update { cursor: Some(cursor), at: cursor, event: Event::Typing { chat_id: cursor, user_id: 1 } })
}

async fn next(sub: &mut Subscription) -> Received {
    tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("something arrives in time").expect("open")
}

#[tokio::test]
async fn an_update_published_on_one_node_reaches_the_person_on_another() {
    let prefix = prefix("routing");
    let node1 = NatsBus::connect(&nats_url(), &prefix).await.expect("node 1");
    let node2 = NatsBus::connect(&nats_url(), &prefix).await.expect("node 2");
    let mut on2 = node2.subscribe(7).await;
    let mut on1 = node1.subscribe(7).await;
    let mut other = node2.subscribe(8).await;

    node1.publish(7, update(1)).await;
    for sub in [&mut on1, &mut on2] {
        assert!(matches!(next(sub).await, Received::Update(u) if u.cursor == Some(1)));
    }
    node2.publish(7, update(2)).await;
    for sub in [&mut on1, &mut on2] {
        assert!(matches!(next(sub).await, Received::Update(u) if u.cursor == Some(2)), "exactly once each");
    }
    // Person 8 received nothing of person 7's.
    node1.publish(8, update(3)).await;
    assert!(matches!(next(&mut other).await, Received::Update(u) if u.cursor == Some(3)));

    // Leaving and coming back on node 2 keeps the person reachable there.
    drop(on2);
    let mut again = node2.subscribe(7).await;
    node1.publish(7, update(4)).await;
    assert!(matches!(next(&mut again).await, Received::Update(u) if u.cursor == Some(4)));
    assert!(node1.health().connected && node2.health().connected);
}

#[tokio::test]
async fn a_bad_address_is_a_clear_error() {
    let err = NatsBus::connect("nats://user:secret@127.0.0.1:1", "peyvand").await.expect_err("nothing listens there");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1") && !text.contains("secret"), "{text}");
    let err = NatsBus::connect(&nats_url(), "bad prefix*").await.expect_err("invalid prefix");
    assert!(err.to_string().contains("prefix"), "{err}");
}
