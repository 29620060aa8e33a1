//! The contract every store backend must pass. A backend's tests call [`run_all`] with a
//! function that makes a fresh, empty store; each check gets its own.

use std::future::Future;
use std::sync::Arc;

use peyvand_api::{Audience, Content, Event, PrivacySettings};

use crate::{
    BlobRecord, CodeRecord, DeliveryChange, MediaItemRecord, NewMessage, Page, ProfileChange, ReportRecord, RoomLink,
    Store, StoreError, UploadRecord,
};

/// Runs every check of the contract.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    accounts(make().await).await;
    codes_and_sessions(make().await).await;
    limits(make().await).await;
    contacts_and_blocks(make().await).await;
    messages(make().await).await;
    checked_sends(make().await).await;
    receipts_and_reactions(make().await).await;
    updates(make().await).await;
    message_updates(make().await).await;
    search(make().await).await;
    deletion(make().await).await;
    concurrent_sends(make().await).await;
    presence(make().await).await;
    races(make().await).await;
    federation(make().await).await;
    delivery_states(make().await).await;
    media(make().await).await;
}

fn text(t: &str) -> Content {
    Content::Text { text: t.into() }
}

fn new_message(chat_id: i64, sender_id: i64, client_id: &str, body: &str) -> NewMessage {
    NewMessage {
        chat_id,
        sender_id,
        client_id: client_id.into(),
        content: text(body),
        folded: peyvand_core::text::fold_for_search(body),
        reply_to: None,
        forwarded_from: None,
        sent_at: 1_000,
        delivery: None,
    }
}

async fn user(store: &Arc<dyn Store>, phone: &str) -> i64 {
    store.user_by_phone_or_create(phone, 1).await.expect("create user").0.id
}

async fn accounts(store: Arc<dyn Store>) {
    let (a, created) = store.user_by_phone_or_create("+989120000001", 5).await.expect("create");
    assert!(created);
    assert_eq!(a.privacy, PrivacySettings::default());
    let (again, created) = store.user_by_phone_or_create("+989120000001", 6).await.expect("get");
    assert!(!created);
    assert_eq!(again.id, a.id);
    let b = user(&store, "+989120000002").await;
    assert_ne!(a.id, b);

    let change = ProfileChange {
        display_name: Some(("علی".into(), "علی".into())),
        username: Some(Some(("Ali_R".into(), "ali_r".into()))),
        bio: Some("bio".into()),
    };
    let updated = store.update_profile(a.id, change).await.expect("update");
    assert_eq!(updated.username.as_deref(), Some("Ali_R"));
    assert_eq!(store.user_by_username("ali_r").await.expect("lookup").map(|u| u.id), Some(a.id));
    let taken = ProfileChange { username: Some(Some(("ALI_r".into(), "ali_r".into()))), ..Default::default() };
    assert!(matches!(store.update_profile(b, taken).await, Err(StoreError::UsernameTaken)));
    // A failed write leaves nothing behind, not even the parts that came before the failure.
    let half = ProfileChange {
        display_name: Some(("Half".into(), "half".into())),
        username: Some(Some(("ali_r".into(), "ali_r".into()))),
        ..Default::default()
    };
    assert!(matches!(store.update_profile(b, half).await, Err(StoreError::UsernameTaken)));
    assert_eq!(store.user(b).await.expect("get").map(|u| u.display_name), Some(String::new()));
    assert_eq!(store.search_users("عل", 10).await.expect("search").len(), 1);
    assert_eq!(store.search_users("%", 10).await.expect("search").len(), 0, "LIKE wildcards are escaped");
    for nothing in ["", "\0", "\0\0"] {
        assert_eq!(store.search_users(nothing, 10).await.expect("search").len(), 0, "{nothing:?} finds nobody");
    }

    let privacy = PrivacySettings { last_seen: Audience::Nobody, ..PrivacySettings::default() };
    store.set_privacy(a.id, privacy).await.expect("privacy");
    store.set_pin_hash(a.id, Some("hash".into())).await.expect("pin");
    store.set_last_seen(a.id, 77).await.expect("last seen");
    let got = store.user(a.id).await.expect("get").expect("exists");
    assert_eq!((got.privacy, got.pin_hash.as_deref(), got.last_seen), (privacy, Some("hash"), Some(77)));
}

async fn codes_and_sessions(store: Arc<dyn Store>) {
    let code = CodeRecord { phone: "+989120000001".into(), code_hash: "h".into(), expires_at: 10, attempts: 0 };
    store.put_code(code.clone()).await.expect("put");
    assert_eq!(store.code(&code.phone).await.expect("get"), Some(code.clone()));
    let attempt = store.attempt_code(&code.phone, 2).await.expect("attempt");
    assert_eq!(attempt.map(|c| (c.attempts, c.code_hash)), Some((1, "h".to_owned())));
    assert_eq!(store.attempt_code(&code.phone, 2).await.expect("attempt").map(|c| c.attempts), Some(2));
    assert_eq!(store.attempt_code(&code.phone, 2).await.expect("attempt"), None, "no third attempt");
    store.put_code(code.clone()).await.expect("replace");
    assert_eq!(store.code(&code.phone).await.expect("get").map(|c| c.attempts), Some(0));
    assert!(store.take_code(&code.phone).await.expect("take"));
    assert!(!store.take_code(&code.phone).await.expect("already taken"));
    assert_eq!(store.code(&code.phone).await.expect("get"), None);
    assert_eq!(store.attempt_code(&code.phone, 5).await.expect("attempt"), None, "no code at all");

    let a = user(&store, "+989120000001").await;
    let s1 = store.create_session(a, "phone", b"t1", 5).await.expect("session");
    let s2 = store.create_session(a, "laptop", b"t2", 6).await.expect("session");
    assert_eq!(store.session_by_token(b"t1").await.expect("get").map(|s| s.id), Some(s1.id));
    assert_eq!(store.sessions(a).await.expect("list").len(), 2);
    store.touch_session(s2.id, 99).await.expect("touch");
    assert_eq!(store.session_by_token(b"t2").await.expect("get").map(|s| s.last_active), Some(99));
    assert!(!store.revoke_session(a + 1, s1.id).await.expect("not theirs"));
    assert!(store.revoke_session(a, s1.id).await.expect("revoke"));
    assert_eq!(store.session_by_token(b"t1").await.expect("get"), None);
    store.revoke_all_sessions(a).await.expect("all");
    assert!(store.sessions(a).await.expect("list").is_empty());
}

async fn limits(store: Arc<dyn Store>) {
    assert_eq!(store.hit("k", 1000, 2, 1, 5_000).await.expect("hit"), Ok(1));
    assert_eq!(store.hit("k", 1000, 2, 1, 5_100).await.expect("hit"), Ok(2));
    assert_eq!(store.hit("k", 1000, 2, 1, 5_200).await.expect("hit"), Err(800));
    assert_eq!(store.hit("other", 1000, 2, 1, 5_200).await.expect("hit"), Ok(1));
    assert_eq!(store.hit("k", 1000, 2, 1, 6_000).await.expect("new window"), Ok(1));
    assert_eq!(store.hit("bulk", 1000, 10, 11, 6_000).await.expect("hit"), Err(1000));
    // A hit of no cost looks without counting.
    assert_eq!(store.hit("k", 1000, 1, 0, 6_100).await.expect("peek"), Ok(1));
    assert_eq!(store.hit("k", 1000, 0, 0, 6_200).await.expect("peek"), Err(800));
    assert_eq!(store.hit("k", 1000, 2, 1, 6_300).await.expect("hit"), Ok(2), "the peeks did not count");
    assert_eq!(store.hit("fresh", 1000, 0, 0, 6_300).await.expect("peek"), Ok(0));
}

async fn contacts_and_blocks(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    store.add_contacts(a, &["+989120000002".into(), "+989129999999".into()]).await.expect("add");
    assert!(store.has_contact(a, b).await.expect("has"));
    assert!(!store.has_contact(b, a).await.expect("has"));
    assert!(store.has_contact_phone(a, "+989129999999").await.expect("has"), "a number with no account");
    assert!(!store.has_contact_phone(b, "+989120000001").await.expect("has"));
    assert_eq!(store.contacts(a).await.expect("list").iter().map(|u| u.id).collect::<Vec<_>>(), vec![b]);
    // A contact who signs up later is matched by number.
    let c = user(&store, "+989129999999").await;
    assert!(store.has_contact(a, c).await.expect("has"));
    store.remove_contact(a, "+989120000002").await.expect("remove");
    assert!(!store.has_contact(a, b).await.expect("has"));

    store.set_blocked(a, b, true).await.expect("block");
    store.set_blocked(a, b, true).await.expect("block twice");
    assert!(store.is_blocked(a, b).await.expect("is"));
    assert!(!store.is_blocked(b, a).await.expect("is"));
    assert_eq!(store.blocked(a).await.expect("list").len(), 1);
    store.set_blocked(a, b, false).await.expect("unblock");
    assert!(!store.is_blocked(a, b).await.expect("is"));
}

