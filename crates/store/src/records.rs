//! The rows a store hands back.

use peyvand_api::{ChatKind, Content, Delivery, DeliveryState, ForwardedFrom, Message, PrivacySettings, Update};

/// An account as stored. A deleted account keeps only its id and `deleted = true`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: i64,
    pub phone: Option<String>,
    pub display_name: String,
    pub username: Option<String>,
    pub bio: String,
    pub pin_hash: Option<String>,
    pub privacy: PrivacySettings,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub deleted: bool,
    /// For the stand-in of a person on another messenger: their address, `PHONE@PROVIDER-ID`.
    /// Such a record has no phone, no username and no sessions; it is never found by search.
    pub remote_address: Option<String>,
}

/// A change to a profile: `None` leaves a field as it is. Folded forms are for search and
/// uniqueness and are computed by the caller with `peyvand_core::text`.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub display_name: Option<(String, String)>,
    /// `Some(None)` removes the username.
    pub username: Option<Option<(String, String)>>,
    pub bio: Option<String>,
}

/// A pending sign-in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub phone: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub attempts: u32,
}

/// A signed-in device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_active: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    pub id: i64,
    pub kind: ChatKind,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub chat_id: i64,
    pub user_id: i64,
    pub read_up_to: i64,
    pub delivered_up_to: i64,
    /// The member's address when they are a person on another messenger.
    pub remote_address: Option<String>,
}

/// A chat from one member's point of view.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatView {
    pub chat: ChatRecord,
    pub me: MemberRecord,
    pub others: Vec<MemberRecord>,
    pub last_message: Option<Message>,
    pub unread: i64,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: i64,
    pub sender_id: i64,
    pub client_id: String,
    pub content: Content,
    /// The content folded for search.
    pub folded: String,
    pub reply_to: Option<i64>,
    pub forwarded_from: Option<ForwardedFrom>,
    pub sent_at: i64,
    /// For a message to people on another messenger, where its delivery starts.
    pub delivery: Option<Delivery>,
}

impl NewMessage {
    /// Whether `stored`, found under this send's client id, is this same send retried: the
    /// same content (or since deleted) and the same reply. Anything else reuses the id for
    /// another message.
    pub fn is_retry_of(&self, stored: &Message) -> bool {
        (stored.content == self.content || stored.content == Content::Deleted) && stored.reply_to == self.reply_to
    }

    /// The message as stored under `seq`, by a sender on this messenger (a store adds the
    /// address of one on another).
    pub fn stored(&self, seq: i64) -> Message {
        Message {
            chat_id: self.chat_id,
            seq,
            sender_id: self.sender_id,
            sender_address: None,
            client_id: self.client_id.clone(),
            content: self.content.clone(),
            reply_to: self.reply_to,
            forwarded_from: self.forwarded_from.clone(),
            sent_at: self.sent_at,
            edited_at: None,
            reactions: Vec::new(),
            delivery: self.delivery.clone(),
        }
    }
}

/// A new delivery state for a message sent here to people on another messenger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryChange {
    pub chat_id: i64,
    pub seq: i64,
    pub delivery: Delivery,
}

/// Whether a message whose delivery stands at `current` takes `new`: `delivered` is final, and
/// the same state for the same reason is no change.
pub(crate) fn delivery_changes(current: &Delivery, new: &Delivery) -> bool {
    current.state != DeliveryState::Delivered && (current.state, current.reason) != (new.state, new.reason)
}

/// Which page of a chat's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest `limit` messages before `seq` (exclusive); `i64::MAX` for the newest.
    Before { seq: i64, limit: u32 },
    /// The oldest `limit` messages after `seq` (exclusive).
    After { seq: i64, limit: u32 },
}

/// What the service needs to decide whether a person may write in a chat, gathered in one
/// read because it sits on every send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendContext {
    pub members: Vec<MemberRecord>,
    /// The other members, as the sender's policy checks see them.
    pub recipients: Vec<RecipientFacts>,
}

