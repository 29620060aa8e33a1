//! The things the API talks about: people, devices, settings, chats and messages.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The signed-in person's own account, as only they see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: i64,
    /// E.164, e.g. `+989121234567`.
    pub phone: String,
    pub display_name: String,
    pub username: Option<String>,
    pub bio: String,
    pub has_pin: bool,
    pub created_at: Millis,
}

/// Another person as the viewer is allowed to see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserProfile {
    pub id: i64,
    pub display_name: String,
    pub username: Option<String>,
    pub bio: String,
    /// Shown only to the person's contacts and to those who have the number already.
    pub phone: Option<String>,
    /// Shown only when the person's last-seen setting lets the viewer see it.
    pub presence: Option<Presence>,
    /// Whether the viewer has this person in their contacts.
    pub is_contact: bool,
    /// Whether the viewer has blocked this person.
    pub blocked: bool,
    /// The account was deleted: only its id remains.
    pub deleted: bool,
    /// For a person on another messenger: where they are. Shown to the people who share a
    /// chat with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messenger: Option<Messenger>,
}

/// Another messenger, where a person is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Messenger {
    /// The provider's id in the registry.
    pub provider_id: String,
    /// The messenger's name for people (from the registry's directory).
    pub name: String,
    /// The person's address there, `PHONE@PROVIDER-ID`.
    pub address: String,
}

/// Online now, or when last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub online: bool,
    pub last_seen: Option<Millis>,
}

/// A signed-in device (one session token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: i64,
    pub name: String,
    /// When it signed in.
    pub created_at: Millis,
    /// When it last made a request (to the minute, or finer when sessions end sooner). A
    /// session unused for the server's `session_idle_secs` (default 180 days) ends.
    pub last_active: Millis,
    /// The device that made this request.
    pub current: bool,
}

/// Who may do something to or see something of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    #[default]
    Everybody,
    Contacts,
    Nobody,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everybody => "everybody",
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "everybody" => Some(Self::Everybody),
            "contacts" => Some(Self::Contacts),
            "nobody" => Some(Self::Nobody),
            _ => None,
        }
    }

    /// Whether a viewer passes: `is_contact` says whether the owner has the viewer in their
    /// contacts.
    pub fn allows(self, is_contact: bool) -> bool {
        match self {
            Self::Everybody => true,
            Self::Contacts => is_contact,
            Self::Nobody => false,
        }
    }
}

/// A person's privacy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivacySettings {
    /// Who sees when I was last online.
    pub last_seen: Audience,
    /// Who can find me by my phone number (contact import, lookup). My number itself is shown
    /// on my profile only to the people in my contacts and to those who have it in theirs.
    pub phone_discovery: Audience,
    /// Who can start a chat with me and send me messages (`nobody` is treated as `contacts`).
    pub messages: Audience,
    /// Who can add me to groups.
    pub group_invites: Audience,
    /// "Connect to other messengers": who on other licensed messengers can find me by my
    /// phone number and message me. `nobody` (the default) means off: nobody there can.
    #[serde(default = "interconnect_off")]
    pub interconnect: Audience,
}

fn interconnect_off() -> Audience {
    Audience::Nobody
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            last_seen: Audience::Everybody,
            phone_discovery: Audience::Everybody,
            messages: Audience::Everybody,
            group_invites: Audience::Everybody,
            interconnect: interconnect_off(),
        }
    }
}

/// The body of a message. Tagged so that media and end-to-end encrypted bodies can be added
/// without changing the shape of [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        text: String,
    },
    /// A photo, voice message, video, audio track or file, with an optional caption. A client
    /// sends it by giving the media item's id ([`SendMessage::media`](crate::SendMessage));
    /// the server fills in what it found in the file.
    Media {
        media: Box<Media>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// What remains of a message deleted for everyone.
    Deleted,
}

impl Content {
    /// The text of a text message, or a media message's caption.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text { text } => Some(text),
            Self::Media { caption, .. } => caption.as_deref(),
            Self::Deleted => None,
        }
    }

    /// The media of a media message.
    pub fn media(&self) -> Option<&Media> {
        match self {
            Self::Media { media, .. } => Some(media),
            _ => None,
        }
    }
}

/// What a media item is, as a person sees it: how a client shows it and how the server checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// JPEG, PNG or WebP; shown inline, with a thumbnail and an inline preview.
    Photo,
    /// A recorded voice message: Ogg/Opus, WebM/Opus or MP4/AAC.
    Voice,
    /// MP4 or WebM, played inline.
    Video,
    /// A music or audio file (MP3, Ogg, MP4/AAC, FLAC, WAV, WebM).
    Audio,
    /// Anything, always offered as a download.
    File,
}

impl MediaKind {
    pub const ALL: [MediaKind; 5] = [Self::Photo, Self::Voice, Self::Video, Self::Audio, Self::File];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Photo => "photo",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A media item as a message carries it: what it is and enough to show it before its bytes
/// arrive. Its bytes are fetched from the message (`GET /v1/chats/{chat_id}/messages/{seq}/media`),
/// never by a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Media {
    pub kind: MediaKind,
    /// The type detected from the bytes (never `text/html` or `image/svg+xml`).
    pub mime: String,
    /// In bytes.
    pub size: u64,
    /// SHA-256 of the bytes as stored (for a photo, after its metadata was removed), lowercase hex.
    pub sha256: String,
    /// The file name the sender gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Of a voice message, audio or video, read from its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// A voice message's waveform as the sender's client gave it: up to 100 values, 0 to 31.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Vec<u8>>,
    /// A tiny inline preview (ThumbHash, base64) to show before the thumbnail arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// A small JPEG of a photo (made by the server) or a video (given by the sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
}

