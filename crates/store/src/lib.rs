//! Storage: the traits the service layer uses, and the embedded backend.
//!
//! The traits are domain operations, not a key-value API: each write is one atomic
//! transaction that also appends the updates it causes to the affected people's update
//! streams, so a message and the updates announcing it are stored together or not at all.
//! A write returns only after it is durable.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded, the zero-set-up default) and
//! [`postgres::PgStore`] (PostgreSQL, shared by the nodes of a cluster). The contract suite in
//! `contract` is what every backend must pass: test support, compiled only for tests and with
//! the `contract` feature (which this crate's own tests turn on), not into the server.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod postgres;
mod records;
pub mod sqlite;

use async_trait::async_trait;
use peyvand_api::{Event, Message, PrivacySettings, Reaction, Update};

pub use records::*;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("the username is taken")]
    UsernameTaken,
    #[error("this client id was already used for a different message")]
    IdempotencyConflict,
    #[error("the cursor is older than the oldest kept update ({oldest_kept})")]
    CursorTooOld { oldest_kept: i64 },
    #[error("the cursor is ahead of the stream's newest ({newest})")]
    CursorAhead { newest: i64 },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("storage failed: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Accounts, sessions, sign-in codes, contacts, blocks.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Returns the live account with this phone number, or creates it. `true` when created.
    async fn user_by_phone_or_create(&self, phone: &str, now: i64) -> StoreResult<(UserRecord, bool)>;
    async fn user_by_phone(&self, phone: &str) -> StoreResult<Option<UserRecord>>;
    async fn user(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    async fn user_by_username(&self, folded_username: &str) -> StoreResult<Option<UserRecord>>;
    /// Users whose folded display name or username contains `folded_query`.
    async fn search_users(&self, folded_query: &str, limit: u32) -> StoreResult<Vec<UserRecord>>;
    async fn update_profile(&self, id: i64, change: ProfileChange) -> StoreResult<UserRecord>;
    async fn set_privacy(&self, id: i64, privacy: PrivacySettings) -> StoreResult<()>;
    async fn set_pin_hash(&self, id: i64, pin_hash: Option<String>) -> StoreResult<()>;
    async fn set_last_seen(&self, id: i64, at: i64) -> StoreResult<()>;
    /// Erases the person's data; see ARCHITECTURE.md for what stays.
    async fn delete_user(&self, id: i64) -> StoreResult<()>;

    async fn put_code(&self, code: CodeRecord) -> StoreResult<()>;
    async fn code(&self, phone: &str) -> StoreResult<Option<CodeRecord>>;
    /// Counts one attempt at the code, atomically, and returns it with the attempt counted;
    /// `None` when there is no code or it already had `max_attempts`. Counting before
    /// comparing means parallel guesses cannot get past the limit.
    async fn attempt_code(&self, phone: &str, max_attempts: u32) -> StoreResult<Option<CodeRecord>>;
    /// Uses the code up; `false` if it was already gone (another request used it first).
    async fn take_code(&self, phone: &str) -> StoreResult<bool>;

    async fn create_session(&self, user_id: i64, name: &str, token_hash: &[u8], now: i64)
    -> StoreResult<SessionRecord>;
    async fn session_by_token(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: i64, now: i64) -> StoreResult<()>;
    async fn sessions(&self, user_id: i64) -> StoreResult<Vec<SessionRecord>>;
    /// Revokes one session of the user; `false` when there was none with that id.
    async fn revoke_session(&self, user_id: i64, session_id: i64) -> StoreResult<bool>;
    async fn revoke_all_sessions(&self, user_id: i64) -> StoreResult<()>;

    /// Adds phone numbers (E.164) to the owner's contacts.
    async fn add_contacts(&self, owner: i64, phones: &[String]) -> StoreResult<()>;
    async fn remove_contact(&self, owner: i64, phone: &str) -> StoreResult<()>;
    /// The live accounts among the owner's contacts.
    async fn contacts(&self, owner: i64) -> StoreResult<Vec<UserRecord>>;
    /// Whether `owner` has `other`'s number in their contacts: a person here by their phone, a
    /// person on another messenger (a stand-in) by the number in their address.
    async fn has_contact(&self, owner: i64, other: i64) -> StoreResult<bool>;
    /// Whether `owner` has this phone number (E.164) in their contacts, whether or not it
    /// belongs to an account here (people on other messengers are known by number only).
    async fn has_contact_phone(&self, owner: i64, phone: &str) -> StoreResult<bool>;
    async fn set_blocked(&self, owner: i64, target: i64, blocked: bool) -> StoreResult<()>;
    async fn is_blocked(&self, owner: i64, target: i64) -> StoreResult<bool>;
    async fn blocked(&self, owner: i64) -> StoreResult<Vec<UserRecord>>;
}

/// Fixed-window counters for rate limits, shared by every node.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Counts `cost` hits on `key` in the window of `window_ms` starting at a multiple of it.
    /// Returns `Ok(count)` if the count is within `limit`, or `Err(ms until the window ends)`.
    async fn hit(&self, key: &str, window_ms: i64, limit: u32, cost: u32, now: i64) -> StoreResult<Result<u32, i64>>;
}

