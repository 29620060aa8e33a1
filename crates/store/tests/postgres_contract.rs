//! The store contract against PostgreSQL, plus what only this backend does.
//!
//! The server comes from `PEYVAND_TEST_POSTGRES` (default: the local server with trust
//! authentication). Each store lives in a fresh schema of its own, dropped when the test
//! ends, passed or failed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peyvand_api::{Audience, Content, Event, ForwardedFrom, PrivacySettings};
use peyvand_store::postgres::PgStore;
use peyvand_store::sqlite::SqliteStore;
use peyvand_store::{AccountStore, CodeRecord, NewMessage, Page, ProfileChange, Store, StoreError};
use tokio_postgres::{Client, NoTls};

fn server_url() -> String {
    std::env::var("PEYVAND_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The server URL with `schema` as the search path, and as the application name by which
/// the connections of the schema's stores are known.
fn url_in(schema: &str) -> String {
    let url = server_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}&application_name={schema}")
}

/// A plain connection for setting up and inspecting the server.
async fn admin() -> Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The schemas a test made; dropped with it, also when it panics.
struct Schemas {
    names: Mutex<Vec<String>>,
}

impl Schemas {
    fn new() -> Self {
        Self { names: Mutex::new(Vec::new()) }
    }

    /// Creates an empty schema with a name no other test (of this or another process) uses.
    async fn fresh(&self, admin: &Client) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("peyvand_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))
            .await
            .expect("schema");
        self.names.lock().expect("names").push(name.clone());
        name
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with a runtime of its own does the dropping.
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let admin = admin().await;
                for name in names {
                    // A store still connected (its connection tasks may not have run since it
                    // was dropped) could hold locks that the drop would wait for.
                    let terminate =
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1";
                    let _ = admin.execute(terminate, &[&name]).await;
                    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await;
                }
            });
        });
        let _ = dropping.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_contract() {
    let schemas = Schemas::new();
    let admin = admin().await;
    peyvand_store::contract::run_all(|| async {
        let schema = schemas.fresh(&admin).await;
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url_in(&schema)).await.expect("connect"));
        store
    })
    .await;
}