/// A photo's or video's thumbnail: a JPEG of at most 320 pixels on its longer side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Thumbnail {
    pub sha256: String,
    pub size: u64,
    pub width: u32,
    pub height: u32,
}

/// A finished upload, owned by its uploader until it is sent (`GET /v1/media/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaItem {
    /// The id to send it by: the upload's id.
    pub id: String,
    pub media: Media,
    pub created_at: Millis,
}

/// Short-lived addresses of a message's media that need no `Authorization` header, for
/// `<img>`, `<audio>` and `<video>` elements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaLinks {
    /// The bytes (range requests work).
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    pub expires_at: Millis,
}

/// Where a forwarded message came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForwardedFrom {
    /// The original author; 0 when they are not known here (a message forwarded on another
    /// messenger, whose author is not disclosed across messengers).
    pub user_id: i64,
    pub sent_at: Millis,
}

/// One person's reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    pub user_id: i64,
    pub emoji: String,
}

/// A message in a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub chat_id: i64,
    /// The message's id within its chat: 1, 2, 3, ...
    pub seq: i64,
    pub sender_id: i64,
    /// For a sender on another messenger, their address there (`PHONE@PROVIDER-ID`). Absent
    /// for people on this messenger, who are known by `sender_id` (their number shows on their
    /// profile as their settings allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_address: Option<String>,
    /// The id the sending client gave the message (for idempotent retries).
    pub client_id: String,
    pub content: Content,
    pub reply_to: Option<i64>,
    pub forwarded_from: Option<ForwardedFrom>,
    pub sent_at: Millis,
    pub edited_at: Option<Millis>,
    pub reactions: Vec<Reaction>,
    /// For a message sent from this messenger to people on another one, in a room hosted
    /// here: whether their messenger has taken it. Absent for every other message (within
    /// this messenger, received from another one, or sent to a room another messenger hosts,
    /// which answers a send only once it has the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// Where a message to another messenger stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Why a `pending` message waits (the last attempt's failure, absent before any failed)
    /// or why a `failed` one failed: `peer_not_active` (the messenger's licence is suspended
    /// or ended in the registry's directory), `peer_unavailable` (it did not answer), or the
    /// code the other messenger refused it with (such as `privacy_restricted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::ErrorCode>,
    /// The reason for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Delivery {
    pub fn pending(problem: Option<&crate::ApiError>) -> Self {
        Self {
            state: DeliveryState::Pending,
            reason: problem.map(|e| e.code),
            detail: problem.map(|e| e.message.clone()),
        }
    }

    pub fn delivered() -> Self {
        Self { state: DeliveryState::Delivered, reason: None, detail: None }
    }

    pub fn failed(problem: &crate::ApiError) -> Self {
        Self { state: DeliveryState::Failed, reason: Some(problem.code), detail: Some(problem.message.clone()) }
    }
}

/// `pending`: queued for the other messenger, retried until it takes the message or the
/// server's delivery deadline passes; `delivered`: the other messenger has it; `failed`: it
/// refused it, or the deadline passed (the message will not arrive; sending it again with the
/// same client id queues it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// The kind of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Direct,
}

/// A chat as it appears in the chat list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Chat {
    pub id: i64,
    pub kind: ChatKind,
    /// The other person, for a direct chat.
    pub peer: Option<UserProfile>,
    pub last_message: Option<Message>,
    /// Messages from others after what I have read.
    pub unread: i64,
    /// The last seq I have read.
    pub read_up_to: i64,
    /// The last seq of mine that the other person's devices have received.
    pub peer_delivered_up_to: i64,
    /// The last seq of mine that the other person has read.
    pub peer_read_up_to: i64,
    /// When the chat last had activity; the list is sorted by this, newest first.
    pub updated_at: Millis,
}

/// A message found by search, with its chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub chat_id: i64,
    pub message: Message,
}

/// `GET /v1/interconnect/lookup?phone=`: the messengers where a phone number can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReachableList {
    /// The number asked about, E.164.
    pub phone: String,
    pub reachable: Vec<Reachable>,
    /// Messengers that could not be asked, and why (down, refusing, rate limits).
    pub unreachable: Vec<ProviderFailure>,
}

/// A messenger where a phone number can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reachable {
    pub provider_id: String,
    /// The messenger's name for people.
    pub provider_name: String,
    /// `PHONE@PROVIDER-ID`: how to write this person as a recipient.
    pub address: String,
    pub display_name: String,
    /// On this messenger (the asker's own).
    pub local: bool,
    /// The person's user id, when they are on this messenger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
}

/// A messenger that could not answer a cross-messenger call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderFailure {
    pub provider_id: String,
    pub code: crate::ErrorCode,
    pub message: String,
}