async fn messages(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (chat, created) = store.open_direct_chat(a, b, 10).await.expect("open");
    assert!(created);
    assert_eq!(store.open_direct_chat(b, a, 11).await.expect("same chat"), (chat, false));
    assert_eq!(store.direct_chat(b, a).await.expect("find"), Some(chat));
    assert_eq!(store.chat_peers(a, 10).await.expect("peers"), vec![b]);
    assert!(store.send_context(chat, 9_999).await.expect("context").is_none(), "not a member");
    store.set_blocked(b, a, true).await.expect("block");
    store.add_contacts(b, &["+989120000001".into()]).await.expect("contact");
    let context = store.send_context(chat, a).await.expect("context").expect("member");
    assert_eq!(context.members.len(), 2);
    let facts = &context.recipients[..];
    assert!(
        matches!(facts, [f] if f.user_id == b && f.blocked_sender && !f.blocked_by_sender && f.has_sender_as_contact && !f.deleted)
    );
    store.set_blocked(b, a, false).await.expect("unblock");

    let (m1, new, updates) = store.append_message(new_message(chat, a, "c1", "one"), vec![a, b]).await.expect("send");
    assert!(new);
    assert_eq!(m1.seq, 1);
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|(_, u)| matches!(&u.event, Event::MessageNew { message } if message.seq == 1)));
    assert_eq!(store.message_by_client_id(chat, a, "c1").await.expect("by client id"), Some(m1.clone()));
    assert_eq!(store.message_by_client_id(chat, b, "c1").await.expect("by client id"), None, "per sender");
    let (retry, new, updates) =
        store.append_message(new_message(chat, a, "c1", "one"), vec![a, b]).await.expect("retry");
    assert!(!new && updates.is_empty());
    assert_eq!(retry, m1);
    assert!(matches!(
        store.append_message(new_message(chat, a, "c1", "different"), vec![a, b]).await,
        Err(StoreError::IdempotencyConflict)
    ));
    // The same client id from the other sender is a different message.
    let (m2, new, _) = store.append_message(new_message(chat, b, "c1", "two"), vec![a, b]).await.expect("send");
    assert!(new && m2.seq == 2);
    for i in 3..=10 {
        store.append_message(new_message(chat, a, &format!("c{i}"), &format!("m{i}")), vec![a, b]).await.expect("send");
    }
    let newest = store.history(b, chat, Page::Before { seq: i64::MAX, limit: 3 }).await.expect("page");
    assert_eq!(newest.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![8, 9, 10]);
    let older = store.history(b, chat, Page::Before { seq: 8, limit: 3 }).await.expect("page");
    assert_eq!(older.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5, 6, 7]);
    let forward = store.history(b, chat, Page::After { seq: 8, limit: 5 }).await.expect("page");
    assert_eq!(forward.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![9, 10]);

    let (edited, _) = store.edit_message(chat, 1, text("uno"), "uno".into(), 20, vec![a, b]).await.expect("edit");
    assert_eq!((edited.content.text(), edited.edited_at), (Some("uno"), Some(20)));
    store.delete_message(chat, 1, 21, vec![a, b]).await.expect("delete");
    assert_eq!(store.message(chat, 1).await.expect("get").map(|m| m.content), Some(Content::Deleted));
    assert!(matches!(store.edit_message(chat, 1, text("x"), "x".into(), 22, vec![]).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_message(chat, 1, 22, vec![]).await, Err(StoreError::NotFound)));

    let hidden = store.hide_message(b, chat, 10, 23).await.expect("hide");
    assert_eq!(hidden.len(), 1, "only the hider's own devices hear of it");
    let seen_by_b = store.history(b, chat, Page::Before { seq: i64::MAX, limit: 1 }).await.expect("page");
    assert_eq!(seen_by_b[0].seq, 9);
    let seen_by_a = store.history(a, chat, Page::Before { seq: i64::MAX, limit: 1 }).await.expect("page");
    assert_eq!(seen_by_a[0].seq, 10);

    let view = store.chat_view(b, chat).await.expect("view").expect("member");
    assert_eq!(view.last_message.map(|m| m.seq), Some(9));
    assert_eq!(view.chat.last_seq, 10);
    assert_eq!(view.others.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![a]);
}

