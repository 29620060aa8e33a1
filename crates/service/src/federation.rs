//! Direct chats with people on other messengers (`docs/protocol/delivery.md`).
//!
//! A person on another messenger is known here by a stand-in account that carries their
//! address (`PHONE@PROVIDER-ID`). A cross-messenger room is hosted by the provider where it was
//! started, the hub: the hub's copy is the room, and it gives every message its seq. The other
//! provider, the follower, keeps a copy linked to the hub's room with the same seqs, written
//! only from the events the hub sends (and, so that a send can answer with the stored message,
//! from the message the hub's answer to a send carries; the same event arrives again and is
//! ignored).
//!
//! - A local person acting in a room hosted here: the change is made as in any chat and an
//!   event is queued for each follower provider ([`Service::fan_out`]).
//! - A local person acting in a room hosted elsewhere: the action is submitted to the hub,
//!   which answers with its result; nothing is written here until the hub has accepted it.
//! - A peer's events ([`Service::apply_room_events`]) and submissions
//!   ([`Service::accept_submission`]) are checked against the room's members and the local
//!   person's consent ("connect to other messengers") before anything is stored.
//!
//! The transport (mutual TLS, signatures, the durable queue's worker) is the
//! `peyvand-interconnect` crate's, behind [`Federation`].

use std::sync::Arc;

use async_trait::async_trait;
use peyvand_api::{ApiError, Audience, Delivery, ErrorCode, ForwardedFrom, Message, Reaction};
use peyvand_core::phone::PhoneNumber;
use peyvand_store::{DeliveryChange, MemberRecord, NewMessage, ReportRecord, RoomLink, UserRecord};

use crate::chats::{validate_client_id, validate_content, validate_emoji};
use crate::{Service, Session, err, now_millis, store_error};

/// What goes between providers for cross-messenger chats (JSON).
pub mod wire {
    use peyvand_api::Content;
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    /// The first line of an event's canonical form (delivery.md, "Event forms"): its scheme
    /// and version.
    pub const EVENT_FORM: &str = "peyvand-event/1";
    /// The version of origin signatures this implementation makes and checks.
    pub const ORIGIN_VERSION: u32 = 1;

    /// Who an event comes from, and their signature over its form (delivery.md,
    /// DELIVERY-21): the provider of the person it is by (the hub, for its own people).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Origin {
        /// The signature's version: [`ORIGIN_VERSION`].
        pub v: u32,
        pub provider: String,
        /// Ed25519 over [`event_form`], base64 (standard, padded).
        pub signature: String,
    }

    /// A room, named by its hub and the hub's chat id.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct RoomId {
        pub hub: String,
        pub id: i64,
    }

    /// One change to a room, as its hub tells its followers.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    pub enum RoomEvent {
        /// A new message at `seq`. `recipient` is the room's other member and `sender_name`
        /// the sender's display name, so that a follower that missed the invitation can still
        /// place the room.
        Message {
            seq: i64,
            sender: String,
            sender_name: String,
            recipient: String,
            client_id: String,
            content: Content,
            #[serde(default)]
            reply_to: Option<i64>,
            /// When the original was sent, for a forwarded message (its author is not disclosed).
            #[serde(default)]
            forwarded_sent_at: Option<i64>,
            sent_at: i64,
        },
        Edit {
            seq: i64,
            content: Content,
            edited_at: i64,
        },
        /// Deleted for everyone.
        Delete {
            seq: i64,
        },
        /// `user`'s reaction to the message at `seq`; `None` removes it.
        Reaction {
            seq: i64,
            user: String,
            #[serde(default)]
            emoji: Option<String>,
        },
        Read {
            user: String,
            up_to: i64,
        },
        Delivered {
            user: String,
            up_to: i64,
        },
    }

    impl RoomEvent {
        /// The address of the person the event names as its author, if it names one. (An
        /// edit's or a deletion's author is the sender of the message it changes.)
        pub fn author(&self) -> Option<&str> {
            match self {
                Self::Message { sender, .. } => Some(sender),
                Self::Reaction { user, .. } | Self::Read { user, .. } | Self::Delivered { user, .. } => Some(user),
                Self::Edit { .. } | Self::Delete { .. } => None,
            }
        }

        /// The event's type, as on the wire.
        pub fn kind(&self) -> &'static str {
            match self {
                Self::Message { .. } => "message",
                Self::Edit { .. } => "edit",
                Self::Delete { .. } => "delete",
                Self::Reaction { .. } => "reaction",
                Self::Read { .. } => "read",
                Self::Delivered { .. } => "delivered",
            }
        }
    }

    /// A content's lines in an event form: its type, and the SHA-256 of its text (lowercase
    /// hex; empty for a deleted message).
    fn content_lines(content: &Content) -> String {
        match content {
            Content::Text { text } => format!("text\n{}", hex::encode(Sha256::digest(text.as_bytes()))),
            Content::Media { media, caption } => media_lines(media, caption.as_deref()),
            Content::Deleted => "deleted\n".to_owned(),
        }
    }

    /// A media message's content lines (media.md, MEDIA-3): every field of its description,
    /// one a line, absent ones empty, and the SHA-256 of its caption.
    fn media_lines(media: &peyvand_api::Media, caption: Option<&str>) -> String {
        let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        let thumbnail = media
            .thumbnail
            .as_ref()
            .map(|t| format!("{} {} {} {}", t.sha256, t.size, t.width, t.height))
            .unwrap_or_default();
        let waveform = media.waveform.as_deref().map(hex::encode).unwrap_or_default();
        format!(
            "media\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            media.kind.as_str(),
            media.mime,
            media.size,
            media.sha256,
            hex::encode(Sha256::digest(media.name.as_deref().unwrap_or("").as_bytes())),
            number(media.width.map(u64::from)),
            number(media.height.map(u64::from)),
            number(media.duration_ms),
            waveform,
            media.preview.as_deref().unwrap_or(""),
            thumbnail,
            hex::encode(Sha256::digest(caption.unwrap_or("").as_bytes())),
        )
    }

    /// The canonical form of `event` in `room` (delivery.md, "Event forms"): what its origin
    /// signs, and what a follower keeps of what it submitted. One field a line; what the hub
    /// assigns (a message's seq and time, an edit's time, the sender's name, the recipient) is
    /// left out, so that a follower can make the form of its action before the hub answers.
    pub fn event_form(room: &RoomId, event: &RoomEvent) -> Vec<u8> {
        let optional = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let fields = match event {
            RoomEvent::Message { sender, client_id, content, reply_to, forwarded_sent_at, .. } => format!(
                "{sender}\n{client_id}\n{}\n{}\n{}",
                optional(*reply_to),
                optional(*forwarded_sent_at),
                content_lines(content)
            ),
            RoomEvent::Edit { seq, content, .. } => format!("{seq}\n{}", content_lines(content)),
            RoomEvent::Delete { seq } => seq.to_string(),
            RoomEvent::Reaction { seq, user, emoji } => format!("{seq}\n{user}\n{}", emoji.as_deref().unwrap_or("")),
            RoomEvent::Read { user, up_to } | RoomEvent::Delivered { user, up_to } => format!("{user}\n{up_to}"),
        };
        format!("{EVENT_FORM}\n{}\n{}\n{}\n{fields}", room.hub, room.id, event.kind()).into_bytes()
    }

    /// The SHA-256 of the event's form, lowercase hex: how a follower records a submission.
    pub fn event_digest(room: &RoomId, event: &RoomEvent) -> String {
        hex::encode(Sha256::digest(event_form(room, event)))
    }

    impl Action {
        /// The event the hub makes of this action by `user`, with what the hub assigns left
        /// zero or empty: its form is the form of the hub's event.
        pub fn expected_event(&self, user: &str) -> RoomEvent {
            let user = user.to_owned();
            match self.clone() {
                Self::Send { client_id, content, reply_to, forwarded_sent_at } => RoomEvent::Message {
                    seq: 0,
                    sender: user,
                    sender_name: String::new(),
                    recipient: String::new(),
                    client_id,
                    content,
                    reply_to,
                    forwarded_sent_at,
                    sent_at: 0,
                },
                Self::Edit { seq, content } => RoomEvent::Edit { seq, content, edited_at: 0 },
                Self::Delete { seq } => RoomEvent::Delete { seq },
                Self::React { seq, emoji } => RoomEvent::Reaction { seq, user, emoji },
                Self::Read { up_to } => RoomEvent::Read { user, up_to },
                Self::Delivered { up_to } => RoomEvent::Delivered { user, up_to },
            }
        }
    }

    /// An event for one room: what the durable queue holds and transactions carry.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Envelope {
        pub room: RoomId,
        pub event: RoomEvent,
        /// Required on the wire; absent in the hub's queue for its own people's events, which
        /// its delivery signs as it sends them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub origin: Option<Origin>,
    }

    /// `POST /interconnect/v1/transactions`: events from a hub, in order.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Transaction {
        /// Unique per sender; a transaction received again is not applied again.
        pub id: String,
        pub events: Vec<Envelope>,
    }

    /// The answer to a transaction: it was applied; events refused for good are listed (by
    /// index) and are not sent again.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TransactionAnswer {
        pub refused: Vec<EventRefusal>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct EventRefusal {
        pub index: usize,
        pub code: peyvand_api::ErrorCode,
        pub message: String,
    }

    /// What a follower's user asks the hub to do in a room.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Action {
        Send {
            client_id: String,
            content: Content,
            #[serde(default)]
            reply_to: Option<i64>,
            #[serde(default)]
            forwarded_sent_at: Option<i64>,
        },
        Edit {
            seq: i64,
            content: Content,
        },
        Delete {
            seq: i64,
        },
        React {
            seq: i64,
            #[serde(default)]
            emoji: Option<String>,
        },
        Read {
            up_to: i64,
        },
        Delivered {
            up_to: i64,
        },
    }

    /// `POST /interconnect/v1/submit`: a follower's user acts in a room hosted by the callee.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Submission {
        pub room: RoomId,
        /// The acting person's address, on the calling provider.
        pub user: String,
        /// Their display name (kept fresh on the hub).
        #[serde(default)]
        pub user_name: String,
        pub action: Action,
        /// The calling provider's origin signature of the event the action makes
        /// ([`Action::expected_event`]), which the hub passes on with that event.
        pub origin: Origin,
    }

    /// The hub's answer to a submission: the event it made of it (also queued to the
    /// followers, the caller included).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SubmissionAnswer {
        pub event: RoomEvent,
    }

    /// `POST /interconnect/v1/invite`: the hub asks whether `to` may be reached by `from`
    /// and makes the follower's copy of the room.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Invitation {
        pub room: RoomId,
        pub from: String,
        pub from_name: String,
        pub to: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct InvitationAnswer {
        /// The invited person's display name.
        pub display_name: String,
    }

    /// `POST /interconnect/v1/typing`: ephemeral, best effort, either direction.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Typing {
        pub room: RoomId,
        pub user: String,
    }

    /// `GET /interconnect/v1/media`: the bytes of a media message's file (`variant`
    /// `content`) or thumbnail (`thumbnail`), asked of the provider that holds them (the
    /// sender's) by a provider that takes part in the room; in the query string.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct MediaRequest {
        /// The room's hub and the hub's id of it.
        pub hub: String,
        pub room: i64,
        pub seq: i64,
        pub variant: String,
    }

    /// `POST /interconnect/v1/reports`: a user of the caller reports a user of the callee.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Report {
        pub reporter: String,
        pub reported: String,
        pub reason: String,
    }
}

