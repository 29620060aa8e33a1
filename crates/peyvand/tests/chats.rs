//! Two people chatting with every message operation, receipts, typing, privacy, blocking,
//! idempotent retries and search — against the real server, over real sockets.

mod common;

use common::{Server, code_of, pair, person, text};
use peyvand_api::{
    Audience, Content, ErrorCode, Event, ForwardSource, HistoryQuery, SendMessage, SettingsUpdate, StreamFrame, Update,
};
use peyvand_client::UpdateStream;

/// The next durable or ephemeral update on a stream, skipping `ready`, within the deadline.
async fn next_update(stream: &mut UpdateStream) -> Update {
    loop {
        let frame = tokio::time::timeout(common::DEADLINE, stream.next()).await.expect("an update in time");
        match frame.expect("stream open").expect("frame") {
            StreamFrame::Update { update } => return update,
            StreamFrame::Ready { .. } => continue,
            StreamFrame::ResyncRequired { cursor } => panic!("unexpected resync at {cursor}"),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Waits for an update matching `pred`, skipping others (presence, for instance).
async fn wait_for(stream: &mut UpdateStream, what: &str, pred: impl Fn(&Event) -> bool) -> Update {
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let update = tokio::time::timeout(left, next_update(stream))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        if pred(&update.event) {
            return update;
        }
    }
}

#[tokio::test]
async fn two_people_chat_with_every_message_operation_and_receipts() {
    let server = Server::start();
    let ali = person(&server, "+989121220001").await;
    let sara = person(&server, "+989121220002").await;
    let sara_laptop = common::sign_in(&server, "+989121220002", "laptop").await;
    let mut ali_stream = ali.client.updates_ws(ali.client.state().await.expect("state").cursor).await.expect("ws");
    let mut sara_stream = sara.client.updates_ws(0).await.expect("ws");
    let mut laptop_stream = sara_laptop.updates_ws(0).await.expect("ws");

    let chat = ali.client.open_direct(sara.id).await.expect("open");
    assert_eq!(chat.peer.as_ref().map(|p| p.id), Some(sara.id));

    // Send: both of Sara's devices get it live; Ali's other devices would too.
    let first = ali.client.send(chat.id, &text("m1", "سلام سارا")).await.expect("send");
    assert!(first.created);
    assert_eq!(first.message.seq, 1);
    for stream in [&mut sara_stream, &mut laptop_stream] {
        let got = wait_for(stream, "message_new", |e| matches!(e, Event::MessageNew { .. })).await;
        assert!(matches!(got.event, Event::MessageNew { ref message } if message.content.text() == Some("سلام سارا")));
        assert!(got.cursor.is_some());
    }
    wait_for(&mut ali_stream, "own message_new", |e| matches!(e, Event::MessageNew { message } if message.seq == 1))
        .await;

    // Delivery and read receipts reach the sender; reading on one device reads on all.
    sara.client.mark_delivered(chat.id, 1).await.expect("delivered");
    wait_for(&mut ali_stream, "delivered", |e| matches!(e, Event::Delivered { up_to: 1, .. })).await;
    sara.client.mark_read(chat.id, 1).await.expect("read");
    wait_for(&mut ali_stream, "read", |e| matches!(e, Event::Read { up_to: 1, .. })).await;
    wait_for(&mut laptop_stream, "read on another device", |e| {
        matches!(e, Event::ReadByMe { up_to: 1, unread: 0, .. })
    })
    .await;
    let ali_view = ali.client.chat(chat.id).await.expect("chat");
    assert_eq!((ali_view.peer_delivered_up_to, ali_view.peer_read_up_to), (1, 1));

    // Reply, edit (marked edited), reactions, forward, delete for me and for everyone.
    let reply = SendMessage { reply_to: Some(1), ..text("m2", "علیک سلام") };
    let reply = sara.client.send(chat.id, &reply).await.expect("reply").message;
    assert_eq!(reply.reply_to, Some(1));
    assert_eq!(
        code_of(sara.client.send(chat.id, &SendMessage { reply_to: Some(99), ..text("m3", "x") }).await),
        ErrorCode::BadRequest
    );
    let edited = ali.client.edit(chat.id, 1, Content::Text { text: "سلام سارا جان".into() }).await.expect("edit");
    assert!(edited.edited_at.is_some());
    wait_for(
        &mut sara_stream,
        "edit",
        |e| matches!(e, Event::MessageEdited { message } if message.edited_at.is_some()),
    )
    .await;
    assert_eq!(
        code_of(sara.client.edit(chat.id, 1, Content::Text { text: "not mine".into() }).await),
        ErrorCode::Forbidden
    );

    let reacted = sara.client.react(chat.id, 1, "❤️").await.expect("react");
    assert_eq!(reacted.reactions.len(), 1);
    wait_for(
        &mut ali_stream,
        "reaction",
        |e| matches!(e, Event::ReactionsChanged { seq: 1, reactions, .. } if reactions.len() == 1),
    )
    .await;
    // A reaction is one emoji: not a word, not reversed text, not several emoji.
    for not_one in ["abc", "سلامسلام", "\u{202E}مالس", "👍👍", "👍 ", "\u{200B}"] {
        assert_eq!(code_of(sara.client.react(chat.id, 1, not_one).await), ErrorCode::InvalidContent, "{not_one:?}");
    }
    sara.client.react(chat.id, 1, "👍🏽").await.expect("a skin tone is one emoji");
    let cleared = sara.client.unreact(chat.id, 1).await.expect("unreact");
    assert!(cleared.reactions.is_empty());

    let saved = ali.client.open_direct(ali.id).await.expect("saved messages");
    let forward = SendMessage {
        client_id: "fw1".into(),
        content: None,
        reply_to: None,
        forward: Some(ForwardSource { chat_id: chat.id, seq: reply.seq }),
        media: None,
    };
    let forwarded = ali.client.send(saved.id, &forward).await.expect("forward").message;
    assert_eq!(forwarded.forwarded_from.as_ref().map(|f| f.user_id), Some(sara.id));
    assert_eq!(forwarded.content, reply.content);

    sara.client.delete_message(chat.id, 1, false).await.expect("delete for me");
    wait_for(&mut laptop_stream, "deleted for me elsewhere", |e| {
        matches!(e, Event::MessagesDeleted { for_everyone: false, .. })
    })
    .await;
    let sara_history = sara.client.history(chat.id, &HistoryQuery::default()).await.expect("history").messages;
    assert_eq!(sara_history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
    let ali_history = ali.client.history(chat.id, &HistoryQuery::default()).await.expect("history").messages;
    assert_eq!(ali_history.len(), 2, "deleting for me leaves Ali's copy");
    assert_eq!(code_of(sara.client.message(chat.id, 1).await), ErrorCode::NotFound, "gone for Sara");
    assert_eq!(ali.client.message(chat.id, 1).await.expect("still Ali's").seq, 1);
    assert_eq!(code_of(ali.client.message(chat.id, i64::MIN).await), ErrorCode::NotFound);

    assert_eq!(code_of(ali.client.delete_message(chat.id, 2, true).await), ErrorCode::Forbidden, "only the sender");
    sara.client.delete_message(chat.id, 2, true).await.expect("delete for everyone");
    wait_for(
        &mut ali_stream,
        "deleted for everyone",
        |e| matches!(e, Event::MessagesDeleted { for_everyone: true, seqs, .. } if seqs == &vec![2]),
    )
    .await;
    let gone = ali.client.history(chat.id, &HistoryQuery::default()).await.expect("history").messages;
    assert_eq!(gone.iter().find(|m| m.seq == 2).map(|m| &m.content), Some(&Content::Deleted));

    // Typing is ephemeral: it arrives live and has no cursor.
    ali.client.typing(chat.id).await.expect("typing");
    let typing = wait_for(&mut sara_stream, "typing", |e| matches!(e, Event::Typing { .. })).await;
    assert_eq!(typing.cursor, None);

    // Messages must be valid.
    for bad in ["", "   ", &"x".repeat(4097), "bell\u{7}"] {
        assert_eq!(code_of(ali.client.send_text(chat.id, bad).await), ErrorCode::InvalidContent);
    }
    ali.client.send_text(chat.id, &"ب".repeat(4096)).await.expect("4096 Persian characters fit");
    // Strangers cannot read or write in the chat.
    let reza = person(&server, "+989121220003").await;
    assert_eq!(code_of(reza.client.send_text(chat.id, "hi").await), ErrorCode::NotFound);
    assert_eq!(code_of(reza.client.history(chat.id, &HistoryQuery::default()).await), ErrorCode::NotFound);
}

#[tokio::test]
async fn retried_sends_return_the_same_message() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121220011", "+989121220012").await;
    let first = ali.client.send(chat.id, &text("retry-1", "once")).await.expect("send");
    let again = ali.client.send(chat.id, &text("retry-1", "once")).await.expect("retry");
    assert!(first.created && !again.created);
    assert_eq!(first.message, again.message);
    assert_eq!(
        code_of(ali.client.send(chat.id, &text("retry-1", "something else")).await),
        ErrorCode::IdempotencyConflict
    );
    // Even after the recipient blocks the sender, the retry gets the stored message.
    sara.client.block(ali.id).await.expect("block");
    let late = ali.client.send(chat.id, &text("retry-1", "once")).await.expect("retry after a block");
    assert!(!late.created && late.message == first.message);
    assert_eq!(code_of(ali.client.send(chat.id, &text("retry-new", "new")).await), ErrorCode::Blocked);
    sara.client.unblock(ali.id).await.expect("unblock");
    // Concurrent retries of the same send also store one message.
    let sends = (0..8).map(|_| {
        let client = ali.client.clone();
        tokio::spawn(async move { client.send(chat.id, &text("retry-2", "twice?")).await })
    });
    let mut created = 0;
    for send in sends {
        if send.await.expect("task").expect("send").created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    let history = sara.client.history(chat.id, &HistoryQuery::default()).await.expect("history").messages;
    assert_eq!(history.len(), 2);
}

#[tokio::test]
async fn the_chat_list_history_pages_and_search() {
    let server = Server::start();
    let ali = person(&server, "+989121220021").await;
    let sara = person(&server, "+989121220022").await;
    let reza = person(&server, "+989121220023").await;
    sara.client
        .update_profile(&peyvand_api::ProfileUpdate {
            display_name: Some("سارا كريمي".into()), ..Default::default()
        })
        .await
        .expect("name");
    let with_sara = ali.client.open_direct(sara.id).await.expect("open");
    let with_reza = ali.client.open_direct(reza.id).await.expect("open");
    for i in 1..=25 {
        ali.client.send_text(with_sara.id, &format!("پیام {i}")).await.expect("send");
    }
    sara.client.send_text(with_sara.id, "این كتاب را خواندی؟").await.expect("send");
    reza.client.send_text(with_reza.id, "سلام").await.expect("send");

    let chats = ali.client.chats().await.expect("chats").chats;
    assert_eq!(
        chats.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![with_reza.id, with_sara.id],
        "newest activity first"
    );
    assert_eq!((chats[0].unread, chats[1].unread), (1, 1));
    assert_eq!(chats[1].last_message.as_ref().and_then(|m| m.content.text()), Some("این كتاب را خواندی؟"));
    let sara_chats = sara.client.chats().await.expect("chats").chats;
    assert_eq!((sara_chats[0].unread, sara_chats[0].read_up_to), (0, 26), "replying reads the chat");

    let newest = ali
        .client
        .history(with_sara.id, &HistoryQuery { limit: Some(10), ..Default::default() })
        .await
        .expect("page")
        .messages;
    assert_eq!(newest.iter().map(|m| m.seq).collect::<Vec<_>>(), (17..=26).collect::<Vec<_>>());
    let older = ali
        .client
        .history(with_sara.id, &HistoryQuery { before: Some(17), limit: Some(10), ..Default::default() })
        .await
        .expect("page")
        .messages;
    assert_eq!(older.iter().map(|m| m.seq).collect::<Vec<_>>(), (7..=16).collect::<Vec<_>>());
    let forward = ali
        .client
        .history(with_sara.id, &HistoryQuery { after: Some(20), limit: Some(3), ..Default::default() })
        .await
        .expect("page")
        .messages;
    assert_eq!(forward.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![21, 22, 23]);
    let both = ali.client.history(with_sara.id, &HistoryQuery { after: Some(1), before: Some(5), limit: None }).await;
    assert_eq!(code_of(both), ErrorCode::BadRequest);

    // Persian-normalised search: Arabic kaf/yeh and a zero-width non-joiner do not matter.
    let found = ali.client.search("کتاب", None).await.expect("search");
    assert_eq!(found.messages.len(), 1);
    let found = ali.client.search("سارا کریمی", None).await.expect("search");
    assert_eq!(found.chats.iter().map(|c| c.id).collect::<Vec<_>>(), vec![with_sara.id]);
    let found = ali.client.search("پیام ۲۵", None).await.expect("Persian digits");
    assert_eq!(found.messages.len(), 1);
    assert!(reza.client.search("کتاب", None).await.expect("search").messages.is_empty(), "only one's own chats");
}

/// Queries with nothing visible in them: NUL, other controls, zero-width and direction
/// characters, Hangul fillers.
const BLANK_QUERIES: [&str; 8] = [
    "",
    "\0",
    "\0\0\u{7}",
    "\u{200B}\u{200D}\u{FEFF}",
    "\u{200E}\u{200F}\u{202E}\u{2066}",
    "\u{3164}",
    "\u{115F}\u{1160}\u{FFA0}",
    " \u{2800}\u{00A0} ",
];

/// Every search refuses a query that is empty once cleaned, instead of matching everything.
async fn blank_searches_are_refused(server: &Server) {
    let (ali, sara, chat) = pair(server, "+989121220031", "+989121220032").await;
    for (who, name) in [(&ali, "Ali Karimi"), (&sara, "Sara Karimi")] {
        let update = peyvand_api::ProfileUpdate { display_name: Some(name.into()), ..Default::default() };
        who.client.update_profile(&update).await.expect("name");
    }
    ali.client.send_text(chat.id, "hello").await.expect("send");
    sara.client.send_text(chat.id, "سلام").await.expect("send");
    for blank in BLANK_QUERIES {
        assert_eq!(code_of(ali.client.search(blank, None).await), ErrorCode::BadRequest, "search {blank:?}");
        assert_eq!(code_of(ali.client.search_users(blank).await), ErrorCode::BadRequest, "people {blank:?}");
    }
    // What is left after cleaning is what is looked for.
    let found = ali.client.search("\0hel\u{200B}lo\u{3164}", None).await.expect("search");
    assert_eq!(found.messages.iter().map(|m| m.message.seq).collect::<Vec<_>>(), vec![1]);
    let people = ali.client.search_users("\u{200F}karimi\0").await.expect("people");
    assert_eq!(people.users.len(), 2);
}

#[tokio::test]
async fn blank_searches_are_refused_on_the_embedded_store() {
    blank_searches_are_refused(&Server::start()).await;
}

#[tokio::test]
async fn blank_searches_are_refused_on_postgres_and_nats() {
    let cluster = common::cluster::Cluster::start("search", 1, &[]);
    blank_searches_are_refused(&cluster.nodes[0]).await;
}

#[tokio::test]
async fn privacy_settings_blocking_and_the_daily_limit_on_strangers() {
    let server = Server::start_with(
        &common::temp_dir("privacy"),
        &[("PEYVAND_SERVICE__LIMITS__NEW_CHATS_WITH_STRANGERS_PER_DAY", "3")],
    );
    let ali = person(&server, "+989121220031").await;
    let sara = person(&server, "+989121220032").await;

    // Sara accepts messages from contacts only.
    sara.client
        .update_settings(&SettingsUpdate { messages: Some(Audience::Contacts), ..Default::default() })
        .await
        .expect("settings");
    assert_eq!(code_of(ali.client.open_direct(sara.id).await), ErrorCode::PrivacyRestricted);
    sara.client.import_contacts(vec!["09121220031".into()]).await.expect("sara adds ali");
    let chat = ali.client.open_direct(sara.id).await.expect("now allowed");
    ali.client.send_text(chat.id, "hi").await.expect("send");
    sara.client.remove_contact(ali.id).await.expect("removed");
    assert_eq!(code_of(ali.client.send_text(chat.id, "again").await), ErrorCode::PrivacyRestricted);
    sara.client
        .update_settings(&SettingsUpdate { messages: Some(Audience::Everybody), ..Default::default() })
        .await
        .expect("open");

    // Last seen: hidden from everybody, Ali sees no presence.
    sara.client
        .update_settings(&SettingsUpdate { last_seen: Some(Audience::Nobody), ..Default::default() })
        .await
        .expect("settings");
    assert_eq!(ali.client.user(sara.id).await.expect("profile").presence, None);
    sara.client
        .update_settings(&SettingsUpdate { last_seen: Some(Audience::Everybody), ..Default::default() })
        .await
        .expect("settings");
    assert!(ali.client.user(sara.id).await.expect("profile").presence.is_some());

    // Blocking works both ways for messages, and the block list shows it.
    sara.client.block(ali.id).await.expect("block");
    assert_eq!(code_of(ali.client.send_text(chat.id, "blocked?").await), ErrorCode::Blocked);
    assert_eq!(code_of(sara.client.send_text(chat.id, "and back?").await), ErrorCode::Blocked);
    assert_eq!(
        sara.client.blocks().await.expect("blocks").users.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ali.id]
    );
    assert_eq!(ali.client.user(sara.id).await.expect("profile").presence, None, "a blocker's presence is hidden");
    assert_eq!(code_of(sara.client.block(sara.id).await), ErrorCode::BadRequest);
    sara.client.unblock(ali.id).await.expect("unblock");
    ali.client.send_text(chat.id, "back").await.expect("send");

    // New chats with strangers: three a day here (the chat with Sara was one: she has Ali in
    // her contacts, not he her), then refused; contacts don't count.
    let strangers = [
        person(&server, "+989121220033").await,
        person(&server, "+989121220034").await,
        person(&server, "+989121220035").await,
    ];
    ali.client.open_direct(strangers[0].id).await.expect("1st stranger");
    ali.client.open_direct(strangers[1].id).await.expect("2nd stranger");
    assert_eq!(code_of(ali.client.open_direct(strangers[2].id).await), ErrorCode::RateLimited);
    ali.client.import_contacts(vec!["09121220035".into()]).await.expect("add as contact");
    ali.client.open_direct(strangers[2].id).await.expect("contacts are not strangers");
    // Opening an existing chat again is not a new chat.
    ali.client.open_direct(strangers[0].id).await.expect("existing");
}

#[tokio::test]
async fn presence_goes_online_and_offline_with_the_stream() {
    let server = Server::start();
    let ali = person(&server, "+989121220041").await;
    let sara = person(&server, "+989121220042").await;
    ali.client.open_direct(sara.id).await.expect("open");
    let mut sara_stream = sara.client.updates_ws(0).await.expect("ws");
    let ali_stream = ali.client.updates_ws(0).await.expect("ws");
    wait_for(&mut sara_stream, "ali online", |e| matches!(e, Event::Presence { presence, .. } if presence.online))
        .await;
    assert!(sara.client.user(ali.id).await.expect("profile").presence.is_some_and(|p| p.online));
    ali_stream.close().await.expect("closed");
    let offline = wait_for(
        &mut sara_stream,
        "ali offline",
        |e| matches!(e, Event::Presence { presence, .. } if !presence.online),
    )
    .await;
    assert!(matches!(offline.event, Event::Presence { presence, .. } if presence.last_seen.is_some()));
    let profile = sara.client.user(ali.id).await.expect("profile");
    assert!(profile.presence.is_some_and(|p| !p.online && p.last_seen.is_some()));
}

#[tokio::test]
async fn direction_controls_in_messages_are_closed_within_their_line() {
    let server = Server::start();
    let (ali, sara, chat) = common::pair(&server, "+989121220041", "+989121220042").await;
    let text = |c: &peyvand_api::Content| match c {
        peyvand_api::Content::Text { text } => text.clone(),
        other => panic!("not text: {other:?}"),
    };
    // An override left open would turn around whatever a client shows after the message.
    let sent = ali.client.send_text(chat.id, "\u{202E}gnp.exe\nline two\u{2069}").await.expect("send").message;
    assert_eq!(text(&sent.content), "\u{202E}gnp.exe\u{202C}\nline two");
    let edited = ali
        .client
        .edit(chat.id, sent.seq, peyvand_api::Content::Text { text: "ok \u{2067}عربی".into() })
        .await
        .expect("edit");
    assert_eq!(text(&edited.content), "ok \u{2067}عربی\u{2069}");
    let seen = sara.client.history(chat.id, &Default::default()).await.expect("history").messages;
    assert_eq!(text(&seen[0].content), "ok \u{2067}عربی\u{2069}", "stored as balanced");
}