/// [`crate::ChatStore::send_message`]: every outcome, and nothing written by a refused one.
async fn checked_sends(store: Arc<dyn Store>) {
    use crate::{SendGate, SendOutcome};
    fn allow() -> SendGate {
        Box::new(|_| true)
    }
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let outsider = user(&store, "+989120000003").await;
    let (chat, _) = store.open_direct_chat(a, b, 10).await.expect("open");
    let cursors = (store.cursor(a).await.expect("cursor"), store.cursor(b).await.expect("cursor"));

    fn refuse() -> SendGate {
        Box::new(|_| false)
    }
    // These outcomes come before the gate: a refusing one changes nothing.
    let sent = store.send_message(new_message(chat, outsider, "x", "hi"), refuse()).await.expect("send");
    assert!(matches!(sent, SendOutcome::NotMember));

    // The gate sees the recipients' facts; refused, nothing is stored.
    store.set_blocked(b, a, true).await.expect("block");
    let gate: SendGate = Box::new(|context| context.recipients.iter().all(|f| !f.blocked_sender));
    let sent = store.send_message(new_message(chat, a, "c1", "one"), gate).await.expect("send");
    assert!(
        matches!(&sent, SendOutcome::Refused(context) if context.recipients.len() == 1 && context.recipients[0].user_id == b && context.recipients[0].blocked_sender),
        "{sent:?}"
    );
    assert_eq!(store.message_by_client_id(chat, a, "c1").await.expect("lookup"), None);
    store.set_blocked(b, a, false).await.expect("unblock");

    let sent = store.send_message(new_message(chat, a, "c1", "one"), allow()).await.expect("send");
    let SendOutcome::Stored { message: m1, created: true, updates } = sent else { panic!("not stored: {sent:?}") };
    assert_eq!(m1.seq, 1);
    let mut told: Vec<_> = updates.iter().map(|(who, u)| (*who, u.cursor)).collect();
    told.sort_unstable();
    let mut expected = vec![(a, Some(cursors.0 + 1)), (b, Some(cursors.1 + 1))];
    expected.sort_unstable();
    assert_eq!(told, expected, "one update for every member");
    assert_eq!(store.message(chat, 1).await.expect("get"), Some(m1.clone()));
    let view = store.chat_view(a, chat).await.expect("view").expect("member");
    assert_eq!((view.me.read_up_to, view.me.delivered_up_to), (1, 1), "the sender has read their own message");
    // Another person's retry of the same client id is not a retry of this message.
    assert!(matches!(
        store.send_message(new_message(chat, outsider, "c1", "one"), allow()).await.expect("send"),
        SendOutcome::NotMember
    ));

    // A retry is answered with the stored message before the gate is asked.
    let sent = store.send_message(new_message(chat, a, "c1", "one"), refuse()).await.expect("retry");
    assert!(
        matches!(&sent, SendOutcome::Stored { message, created: false, updates } if *message == m1 && updates.is_empty())
    );
    assert!(matches!(
        store.send_message(new_message(chat, a, "c1", "other"), allow()).await,
        Err(StoreError::IdempotencyConflict)
    ));

    let mut reply = new_message(chat, b, "r1", "reply");
    reply.reply_to = Some(7);
    assert!(matches!(store.send_message(reply.clone(), refuse()).await.expect("send"), SendOutcome::NoSuchReply));
    reply.reply_to = Some(1);
    let sent = store.send_message(reply, allow()).await.expect("send");
    assert!(
        matches!(&sent, SendOutcome::Stored { message, created: true, .. } if message.seq == 2 && message.reply_to == Some(1))
    );

    // A chat with a member on another messenger goes back to the caller untouched.
    let remote = store.remote_user("+989350000001@other.example", "Remote", 20).await.expect("stand-in");
    let (remote_chat, _) = store.open_direct_chat(a, remote.id, 21).await.expect("open");
    let sent = store.send_message(new_message(remote_chat, a, "m1", "hi"), refuse()).await.expect("send");
    assert!(
        matches!(&sent, SendOutcome::Remote { context, new } if context.members.len() == 2 && new.client_id == "m1"),
        "{sent:?}"
    );
    assert_eq!(store.message_by_client_id(remote_chat, a, "m1").await.expect("lookup"), None);

    // `placed` is called for every outcome the store settles itself, and not for a remote one
    // (its caller stores it later).
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let placed = || -> crate::Placed {
        let calls = calls.clone();
        Box::new(move || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let called = || calls.load(std::sync::atomic::Ordering::SeqCst);
    let sent = store.send_message_placed(new_message(remote_chat, a, "m2", "hi"), allow(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::Remote { .. }));
    assert_eq!(called(), 0, "not for a remote send");
    let sent = store.send_message_placed(new_message(chat, a, "p1", "placed"), allow(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::Stored { created: true, .. }));
    assert_eq!(called(), 1, "for a stored send");
    let sent = store.send_message_placed(new_message(chat, a, "p1", "placed"), allow(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::Stored { created: false, .. }));
    assert_eq!(called(), 2, "for a retry");
    let sent = store.send_message_placed(new_message(chat, outsider, "p2", "x"), allow(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::NotMember));
    assert_eq!(called(), 3, "for a non-member");
    let sent = store.send_message_placed(new_message(chat, a, "p3", "x"), refuse(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::Refused(_)));
    assert_eq!(called(), 4, "for a refused one");
    let mut reply = new_message(chat, a, "p4", "x");
    reply.reply_to = Some(999);
    let sent = store.send_message_placed(reply, allow(), placed()).await;
    assert!(matches!(sent.expect("send"), SendOutcome::NoSuchReply));
    assert_eq!(called(), 5, "for a reply to nothing");
    let sent = store.send_message_placed(new_message(chat, a, "p1", "other"), allow(), placed()).await;
    assert!(matches!(sent, Err(StoreError::IdempotencyConflict)));
    assert_eq!(called(), 5, "not for an error");
}

async fn receipts_and_reactions(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (chat, _) = store.open_direct_chat(a, b, 10).await.expect("open");
    for i in 1..=3 {
        store.append_message(new_message(chat, a, &format!("c{i}"), "hi"), vec![a, b]).await.expect("send");
    }
    assert_eq!(store.chat_view(b, chat).await.expect("view").expect("member").unread, 3);
    assert_eq!(store.chat_view(a, chat).await.expect("view").expect("member").unread, 0);
    let updates = store.mark_delivered(chat, b, 3, 20, vec![a]).await.expect("delivered");
    assert!(matches!(&updates[..], [(who, u)] if *who == a && matches!(u.event, Event::Delivered { up_to: 3, .. })));
    let updates = store.mark_read(chat, b, 2, 21, vec![a]).await.expect("read");
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().any(|(who, u)| *who == b && matches!(u.event, Event::ReadByMe { up_to: 2, unread: 1, .. })));
    assert!(updates.iter().any(|(who, u)| *who == a && matches!(u.event, Event::Read { up_to: 2, .. })));
    assert!(store.mark_read(chat, b, 1, 22, vec![a]).await.expect("lower").is_empty(), "read marks never go back");
    assert!(store.mark_read(chat, b, 99, 23, vec![a]).await.expect("clamped").len() == 2);
    let me = store.chat_view(b, chat).await.expect("view").expect("member");
    assert_eq!((me.me.read_up_to, me.unread), (3, 0));

    let (list, _) = store.set_reaction(chat, 1, b, Some("👍".into()), 30, vec![a, b]).await.expect("react");
    assert_eq!(list.len(), 1);
    let (list, _) = store.set_reaction(chat, 1, b, Some("❤️".into()), 31, vec![a, b]).await.expect("replace");
    assert_eq!(list.iter().map(|r| r.emoji.as_str()).collect::<Vec<_>>(), vec!["❤️"]);
    let (list, _) = store.set_reaction(chat, 1, a, Some("😂".into()), 32, vec![a, b]).await.expect("react");
    assert_eq!(list.len(), 2);
    assert_eq!(store.message(chat, 1).await.expect("get").map(|m| m.reactions.len()), Some(2));
    let (list, _) = store.set_reaction(chat, 1, b, None, 33, vec![a, b]).await.expect("remove");
    assert_eq!(list.len(), 1);
    assert!(matches!(store.set_reaction(chat, 99, b, Some("👍".into()), 34, vec![]).await, Err(StoreError::NotFound)));
}

async fn updates(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    for i in 0..5 {
        let u = store.append_update(a, Event::Typing { chat_id: i, user_id: a }, 100 + i).await.expect("append");
        assert_eq!(u.cursor, Some(i + 1));
    }
    assert_eq!(store.cursor(a).await.expect("cursor"), 5);
    let after2 = store.updates_after(a, 2, 10).await.expect("read");
    assert_eq!(after2.iter().filter_map(|u| u.cursor).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(store.updates_after(a, 0, 2).await.expect("read").len(), 2);
    // Prune what is older than 103 but always keep the newest 1: cursors 1..3 go.
    assert_eq!(store.prune_updates(103, 1).await.expect("prune"), 3);
    assert!(matches!(store.updates_after(a, 1, 10).await, Err(StoreError::CursorTooOld { oldest_kept: 3 })));
    assert!(matches!(store.updates_after(a, 6, 10).await, Err(StoreError::CursorAhead { newest: 5 })));
    assert_eq!(store.updates_after(a, 3, 10).await.expect("read").len(), 2);
    store.prune_updates(i64::MAX, 0).await.expect("prune all");
    assert!(store.updates_after(a, 5, 10).await.expect("read").is_empty());
    let next = store.append_update(a, Event::Typing { chat_id: 9, user_id: a }, 200).await.expect("append");
    assert_eq!(next.cursor, Some(6), "cursors never repeat after pruning");
}

/// A `message_new` update read back from the stream shows the message as it is now.
async fn message_updates(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (chat, _) = store.open_direct_chat(a, b, 10).await.expect("open");
    let (one, _, live) = store.append_message(new_message(chat, a, "c1", "one"), vec![a, b]).await.expect("send");
    assert!(live.iter().all(|(_, u)| matches!(&u.event, Event::MessageNew { message } if *message == one)));
    let (two, _, _) = store.append_message(new_message(chat, b, "c2", "two"), vec![a, b]).await.expect("send");
    store.append_update(b, Event::Typing { chat_id: chat, user_id: a }, 1_001).await.expect("typing");
    let mut reply = new_message(chat, a, "c3", "three");
    reply.reply_to = Some(two.seq);
    let (three, _, _) = store.append_message(reply, vec![a, b]).await.expect("send");
    let (four, _, _) = store.append_message(new_message(chat, b, "c4", "four"), vec![a, b]).await.expect("send");

    let stream = store.updates_after(b, 0, 100).await.expect("read");
    assert_eq!(stream.iter().filter_map(|u| u.cursor).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(matches!(&stream[0].event, Event::MessageNew { message } if *message == one));
    assert!(matches!(&stream[1].event, Event::MessageNew { message } if *message == two));
    assert!(matches!(&stream[2].event, Event::Typing { chat_id, user_id } if *chat_id == chat && *user_id == a));
    assert!(matches!(&stream[3].event, Event::MessageNew { message } if *message == three));
    assert_eq!(stream[3].at, 1_000);

    store.edit_message(chat, one.seq, text("uno"), "uno".into(), 20, vec![a, b]).await.expect("edit");
    store.set_reaction(chat, three.seq, b, Some("👍".into()), 21, vec![a, b]).await.expect("react");
    store.delete_message(chat, two.seq, 22, vec![a, b]).await.expect("delete");
    store.hide_message(b, chat, four.seq, 23).await.expect("hide");
    let stream = store.updates_after(b, 0, 100).await.expect("read");
    let Event::MessageNew { message } = &stream[0].event else { panic!("{:?}", stream[0]) };
    assert_eq!((message.content.text(), message.edited_at), (Some("uno"), Some(20)));
    let Event::MessageNew { message } = &stream[1].event else { panic!("{:?}", stream[1]) };
    assert_eq!(message.content, Content::Deleted, "the deleted text is not sent again");
    let Event::MessageNew { message } = &stream[3].event else { panic!("{:?}", stream[3]) };
    assert_eq!(message.reactions.iter().map(|r| (r.user_id, r.emoji.as_str())).collect::<Vec<_>>(), vec![(b, "👍")]);
    assert_eq!(message.reply_to, Some(two.seq));
    // Hiding a message is the hider's own update; the message itself is still there for them
    // to be told it is hidden.
    assert!(matches!(&stream[4].event, Event::MessageNew { message } if message.seq == four.seq));
    let kinds: Vec<_> = stream[5..].iter().map(|u| std::mem::discriminant(&u.event)).collect();
    assert_eq!(kinds.len(), 4, "edited, reaction, deleted, hidden: {:?}", &stream[5..]);
    assert!(matches!(&stream[8].event, Event::MessagesDeleted { for_everyone: false, .. }));

    // The sender's account deleted, their messages stay for the people who received them,
    // and so do the updates that refer to those messages.
    store.delete_user(a).await.expect("delete a");
    let after = store.updates_after(b, 0, 100).await.expect("read");
    assert!(
        matches!(&after[3].event, Event::MessageNew { message } if message.sender_id == a && message.seq == three.seq)
    );
    // Pruning drops references as it drops copies.
    assert_eq!(store.prune_updates(i64::MAX, 2).await.expect("prune"), 7);
    assert_eq!(store.updates_after(b, 7, 100).await.expect("read").len(), 2);
}

async fn search(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let c = user(&store, "+989120000003").await;
    let (ab, _) = store.open_direct_chat(a, b, 1).await.expect("open");
    let (bc, _) = store.open_direct_chat(b, c, 1).await.expect("open");
    store.append_message(new_message(ab, a, "1", "این كتاب خوب است"), vec![a, b]).await.expect("send");
    store.append_message(new_message(bc, c, "2", "کتاب دیگر"), vec![b, c]).await.expect("send");
    let query = peyvand_core::text::fold_for_search("کتاب");
    assert_eq!(store.search_messages(a, &query, 10).await.expect("search").len(), 1);
    assert_eq!(store.search_messages(b, &query, 10).await.expect("search").len(), 2);
    assert_eq!(store.search_messages(c, "خوب", 10).await.expect("search").len(), 0, "only one's own chats");
    // An empty query, or one with NUL (where SQLite's LIKE would stop), matches nothing.
    for nothing in ["", "\0", "\0\0"] {
        assert_eq!(store.search_messages(b, nothing, 10).await.expect("search").len(), 0, "{nothing:?}");
    }
}

async fn deletion(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (chat, _) = store.open_direct_chat(a, b, 1).await.expect("open");
    store.append_message(new_message(chat, a, "1", "from a"), vec![a, b]).await.expect("send");
    store.create_session(a, "phone", b"ta", 1).await.expect("session");
    store.add_contacts(a, &["+989120000002".into()]).await.expect("contacts");
    store.delete_user(a).await.expect("delete");
    let gone = store.user(a).await.expect("get").expect("tombstone");
    assert!(gone.deleted && gone.phone.is_none() && gone.display_name.is_empty());
    assert_eq!(store.session_by_token(b"ta").await.expect("get"), None);
    assert_eq!(store.user_by_phone("+989120000001").await.expect("get"), None);
    // The chat stays, with a tombstone member that nobody can write to.
    let context = store.send_context(chat, b).await.expect("context").expect("member");
    assert!(matches!(&context.recipients[..], [f] if f.user_id == a && f.deleted));
    // The other person keeps the conversation.
    let history = store.history(b, chat, Page::Before { seq: i64::MAX, limit: 10 }).await.expect("page");
    assert_eq!(history.len(), 1);
    // The number can sign up again as a new account.
    let (again, created) = store.user_by_phone_or_create("+989120000001", 2).await.expect("again");
    assert!(created && again.id != a);
}

async fn concurrent_sends(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (chat, _) = store.open_direct_chat(a, b, 1).await.expect("open");
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        sends.spawn(async move { store.append_message(new_message(chat, a, &format!("c{i}"), "x"), vec![a, b]).await });
    }
    let mut seqs: Vec<i64> = sends.join_all().await.into_iter().map(|r| r.expect("send").0.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "every message gets its own seq, none skipped");
    assert_eq!(store.cursor(b).await.expect("cursor"), 200);

    // Retries racing their first send (as a group-committing backend may put them in one
    // batch), a reused client id with other content, and a chat that does not exist: one
    // message per id, the retries get it back, nothing skips a seq or an update.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        for attempt in 0..3 {
            let store = store.clone();
            let body = if i % 10 == 0 && attempt == 2 { "other" } else { "y" };
            sends.spawn(async move {
                let result = store.append_message(new_message(chat, a, &format!("d{i}"), body), vec![a, b]).await;
                (i, body, result)
            });
        }
    }
    {
        let store = store.clone();
        sends
            .spawn(async move { (-1, "y", store.append_message(new_message(chat + 999, a, "z", "y"), vec![a]).await) });
    }
    let mut by_id: std::collections::HashMap<i64, Vec<(i64, bool)>> = std::collections::HashMap::new();
    for (i, body, result) in sends.join_all().await {
        match (i, body, result) {
            (-1, _, result) => assert!(matches!(result, Err(StoreError::NotFound)), "no such chat: {result:?}"),
            (_, "other", Ok((message, created, _))) => {
                // It won the race: the stored message is the other content; then the "y"
                // sends of this id are the conflicting ones.
                assert!(created && message.content == text("other"));
                by_id.entry(i).or_default().push((message.seq, true));
            }
            (_, _, Err(StoreError::IdempotencyConflict)) => assert_eq!(i % 10, 0, "only reused ids conflict"),
            (_, _, Ok((message, created, _))) => by_id.entry(i).or_default().push((message.seq, created)),
            (_, _, Err(e)) => panic!("send {i}: {e}"),
        }
    }
    let mut seqs = Vec::new();
    for (i, answers) in &by_id {
        assert_eq!(answers.iter().filter(|(_, created)| *created).count(), 1, "id d{i} stored once: {answers:?}");
        assert!(answers.iter().all(|(seq, _)| *seq == answers[0].0), "retries of d{i} get its message");
        seqs.push(answers[0].0);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (201..=240).collect::<Vec<_>>(), "no seq skipped or doubled");
    assert_eq!(store.cursor(b).await.expect("cursor"), 240, "one update per stored message");
}

