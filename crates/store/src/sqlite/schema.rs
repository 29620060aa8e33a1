//! The embedded schema and its versioned migrations.

use rusqlite::Connection;

use crate::{StoreError, StoreResult};

/// Each migration runs once, in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    phone TEXT UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    name_folded TEXT NOT NULL DEFAULT '',
    username TEXT,
    username_folded TEXT UNIQUE,
    bio TEXT NOT NULL DEFAULT '',
    pin_hash TEXT,
    privacy TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    update_cursor INTEGER NOT NULL DEFAULT 0,
    pruned_through INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_active INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE codes (
    phone TEXT PRIMARY KEY,
    code_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE limits (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE contacts (
    owner_id INTEGER NOT NULL,
    phone TEXT NOT NULL,
    PRIMARY KEY (owner_id, phone)
) WITHOUT ROWID;
CREATE INDEX contacts_phone ON contacts (phone);
CREATE TABLE blocks (
    owner_id INTEGER NOT NULL,
    target_id INTEGER NOT NULL,
    PRIMARY KEY (owner_id, target_id)
) WITHOUT ROWID;
CREATE TABLE chats (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    direct_key TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE members (
    chat_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    read_up_to INTEGER NOT NULL DEFAULT 0,
    delivered_up_to INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_user ON members (user_id);
CREATE TABLE messages (
    chat_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender_id INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    content TEXT NOT NULL,
    folded TEXT NOT NULL,
    reply_to INTEGER,
    forwarded_from TEXT,
    sent_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_client_id ON messages (chat_id, sender_id, client_id);
CREATE TABLE hidden (
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, chat_id, seq)
) WITHOUT ROWID;
CREATE TABLE reactions (
    chat_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    emoji TEXT NOT NULL,
    PRIMARY KEY (chat_id, seq, user_id)
) WITHOUT ROWID;
CREATE TABLE updates (
    user_id INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (user_id, cursor)
) WITHOUT ROWID;
CREATE INDEX updates_at ON updates (at);
"#,
    r#"
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE presence (
    user_id INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, node_id)
) WITHOUT ROWID;
CREATE INDEX presence_node ON presence (node_id);
"#,
    r#"
ALTER TABLE users ADD COLUMN remote_address TEXT;
CREATE UNIQUE INDEX users_remote_address ON users (remote_address);
ALTER TABLE chats ADD COLUMN hub TEXT;
ALTER TABLE chats ADD COLUMN hub_chat INTEGER;
CREATE UNIQUE INDEX chats_hub ON chats (hub, hub_chat);
CREATE TABLE outbound (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outbound_peer ON outbound (peer, id);
CREATE INDEX outbound_created ON outbound (created_at);
CREATE TABLE inbound_txns (
    peer TEXT NOT NULL,
    txn TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (peer, txn)
) WITHOUT ROWID;
CREATE INDEX inbound_txns_at ON inbound_txns (at);
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter TEXT NOT NULL,
    reported TEXT NOT NULL,
    reason TEXT NOT NULL,
    from_provider TEXT,
    created_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE delivery_leases (
    peer TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // A new message's update refers to its row in `messages` instead of holding a copy of
    // it: the copy was written once per recipient, and most of what every send wrote.
    r#"
CREATE TABLE updates_v5 (
    user_id INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    at INTEGER NOT NULL,
    event TEXT,
    chat_id INTEGER,
    seq INTEGER,
    PRIMARY KEY (user_id, cursor),
    CHECK ((event IS NULL) = (chat_id IS NOT NULL AND seq IS NOT NULL))
) WITHOUT ROWID;
INSERT INTO updates_v5 (user_id, cursor, at, event) SELECT user_id, cursor, at, event FROM updates;
DROP TABLE updates;
ALTER TABLE updates_v5 RENAME TO updates;
CREATE INDEX updates_at ON updates (at);
"#,
    // The index behind idempotent sends leads with the client id rather than the chat: ids
    // that grow with time (as the client library makes them) then land on the index's newest
    // pages, which every send of a commit shares, instead of on one page per chat. Its key and
    // what it makes unique are unchanged.
    r#"
DROP INDEX messages_client_id;
CREATE UNIQUE INDEX messages_client_id ON messages (client_id, chat_id, sender_id);
"#,
    // The nonces of signed requests from peers, kept until their requests go stale, so that a
    // request captured before a restart is refused after it too.
    r#"
CREATE TABLE seen_nonces (
    peer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    stale_after INTEGER NOT NULL,
    PRIMARY KEY (peer, nonce)
) WITHOUT ROWID;
CREATE INDEX seen_nonces_stale_after ON seen_nonces (stale_after);
"#,
    // What this provider submitted to the hubs of rooms it follows (the digest of each
    // event's canonical form): an event attributed to one of its people is accepted only if
    // it is one of these.
    r#"
CREATE TABLE submissions (
    digest TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX submissions_at ON submissions (at);
"#,
    // Where a message to another messenger stands (JSON of `Delivery`); NULL for the others.
    r#"
ALTER TABLE messages ADD COLUMN delivery TEXT;
"#,
    // Media: resumable uploads and the runs of bytes stored so far, finished media items, and
    // the blobs by hash. A message's media is found by the hashes in its content: the two
    // expression indexes let a blob's last reference be looked up without a table of its own.
    r#"
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    owner INTEGER NOT NULL,
    kind TEXT NOT NULL,
    length INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_expires_at ON uploads (expires_at);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE TABLE upload_pieces (
    upload_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    len INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (upload_id, start)
) WITHOUT ROWID;
CREATE TABLE media_items (
    id TEXT PRIMARY KEY,
    owner INTEGER NOT NULL,
    media TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    thumbnail_sha256 TEXT,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX media_items_sha256 ON media_items (sha256);
CREATE INDEX media_items_thumbnail ON media_items (thumbnail_sha256) WHERE thumbnail_sha256 IS NOT NULL;
CREATE INDEX media_items_created_at ON media_items (created_at);
CREATE INDEX media_items_owner ON media_items (owner);
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    touched_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX blobs_touched_at ON blobs (touched_at);
CREATE INDEX messages_media ON messages (json_extract(content, '$.media.sha256'))
    WHERE json_extract(content, '$.type') = 'media';
CREATE INDEX messages_media_thumbnail ON messages (json_extract(content, '$.media.thumbnail.sha256'))
    WHERE json_extract(content, '$.type') = 'media';
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"#,
];

/// Brings the database to the newest schema; refuses one newer than this binary knows.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Unavailable(format!(
            "the database schema is version {version}, newer than this binary's {known}: upgrade peyvand"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database with only the first `version` migrations run, as a binary of
    /// that time left it.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).expect("old migration");
        }
        conn.pragma_update(None, "user_version", version as i64).expect("version");
        conn
    }

    /// A database made before updates referred to messages keeps its updates, and takes
    /// both kinds afterwards; a row that is both or neither is refused.
    #[test]
    fn updates_become_references_and_keep_what_was_there() {
        let mut conn = at_version(4);
        conn.execute("INSERT INTO updates (user_id, cursor, at, event) VALUES (1, 1, 5, '{\"old\":1}')", [])
            .expect("old update");
        migrate(&mut conn).expect("migrate");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let old: (i64, String, Option<i64>) = conn
            .query_row("SELECT at, event, chat_id FROM updates WHERE user_id = 1 AND cursor = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("kept");
        assert_eq!(old, (5, "{\"old\":1}".to_string(), None));
        conn.execute("INSERT INTO updates (user_id, cursor, at, chat_id, seq) VALUES (1, 2, 6, 7, 8)", [])
            .expect("a reference");
        for bad in [
            "INSERT INTO updates (user_id, cursor, at) VALUES (1, 3, 7)",
            "INSERT INTO updates (user_id, cursor, at, event, chat_id, seq) VALUES (1, 3, 7, '{}', 7, 8)",
            "INSERT INTO updates (user_id, cursor, at, chat_id) VALUES (1, 3, 7, 7)",
        ] {
            assert!(conn.execute(bad, []).is_err(), "{bad}");
        }
        let indexed: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'updates_at'", [], |r| {
                r.get(0)
            })
            .expect("index");
        assert_eq!(indexed, 1);
    }

    /// Rebuilding the client-id index keeps the messages and what the index makes unique: one
    /// client id per sender in a chat, and the same id free for another sender or chat.
    #[test]
    fn the_client_id_index_is_rebuilt_and_still_unique() {
        let mut conn = at_version(5);
        let insert = |conn: &Connection, chat: i64, seq: i64, sender: i64, id: &str| {
            conn.execute(
                "INSERT INTO messages (chat_id, seq, sender_id, client_id, content, folded, sent_at) \
                 VALUES (?1, ?2, ?3, ?4, '{}', '', 0)",
                rusqlite::params![chat, seq, sender, id],
            )
        };
        insert(&conn, 1, 1, 10, "a").expect("old message");
        migrate(&mut conn).expect("migrate");
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_index_info('messages_client_id') ORDER BY seqno")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("index columns");
        assert_eq!(columns, ["client_id", "chat_id", "sender_id"]);
        assert!(insert(&conn, 1, 2, 10, "a").is_err(), "the same id twice from one sender in one chat");
        insert(&conn, 1, 2, 11, "a").expect("another sender");
        insert(&conn, 2, 1, 10, "a").expect("another chat");
        let seq: i64 = conn
            .query_row("SELECT seq FROM messages WHERE chat_id = 1 AND sender_id = 10 AND client_id = 'a'", [], |r| {
                r.get(0)
            })
            .expect("found by the index's key");
        assert_eq!(seq, 1);
    }
}