use wire::{Action, Envelope, EventRefusal, Invitation, InvitationAnswer, RoomEvent, RoomId, Submission};

/// The longest report reason, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// The transport to other providers, as the interconnect offers it to the messenger.
#[async_trait]
pub trait Federation: Send + Sync + std::fmt::Debug {
    /// This provider's id.
    fn provider_id(&self) -> &str;
    /// The name people know a provider by (from the registry's directory).
    fn provider_name(&self, provider_id: &str) -> Option<String>;
    /// Whether direct chats may be started with people on `peer`: it is listed, offers the
    /// `chat` capability, and is active.
    fn chat_peer(&self, peer: &str) -> Result<(), ApiError>;
    /// Asks `peer` to let the room reach one of its users; the answer has their name.
    async fn invite(&self, peer: &str, invitation: &Invitation) -> Result<InvitationAnswer, ApiError>;
    /// Submits a local user's action to the room's hub; the answer is the hub's event.
    async fn submit(&self, hub: &str, submission: &Submission) -> Result<RoomEvent, ApiError>;
    /// Tells `peer` that someone is typing; best effort.
    async fn typing(&self, peer: &str, typing: &wire::Typing);
    /// Sends an abuse report to the reported person's provider.
    async fn report(&self, peer: &str, report: &wire::Report) -> Result<(), ApiError>;
    /// Events were queued for `peer`: deliver them soon.
    fn queued(&self, peer: &str);
    /// `peer` sent a forged event or a conflicting one (`forged_event`, `seq_conflict`): for
    /// the metrics.
    fn refused_from(&self, peer: &str, code: ErrorCode);
    /// This provider's origin signature of an event's form.
    fn sign_origin(&self, form: &[u8]) -> String;
    /// Whether `signature` over `form` verifies with a key the directory lists for `provider`.
    fn verify_origin(&self, provider: &str, form: &[u8], signature: &str) -> bool;
    /// Why events for `peer` would wait now, if they would: the directory does not list it as
    /// active, or the last attempt to deliver to it failed and none has succeeded since.
    fn delivery_problem(&self, peer: &str) -> Option<ApiError>;
    /// Asks `holder` for a media message's bytes (media.md); reads at most `max` of them.
    async fn fetch_media(&self, holder: &str, request: &wire::MediaRequest, max: u64) -> Result<MediaBytes, ApiError>;
    /// Counts media bytes served to `peer`, for the metrics.
    fn media_served(&self, peer: &str, bytes: u64);
}

/// A media file's bytes as a peer sends them: a stream of chunks.
pub type MediaBytes = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, ApiError>>;

tokio::task_local! {
    /// The origin of the submission being made here, passed on with the events it causes.
    static RELAYED: wire::Origin;
}

/// `PHONE@PROVIDER-ID`, checked: the phone number in E.164 and a provider id.
pub fn parse_address(address: &str) -> Result<(PhoneNumber, &str), ApiError> {
    let bad = || err(ErrorCode::BadRequest, format!("`{address}` is not an address like +989121234567@provider"));
    let (phone, provider) = address.rsplit_once('@').ok_or_else(bad)?;
    let provider_ok = !provider.is_empty()
        && provider.len() <= 63
        && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !provider_ok || !phone.starts_with('+') {
        return Err(bad());
    }
    let phone = PhoneNumber::parse(phone).map_err(|_| bad())?;
    Ok((phone, provider))
}

fn address(phone: &str, provider: &str) -> String {
    format!("{phone}@{provider}")
}

fn provider_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, p)| p)
}

/// Whether some member of a chat is on another messenger.
pub(crate) fn has_remote(members: &[MemberRecord]) -> bool {
    members.iter().any(|m| m.remote_address.is_some())
}