async fn presence(store: Arc<dyn Store>) {
    store.ping().await.expect("the store answers");
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let (node1, node2) = (11, 22);
    assert!(store.node_heartbeat(node1, 100).await.expect("heartbeat"), "first beat registers");
    assert!(!store.node_heartbeat(node1, 100).await.expect("heartbeat"), "then it is known");
    store.node_heartbeat(node2, 100).await.expect("heartbeat");
    assert!(store.set_node_presence(a, node1, true, 100).await.expect("online"), "first node: came online");
    assert!(!store.set_node_presence(a, node1, true, 101).await.expect("again"), "no change");
    assert!(!store.set_node_presence(a, node2, true, 102).await.expect("second node"), "already online");
    assert!(store.set_node_presence(b, node2, true, 102).await.expect("online"));
    assert_eq!(store.online(&[b, a, 999]).await.expect("online"), vec![b, a]);
    assert!(!store.set_node_presence(a, node1, false, 103).await.expect("one left"), "still on node 2");
    assert!(!store.set_node_presence(a, node1, false, 103).await.expect("twice"), "nothing to remove");

    // Node 2 stops beating and is reaped: its people are offline everywhere.
    assert!(!store.node_heartbeat(node1, 200).await.expect("heartbeat"));
    assert_eq!(store.reap_nodes(150).await.expect("reap"), vec![a, b]);
    assert!(store.online(&[a, b]).await.expect("online").is_empty());
    assert!(store.reap_nodes(150).await.expect("reap again").is_empty());
    // A reaped node learns it at its next beat, and records its people again.
    assert!(store.node_heartbeat(node2, 300).await.expect("heartbeat"), "node 2 was reaped");
    assert!(store.set_node_presence(a, node2, true, 300).await.expect("back"));
    assert!(store.reap_nodes(250).await.expect("node 1 goes").is_empty(), "node 1 had nobody");
    assert_eq!(store.online(&[a]).await.expect("online"), vec![a]);
    store.delete_user(a).await.expect("delete");
    assert!(store.online(&[a]).await.expect("online").is_empty(), "a deleted account is not online");
}