#[tokio::test]
async fn data_survives_a_new_store() {
    let schemas = Schemas::new();
    let url = url_in(&schemas.fresh(&admin().await).await);
    let id = {
        let store = PgStore::connect(&url).await.expect("connect");
        store.user_by_phone_or_create("+989120000001", 1).await.expect("create").0.id
    };
    let store = PgStore::connect(&url).await.expect("connect again");
    assert_eq!(store.user_by_phone("+989120000001").await.expect("get").map(|u| u.id), Some(id));
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let schemas = Schemas::new();
    let admin = admin().await;
    let schema = schemas.fresh(&admin).await;
    drop(PgStore::connect(&url_in(&schema)).await.expect("connect"));
    admin
        .batch_execute(&format!("INSERT INTO {schema}.schema_migrations (version, applied_at) VALUES (999, 0)"))
        .await
        .expect("bump");
    let err = PgStore::connect(&url_in(&schema)).await.expect_err("refused");
    assert!(matches!(err, StoreError::Unavailable(ref m) if m.contains("newer")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let schemas = Schemas::new();
    let admin = admin().await;
    let url = url_in(&schemas.fresh(&admin).await);
    let (a, b) = tokio::join!(PgStore::connect(&url), PgStore::connect(&url));
    let (a, b) = (a.expect("first node"), b.expect("second node"));
    let id = a.user_by_phone_or_create("+989120000001", 1).await.expect("create").0.id;
    assert_eq!(b.user(id).await.expect("get").map(|u| u.id), Some(id));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named_without_its_password() {
    // Port 1 on the loopback refuses at once.
    let err = PgStore::connect("postgres://peyvand:hunter2secret@127.0.0.1:1/test").await.expect_err("refused");
    let StoreError::Unavailable(message) = err else { panic!("not Unavailable: {err}") };
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_when_its_connections_are_killed() {
    let schemas = Schemas::new();
    let admin = admin().await;
    let schema = schemas.fresh(&admin).await;
    let store = PgStore::connect(&url_in(&schema)).await.expect("connect");
    store.ping().await.expect("ping");
    // What an administrator's pg_terminate_backend, or a server restart, does to a node.
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&schema],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(killed >= 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the pool did not recover: {e}"),
        }
    }
    let id = store.user_by_phone_or_create("+989120000001", 1).await.expect("works again").0.id;
    assert_eq!(store.user(id).await.expect("get").map(|u| u.id), Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_as_the_embedded_backend_does() {
    let schemas = Schemas::new();
    let admin = admin().await;
    let dir = std::env::temp_dir().join(format!("peyvand-pg-compare-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(dir.clone());
    for seed in 1..=4 {
        let postgres = PgStore::connect(&url_in(&schemas.fresh(&admin).await)).await.expect("connect");
        let sqlite = SqliteStore::open(&dir.join(seed.to_string())).expect("open");
        let expected = exercise(Arc::new(sqlite), seed).await;
        let got = exercise(Arc::new(postgres), seed).await;
        for (expected, got) in expected.iter().zip(&got) {
            assert_eq!(got, expected, "seed {seed}");
        }
        assert_eq!(got.len(), expected.len());
    }
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic pseudo-random sequence (xorshift), so that a failing seed repeats.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// Runs a pseudo-random mix of every store operation, valid and invalid, on a fresh store and
/// writes down each answer: two backends that behave alike write down the same lines.
///
/// Two answers are left out, where the backends may differ: the order of `chat_peers`, which
/// is unspecified, and a deleted account's own stream and profile changes, which nobody can
/// reach (a deleted account has no sessions).
async fn exercise(store: Arc<dyn Store>, seed: u64) -> Vec<String> {
    let mut dice = Dice(seed * 7919);
    let mut out = Vec::new();
    let phones: Vec<String> = (0..6).map(|i| format!("+98912000000{i}")).collect();
    let names = ["علی", "Ali_R", "a%b", "aqqb", "x_y", "xzy", "کتاب", "zz"];
    let words = ["این كتاب", "کتاب", "hello", "100%", "a_b", "axb", "x\\y", "salam"];
    let mut people = Vec::new();
    for phone in &phones {
        let (user, created) = store.user_by_phone_or_create(phone, 1).await.expect("create");
        people.push(user.id);
        out.push(format!("{user:?} {created}"));
    }
    let mut chats = Vec::new();
    for (x, y) in [(0, 1), (1, 2), (2, 2), (3, 0), (4, 1)] {
        let (chat, created) = store.open_direct_chat(people[x], people[y], 5).await.expect("open");
        out.push(format!("{chat} {created}"));
        chats.push(chat);
    }
    let mut now = 10;
    for step in 0..600 {
        now += 1 + dice.below(3) as i64;
        let (a, b, chat) = (dice.pick(&people), dice.pick(&people), dice.pick(&chats));
        let seq = dice.below(12) as i64;
        let deleted = store.user(a).await.expect("user").is_some_and(|u| u.deleted);
        let answer = match dice.below(30) {
            0 => {
                let opened = store.open_direct_chat(a, b, now).await;
                if let Ok((chat, true)) = opened {
                    chats.push(chat);
                }
                format!("{opened:?}")
            }
            1..=4 => {
                let notify = store.members(chat).await.expect("members").iter().map(|m| m.user_id).collect();
                let body = dice.pick(&words);
                let new = NewMessage {
                    chat_id: chat,
                    sender_id: a,
                    client_id: format!("c{}", dice.below(15)),
                    content: Content::Text { text: body.into() },
                    folded: peyvand_core::text::fold_for_search(body),
                    reply_to: (dice.below(3) == 0).then_some(seq),
                    forwarded_from: (dice.below(4) == 0).then_some(ForwardedFrom { user_id: b, sent_at: 5 }),
                    sent_at: now,
                    delivery: None,
                };
                format!("{:?}", store.append_message(new, notify).await)
            }
            5 => {
                let content = Content::Text { text: "edited".into() };
                format!("{:?}", store.edit_message(chat, seq, content, "edited".into(), now, vec![a, b]).await)
            }
            6 => format!("{:?}", store.delete_message(chat, seq, now, vec![a, b]).await),
            7 => format!("{:?}", store.hide_message(a, chat, seq, now).await),
            8 => {
                let emoji = dice.pick(&[None, Some("👍"), Some("❤️")]).map(str::to_owned);
                format!("{:?}", store.set_reaction(chat, seq, a, emoji, now, vec![a, b]).await)
            }
            9 => format!("{:?}", store.mark_read(chat, a, seq - 1, now, vec![b]).await),
            10 => format!("{:?}", store.mark_delivered(chat, a, seq - 1, now, vec![b]).await),
            11 => {
                let before = if seq > 9 { i64::MAX } else { seq };
                format!("{:?}", store.history(a, chat, Page::Before { seq: before, limit: 4 }).await)
            }
            12 => format!("{:?}", store.history(a, chat, Page::After { seq, limit: 4 }).await),
            13 => format!("{:?}", store.chat_view(a, chat).await),
            14 => format!("{:?}", store.chats_of(a, 3).await),
            15 => {
                let query: String =
                    peyvand_core::text::fold_for_search(dice.pick(&words)).chars().take(1 + dice.below(4)).collect();
                format!("{query} {:?}", store.search_messages(a, &query, 5).await)
            }
            16 => format!("{:?}", store.search_users(&dice.pick(&names).to_lowercase(), 5).await),
            17 if deleted => "a deleted account".into(),
            17 => {
                let name = dice.pick(&names);
                let change = ProfileChange {
                    display_name: (dice.below(2) == 0).then(|| (name.into(), name.to_lowercase())),
                    username: [Some(Some((name.into(), name.to_lowercase()))), Some(None), None][dice.below(3)].clone(),
                    bio: (dice.below(2) == 0).then(|| format!("bio {step}")),
                };
                format!("{:?}", store.update_profile(a, change).await)
            }
            18 if deleted => "a deleted account".into(),
            18 => {
                let after = dice.below(40) as i64 - 2;
                format!("{:?}", store.updates_after(a, after, 1 + dice.below(5) as u32).await)
            }
            19 => {
                let pruned = store.prune_updates(now - dice.below(100) as i64, dice.below(4) as i64).await;
                format!("{pruned:?} {:?}", store.cursor(a).await)
            }
            20 if dice.below(8) == 0 => format!("{:?}", store.delete_user(a).await),
            20 => {
                let privacy = PrivacySettings { messages: Audience::Contacts, ..Default::default() };
                format!("{:?} {:?}", store.set_privacy(a, privacy).await, store.user(a).await)
            }
            21 => format!("{:?}", store.send_context(chat, a).await),
            22 if dice.below(2) == 0 => {
                format!("{:?}", store.add_contacts(a, &[dice.pick(&phones), "+989129999999".into()]).await)
            }
            22 => format!("{:?}", store.remove_contact(a, &dice.pick(&phones)).await),
            23 => {
                let set = store.set_blocked(a, b, dice.below(2) == 0).await;
                format!("{set:?} {:?}", store.blocked(a).await)
            }
            24 => format!("{:?} {:?}", store.contacts(a).await, store.has_contact(a, b).await),
            25 => {
                let (node, online) = (dice.below(3) as i64, dice.below(2) == 0);
                let set = store.set_node_presence(a, node, online, now).await;
                format!("{set:?} {:?}", store.online(&people).await)
            }
            26 => {
                let beat = store.node_heartbeat(dice.below(3) as i64, now).await;
                format!("{beat:?} {:?}", store.reap_nodes(now - 30).await)
            }
            27 => format!("{:?}", store.hit(&format!("k{}", dice.below(3)), 7, 3, 1 + dice.below(2) as u32, now).await),
            28 => {
                let phone = dice.pick(&phones[..3]);
                match dice.below(4) {
                    0 => {
                        let code = CodeRecord { phone, code_hash: "h".into(), expires_at: now, attempts: 0 };
                        format!("{:?}", store.put_code(code).await)
                    }
                    1 => format!("{:?}", store.attempt_code(&phone, 2).await),
                    2 => format!("{:?}", store.take_code(&phone).await),
                    _ => format!("{:?}", store.code(&phone).await),
                }
            }
            _ => {
                let update = store.append_update(a, Event::Typing { chat_id: chat, user_id: a }, now).await;
                let mut peers = store.chat_peers(a, 10).await.expect("peers");
                peers.sort_unstable();
                format!("{update:?} {peers:?} {:?}", store.message_by_client_id(chat, a, "c1").await)
            }
        };
        out.push(format!("{step}: {answer}"));
        if dice.below(20) == 0 {
            let (user, created) = store.user_by_phone_or_create(&dice.pick(&phones), now).await.expect("sign up");
            if created {
                people.push(user.id);
            }
            out.push(format!("{user:?} {created}"));
        }
    }
    for &id in &people {
        let user = store.user(id).await.expect("user");
        if !user.as_ref().is_some_and(|u| u.deleted) {
            out.push(format!("{:?} {:?}", store.cursor(id).await, store.updates_after(id, 0, 10_000).await));
        }
        out.push(format!("{user:?} {:?}", store.sessions(id).await));
    }
    out
}