/// Chats, messages, receipts.
#[async_trait]
pub trait ChatStore: Send + Sync {
    async fn direct_chat(&self, a: i64, b: i64) -> StoreResult<Option<i64>>;
    /// Returns the direct chat of `a` and `b`, creating it; `true` when created.
    async fn open_direct_chat(&self, a: i64, b: i64, now: i64) -> StoreResult<(i64, bool)>;
    async fn members(&self, chat_id: i64) -> StoreResult<Vec<MemberRecord>>;
    /// The members of a chat and the facts that decide whether `sender` may write in it;
    /// `None` if the sender is not a member.
    async fn send_context(&self, chat_id: i64, sender: i64) -> StoreResult<Option<SendContext>>;
    /// The people the user shares a chat with.
    async fn chat_peers(&self, user_id: i64, limit: u32) -> StoreResult<Vec<i64>>;
    /// The chats the user is in, most recent activity first.
    async fn chats_of(&self, user_id: i64, limit: u32) -> StoreResult<Vec<ChatView>>;
    async fn chat_view(&self, user_id: i64, chat_id: i64) -> StoreResult<Option<ChatView>>;

    /// Stores a new message and a `message_new` update for each of `notify`, or returns the
    /// message already stored under the same sender and client id (`false`).
    async fn append_message(
        &self,
        new: NewMessage,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)>;
    /// A local person's send, checked and stored as one step: the sender's membership, a
    /// retry under the same client id (answered with the stored message, or
    /// [`StoreError::IdempotencyConflict`]), `reply_to`, then `gate` on the send's facts,
    /// then [`ChatStore::append_message`] with a `message_new` update for every local member.
    /// A chat with members on other messengers is left to the caller ([`SendOutcome::Remote`]).
    ///
    /// This default runs those steps as separate calls, as a caller would; a backend whose
    /// writes are serialised overrides it to run them in one write, on the writer's warm
    /// cache and without a read round trip per send.
    async fn send_message(&self, new: NewMessage, gate: SendGate) -> StoreResult<SendOutcome> {
        let Some(context) = self.send_context(new.chat_id, new.sender_id).await? else {
            return Ok(SendOutcome::NotMember);
        };
        if context.members.iter().any(|m| m.remote_address.is_some()) {
            return Ok(SendOutcome::Remote { context, new });
        }
        if let Some(reply_to) = new.reply_to
            && self.message(new.chat_id, reply_to).await?.is_none()
        {
            return Ok(SendOutcome::NoSuchReply);
        }
        if !gate(&context) {
            // Only a refused send looks for a retry here; `append_message` finds the others.
            return match self.message_by_client_id(new.chat_id, new.sender_id, &new.client_id).await? {
                Some(stored) if new.is_retry_of(&stored) => {
                    Ok(SendOutcome::Stored { message: stored, created: false, updates: Vec::new() })
                }
                Some(_) => Err(StoreError::IdempotencyConflict),
                None => Ok(SendOutcome::Refused(context)),
            };
        }
        let notify = context.members.iter().map(|m| m.user_id).collect();
        let (message, created, updates) = self.append_message(new, notify).await?;
        Ok(SendOutcome::Stored { message, created, updates })
    }
    /// [`ChatStore::send_message`], calling `placed` as soon as the send's place in its chat's
    /// order is fixed, for every outcome but [`SendOutcome::Remote`] (whose caller stores it
    /// later) and an error. A caller that keeps one client's sends to a chat in order may start
    /// the next one then instead of waiting for this one's commit; should this one still fail
    /// (its batch rolled back), the next may be stored first, as with any failed send.
    ///
    /// This default calls `placed` when the send is over; a backend whose writes go through one
    /// queue in order calls it when the send's write has run, before its commit.
    async fn send_message_placed(&self, new: NewMessage, gate: SendGate, placed: Placed) -> StoreResult<SendOutcome> {
        let outcome = self.send_message(new, gate).await?;
        if !matches!(outcome, SendOutcome::Remote { .. }) {
            placed();
        }
        Ok(outcome)
    }
    async fn message(&self, chat_id: i64, seq: i64) -> StoreResult<Option<Message>>;
    /// The message a sender stored in a chat under a client id, if any.
    async fn message_by_client_id(&self, chat_id: i64, sender_id: i64, client_id: &str)
    -> StoreResult<Option<Message>>;
    /// Messages visible to `viewer`, ascending by seq.
    async fn history(&self, viewer: i64, chat_id: i64, page: Page) -> StoreResult<Vec<Message>>;
    async fn edit_message(
        &self,
        chat_id: i64,
        seq: i64,
        content: peyvand_api::Content,
        folded: String,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, Vec<(i64, Update)>)>;
    /// Deletes for everyone (tombstone) and tells `notify`.
    async fn delete_message(
        &self,
        chat_id: i64,
        seq: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>>;
    /// Hides the message from one person and tells their other devices.
    async fn hide_message(&self, user_id: i64, chat_id: i64, seq: i64, now: i64) -> StoreResult<Vec<(i64, Update)>>;
    async fn set_reaction(
        &self,
        chat_id: i64,
        seq: i64,
        user_id: i64,
        emoji: Option<String>,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Vec<Reaction>, Vec<(i64, Update)>)>;
    /// Raises the reader's read mark (never lowers it); tells the reader's devices and `notify`.
    async fn mark_read(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>>;
    async fn mark_delivered(
        &self,
        chat_id: i64,
        user_id: i64,
        up_to: i64,
        now: i64,
        notify: Vec<i64>,
    ) -> StoreResult<Vec<(i64, Update)>>;
    /// Messages visible to the viewer whose folded text contains `folded_query`, newest first.
    async fn search_messages(&self, viewer: i64, folded_query: &str, limit: u32) -> StoreResult<Vec<Message>>;
}

/// Chats across messengers: the stand-ins for people on other messengers, the rooms this
/// provider follows (hosted by another provider, the hub), the durable queue of events for
/// each peer provider, the transactions received from peers, and abuse reports.
#[async_trait]
pub trait FederationStore: Send + Sync {
    /// The stand-in for the person at `address` (`PHONE@PROVIDER-ID`), created if new. A
    /// non-empty `display_name` replaces the one stored (and its folded form).
    async fn remote_user(&self, address: &str, display_name: &str, now: i64) -> StoreResult<UserRecord>;
    async fn remote_user_by_address(&self, address: &str) -> StoreResult<Option<UserRecord>>;
    /// The direct chat of `local_user` and `remote_user` that follows room `link`, created (with
    /// both as members) if new. `Conflict` when the two already share a chat that is not this
    /// room's copy (a room hosted here, or a copy of another room).
    async fn follow_room(&self, local_user: i64, remote_user: i64, link: &RoomLink, now: i64) -> StoreResult<i64>;
    /// The room a chat follows; `None` for a chat hosted here.
    async fn room_link(&self, chat_id: i64) -> StoreResult<Option<RoomLink>>;
    /// The chat that follows room `link`, if any.
    async fn chat_by_room(&self, link: &RoomLink) -> StoreResult<Option<i64>>;
    /// Stores a message at the seq its hub gave it, with a `message_new` update for each of
    /// `notify`, raising the chat's last seq to it. A message already stored at that seq, or
    /// under the same sender and client id, is returned instead (`false`, no updates).
    async fn put_message_at(
        &self,
        new: NewMessage,
        seq: i64,
        notify: Vec<i64>,
    ) -> StoreResult<(Message, bool, Vec<(i64, Update)>)>;

    /// Appends an event to the queue towards `peer`; returns its id.
    async fn enqueue_outbound(&self, peer: &str, body: &str, now: i64) -> StoreResult<i64>;
    /// The oldest `limit` events waiting for `peer`, in queue order.
    async fn outbound(&self, peer: &str, limit: u32) -> StoreResult<Vec<OutboundRecord>>;
    /// Removes delivered events.
    async fn remove_outbound(&self, peer: &str, ids: &[i64]) -> StoreResult<()>;
    /// Drops events queued before `before`; returns how many per peer, by peer.
    async fn expire_outbound(&self, before: i64) -> StoreResult<Vec<(String, u64)>>;
    /// How many events wait for each peer that has any, by peer.
    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>>;
    /// Takes or renews the lease to deliver to `peer` for `holder` (one node) until `until`:
    /// true if `holder` holds it now, because it was free, had lapsed by `now`, or was already
    /// `holder`'s. Only the holder sends a peer its events, so a cluster sends them once, in order.
    async fn lease_delivery(&self, peer: &str, holder: &str, now: i64, until: i64) -> StoreResult<bool>;

    /// Sets where messages sent to another messenger stand. A change applies to a message that
    /// has a delivery state (one stored with [`NewMessage::delivery`]) other than `delivered`,
    /// which is final, when its state or reason differs from the stored one; each applied
    /// change appends a `message_delivery` update to the sender's stream, returned to publish.
    /// Messages without a delivery state, or not stored, are left alone.
    async fn set_delivery(&self, changes: Vec<DeliveryChange>, now: i64) -> StoreResult<Vec<(i64, Update)>>;

    /// Whether transaction `txn` from `peer` was already applied.
    async fn inbound_seen(&self, peer: &str, txn: &str) -> StoreResult<bool>;
    /// Records that transaction `txn` from `peer` was applied (again is fine).
    async fn record_inbound(&self, peer: &str, txn: &str, now: i64) -> StoreResult<()>;
    /// Forgets transactions recorded before `before`.
    async fn prune_inbound(&self, before: i64) -> StoreResult<u64>;

    /// Records the nonce of a signed request from `peer`, which stays good for replay until
    /// `stale_after` (after that the request is refused as stale anyway); `true` if it is its
    /// first use: not recorded before, or recorded with a `stale_after` before `now`. Durable,
    /// so that a request captured before a restart is still refused after it, and shared by
    /// the nodes of a cluster. Not retried after a lost answer, which would call a first use
    /// a replay.
    async fn first_use_of_nonce(&self, peer: &str, nonce: &str, stale_after: i64, now: i64) -> StoreResult<bool>;
    /// Forgets nonces whose requests went stale before `before`.
    async fn prune_nonces(&self, before: i64) -> StoreResult<u64>;

    /// Records that this provider submitted, to a room's hub, the action whose event has the
    /// digest `digest` (the SHA-256 of its canonical form, lowercase hex), before submitting
    /// it: the follower accepts an event attributed to one of its people only if it is one
    /// of these. Again is fine (the time is renewed).
    async fn record_submission(&self, digest: &str, now: i64) -> StoreResult<()>;
    /// Whether the event with this digest was submitted from here.
    async fn was_submitted(&self, digest: &str) -> StoreResult<bool>;
    /// Forgets submissions recorded before `before`.
    async fn prune_submissions(&self, before: i64) -> StoreResult<u64>;

    /// Stores a report (its `id` is ignored); returns its id.
    async fn add_report(&self, report: ReportRecord) -> StoreResult<i64>;
    /// The newest `limit` reports, newest first.
    async fn reports(&self, limit: u32) -> StoreResult<Vec<ReportRecord>>;
}

/// Media: uploads in progress, finished media items, and the blobs that hold their bytes.
///
/// A blob is kept while a media item, or a message's media (found by the hash in the
/// message's content, which both backends index), refers to it; [`MediaStore::collect_blobs`]
/// hands back the others once untouched for a while. A blob's key is unique to the write that
/// stored it, so a blob collected while the same bytes are stored again is never the one the
/// new write's row points to.
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<()>;
    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>>;
    /// Records bytes `[start, start + len)` stored under `key` and moves the upload's offset
    /// from `start` to `start + len`: `false` (and nothing recorded) when the offset is not
    /// `start` any more, or there is no such upload.
    async fn add_upload_piece(&self, id: &str, start: i64, len: i64, key: &str) -> StoreResult<bool>;
    /// The upload's recorded pieces, by start.
    async fn upload_pieces(&self, id: &str) -> StoreResult<Vec<UploadPiece>>;
    /// Removes the upload and its pieces' records; returns the pieces' keys (to remove from
    /// the blob storage). `NotFound` when there is no such upload.
    async fn delete_upload(&self, id: &str) -> StoreResult<Vec<String>>;
    /// Uploads that expired before `now`, at most `limit`.
    async fn expired_uploads(&self, now: i64, limit: u32) -> StoreResult<Vec<UploadRecord>>;
    /// Turns a finished upload into a media item: removes the upload and its pieces' records,
    /// stores `blobs` (see [`MediaStore::put_blobs`]) and the item, in one transaction.
    /// `NotFound` when the upload is gone (finished by another request, or expired).
    async fn finish_upload(&self, item: MediaItemRecord, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut>;
    /// Stores blobs; a blob whose hash is already stored keeps the stored key (and counts as
    /// touched now).
    async fn put_blobs(&self, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut>;
    async fn media_item(&self, id: &str) -> StoreResult<Option<MediaItemRecord>>;
    async fn blob(&self, sha256: &str) -> StoreResult<Option<BlobRecord>>;
    /// Forgets media items made before `before` (sent or not: a sent item's bytes are kept by
    /// its messages); returns how many.
    async fn expire_media_items(&self, before: i64) -> StoreResult<u64>;
    /// Removes the records of at most `limit` blobs that no media item and no message refers
    /// to and that were not touched since `before`; returns their keys, to remove from the
    /// blob storage.
    async fn collect_blobs(&self, before: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// The key that signs this messenger's media links, shared by every node: the stored one,
    /// or `candidate` (random, made by the caller) stored now if there is none yet.
    async fn media_link_key(&self, candidate: Vec<u8>) -> StoreResult<Vec<u8>>;
}

/// Each person's ordered update stream.
#[async_trait]
pub trait UpdateStore: Send + Sync {
    /// Updates after `after`, oldest first; `CursorTooOld` if some were already pruned,
    /// `CursorAhead` if `after` is past the newest update.
    ///
    /// A `message_new` update is stored as a reference to the message, not a copy, and is read
    /// as the message is now: edited, with its reactions, or a tombstone if it was deleted for
    /// everyone (so a device that was away never receives the deleted text). The updates
    /// that told of those changes follow it in the stream as usual.
    async fn updates_after(&self, user_id: i64, after: i64, limit: u32) -> StoreResult<Vec<Update>>;
    /// The newest cursor of the user's stream.
    async fn cursor(&self, user_id: i64) -> StoreResult<i64>;
    /// Drops updates older than `before` (milliseconds), keeping at least `keep_last` per user.
    async fn prune_updates(&self, before: i64, keep_last: i64) -> StoreResult<u64>;
    /// Appends an update caused by something that changed outside a chat.
    async fn append_update(&self, user_id: i64, event: Event, now: i64) -> StoreResult<Update>;
}

/// Who has an open update stream on which node, shared by every node of a cluster so that
/// "online" means online anywhere. A node records only its own transitions (a person's first
/// stream on it opened, their last one closed) and proves it is alive with heartbeats; the
/// presence a dead node left behind is reaped by the others.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records that `node_id` now has (`online`) or no longer has streams of the person, and
    /// returns whether the person's cluster-wide state changed: `true` when they came online
    /// on their first node, or went offline on their last.
    async fn set_node_presence(&self, user_id: i64, node_id: i64, online: bool, now: i64) -> StoreResult<bool>;
    /// Which of `user_ids` have a stream on some node that has not been reaped.
    async fn online(&self, user_ids: &[i64]) -> StoreResult<Vec<i64>>;
    /// Records that the node is alive at `now`. `true` when the node was not registered: its
    /// first beat, or its first since others reaped it (its presence rows are gone then).
    async fn node_heartbeat(&self, node_id: i64, now: i64) -> StoreResult<bool>;
    /// Forgets the nodes whose last heartbeat is older than `before`, with their presence,
    /// and returns the people who are therefore offline everywhere now, ascending.
    async fn reap_nodes(&self, before: i64) -> StoreResult<Vec<i64>>;
}

/// Whether the storage answers, for readiness checks.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// A trivial round trip to the storage; `Unavailable` when it cannot be reached now.
    async fn ping(&self) -> StoreResult<()>;
}

/// Everything the service layer needs from storage.
pub trait Store:
    AccountStore
    + ChatStore
    + UpdateStore
    + LimitStore
    + PresenceStore
    + FederationStore
    + MediaStore
    + StoreHealth
    + std::fmt::Debug
{
}
impl<
    T: AccountStore
        + ChatStore
        + UpdateStore
        + LimitStore
        + PresenceStore
        + FederationStore
        + MediaStore
        + StoreHealth
        + std::fmt::Debug,
> Store for T
{
}