/// Writes that race each other end as if they had run one after another: a backend that runs
/// transactions side by side must order them where it matters.
async fn races(store: Arc<dyn Store>) {
    use tokio::task::JoinSet;

    // Parallel first sign-ins of one number make one account.
    let mut signups = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        signups.spawn(async move { store.user_by_phone_or_create("+989120000009", 1).await.expect("sign up") });
    }
    let signups = signups.join_all().await;
    assert_eq!(signups.iter().filter(|(_, created)| *created).count(), 1, "one account");
    assert!(signups.iter().all(|(u, _)| u.id == signups[0].0.id));

    // Parallel first messages between two people open one chat.
    let mut people = Vec::new();
    for i in 0..4 {
        people.push(user(&store, &format!("+98912000010{i}")).await);
    }
    let pairs: Vec<(i64, i64)> =
        (0..4).flat_map(|i| (i + 1..4).map(move |j| (i, j))).map(|(i, j)| (people[i], people[j])).collect();
    let mut opens = JoinSet::new();
    for &(a, b) in &pairs {
        for (x, y) in [(a, b), (b, a), (a, b)] {
            let store = store.clone();
            opens.spawn(async move { ((a, b), store.open_direct_chat(x, y, 1).await.expect("open")) });
        }
    }
    let mut chats = Vec::new();
    for ((a, b), (chat, created)) in opens.join_all().await {
        if created {
            chats.push((chat, a, b));
        }
        assert_eq!(store.direct_chat(a, b).await.expect("find"), Some(chat));
    }
    assert_eq!(chats.len(), pairs.len(), "one chat per pair");

    // In every chat the first person sends while the second reads, all at once, and the chats
    // share people: every stream still counts 1, 2, 3, ... and announces a chat's messages in
    // their order; and a reader who adds the new messages to the unread count of their last
    // "read by me" update ends with the stored count.
    let mut writes = JoinSet::new();
    for &(chat, sender, reader) in &chats {
        for i in 0..12 {
            let sending = store.clone();
            writes.spawn(async move {
                let new = new_message(chat, sender, &format!("r{i}"), "x");
                sending.append_message(new, vec![sender, reader]).await.map(drop)
            });
            let reading = store.clone();
            writes.spawn(async move { reading.mark_read(chat, reader, i64::MAX, 2, vec![sender]).await.map(drop) });
        }
    }
    writes.join_all().await.into_iter().for_each(|r| r.expect("write"));
    for &person in &people {
        let newest = store.cursor(person).await.expect("cursor");
        let stream = store.updates_after(person, 0, 10_000).await.expect("read");
        assert_eq!(stream.iter().filter_map(|u| u.cursor).collect::<Vec<_>>(), (1..=newest).collect::<Vec<_>>());
        for &(chat, _, reader) in chats.iter().filter(|(_, _, reader)| *reader == person) {
            let (mut seqs, mut unread) = (Vec::new(), 0);
            for update in &stream {
                match &update.event {
                    Event::MessageNew { message } if message.chat_id == chat => {
                        seqs.push(message.seq);
                        unread += 1;
                    }
                    Event::ReadByMe { chat_id, unread: left, .. } if *chat_id == chat => unread = *left,
                    _ => {}
                }
            }
            assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "a chat's messages in order");
            assert_eq!(store.chat_view(reader, chat).await.expect("view").expect("member").unread, unread);
        }
    }

    // Reactions to one message at once: each change's list includes the changes before it, so
    // the last one a member hears of is the stored list.
    let (chat, a, b) = chats[0];
    let mut reactions = JoinSet::new();
    for i in 0..10 {
        let store = store.clone();
        let (who, emoji) =
            if i % 2 == 0 { (a, ["👍", "🎉"][i % 4 / 2]) } else { (b, ["❤️", "😂"][i % 4 / 2]) };
        reactions
            .spawn(async move { store.set_reaction(chat, 1, who, Some(emoji.into()), 3, vec![a, b]).await.map(drop) });
    }
    reactions.join_all().await.into_iter().for_each(|r| r.expect("react"));
    let stored = store.message(chat, 1).await.expect("get").expect("exists").reactions;
    assert_eq!(stored.len(), 2);
    for person in [a, b] {
        let stream = store.updates_after(person, 0, 10_000).await.expect("read");
        let last = stream.iter().rev().find_map(|u| match &u.event {
            Event::ReactionsChanged { chat_id, seq: 1, reactions } if *chat_id == chat => Some(reactions.clone()),
            _ => None,
        });
        assert_eq!(last, Some(stored.clone()));
    }

    // Counters and codes count every hit and attempt once.
    let mut hits = JoinSet::new();
    for _ in 0..30 {
        let store = store.clone();
        hits.spawn(async move { store.hit("race", 60_000, 100, 1, 5_000).await.expect("hit") });
    }
    let mut counts: Vec<u32> = hits.join_all().await.into_iter().map(|r| r.expect("within the limit")).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=30).collect::<Vec<_>>());
    let code = CodeRecord { phone: "+989120000009".into(), code_hash: "h".into(), expires_at: 10, attempts: 0 };
    store.put_code(code).await.expect("put");
    let mut attempts = JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        attempts.spawn(async move { store.attempt_code("+989120000009", 3).await.expect("attempt").is_some() });
    }
    assert_eq!(attempts.join_all().await.into_iter().filter(|&counted| counted).count(), 3, "three attempts");
    let mut takes = JoinSet::new();
    for _ in 0..5 {
        let store = store.clone();
        takes.spawn(async move { store.take_code("+989120000009").await.expect("take") });
    }
    assert_eq!(takes.join_all().await.into_iter().filter(|&taken| taken).count(), 1, "one code, one session");

    // Several nodes adding one person at once: exactly one sees them come online, and exactly
    // one of them leaving last sees them go offline.
    for node in 1..=4 {
        store.node_heartbeat(node, 100).await.expect("heartbeat");
    }
    for online in [true, false] {
        let mut changes = JoinSet::new();
        for node in 1..=4 {
            let store = store.clone();
            changes.spawn(async move { store.set_node_presence(a, node, online, 101).await.expect("presence") });
        }
        assert_eq!(changes.join_all().await.into_iter().filter(|&changed| changed).count(), 1);
    }
}