/// The providers of a room's members on other messengers.
pub(crate) fn remote_providers(members: &[MemberRecord]) -> Vec<String> {
    let mut providers: Vec<String> =
        members.iter().filter_map(|m| m.remote_address.as_deref()).map(|a| provider_of(a).to_owned()).collect();
    providers.sort();
    providers.dedup();
    providers
}

/// Where an action in a chat goes: made here (a local chat, or a room hosted here), or
/// submitted to the hub of the room this chat follows.
pub(crate) enum Route {
    Here,
    Hub(RoomLink),
}

impl Service {
    /// Connects the messenger to other providers. Once only; later calls are ignored.
    pub fn set_federation(&self, federation: Arc<dyn Federation>) {
        if self.federation.set(federation).is_err() {
            tracing::warn!("the interconnect was already set");
        }
    }

    pub(crate) fn federation(&self) -> Result<&Arc<dyn Federation>, ApiError> {
        self.federation
            .get()
            .ok_or_else(|| err(ErrorCode::InterconnectDisabled, "this server is not connected to other messengers"))
    }

    /// Whether an action in the chat whose members are `members` is made here or at a hub.
    pub(crate) async fn route(&self, chat_id: i64, members: &[MemberRecord]) -> Result<Route, ApiError> {
        if !has_remote(members) {
            return Ok(Route::Here);
        }
        Ok(match self.store.room_link(chat_id).await.map_err(store_error)? {
            Some(link) => Route::Hub(link),
            None => Route::Here,
        })
    }

    /// A local person's address.
    async fn address_of(&self, user: &UserRecord) -> Result<String, ApiError> {
        if let Some(remote) = &user.remote_address {
            return Ok(remote.clone());
        }
        let phone = user.phone.as_deref().ok_or_else(|| err(ErrorCode::NotFound, "this account has no number"))?;
        Ok(address(phone, self.federation()?.provider_id()))
    }