/// The policy a send must pass, run by [`crate::ChatStore::send_message`] on the facts it
/// reads: `true` lets the message in. It may run on the embedded store's writer thread, so it
/// must be quick and do no I/O.
pub type SendGate = Box<dyn FnOnce(&SendContext) -> bool + Send>;

/// Called by [`crate::ChatStore::send_message_placed`] once a send's place in its chat's order
/// is fixed: a send made after that is stored after it, unless this one then fails after all
/// (its batch is rolled back; a retry then lands later). It may run on the embedded store's
/// writer thread, so it must be quick, do no I/O and not panic.
pub type Placed = Box<dyn FnOnce() + Send>;

/// What [`crate::ChatStore::send_message`] did.
#[derive(Debug)]
pub enum SendOutcome {
    /// Stored now (`created`), or found stored under the same sender and client id; `updates`
    /// (empty for one found) are the `message_new` updates to publish.
    Stored { message: Message, created: bool, updates: Vec<(i64, Update)> },
    /// The sender is not a member of the chat.
    NotMember,
    /// The chat has members on other messengers: nothing was checked or written, and the
    /// caller takes the path that routes the send, with the message handed back.
    Remote { context: SendContext, new: NewMessage },
    /// `reply_to` names no message of the chat.
    NoSuchReply,
    /// The gate refused, having seen these facts.
    Refused(SendContext),
}

/// Facts about one recipient relative to a sender.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientFacts {
    pub user_id: i64,
    pub deleted: bool,
    /// The recipient's "who can message me" setting.
    pub messages: peyvand_api::Audience,
    /// The recipient has the sender in their contacts.
    pub has_sender_as_contact: bool,
    /// The sender has blocked the recipient.
    pub blocked_by_sender: bool,
    /// The recipient has blocked the sender.
    pub blocked_sender: bool,
}

/// Where a chat that this provider follows is hosted: the hub provider and the room's id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLink {
    pub hub: String,
    pub hub_chat: i64,
}

/// An event waiting in the durable queue towards one peer provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    /// Increasing in the order the events were queued (per store).
    pub id: i64,
    pub peer: String,
    /// The event as the protocol writes it (JSON).
    pub body: String,
    pub created_at: i64,
}

/// The queue towards one peer, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub peer: String,
    pub events: u64,
    /// When the oldest waiting event was queued.
    pub oldest_at: i64,
}

/// An abuse report about a person, made here or received from another provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub id: i64,
    /// Who reported: an address `PHONE@PROVIDER-ID`.
    pub reporter: String,
    /// Whom: an address.
    pub reported: String,
    pub reason: String,
    /// The provider the report came from; `None` when made here.
    pub from_provider: Option<String>,
    pub created_at: i64,
}

/// A resumable upload (tus) in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Random, unguessable; the media item's id once finished.
    pub id: String,
    pub owner: i64,
    /// The kind the uploader declared (`photo`, `voice`, ...).
    pub kind: String,
    /// The upload's whole length in bytes.
    pub length: i64,
    /// How many bytes are stored so far, from the start.
    pub offset: i64,
    /// What the uploader said of the file (the service's JSON: name, waveform, thumbnail).
    pub metadata: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A stored run of an upload's bytes, `[start, start + len)`, under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPiece {
    pub start: i64,
    pub len: i64,
    pub key: String,
}

/// A stored blob: the bytes with this SHA-256, under `key` in the blob storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub sha256: String,
    pub key: String,
    pub size: i64,
}

/// A finished upload: a media item its owner may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItemRecord {
    pub id: String,
    pub owner: i64,
    pub media: peyvand_api::Media,
    pub created_at: i64,
}

/// What [`crate::MediaStore::finish_upload`] and [`crate::MediaStore::put_blobs`] did with the
/// blobs they were given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobsPut {
    /// For each blob given, the key its bytes are now found under: the given one, or that of
    /// the blob with the same hash that was already stored.
    pub keys: Vec<String>,
    /// Given keys that are not used because the same bytes were already stored: the caller
    /// removes them from the blob storage.
    pub redundant: Vec<String>,
}