async fn federation(store: Arc<dyn Store>) {
    use tokio::task::JoinSet;

    // Stand-ins: created once per address, renamed by a non-empty name only, never searched.
    let address = "+15550000001@other.example";
    let remote = store.remote_user(address, "Remote Person", 5).await.expect("stand-in");
    assert_eq!(remote.remote_address.as_deref(), Some(address));
    assert_eq!((remote.phone.as_deref(), remote.username.as_deref()), (None, None));
    assert_eq!((remote.privacy, remote.deleted, remote.created_at), (PrivacySettings::default(), false, 5));
    assert_eq!(remote.display_name, "Remote Person");
    let again = store.remote_user(address, "", 6).await.expect("again");
    assert_eq!((again.id, again.display_name.as_str()), (remote.id, "Remote Person"), "an empty name keeps the old");
    let renamed = store.remote_user(address, "Renamed Person", 7).await.expect("rename");
    assert_eq!((renamed.id, renamed.display_name.as_str(), renamed.created_at), (remote.id, "Renamed Person", 5));
    assert_eq!(store.user(remote.id).await.expect("get"), Some(renamed.clone()));
    assert_eq!(store.remote_user_by_address(address).await.expect("by address"), Some(renamed.clone()));
    assert_eq!(store.remote_user_by_address("+15550000009@other.example").await.expect("by address"), None);
    let mut sightings = JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        sightings.spawn(async move {
            store.remote_user("+15550000002@other.example", &format!("Racer {i}"), 8).await.expect("stand-in").id
        });
    }
    let ids = sightings.join_all().await;
    assert!(ids.iter().all(|&id| id == ids[0]), "parallel first sightings make one stand-in: {ids:?}");
    assert_ne!(ids[0], remote.id);

    let local = user(&store, "+989120000001").await;
    store
        .update_profile(
            local,
            ProfileChange { display_name: Some(("Renamed Fan".into(), "renamed fan".into())), ..Default::default() },
        )
        .await
        .expect("name");
    let found = store.search_users("renamed", 10).await.expect("search");
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![local], "stand-ins are never found");
    assert_eq!(store.user(local).await.expect("get").expect("exists").remote_address, None);
    assert_eq!(store.user_by_phone("+15550000001").await.expect("by phone"), None);
    // A person on another messenger is in one's contacts by the number in their address.
    store.add_contacts(local, &["+15550000001".into()]).await.expect("contacts");
    assert!(store.has_contact(local, remote.id).await.expect("has"), "a stand-in by its address's number");
    assert!(!store.has_contact(local, ids[0]).await.expect("has"));
    assert!(!store.has_contact(remote.id, local).await.expect("has"), "stand-ins keep no contacts");

    // Followed rooms.
    let link = RoomLink { hub: "other.example".into(), hub_chat: 77 };
    assert_eq!(store.chat_by_room(&link).await.expect("by room"), None);
    let chat = store.follow_room(local, remote.id, &link, 10).await.expect("follow");
    assert_eq!(store.follow_room(local, remote.id, &link, 11).await.expect("again"), chat, "idempotent");
    assert_eq!(store.follow_room(remote.id, local, &link, 12).await.expect("again"), chat);
    assert_eq!(store.room_link(chat).await.expect("link"), Some(link.clone()));
    assert_eq!(store.chat_by_room(&link).await.expect("by room"), Some(chat));
    assert_eq!(store.direct_chat(local, remote.id).await.expect("direct"), Some(chat), "the pair's direct chat");
    let other_room = RoomLink { hub: "other.example".into(), hub_chat: 78 };
    assert!(
        matches!(store.follow_room(local, remote.id, &other_room, 13).await, Err(StoreError::Conflict(_))),
        "the pair's chat is the copy of another room"
    );
    assert_eq!(store.chat_by_room(&other_room).await.expect("by room"), None);
    let second = store.remote_user("+15550000003@third.example", "Third", 14).await.expect("stand-in");
    let (hosted, _) = store.open_direct_chat(local, second.id, 15).await.expect("open");
    let third_room = RoomLink { hub: "third.example".into(), hub_chat: 1 };
    assert!(
        matches!(store.follow_room(second.id, local, &third_room, 16).await, Err(StoreError::Conflict(_))),
        "the pair's chat is hosted here"
    );
    assert_eq!(store.room_link(hosted).await.expect("link"), None, "a chat hosted here follows no room");
    assert_eq!(store.chat_by_room(&third_room).await.expect("by room"), None);
    let racer = ids[0];
    let race_room = RoomLink { hub: "other.example".into(), hub_chat: 99 };
    let mut follows = JoinSet::new();
    for _ in 0..6 {
        let (store, race_room) = (store.clone(), race_room.clone());
        follows.spawn(async move { store.follow_room(local, racer, &race_room, 17).await.expect("follow") });
    }
    let followed = follows.join_all().await;
    assert!(followed.iter().all(|&id| id == followed[0]), "parallel follows make one chat: {followed:?}");
    assert_eq!(store.chat_by_room(&race_room).await.expect("by room"), Some(followed[0]));

    // Members know who is on another messenger.
    let members = store.members(chat).await.expect("members");
    let addresses: Vec<_> = members.iter().map(|m| (m.user_id, m.remote_address.as_deref())).collect();
    let mut expected = vec![(local, None), (remote.id, Some(address))];
    expected.sort_unstable();
    assert_eq!(addresses, expected);
    let view = store.chat_view(local, chat).await.expect("view").expect("member");
    assert_eq!(view.me.remote_address, None);
    assert_eq!(view.others.iter().map(|m| m.remote_address.as_deref()).collect::<Vec<_>>(), vec![Some(address)]);
    let view = store.chat_view(remote.id, chat).await.expect("view").expect("member");
    assert_eq!(view.me.remote_address.as_deref(), Some(address));
    let listed = store.chats_of(local, 10).await.expect("chats");
    let listed = listed.iter().find(|v| v.chat.id == chat).expect("listed");
    assert_eq!(listed.others[0].remote_address.as_deref(), Some(address));
    let context = store.send_context(chat, local).await.expect("context").expect("member");
    assert_eq!(context.members, members);
    let context = store.send_context(chat, remote.id).await.expect("context").expect("member");
    assert_eq!(context.recipients.len(), 1);
    assert!(context.recipients[0].user_id == local && context.recipients[0].has_sender_as_contact);

    // Messages at the seqs the hub gave them, out of order.
    let before = (store.cursor(local).await.expect("cursor"), store.cursor(remote.id).await.expect("cursor"));
    let mut at5 = new_message(chat, remote.id, "h5", "five");
    at5.sent_at = 2_000;
    let (stored, created, updates) = store.put_message_at(at5.clone(), 5, vec![local]).await.expect("put");
    assert!(created);
    assert_eq!((stored.seq, stored.sender_id, stored.content.clone()), (5, remote.id, text("five")));
    assert!(matches!(&updates[..], [(who, u)] if *who == local && u.cursor == Some(before.0 + 1)
        && matches!(&u.event, Event::MessageNew { message } if message.seq == 5)));
    let mut at3 = new_message(chat, local, "h3", "three");
    at3.sent_at = 1_500;
    let (stored3, created, updates) = store.put_message_at(at3, 3, vec![local, remote.id]).await.expect("put");
    assert!(created && stored3.seq == 3);
    assert_eq!(updates.len(), 2);
    let history = store.history(local, chat, Page::Before { seq: i64::MAX, limit: 10 }).await.expect("history");
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 5]);
    let view = store.chat_view(local, chat).await.expect("view").expect("member");
    assert_eq!((view.chat.last_seq, view.chat.updated_at), (5, 2_000), "raised, never lowered");
    assert_eq!(view.last_message.map(|m| m.seq), Some(5));
    // The same seq again, or the same client id at another seq: the stored message, nothing new.
    let (dup, created, updates) =
        store.put_message_at(new_message(chat, remote.id, "other", "x"), 5, vec![local]).await.expect("dup seq");
    assert!(!created && updates.is_empty());
    assert_eq!(dup, stored);
    let (dup, created, updates) = store.put_message_at(at5, 6, vec![local]).await.expect("dup client id");
    assert!(!created && updates.is_empty());
    assert_eq!(dup.seq, 5);
    assert_eq!(store.message(chat, 6).await.expect("get"), None);
    let stream = store.updates_after(local, before.0, 100).await.expect("updates");
    let seqs: Vec<_> = stream
        .iter()
        .filter_map(|u| match &u.event {
            Event::MessageNew { message } if message.chat_id == chat => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![5, 3], "one update per stored message, in the order stored");
    assert_eq!(store.cursor(remote.id).await.expect("cursor"), before.1 + 1);
    assert!(matches!(
        store.put_message_at(new_message(chat + 999_999, local, "z", "z"), 1, vec![local]).await,
        Err(StoreError::NotFound)
    ));
    // A send here continues after the highest seq.
    let (next, created, _) =
        store.append_message(new_message(chat, local, "local", "after"), vec![local, remote.id]).await.expect("send");
    assert!(created);
    assert_eq!(next.seq, 6);
    let (next, _, _) =
        store.append_message(new_message(hosted, local, "local", "hosted"), vec![local]).await.expect("send");
    assert_eq!(next.seq, 1, "chats hosted here are untouched");

    // The queues towards peers.
    let first = store.enqueue_outbound("b.example", "e1", 100).await.expect("enqueue");
    let second_id = store.enqueue_outbound("a.example", "e2", 101).await.expect("enqueue");
    let third = store.enqueue_outbound("b.example", "e3", 102).await.expect("enqueue");
    let fourth = store.enqueue_outbound("b.example", "e4", 103).await.expect("enqueue");
    assert!(first < second_id && second_id < third && third < fourth);
    let queued = store.outbound("b.example", 2).await.expect("outbound");
    assert_eq!(queued.iter().map(|e| (e.id, e.body.as_str())).collect::<Vec<_>>(), vec![(first, "e1"), (third, "e3")]);
    assert!(queued.iter().all(|e| e.peer == "b.example") && queued[0].created_at == 100);
    assert!(store.outbound("nobody.example", 10).await.expect("outbound").is_empty());
    let depths = store.queue_depths().await.expect("depths");
    let depths: Vec<_> = depths.iter().map(|d| (d.peer.as_str(), d.events, d.oldest_at)).collect();
    assert_eq!(depths, vec![("a.example", 1, 101), ("b.example", 3, 100)]);
    store.remove_outbound("a.example", &[first]).await.expect("not a's");
    store.remove_outbound("b.example", &[first, third]).await.expect("remove");
    store.remove_outbound("b.example", &[]).await.expect("remove nothing");
    let left = store.outbound("b.example", 10).await.expect("outbound");
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), vec![fourth]);
    store.enqueue_outbound("c.example", "e5", 104).await.expect("enqueue");
    assert_eq!(
        store.expire_outbound(104).await.expect("expire"),
        vec![("a.example".to_owned(), 1), ("b.example".to_owned(), 1)]
    );
    assert!(store.expire_outbound(104).await.expect("expire").is_empty());
    let depths = store.queue_depths().await.expect("depths");
    assert_eq!(depths.iter().map(|d| (d.peer.as_str(), d.events)).collect::<Vec<_>>(), vec![("c.example", 1)]);

    // Delivery leases: one holder per peer at a time, renewed by it, taken over once lapsed.
    assert!(store.lease_delivery("b.example", "node-1", 1_000, 2_000).await.expect("lease"), "free");
    assert!(!store.lease_delivery("b.example", "node-2", 1_500, 2_500).await.expect("lease"), "held by node-1");
    assert!(store.lease_delivery("a.example", "node-2", 1_500, 2_500).await.expect("lease"), "per peer");
    assert!(store.lease_delivery("b.example", "node-1", 1_900, 3_000).await.expect("lease"), "renewed");
    assert!(!store.lease_delivery("b.example", "node-2", 2_500, 3_500).await.expect("lease"), "renewal counted");
    assert!(store.lease_delivery("b.example", "node-2", 3_000, 4_000).await.expect("lease"), "lapsed: taken over");
    assert!(!store.lease_delivery("b.example", "node-1", 3_100, 4_100).await.expect("lease"), "node-1 lost it");
    let mut racers = JoinSet::new();
    for i in 0..6 {
        let store = store.clone();
        racers.spawn(
            async move { store.lease_delivery("d.example", &format!("racer-{i}"), 10, 20).await.expect("lease") },
        );
    }
    assert_eq!(racers.join_all().await.iter().filter(|&&won| won).count(), 1, "one racer wins a free lease");

    // Transactions received from peers.
    assert!(!store.inbound_seen("b.example", "t1").await.expect("seen"));
    store.record_inbound("b.example", "t1", 200).await.expect("record");
    store.record_inbound("b.example", "t1", 201).await.expect("record again");
    store.record_inbound("b.example", "t2", 205).await.expect("record");
    assert!(store.inbound_seen("b.example", "t1").await.expect("seen"));
    assert!(!store.inbound_seen("a.example", "t1").await.expect("seen"), "per peer");
    assert_eq!(store.prune_inbound(205).await.expect("prune"), 1, "recorded once, at its first time");
    assert!(!store.inbound_seen("b.example", "t1").await.expect("seen"));
    assert!(store.inbound_seen("b.example", "t2").await.expect("seen"));

    // Nonces of signed requests: good once per peer until their request is stale, then again.
    let nonce = "0123456789abcdef0123456789abcdef";
    assert!(store.first_use_of_nonce("b.example", nonce, 1_000, 100).await.expect("nonce"), "first use");
    assert!(!store.first_use_of_nonce("b.example", nonce, 1_500, 200).await.expect("nonce"), "a replay");
    assert!(!store.first_use_of_nonce("b.example", nonce, 2_000, 1_000).await.expect("nonce"), "stale at 1 000");
    assert!(store.first_use_of_nonce("a.example", nonce, 1_000, 200).await.expect("nonce"), "per peer");
    assert!(store.first_use_of_nonce("b.example", nonce, 3_000, 1_001).await.expect("nonce"), "stale: forgotten");
    assert!(!store.first_use_of_nonce("b.example", nonce, 3_000, 2_000).await.expect("nonce"), "recorded anew");
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        racers.spawn(async move { store.first_use_of_nonce("c.example", nonce, 5_000, 10).await.expect("nonce") });
    }
    assert_eq!(racers.join_all().await.iter().filter(|&&first| first).count(), 1, "one racer uses a nonce");
    assert_eq!(store.prune_nonces(1_001).await.expect("prune"), 1, "a.example's went stale at 1 000");
    assert!(!store.first_use_of_nonce("b.example", nonce, 3_000, 2_000).await.expect("nonce"), "kept");

    // Submissions to hubs, by digest.
    assert!(!store.was_submitted("d1").await.expect("submitted"));
    store.record_submission("d1", 100).await.expect("record");
    store.record_submission("d2", 100).await.expect("record");
    store.record_submission("d1", 300).await.expect("again, later");
    assert!(store.was_submitted("d1").await.expect("submitted"));
    assert!(!store.was_submitted("d3").await.expect("submitted"));
    assert_eq!(store.prune_submissions(200).await.expect("prune"), 1, "d2 only: d1 was renewed");
    assert!(store.was_submitted("d1").await.expect("submitted"));
    assert!(!store.was_submitted("d2").await.expect("submitted"));

    // Reports.
    let report = |reason: &str, from: Option<&str>| ReportRecord {
        id: 0,
        reporter: "+989120000001@here.example".into(),
        reported: address.into(),
        reason: reason.into(),
        from_provider: from.map(str::to_owned),
        created_at: 300,
    };
    let r1 = store.add_report(report("spam", None)).await.expect("report");
    let r2 = store.add_report(report("abuse", Some("other.example"))).await.expect("report");
    let r3 = store.add_report(report("more", None)).await.expect("report");
    assert!(r1 < r2 && r2 < r3);
    let newest = store.reports(2).await.expect("reports");
    assert_eq!(
        newest,
        vec![
            ReportRecord { id: r3, ..report("more", None) },
            ReportRecord { id: r2, ..report("abuse", Some("other.example")) }
        ]
    );
    assert_eq!(store.reports(10).await.expect("reports").len(), 3);
}

