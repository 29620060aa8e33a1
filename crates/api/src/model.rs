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
    /// What remains of a message deleted for everyone.
    Deleted,
}

impl Content {
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text { text } => Some(text),
            Self::Deleted => None,
        }
    }
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