    async fn address_of_id(&self, user_id: i64) -> Result<String, ApiError> {
        let user = self
            .store
            .user(user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, "no such user"))?;
        self.address_of(&user).await
    }

    /// Queues `event` of the room hosted here for every provider of its remote members, and
    /// tells the transport. Callers build the event only when [`has_remote`] says so.
    pub(crate) async fn fan_out(&self, chat_id: i64, members: &[MemberRecord], event: RoomEvent) {
        let providers = remote_providers(members);
        let Some(hub) = self.federation.get().map(|f| f.provider_id().to_owned()) else {
            tracing::warn!(chat_id, "a room with people on other messengers, but no interconnect: not sent");
            return;
        };
        // The origin of a submission being made is passed on; the hub's own people's events
        // are signed by its delivery as it sends them.
        let origin = RELAYED.try_with(|origin| origin.clone()).ok();
        let envelope = Envelope { room: RoomId { hub, id: chat_id }, event, origin };
        let body = match serde_json::to_string(&envelope) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot write a room event");
                return;
            }
        };
        for peer in providers {
            match self.store.enqueue_outbound(&peer, &body, now_millis()).await {
                Ok(_) => {
                    if let Some(federation) = self.federation.get() {
                        federation.queued(&peer);
                    }
                }
                // The change is stored; a client retry queues it again (receivers ignore what
                // they already have).
                Err(e) => tracing::error!(error = %e, %peer, chat_id, "cannot queue a room event"),
            }
        }
    }

    /// The event for a message of a room hosted here.
    pub(crate) async fn message_event(&self, message: &Message, members: &[MemberRecord]) -> Option<RoomEvent> {
        let sender = self.store.user(message.sender_id).await.ok().flatten()?;
        let recipient_id = members.iter().map(|m| m.user_id).find(|&u| u != message.sender_id)?;
        let recipient = self.address_of_id(recipient_id).await.ok()?;
        Some(RoomEvent::Message {
            seq: message.seq,
            sender: self.address_of(&sender).await.ok()?,
            sender_name: sender.display_name.clone(),
            recipient,
            client_id: message.client_id.clone(),
            content: message.content.clone(),
            reply_to: message.reply_to,
            forwarded_sent_at: message.forwarded_from.as_ref().map(|f| f.sent_at),
            sent_at: message.sent_at,
        })
    }

    pub(crate) async fn user_event(&self, user_id: i64, make: impl FnOnce(String) -> RoomEvent) -> Option<RoomEvent> {
        self.address_of_id(user_id).await.ok().map(make)
    }

    /// `POST /v1/chats/direct` with an address: the direct chat with a person on another
    /// messenger. A new room is hosted here; the person's provider is asked first whether they
    /// may be reached (their consent) and for their name.
    pub async fn open_remote(&self, session: Session, raw_address: &str) -> Result<peyvand_api::Chat, ApiError> {
        let federation = self.federation()?.clone();
        let (phone, provider) = parse_address(raw_address.trim())?;
        if provider == federation.provider_id() {
            let user = self.resolve(session, phone.as_str()).await?;
            return self.open_direct(session, user.id).await;
        }
        let me = self.live_user(session.user_id).await?;
        let to = address(phone.as_str(), provider);
        let known = self.store.remote_user_by_address(&to).await.map_err(store_error)?;
        let existing = match &known {
            Some(stand_in) => self.store.direct_chat(me.id, stand_in.id).await.map_err(store_error)?,
            None => None,
        };
        if let Some(chat_id) = existing
            && let Some(view) = self.store.chat_view(me.id, chat_id).await.map_err(store_error)?
            && view.chat.last_seq > 0
        {
            return self.chat_of(me.id, view).await;
        }
        // A new room: only with a peer that takes chats, before anything is stored.
        federation.chat_peer(provider)?;
        let stand_in = match known {
            Some(stand_in) => stand_in,
            None => self.store.remote_user(&to, "", now_millis()).await.map_err(store_error)?,
        };
        // New, or opened before but never used (its invitation may have been refused).
        // Each provider delivers to its own people only what their own setting allows: the
        // opener must let the other person reach them too, or no answer could arrive.
        if let Err(e) = self.remote_may_reach(&me, &stand_in).await {
            return Err(match e.code {
                ErrorCode::NotFound => err(
                    ErrorCode::PrivacyRestricted,
                    "turn on \"connect to other messengers\" for this person first, or their answers could not reach you",
                ),
                _ => e,
            });
        }
        self.check_new_chat(me.id, stand_in.id).await?;
        let chat_id = match existing {
            Some(chat_id) => chat_id,
            None => self.store.open_direct_chat(me.id, stand_in.id, now_millis()).await.map_err(store_error)?.0,
        };
        if self.store.room_link(chat_id).await.map_err(store_error)?.is_none() {
            let invitation = Invitation {
                room: RoomId { hub: federation.provider_id().to_owned(), id: chat_id },
                from: self.address_of(&me).await?,
                from_name: me.display_name.clone(),
                to: to.clone(),
            };
            let answer = federation.invite(provider, &invitation).await?;
            let name = answer.display_name.trim();
            if !name.is_empty() {
                self.store.remote_user(&to, &clean_name(name), now_millis()).await.map_err(store_error)?;
            }
        }
        let view = self
            .store
            .chat_view(me.id, chat_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, "no such chat"))?;
        self.chat_of(me.id, view).await
    }

    /// Whether the local person `local` lets the person on another messenger `remote` (a
    /// stand-in) reach them: "connect to other messengers" allows them, "who can message me"
    /// too, and neither has blocked the other.
    pub(crate) async fn remote_may_reach(&self, local: &UserRecord, remote: &UserRecord) -> Result<(), ApiError> {
        let nobody = || err(ErrorCode::NotFound, "no one who accepts messages from other messengers has this address");
        if local.deleted {
            return Err(nobody());
        }
        let remote_phone = remote.remote_address.as_deref().and_then(|a| a.rsplit_once('@')).map(|(p, _)| p);
        let in_contacts = match remote_phone {
            Some(phone) => self.store.has_contact_phone(local.id, phone).await.map_err(store_error)?,
            None => false,
        };
        if !local.privacy.interconnect.allows(in_contacts) {
            return Err(nobody());
        }
        if local.privacy.messages != Audience::Everybody && !in_contacts {
            return Err(err(ErrorCode::PrivacyRestricted, "this person accepts messages only from their contacts"));
        }
        if self.store.is_blocked(local.id, remote.id).await.map_err(store_error)? {
            return Err(err(ErrorCode::Blocked, "this person does not accept your messages"));
        }
        Ok(())
    }

    /// The local person an address of this provider names, for a peer.
    async fn local_by_address(&self, raw: &str) -> Result<UserRecord, ApiError> {
        let (phone, provider) = parse_address(raw)?;
        if provider != self.federation()?.provider_id() {
            return Err(err(ErrorCode::BadRequest, format!("`{raw}` is not an address of this provider")));
        }
        match self.store.user_by_phone(phone.as_str()).await.map_err(store_error)? {
            Some(user) if !user.deleted => Ok(user),
            _ => Err(err(ErrorCode::NotFound, "no one who accepts messages from other messengers has this address")),
        }
    }

    /// How a person on another messenger looks to a local viewer: their name, and where they
    /// are (their address holds their number) only to the people who share a chat with them.
    pub(crate) async fn view_of_remote(
        &self,
        viewer: i64,
        target: &UserRecord,
        address: &str,
    ) -> Result<peyvand_api::UserProfile, ApiError> {
        let shares_chat = self.store.direct_chat(viewer, target.id).await.map_err(store_error)?.is_some();
        let provider_id = provider_of(address).to_owned();
        let messenger = shares_chat.then(|| peyvand_api::Messenger {
            name: self
                .federation
                .get()
                .and_then(|f| f.provider_name(&provider_id))
                .unwrap_or_else(|| provider_id.clone()),
            provider_id,
            address: address.to_owned(),
        });
        let phone = if shares_chat { address.rsplit_once('@').map(|(p, _)| p.to_owned()) } else { None };
        let is_contact = match &phone {
            Some(phone) => self.store.has_contact_phone(viewer, phone).await.map_err(store_error)?,
            None => false,
        };
        Ok(peyvand_api::UserProfile {
            id: target.id,
            display_name: target.display_name.clone(),
            username: None,
            bio: String::new(),
            phone,
            presence: None,
            is_contact,
            blocked: self.store.is_blocked(viewer, target.id).await.map_err(store_error)?,
            deleted: false,
            messenger,
        })
    }

    /// `POST /interconnect/v1/invite` from `peer`: makes this provider's copy of a room hosted
    /// by `peer`, if the invited person lets the inviter reach them.
    pub async fn accept_invitation(&self, peer: &str, invitation: Invitation) -> Result<InvitationAnswer, ApiError> {
        if invitation.room.hub != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may invite only to rooms it hosts"));
        }
        let (_, from_provider) = parse_address(&invitation.from)?;
        if from_provider != peer {
            return Err(err(ErrorCode::BadRequest, "the inviter must be a user of the calling provider"));
        }
        let local = self.local_by_address(&invitation.to).await?;
        let stand_in = self
            .store
            .remote_user(&invitation.from, &clean_name(&invitation.from_name), now_millis())
            .await
            .map_err(store_error)?;
        self.remote_may_reach(&local, &stand_in).await?;
        let link = RoomLink { hub: invitation.room.hub.clone(), hub_chat: invitation.room.id };
        self.store.follow_room(local.id, stand_in.id, &link, now_millis()).await.map_err(store_error)?;
        Ok(InvitationAnswer { display_name: local.display_name })
    }

    /// The member of a chat that an address names (a local person or a stand-in).
    async fn member_by_address(&self, raw: &str, members: &[MemberRecord]) -> Result<i64, ApiError> {
        let (phone, provider) = parse_address(raw)?;
        let user = if provider == self.federation()?.provider_id() {
            self.store.user_by_phone(phone.as_str()).await.map_err(store_error)?
        } else {
            self.store.remote_user_by_address(raw).await.map_err(store_error)?
        };
        user.map(|u| u.id)
            .filter(|id| members.iter().any(|m| m.user_id == *id))
            .ok_or_else(|| err(ErrorCode::NotFound, format!("`{raw}` is not a member of this room")))
    }

    /// `POST /interconnect/v1/transactions` from `peer`: applies the events of rooms `peer`
    /// hosts to this provider's copies, in order. A transaction already applied is not applied
    /// again. Events refused for good are listed; a storage failure fails the whole
    /// transaction (the peer sends it again; what was applied is recognised).
    pub async fn apply_room_events(
        &self,
        peer: &str,
        txn: &str,
        events: Vec<Envelope>,
    ) -> Result<Vec<EventRefusal>, ApiError> {
        if self.store.inbound_seen(peer, txn).await.map_err(store_error)? {
            return Ok(Vec::new());
        }
        let mut refused = Vec::new();
        for (index, envelope) in events.into_iter().enumerate() {
            match self.apply_room_event(peer, envelope).await {
                Ok(()) => {}
                Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::Internal) => return Err(e),
                Err(e) => {
                    tracing::info!(%peer, index, code = %e.code, message = %e.message, "refused a room event");
                    if matches!(e.code, ErrorCode::ForgedEvent | ErrorCode::SeqConflict) {
                        self.report_peer(peer, &e).await;
                    }
                    refused.push(EventRefusal { index, code: e.code, message: e.message });
                }
            }
        }
        self.store.record_inbound(peer, txn, now_millis()).await.map_err(store_error)?;
        Ok(refused)
    }

    async fn apply_room_event(&self, peer: &str, Envelope { room, event, origin }: Envelope) -> Result<(), ApiError> {
        if room.hub != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may send events only for rooms it hosts"));
        }
        let federation = self.federation()?.clone();
        let origin = origin.ok_or_else(|| err(ErrorCode::ForgedEvent, "the event carries no origin signature"))?;
        if origin.v != wire::ORIGIN_VERSION {
            return Err(err(
                ErrorCode::UnsupportedVersion,
                format!("origin signatures of version {} are not known here (only {})", origin.v, wire::ORIGIN_VERSION),
            ));
        }
        // Before anything else: whatever the room, nobody speaks for this provider's people.
        let digest = wire::event_digest(&room, &event);
        let own = federation.provider_id().to_owned();
        if let Some(author) = event.author() {
            if provider_of(author) == own {
                self.submitted_here(&digest, &room, &event).await?;
            } else {
                self.check_origin(&origin, provider_of(author), &room, &event)?;
            }
        }
        let link = RoomLink { hub: room.hub.clone(), hub_chat: room.id };
        let chat_id = match self.store.chat_by_room(&link).await.map_err(store_error)? {
            Some(chat_id) => chat_id,
            None => self.follow_on_first_message(peer, &link, &event).await?,
        };
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        let locals: Vec<i64> = members.iter().filter(|m| m.remote_address.is_none()).map(|m| m.user_id).collect();
        let now = now_millis();
        let is_local = |user_id: i64| members.iter().any(|m| m.user_id == user_id && m.remote_address.is_none());
        let updates = match event.clone() {
            RoomEvent::Message {
                seq,
                sender,
                sender_name,
                client_id,
                mut content,
                reply_to,
                forwarded_sent_at,
                sent_at,
                recipient,
            } => {
                self.member_by_address(&recipient, &members).await?;
                let folded = validate_content(&mut content)?;
                validate_client_id(&client_id)?;
                if seq < 1 {
                    return Err(err(ErrorCode::BadRequest, "seq must be positive"));
                }
                let sender_id = self.member_by_address(&sender, &members).await?;
                let sender_user = self.live_user(sender_id).await?;
                if sender_user.remote_address.is_some() {
                    if !sender_name.trim().is_empty() && clean_name(&sender_name) != sender_user.display_name {
                        self.store.remote_user(&sender, &clean_name(&sender_name), now).await.map_err(store_error)?;
                    }
                    // Consent is checked again for every message: turning it off stops them.
                    for &local in &locals {
                        self.remote_may_reach(&self.live_user(local).await?, &sender_user).await?;
                    }
                }
                let new = NewMessage {
                    chat_id,
                    sender_id,
                    client_id: client_id.clone(),
                    content: content.clone(),
                    folded,
                    reply_to: reply_to.filter(|r| *r > 0 && *r < seq),
                    forwarded_from: forwarded_sent_at.map(|sent_at| ForwardedFrom { user_id: 0, sent_at }),
                    sent_at,
                    delivery: None,
                };
                let (stored, created, updates) =
                    self.store.put_message_at(new, seq, locals).await.map_err(store_error)?;
                // Already here: the same message again (a resend, or the answer to a send came
                // first), or another one, which the copy must not take in silence.
                let changed_since = stored.edited_at.is_some() || stored.content == peyvand_api::Content::Deleted;
                if !created
                    && (stored.seq != seq
                        || stored.sender_id != sender_id
                        || stored.client_id != client_id
                        || (!changed_since && stored.content != content))
                {
                    return Err(err(
                        ErrorCode::SeqConflict,
                        format!(
                            "message {seq} of room {} of {} is another message here (seq {}, client id `{}`)",
                            room.id, room.hub, stored.seq, stored.client_id
                        ),
                    ));
                }
                updates
            }
            RoomEvent::Edit { seq, mut content, edited_at } => {
                let folded = validate_content(&mut content)?;
                let original = self.existing_message(chat_id, seq).await?;
                if is_local(original.sender_id) {
                    self.submitted_here(&digest, &room, &event).await?;
                } else {
                    self.check_origin(
                        &origin,
                        &self.provider_of_member(original.sender_id, &members, peer),
                        &room,
                        &event,
                    )?;
                }
                self.store.edit_message(chat_id, seq, content, folded, edited_at, locals).await.map_err(store_error)?.1
            }
            RoomEvent::Delete { seq } => {
                let original = self.existing_message(chat_id, seq).await?;
                if is_local(original.sender_id) {
                    self.submitted_here(&digest, &room, &event).await?;
                } else {
                    self.check_origin(
                        &origin,
                        &self.provider_of_member(original.sender_id, &members, peer),
                        &room,
                        &event,
                    )?;
                }
                self.store.delete_message(chat_id, seq, now, locals).await.map_err(store_error)?
            }
            RoomEvent::Reaction { seq, user, emoji } => {
                if let Some(e) = &emoji {
                    validate_emoji(e)?;
                }
                let user_id = self.member_by_address(&user, &members).await?;
                self.existing_message(chat_id, seq).await?;
                self.store.set_reaction(chat_id, seq, user_id, emoji, now, locals).await.map_err(store_error)?.1
            }
            RoomEvent::Read { user, up_to } => {
                let user_id = self.member_by_address(&user, &members).await?;
                let notify = locals.into_iter().filter(|&u| u != user_id).collect();
                self.store.mark_read(chat_id, user_id, up_to, now, notify).await.map_err(store_error)?
            }
            RoomEvent::Delivered { user, up_to } => {
                let user_id = self.member_by_address(&user, &members).await?;
                let notify = locals.into_iter().filter(|&u| u != user_id).collect();
                self.store.mark_delivered(chat_id, user_id, up_to, now, notify).await.map_err(store_error)?
            }
        };
        self.publish(updates).await;
        Ok(())
    }

    async fn existing_message(&self, chat_id: i64, seq: i64) -> Result<Message, ApiError> {
        self.store
            .message(chat_id, seq)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, format!("no message {seq} in this room")))
    }

    /// A message for a room this provider has no copy of (its invitation did not arrive):
    /// the copy is made if the recipient lets the sender reach them, as an invitation would.
    async fn follow_on_first_message(&self, peer: &str, link: &RoomLink, event: &RoomEvent) -> Result<i64, ApiError> {
        let RoomEvent::Message { sender, sender_name, recipient, .. } = event else {
            return Err(err(ErrorCode::NotFound, "no such room here"));
        };
        let invitation = Invitation {
            room: RoomId { hub: link.hub.clone(), id: link.hub_chat },
            from: sender.clone(),
            from_name: sender_name.clone(),
            to: recipient.clone(),
        };
        self.accept_invitation(peer, invitation).await?;
        self.store
            .chat_by_room(link)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, "no such room here"))
    }

    /// `POST /interconnect/v1/submit` from `peer`: one of its users acts in a room hosted
    /// here. Made as that person's own action would be, after checking that the local person
    /// still lets them reach them; the answer is the room's event (queued to the followers too).
    pub async fn accept_submission(&self, peer: &str, submission: Submission) -> Result<RoomEvent, ApiError> {
        let federation = self.federation()?.clone();
        if submission.room.hub != federation.provider_id() {
            return Err(err(ErrorCode::BadRequest, "this provider is not the room's hub"));
        }
        let (_, provider) = parse_address(&submission.user)?;
        if provider != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may act only for its own users"));
        }
        let chat_id = submission.room.id;
        let no_room = || err(ErrorCode::NotFound, "no such room");
        let stand_in =
            self.store.remote_user_by_address(&submission.user).await.map_err(store_error)?.ok_or_else(no_room)?;
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        if !members.iter().any(|m| m.user_id == stand_in.id)
            || self.store.room_link(chat_id).await.map_err(store_error)?.is_some()
        {
            return Err(no_room());
        }
        let name = clean_name(&submission.user_name);
        if !name.is_empty() && name != stand_in.display_name {
            self.store.remote_user(&submission.user, &name, now_millis()).await.map_err(store_error)?;
        }
        // The caller's origin signature of the event the action makes, passed on with it.
        let form = wire::event_form(&submission.room, &submission.action.expected_event(&submission.user));
        let origin = submission.origin.clone();
        if origin.v != wire::ORIGIN_VERSION {
            return Err(err(
                ErrorCode::UnsupportedVersion,
                format!("origin signatures of version {} are not known here", origin.v),
            ));
        }
        if origin.provider != peer || !federation.verify_origin(peer, &form, &origin.signature) {
            return Err(err(
                ErrorCode::ForgedEvent,
                "the submission's origin signature does not verify with the caller's keys",
            ));
        }
        RELAYED.scope(origin, self.make_submitted(submission, stand_in, members, chat_id)).await
    }

    /// Makes a checked submission's action, as its author's own would be.
    async fn make_submitted(
        &self,
        submission: Submission,
        stand_in: UserRecord,
        members: Vec<MemberRecord>,
        chat_id: i64,
    ) -> Result<RoomEvent, ApiError> {
        let actor = Session { user_id: stand_in.id, device_id: 0 };
        match submission.action {
            Action::Send { client_id, content, reply_to, forwarded_sent_at } => {
                for local in members.iter().filter(|m| m.remote_address.is_none()) {
                    let local = self.live_user(local.user_id).await?;
                    self.remote_may_reach(&local, &stand_in).await.map_err(|e| match e.code {
                        // The room exists: saying so hides nothing.
                        ErrorCode::NotFound => err(
                            ErrorCode::PrivacyRestricted,
                            "this person does not accept messages from other messengers",
                        ),
                        _ => e,
                    })?;
                }
                let request = peyvand_api::SendMessage {
                    client_id,
                    content: Some(content),
                    reply_to,
                    forward: None,
                    media: None,
                };
                let forwarded = forwarded_sent_at.map(|sent_at| ForwardedFrom { user_id: 0, sent_at });
                let (message, _) = self.send_here(actor, chat_id, request, forwarded, Box::new(|| {})).await?;
                self.message_event(&message, &members)
                    .await
                    .ok_or_else(|| err(ErrorCode::Internal, "cannot describe the message"))
            }
            Action::Edit { seq, content } => {
                let message = self.edit_here(actor, chat_id, seq, content).await?;
                Ok(RoomEvent::Edit {
                    seq,
                    content: message.content,
                    edited_at: message.edited_at.unwrap_or_else(now_millis),
                })
            }
            Action::Delete { seq } => {
                self.delete_here(actor, chat_id, seq).await?;
                Ok(RoomEvent::Delete { seq })
            }
            Action::React { seq, emoji } => {
                self.react_here(actor, chat_id, seq, emoji.clone()).await?;
                Ok(RoomEvent::Reaction { seq, user: submission.user, emoji })
            }
            Action::Read { up_to } => {
                self.receipt_here(actor, chat_id, up_to, true).await?;
                Ok(RoomEvent::Read { user: submission.user, up_to })
            }
            Action::Delivered { up_to } => {
                self.receipt_here(actor, chat_id, up_to, false).await?;
                Ok(RoomEvent::Delivered { user: submission.user, up_to })
            }
        }
    }

    /// Submits a local person's action to the hub of a room this chat follows.
    pub(crate) async fn submit(
        &self,
        session: Session,
        link: &RoomLink,
        action: Action,
    ) -> Result<RoomEvent, ApiError> {
        let federation = self.federation()?.clone();
        let me = self.live_user(session.user_id).await?;
        let room = RoomId { hub: link.hub.clone(), id: link.hub_chat };
        let user = self.address_of(&me).await?;
        let form = wire::event_form(&room, &action.expected_event(&user));
        let origin = wire::Origin {
            v: wire::ORIGIN_VERSION,
            provider: federation.provider_id().to_owned(),
            signature: federation.sign_origin(&form),
        };
        let submission = Submission { room, user, user_name: me.display_name.clone(), action, origin };
        // Recorded before it is sent: the hub's event for it may arrive before its answer.
        let digest = wire::event_digest(&submission.room, &submission.action.expected_event(&submission.user));
        self.store.record_submission(&digest, now_millis()).await.map_err(store_error)?;
        let event = federation.submit(&link.hub, &submission).await?;
        if wire::event_digest(&submission.room, &event) != digest {
            let forged = err(ErrorCode::ForgedEvent, "the hub answered with another event than the one submitted");
            self.report_peer(&link.hub, &forged).await;
            return Err(forged);
        }
        Ok(event)
    }

    /// Keeps a report, for the operator, of a forged or conflicting event from `peer`, and
    /// counts it.
    async fn report_peer(&self, peer: &str, refusal: &ApiError) {
        let Ok(federation) = self.federation() else { return };
        federation.refused_from(peer, refusal.code);
        let record = ReportRecord {
            id: 0,
            reporter: federation.provider_id().to_owned(),
            reported: peer.to_owned(),
            reason: format!("{}: {}", refusal.code, refusal.message),
            from_provider: None,
            created_at: now_millis(),
        };
        match self.store.add_report(record).await {
            Ok(id) => {
                tracing::warn!(report = id, %peer, code = %refusal.code, message = %refusal.message, "a peer's event was refused and reported")
            }
            Err(e) => {
                tracing::error!(error = %e, %peer, code = %refusal.code, "cannot keep the report of a refused event")
            }
        }
    }

    /// Refuses an event whose origin is not the provider of the person it is by
    /// (`author_provider`), or whose origin signature does not verify with that provider's keys
    /// in the directory.
    fn check_origin(
        &self,
        origin: &wire::Origin,
        author_provider: &str,
        room: &RoomId,
        event: &RoomEvent,
    ) -> Result<(), ApiError> {
        let federation = self.federation()?;
        if origin.provider != author_provider {
            return Err(err(
                ErrorCode::ForgedEvent,
                format!(
                    "the {} is by a person of `{author_provider}` but its origin says `{}`",
                    event.kind(),
                    origin.provider
                ),
            ));
        }
        if !federation.verify_origin(author_provider, &wire::event_form(room, event), &origin.signature) {
            return Err(err(
                ErrorCode::ForgedEvent,
                format!("the {}'s origin signature does not verify with `{author_provider}`'s keys", event.kind()),
            ));
        }
        Ok(())
    }

    /// The provider of a member of a room on another provider (the hub, for a member whose
    /// address is not known, which does not happen in a followed room).
    fn provider_of_member(&self, user_id: i64, members: &[MemberRecord], hub: &str) -> String {
        members
            .iter()
            .find(|m| m.user_id == user_id)
            .and_then(|m| m.remote_address.as_deref())
            .map_or_else(|| hub.to_owned(), |a| provider_of(a).to_owned())
    }

    /// Refuses an event attributed to one of this provider's people that it did not submit.
    async fn submitted_here(&self, digest: &str, room: &RoomId, event: &RoomEvent) -> Result<(), ApiError> {
        if self.store.was_submitted(digest).await.map_err(store_error)? {
            return Ok(());
        }
        Err(err(
            ErrorCode::ForgedEvent,
            format!(
                "this {} in room {} of {} is attributed to a person of this provider, which did not submit it",
                event.kind(),
                room.id,
                room.hub
            ),
        ))
    }

    /// Stores the message a hub's answer to a local person's send carries, in this
    /// provider's copy of the room.
    pub(crate) async fn store_submitted_message(
        &self,
        session: Session,
        chat_id: i64,
        members: &[MemberRecord],
        event: RoomEvent,
    ) -> Result<(Message, bool), ApiError> {
        let RoomEvent::Message { seq, client_id, mut content, reply_to, forwarded_sent_at, sent_at, .. } = event else {
            return Err(err(ErrorCode::PeerProtocol, "the hub answered a send with another kind of event"));
        };
        let folded = validate_content(&mut content).map_err(|e| err(ErrorCode::PeerProtocol, e.message))?;
        let locals = members.iter().filter(|m| m.remote_address.is_none()).map(|m| m.user_id).collect();
        let new = NewMessage {
            chat_id,
            sender_id: session.user_id,
            client_id,
            content,
            folded,
            reply_to,
            forwarded_from: forwarded_sent_at.map(|sent_at| ForwardedFrom { user_id: 0, sent_at }),
            sent_at,
            // The hub answered with it: the room has it.
            delivery: Some(Delivery::delivered()),
        };
        let (message, created, updates) = self.store.put_message_at(new, seq, locals).await.map_err(store_error)?;
        self.publish(updates).await;
        Ok((message, created))
    }

    /// The reactions a message will have once the hub's event for a local person's reaction
    /// arrives (what a reaction answers with).
    pub(crate) async fn reactions_after(
        &self,
        chat_id: i64,
        seq: i64,
        user_id: i64,
        emoji: Option<String>,
    ) -> Result<Vec<Reaction>, ApiError> {
        let mut reactions = self.existing_message(chat_id, seq).await?.reactions;
        reactions.retain(|r| r.user_id != user_id);
        if let Some(emoji) = emoji {
            reactions.push(Reaction { user_id, emoji });
            reactions.sort_by_key(|r| r.user_id);
        }
        Ok(reactions)
    }

    /// Typing in a room with people on other messengers: to the hub, or from the hub to its
    /// followers. Best effort.
    pub(crate) async fn typing_across(&self, session: Session, chat_id: i64, members: &[MemberRecord], route: &Route) {
        let Some(federation) = self.federation.get() else { return };
        let Ok(user) = self.address_of_id(session.user_id).await else { return };
        match route {
            Route::Hub(link) => {
                let typing = wire::Typing { room: RoomId { hub: link.hub.clone(), id: link.hub_chat }, user };
                federation.typing(&link.hub, &typing).await;
            }
            Route::Here => {
                let typing =
                    wire::Typing { room: RoomId { hub: federation.provider_id().to_owned(), id: chat_id }, user };
                for peer in remote_providers(members) {
                    federation.typing(&peer, &typing).await;
                }
            }
        }
    }

    /// `POST /interconnect/v1/typing` from `peer`.
    pub async fn accept_typing(&self, peer: &str, typing: wire::Typing) -> Result<(), ApiError> {
        let federation = self.federation()?.clone();
        // One answer for "no such room" and "not a member of it": a peer cannot probe chat ids.
        let no_room = || err(ErrorCode::NotFound, format!("no room with `{}` as a member", typing.user));
        let chat_id = if typing.room.hub == federation.provider_id() {
            typing.room.id
        } else if typing.room.hub == peer {
            let link = RoomLink { hub: typing.room.hub.clone(), hub_chat: typing.room.id };
            self.store.chat_by_room(&link).await.map_err(store_error)?.ok_or_else(no_room)?
        } else {
            return Err(err(ErrorCode::BadRequest, "the room is neither this provider's nor the caller's"));
        };
        // A room hosted here is a chat here that follows no other hub's room.
        let hosted_elsewhere = typing.room.hub == federation.provider_id()
            && self.store.room_link(chat_id).await.map_err(store_error)?.is_some();
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        if members.is_empty() || hosted_elsewhere {
            return Err(no_room());
        }
        if provider_of(&typing.user) != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may speak only for its own users"));
        }
        let user_id = self.member_by_address(&typing.user, &members).await.map_err(|e| match e.code {
            ErrorCode::NotFound => no_room(),
            _ => e,
        })?;
        let update = Arc::new(peyvand_api::Update {
            cursor: None,
            at: now_millis(),
            event: peyvand_api::Event::Typing { chat_id, user_id },
        });
        for member in members.iter().filter(|m| m.remote_address.is_none()) {
            if !self.store.is_blocked(member.user_id, user_id).await.map_err(store_error)? {
                self.bus.publish(member.user_id, update.clone()).await;
            }
        }
        // The hub passes typing on to the room's other followers.
        if typing.room.hub == federation.provider_id() {
            for other in remote_providers(&members).into_iter().filter(|p| p != peer) {
                federation.typing(&other, &typing).await;
            }
        }
        Ok(())
    }

    /// `POST /v1/users/{user_id}/report`: reports a person for abuse. Kept here for the
    /// operator; a person on another messenger is also reported to their provider.
    pub async fn report(&self, session: Session, user_id: i64, reason: &str) -> Result<(), ApiError> {
        let reason = reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON_CHARS
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(err(ErrorCode::BadRequest, format!("a reason is 1 to {MAX_REASON_CHARS} characters of text")));
        }
        self.limit(format!("reports:{}", session.user_id), crate::DAY_MS, 20, "reports").await?;
        let me = self.live_user(session.user_id).await?;
        let target = self.live_user(user_id).await?;
        if target.id == me.id {
            return Err(err(ErrorCode::BadRequest, "you cannot report yourself"));
        }
        let local_address = |user: &UserRecord| match (&user.remote_address, &user.phone, self.federation.get()) {
            (Some(remote), _, _) => remote.clone(),
            (None, Some(phone), Some(f)) => address(phone, f.provider_id()),
            (None, Some(phone), None) => phone.clone(),
            (None, None, _) => format!("user:{}", user.id),
        };
        let record = ReportRecord {
            id: 0,
            reporter: local_address(&me),
            reported: local_address(&target),
            reason: reason.to_owned(),
            from_provider: None,
            created_at: now_millis(),
        };
        if let Some(remote) = &target.remote_address {
            let federation = self.federation()?;
            let report = wire::Report {
                reporter: record.reporter.clone(),
                reported: remote.clone(),
                reason: record.reason.clone(),
            };
            federation.report(provider_of(remote), &report).await?;
        }
        let id = self.store.add_report(record).await.map_err(store_error)?;
        tracing::warn!(report = id, reporter = me.id, reported = target.id, "abuse report");
        Ok(())
    }

    /// `POST /interconnect/v1/reports` from `peer`: one of its users reports one of ours.
    pub async fn accept_report(&self, peer: &str, report: wire::Report) -> Result<(), ApiError> {
        let (_, provider) = parse_address(&report.reporter)?;
        if provider != peer {
            return Err(err(ErrorCode::BadRequest, "a provider may report only for its own users"));
        }
        // Only about someone the reporter shares a chat with, with one answer for "no such
        // person" and "no chat with them": a peer cannot learn who has an account here by
        // reporting numbers, nor report people its users never met.
        let nobody = || err(ErrorCode::NotFound, "no one here shares a chat with the reporter at this address");
        let reported = self.local_by_address(&report.reported).await.map_err(|e| match e.code {
            ErrorCode::NotFound => nobody(),
            _ => e,
        })?;
        let reporter = self.store.remote_user_by_address(&report.reporter).await.map_err(store_error)?;
        let shared = match reporter {
            Some(reporter) => self.store.direct_chat(reported.id, reporter.id).await.map_err(store_error)?,
            None => None,
        };
        if shared.is_none() {
            return Err(nobody());
        }
        let reason = report.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(err(ErrorCode::BadRequest, format!("a reason is 1 to {MAX_REASON_CHARS} characters")));
        }
        let record = ReportRecord {
            id: 0,
            reporter: report.reporter,
            reported: report.reported,
            reason: reason.to_owned(),
            from_provider: Some(peer.to_owned()),
            created_at: now_millis(),
        };
        let id = self.store.add_report(record).await.map_err(store_error)?;
        tracing::warn!(report = id, %peer, reported = reported.id, "abuse report from another messenger");
        Ok(())
    }

    /// Why a message to the remote members of a room hosted here would wait now, if it would
    /// (see [`Federation::delivery_problem`]).
    pub(crate) fn delivery_problem(&self, members: &[MemberRecord]) -> Option<ApiError> {
        let Some(federation) = self.federation.get() else {
            return Some(err(ErrorCode::InterconnectDisabled, "this server is not connected to other messengers"));
        };
        remote_providers(members).iter().find_map(|peer| federation.delivery_problem(peer))
    }

    /// Records where messages sent to other messengers stand (from the delivery to peers) and
    /// tells their senders' devices of each change.
    pub async fn delivery_changed(&self, changes: Vec<DeliveryChange>) -> Result<(), ApiError> {
        let updates = self.store.set_delivery(changes, now_millis()).await.map_err(store_error)?;
        self.publish(updates).await;
        Ok(())
    }

    /// The oldest `limit` events waiting for `peer`.
    pub async fn outbound(&self, peer: &str, limit: u32) -> Result<Vec<peyvand_store::OutboundRecord>, ApiError> {
        self.store.outbound(peer, limit).await.map_err(store_error)
    }

    /// Forgets events `peer` has received.
    pub async fn outbound_delivered(&self, peer: &str, ids: &[i64]) -> Result<(), ApiError> {
        self.store.remove_outbound(peer, ids).await.map_err(store_error)
    }

    /// Drops queued events older than `max_age_ms` (per peer, how many) and forgets received
    /// transactions and submissions older than that too.
    pub async fn expire_outbound(&self, max_age_ms: i64) -> Result<Vec<(String, u64)>, ApiError> {
        let before = now_millis() - max_age_ms;
        self.store.prune_inbound(before).await.map_err(store_error)?;
        self.store.prune_submissions(before).await.map_err(store_error)?;
        self.store.expire_outbound(before).await.map_err(store_error)
    }

    /// Records the nonce of a signed request from `peer`, good for replay until `stale_after`;
    /// whether this is its first use (see `FederationStore::first_use_of_nonce`).
    pub async fn first_use_of_nonce(
        &self,
        peer: &str,
        nonce: &str,
        stale_after: i64,
        now: i64,
    ) -> Result<bool, ApiError> {
        self.store.first_use_of_nonce(peer, nonce, stale_after, now).await.map_err(store_error)
    }

    /// Forgets the nonces of requests that went stale before `before`.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, ApiError> {
        self.store.prune_nonces(before).await.map_err(store_error)
    }

    /// The events waiting for each peer.
    pub async fn queue_depths(&self) -> Result<Vec<peyvand_store::QueueDepth>, ApiError> {
        self.store.queue_depths().await.map_err(store_error)
    }

    /// Takes or renews this process's lease to deliver to `peer` until `until` (giving it up
    /// with `until` = `now`); whether it holds it (see `FederationStore::lease_delivery`).
    pub async fn lease_delivery(&self, peer: &str, holder: &str, now: i64, until: i64) -> Result<bool, ApiError> {
        self.store.lease_delivery(peer, holder, now, until).await.map_err(store_error)
    }

    /// The newest abuse reports, for the operator.
    pub async fn reports(&self, limit: u32) -> Result<Vec<ReportRecord>, ApiError> {
        self.store.reports(limit.clamp(1, 1000)).await.map_err(store_error)
    }
}

