//! Request and response bodies of the client API's endpoints.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::model::{Account, Audience, Content, Device, Message, UserProfile};

/// `POST /v1/auth/code`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The phone number in any accepted form.
    pub phone: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeSent {
    /// The number normalised to E.164.
    pub phone: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
    pub code_length: u32,
}

/// `POST /v1/auth/sign-in`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignInRequest {
    pub phone: String,
    pub code: String,
    /// A name for the device, shown in the device list.
    #[serde(default)]
    pub device_name: Option<String>,
    /// The second-step PIN, for accounts that have one.
    #[serde(default)]
    pub pin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignedIn {
    /// The session token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub device_id: i64,
    pub account: Account,
    /// The account was created by this sign-in.
    pub new_account: bool,
}

/// `PATCH /v1/me`: fields left out stay as they are; an empty username removes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileUpdate {
    /// At most 64 characters, at least one of them visible; no line breaks, control
    /// characters, or direction embeddings, overrides and isolates (`invalid_profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
}

/// `PUT /v1/me/pin` sets or changes the PIN; `DELETE /v1/me/pin` removes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PinRequest {
    /// The new PIN (4 to 32 characters); absent when removing.
    #[serde(default)]
    pub pin: Option<String>,
    /// The PIN in force, when there is one.
    #[serde(default)]
    pub current_pin: Option<String>,
}

/// `PATCH /v1/me/settings`: fields left out stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_discovery: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_invites: Option<Audience>,
    /// `nobody` turns "connect to other messengers" off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interconnect: Option<Audience>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<Device>,
}

/// `POST /v1/contacts/import`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactsImport {
    /// Phone numbers in any accepted form (at most 1000 per request).
    pub phones: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportedContact {
    /// The number as it was given.
    pub input: String,
    /// The number in E.164, when it was valid.
    pub phone: Option<String>,
    /// The person, when they are on this messenger and let the importer find them.
    pub user: Option<UserProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactsImported {
    pub contacts: Vec<ImportedContact>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserProfile>,
}

/// `GET /v1/users/resolve?q=`: `@username` or a phone number.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct ResolveQuery {
    pub q: String,
}

/// `POST /v1/chats/direct`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenDirect {
    /// A person on this messenger ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// ... or anyone by address, `PHONE@PROVIDER-ID`, on this messenger or another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `POST /v1/users/{user_id}/report`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportUser {
    /// Why, in the reporter's words (1 to 1000 characters).
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatList {
    pub chats: Vec<crate::model::Chat>,
}

/// Where a forwarded message is taken from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForwardSource {
    pub chat_id: i64,
    pub seq: i64,
}

/// `POST /v1/chats/{chat_id}/messages`: either `content` or `forward` is given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendMessage {
    /// Chosen by the client (1 to 64 characters); a retry with the same id returns the message
    /// that was stored the first time. Ids that sort in the order they are made (a time prefix,
    /// as the Rust client's) are the cheapest for the server to index.
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardSource>,
    /// A media item to send (the id of a finished upload of the sender's); `content`, if
    /// given, must then be text: the caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
}

/// `GET /v1/chats/{chat_id}/messages`: newest first before `before`, or oldest first after
/// `after`; with neither, the newest page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub after: Option<i64>,
    /// 1 to 200; 50 when left out.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// In ascending `seq` order whichever way the page goes.
    pub messages: Vec<Message>,
}

/// `PATCH /v1/chats/{chat_id}/messages/{seq}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EditMessage {
    pub content: Content,
}

/// `DELETE /v1/chats/{chat_id}/messages/{seq}?for_everyone=`
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct DeleteQuery {
    #[serde(default)]
    pub for_everyone: bool,
}

/// `PUT /v1/chats/{chat_id}/messages/{seq}/reaction`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetReaction {
    /// Exactly one emoji of the Unicode emoji table (skin tones and ZWJ sequences included);
    /// anything else is `invalid_content`.
    pub emoji: String,
}

/// `POST /v1/chats/{chat_id}/read` and `POST /v1/chats/{chat_id}/delivered`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub up_to: i64,
}

/// `GET /v1/search?q=`
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Folded for Persian; a query with nothing visible left (NUL, zero-width characters,
    /// direction marks, fillers) is `bad_request`.
    pub q: String,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub chats: Vec<crate::model::Chat>,
    pub messages: Vec<crate::model::SearchHit>,
}

/// `GET /v1/updates?after=&timeout=` and the WebSocket at `GET /v1/updates/ws?after=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct UpdatesQuery {
    /// The last cursor the client has processed; 0 or absent for "from the start I may see".
    pub after: Option<i64>,
    /// Long-poll: seconds to wait for an update when there is none (0 to 60, default 25).
    pub timeout: Option<u64>,
    /// The session token, for WebSocket clients that cannot set a header.
    pub token: Option<String>,
}

/// `GET /v1/interconnect/lookup?phone=`: a phone number in any accepted form.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct LookupQuery {
    pub phone: String,
}