/// Where messages to other messengers stand: stored with the message, read back everywhere the
/// message is, changed only while not delivered and only when the state or reason differs,
/// each change an update for the sender alone; messages without a state are left alone.
async fn delivery_states(store: Arc<dyn Store>) {
    use peyvand_api::{ApiError, Delivery, DeliveryState, ErrorCode};
    let local = user(&store, "+989120000071").await;
    let remote = store.remote_user("+989120000072@zagros", "Babak", 1).await.expect("stand-in");
    let (chat, _) = store.open_direct_chat(local, remote.id, 1).await.expect("chat");
    let mut new = new_message(chat, local, "d1", "one");
    new.delivery = Some(Delivery::pending(None));
    let (message, _, updates) = store.append_message(new, vec![local]).await.expect("append");
    assert_eq!(message.delivery, Some(Delivery::pending(None)));
    assert!(matches!(&updates[0].1.event, Event::MessageNew { message } if message.delivery.is_some()));
    let (plain, _, _) = store.append_message(new_message(chat, local, "d2", "two"), vec![local]).await.expect("append");
    assert_eq!(plain.delivery, None);
    let mut received = new_message(chat, remote.id, "d3", "three");
    received.delivery = Some(Delivery::delivered());
    let (at3, _, _) = store.put_message_at(received, 3, vec![local]).await.expect("put");
    assert_eq!(at3.delivery, Some(Delivery::delivered()), "put_message_at keeps it too");
    assert_eq!(at3.sender_address.as_deref(), Some("+989120000072@zagros"));
    let cursor = store.cursor(local).await.expect("cursor");

    let down = ApiError::new(ErrorCode::PeerUnavailable, "zagros does not answer");
    let change = |seq, delivery| DeliveryChange { chat_id: chat, seq, delivery };
    let updates = store
        .set_delivery(vec![change(1, Delivery::pending(Some(&down))), change(2, Delivery::delivered())], 5)
        .await
        .expect("set");
    assert_eq!(updates.len(), 1, "the message without a state is left alone: {updates:?}");
    let (who, update) = &updates[0];
    assert_eq!(*who, local);
    assert_eq!(update.cursor, Some(cursor + 1));
    assert_eq!(
        update.event,
        Event::MessageDelivery { chat_id: chat, seq: 1, delivery: Delivery::pending(Some(&down)) }
    );
    assert_eq!(store.message(chat, 2).await.expect("read").expect("stored").delivery, None);
    // The same state for the same reason is no change (a retry failing again).
    let again = ApiError::new(ErrorCode::PeerUnavailable, "still down");
    assert!(store.set_delivery(vec![change(1, Delivery::pending(Some(&again)))], 6).await.expect("set").is_empty());
    // Failed, then pending again (a retried send), then delivered: final.
    let refused = ApiError::new(ErrorCode::PrivacyRestricted, "refused");
    let updates = store
        .set_delivery(
            vec![
                change(1, Delivery::failed(&refused)),
                change(1, Delivery::pending(None)),
                change(1, Delivery::delivered()),
            ],
            7,
        )
        .await
        .expect("set");
    let states: Vec<DeliveryState> = updates
        .iter()
        .map(|(_, u)| match &u.event {
            Event::MessageDelivery { delivery, .. } => delivery.state,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(states, [DeliveryState::Failed, DeliveryState::Pending, DeliveryState::Delivered]);
    assert!(store.set_delivery(vec![change(1, Delivery::failed(&refused))], 8).await.expect("set").is_empty());
    assert!(store.set_delivery(vec![change(99, Delivery::delivered())], 8).await.expect("no such message").is_empty());
    assert!(store.set_delivery(Vec::new(), 8).await.expect("nothing").is_empty());

    // Read back as it is now: the message, the history, the catch-up and the chat list.
    let delivered = Some(Delivery::delivered());
    assert_eq!(store.message(chat, 1).await.expect("read").expect("stored").delivery, delivered);
    let history = store.history(local, chat, Page::After { seq: 0, limit: 10 }).await.expect("history");
    assert_eq!(
        history.iter().map(|m| m.delivery.clone()).collect::<Vec<_>>(),
        [delivered.clone(), None, delivered.clone()]
    );
    // A sender on another messenger reads back with their address; people here without.
    let addresses: Vec<Option<&str>> = history.iter().map(|m| m.sender_address.as_deref()).collect();
    assert_eq!(addresses, [None, None, Some("+989120000072@zagros")]);
    let caught_up = store.updates_after(local, 0, 100).await.expect("updates");
    let first = caught_up.iter().find_map(|u| match &u.event {
        Event::MessageNew { message } if message.seq == 1 => Some(message.delivery.clone()),
        _ => None,
    });
    assert_eq!(first, Some(delivered.clone()));
    let told: Vec<i64> = caught_up
        .iter()
        .filter(|u| matches!(u.event, Event::MessageDelivery { .. }))
        .filter_map(|u| u.cursor)
        .collect();
    assert_eq!(told.len(), 4, "each change is in the sender's stream");
    let view = store.chat_view(local, chat).await.expect("view").expect("member");
    assert_eq!(view.last_message.expect("last").delivery, delivered);
    // Also as written by a send here of a person on another messenger, and in its updates.
    let (from_remote, _, updates) =
        store.append_message(new_message(chat, remote.id, "d4", "four"), vec![local]).await.expect("append");
    assert_eq!(from_remote.sender_address.as_deref(), Some("+989120000072@zagros"));
    assert!(matches!(&updates[0].1.event, Event::MessageNew { message } if *message == from_remote));
    assert_eq!(store.message(chat, from_remote.seq).await.expect("read"), Some(from_remote));
    // The stand-in has no stream: nothing was appended for it.
    assert!(store.updates_after(remote.id, 0, 10).await.map(|u| u.is_empty()).unwrap_or(true));
}

fn photo(sha256: &str, thumbnail: Option<&str>) -> peyvand_api::Media {
    peyvand_api::Media {
        kind: peyvand_api::MediaKind::Photo,
        mime: "image/png".into(),
        size: 10,
        sha256: sha256.into(),
        name: Some("عکس.png".into()),
        width: Some(2),
        height: Some(1),
        duration_ms: None,
        waveform: None,
        preview: None,
        thumbnail: thumbnail.map(|t| peyvand_api::Thumbnail { sha256: t.into(), size: 3, width: 2, height: 1 }),
    }
}

fn blob(sha256: &str, key: &str) -> BlobRecord {
    BlobRecord { sha256: sha256.into(), key: key.into(), size: 10 }
}

async fn media(store: Arc<dyn Store>) {
    let a = user(&store, "+989120000001").await;
    let b = user(&store, "+989120000002").await;
    let upload = |id: &str, owner: i64| UploadRecord {
        id: id.into(),
        owner,
        kind: "photo".into(),
        length: 10,
        offset: 0,
        metadata: "{}".into(),
        created_at: 100,
        expires_at: 1_000,
    };
    store.create_upload(upload("u1", a)).await.expect("create upload");
    assert_eq!(store.upload("u1").await.expect("read").map(|u| (u.owner, u.offset)), Some((a, 0)));
    assert_eq!(store.upload("nope").await.expect("read"), None);

    // The offset moves only from where it is, and never past the length.
    assert!(store.add_upload_piece("u1", 0, 4, "uploads/u1/0-x").await.expect("piece"));
    assert!(!store.add_upload_piece("u1", 0, 4, "uploads/u1/0-y").await.expect("stale offset"));
    assert!(!store.add_upload_piece("u1", 4, 7, "uploads/u1/4-y").await.expect("past the length"));
    assert!(store.add_upload_piece("u1", 4, 6, "uploads/u1/4-z").await.expect("piece"));
    assert!(!store.add_upload_piece("missing", 0, 1, "k").await.expect("no upload"));
    let pieces = store.upload_pieces("u1").await.expect("pieces");
    assert_eq!(
        pieces.iter().map(|p| (p.start, p.len, p.key.as_str())).collect::<Vec<_>>(),
        [(0, 4, "uploads/u1/0-x"), (4, 6, "uploads/u1/4-z")]
    );
    assert_eq!(store.upload("u1").await.expect("read").map(|u| u.offset), Some(10));

    // Finishing makes the item and its blobs, and the upload is gone.
    let item = MediaItemRecord { id: "u1".into(), owner: a, media: photo("h1", Some("t1")), created_at: 200 };
    let put = store.finish_upload(item.clone(), vec![blob("h1", "blobs/u1"), blob("t1", "blobs/u1-t")], 200).await;
    let put = put.expect("finish");
    assert_eq!(put.keys, ["blobs/u1", "blobs/u1-t"]);
    assert!(put.redundant.is_empty());
    assert_eq!(store.upload("u1").await.expect("read"), None);
    assert!(store.upload_pieces("u1").await.expect("pieces").is_empty());
    assert_eq!(store.media_item("u1").await.expect("item"), Some(item.clone()));
    assert!(matches!(store.finish_upload(item, vec![], 201).await, Err(StoreError::NotFound)));

    // The same bytes uploaded again keep the stored blob: the new key is redundant.
    store.create_upload(upload("u2", b)).await.expect("create upload");
    let item2 = MediaItemRecord { id: "u2".into(), owner: b, media: photo("h1", None), created_at: 300 };
    let put = store.finish_upload(item2, vec![blob("h1", "blobs/u2")], 300).await.expect("finish");
    assert_eq!(put.keys, ["blobs/u1"]);
    assert_eq!(put.redundant, ["blobs/u2"]);
    assert_eq!(store.blob("h1").await.expect("blob").map(|b| b.key), Some("blobs/u1".into()));

    // A message's media keeps its blobs after the items are gone; deleting it for everyone
    // lets them go.
    let (chat, _) = store.open_direct_chat(a, b, 1).await.expect("chat");
    let mut new = new_message(chat, a, "m1", "");
    new.content = Content::Media { media: Box::new(photo("h1", Some("t1"))), caption: Some("کپشن".into()) };
    let (message, ..) = store.append_message(new, vec![a, b]).await.expect("send");
    assert_eq!(store.expire_media_items(10_000).await.expect("expire"), 2);
    assert_eq!(store.media_item("u1").await.expect("item"), None);
    assert!(store.collect_blobs(10_000, 100).await.expect("collect").is_empty());
    store.delete_message(chat, message.seq, 2_000, vec![a, b]).await.expect("delete");
    // Touched too recently: kept.
    assert!(store.collect_blobs(150, 100).await.expect("collect").is_empty());
    let mut collected = store.collect_blobs(10_000, 100).await.expect("collect");
    collected.sort();
    assert_eq!(collected, ["blobs/u1", "blobs/u1-t"]);
    assert_eq!(store.blob("h1").await.expect("blob"), None);

    // put_blobs (a copy fetched from another provider) dedups the same way.
    let put = store.put_blobs(vec![blob("h2", "blobs/c1")], 500).await.expect("put");
    assert_eq!(put.keys, ["blobs/c1"]);
    let put = store.put_blobs(vec![blob("h2", "blobs/c2")], 600).await.expect("put");
    assert_eq!((put.keys, put.redundant), (vec!["blobs/c1".to_owned()], vec!["blobs/c2".to_owned()]));

    // Expiry and deletion of uploads; an account's deletion expires its uploads.
    store.create_upload(upload("u3", a)).await.expect("create upload");
    store.create_upload(UploadRecord { expires_at: 5_000, ..upload("u4", b) }).await.expect("create upload");
    assert!(store.add_upload_piece("u3", 0, 2, "uploads/u3/0-a").await.expect("piece"));
    let expired = store.expired_uploads(2_000, 10).await.expect("expired");
    assert_eq!(expired.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["u3"]);
    assert_eq!(store.delete_upload("u3").await.expect("delete"), ["uploads/u3/0-a"]);
    assert!(matches!(store.delete_upload("u3").await, Err(StoreError::NotFound)));
    store.delete_user(b).await.expect("delete account");
    let expired = store.expired_uploads(1, 10).await.expect("expired");
    assert_eq!(expired.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["u4"]);

    // The link key is made once.
    let key = store.media_link_key(vec![1; 32]).await.expect("key");
    assert_eq!(key, vec![1; 32]);
    assert_eq!(store.media_link_key(vec![2; 32]).await.expect("key"), vec![1; 32]);
}