/// A display name from a peer: trimmed, without control characters, at most 64 characters.
/// A name from another provider as a stand-in shows it: no controls, no direction embeddings,
/// overrides or isolates, at most 64 characters, and empty (so the address shows instead) when
/// nothing visible is left.
fn clean_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|&c| !c.is_control() && !peyvand_core::chars::is_direction_control(c))
        .take(64)
        .collect();
    if peyvand_core::chars::has_visible(&name) { name.trim().to_owned() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_other_providers_lose_what_spoofs() {
        assert_eq!(clean_name(" \u{202E}سارا\u{202C} "), "سارا");
        assert_eq!(clean_name("\u{200F}\u{200B}\u{3164}"), "");
        assert_eq!(clean_name("نیم\u{200C}فاصله"), "نیم\u{200C}فاصله", "ZWNJ is Persian spelling");
    }

    #[test]
    fn addresses_are_checked() {
        let (phone, provider) = parse_address("+989121234567@damavand").unwrap();
        assert_eq!((phone.as_str(), provider), ("+989121234567", "damavand"));
        for bad in
            ["09121234567@damavand", "+989121234567", "+989121234567@", "+98912@Damavand", "x@y", "+989121234567@a/b"]
        {
            assert_eq!(parse_address(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn event_forms_are_as_specified() {
        let room = RoomId { hub: "alborz".into(), id: 7 };
        let content = peyvand_api::Content::Text { text: "hi".into() };
        let event = RoomEvent::Message {
            seq: 3,
            sender: "+989121234567@damavand".into(),
            sender_name: "Sara".into(),
            recipient: "+989120000000@alborz".into(),
            client_id: "c1".into(),
            content: content.clone(),
            reply_to: None,
            forwarded_sent_at: None,
            sent_at: 5,
        };
        let form = String::from_utf8(wire::event_form(&room, &event)).unwrap();
        assert_eq!(
            form,
            "peyvand-event/1\nalborz\n7\nmessage\n+989121234567@damavand\nc1\n\n\ntext\n\
             8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
        );
        // What the hub assigns is left out: the follower's action has the hub's event's form.
        let action = Action::Send { client_id: "c1".into(), content, reply_to: None, forwarded_sent_at: None };
        assert_eq!(wire::event_form(&room, &action.expected_event("+989121234567@damavand")), form.as_bytes());
        let other = Action::Send {
            client_id: "c1".into(),
            content: peyvand_api::Content::Text { text: "hi!".into() },
            reply_to: None,
            forwarded_sent_at: None,
        };
        assert_ne!(
            wire::event_digest(&room, &other.expected_event("+989121234567@damavand")),
            wire::event_digest(&room, &event)
        );
        let reaction = Action::React { seq: 3, emoji: Some("👍".into()) }.expected_event("u@damavand");
        assert_eq!(
            String::from_utf8(wire::event_form(&room, &reaction)).unwrap(),
            "peyvand-event/1\nalborz\n7\nreaction\n3\nu@damavand\n👍"
        );
    }

    #[test]
    fn media_contents_sign_their_whole_description() {
        let room = RoomId { hub: "alborz".into(), id: 7 };
        let media = peyvand_api::Media {
            kind: peyvand_api::MediaKind::Voice,
            mime: "audio/ogg".into(),
            size: 1997,
            sha256: "ab".repeat(32),
            name: None,
            width: None,
            height: None,
            duration_ms: Some(1000),
            waveform: Some(vec![0, 31]),
            preview: None,
            thumbnail: None,
        };
        let content = peyvand_api::Content::Media { media: Box::new(media.clone()), caption: None };
        let edit = RoomEvent::Edit { seq: 3, content, edited_at: 1 };
        let empty = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b""));
        let expected = format!(
            "peyvand-event/1\nalborz\n7\nedit\n3\nmedia\nvoice\naudio/ogg\n1997\n{}\n{empty}\n\n\n1000\n001f\n\n\n{empty}",
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(wire::event_form(&room, &edit)).unwrap(), expected);
        // Any field changed changes the form: a hub cannot alter a description it relays.
        let renamed = peyvand_api::Media { name: Some("x.ogg".into()), ..media };
        let other = RoomEvent::Edit {
            seq: 3,
            content: peyvand_api::Content::Media { media: Box::new(renamed), caption: None },
            edited_at: 1,
        };
        assert_ne!(wire::event_form(&room, &edit), wire::event_form(&room, &other));
    }

    #[test]
    fn room_events_read_as_the_protocol_writes_them() {
        let json = r#"{"room":{"hub":"alborz","id":7},"event":{"type":"reaction","seq":3,"user":"+989121234567@alborz","emoji":"👍"}}"#;
        let envelope: Envelope = serde_json::from_str(json).unwrap();
        assert_eq!(envelope.room, RoomId { hub: "alborz".into(), id: 7 });
        assert_eq!(
            envelope.event,
            RoomEvent::Reaction { seq: 3, user: "+989121234567@alborz".into(), emoji: Some("👍".into()) }
        );
        let unknown = r#"{"room":{"hub":"alborz","id":7},"event":{"type":"reaction","seq":3,"user":"u","extra":1}}"#;
        assert!(serde_json::from_str::<Envelope>(unknown).is_err());
    }
}
