//! The update stream: everything that happens to a person's account, in order, with a cursor.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::model::{Delivery, Message, Millis, Presence, Reaction};
use crate::requests::SendMessage;

/// One update. Durable updates have a `cursor`, strictly increasing per person; ephemeral ones
/// (typing, presence) have none and are not replayed after a reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Update {
    pub cursor: Option<i64>,
    pub at: Millis,
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new message in a chat of mine (sent by anyone, including my other devices). Read
    /// back when catching up from a cursor, it shows the message as it is by then: edited,
    /// with its reactions, or deleted for everyone; the updates that tell of those changes
    /// follow it as usual.
    MessageNew { message: Message },
    /// A message was edited.
    MessageEdited { message: Message },
    /// Where a message I sent to another messenger stands changed (see `Message.delivery`):
    /// it was delivered, failed, or waits for another reason. Only the sender's devices get it.
    MessageDelivery { chat_id: i64, seq: i64, delivery: Delivery },
    /// Messages were deleted: for everyone, or for me on another of my devices.
    MessagesDeleted { chat_id: i64, seqs: Vec<i64>, for_everyone: bool },
    /// The reactions on a message changed.
    ReactionsChanged { chat_id: i64, seq: i64, reactions: Vec<Reaction> },
    /// The other person's devices received my messages up to `up_to`.
    Delivered { chat_id: i64, user_id: i64, up_to: i64 },
    /// The other person read my messages up to `up_to`.
    Read { chat_id: i64, user_id: i64, up_to: i64 },
    /// I read a chat up to `up_to` on one of my devices: every device shows it as read.
    ReadByMe { chat_id: i64, up_to: i64, unread: i64 },
    /// Someone is typing in a chat (ephemeral).
    Typing { chat_id: i64, user_id: i64 },
    /// Someone's presence changed, as their settings let me see it (ephemeral).
    Presence { user_id: i64, presence: Presence },
    /// A device of mine was signed out (all of them when `device_id` is absent); that
    /// device's streams close right after this update (ephemeral).
    SignedOut { device_id: Option<i64> },
}

/// A page of updates from the long-poll endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdatesPage {
    pub updates: Vec<Update>,
    /// Where to resume: pass it as `after` next time.
    pub cursor: i64,
}

/// A frame the server sends on the WebSocket stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum StreamFrame {
    /// Sent once after connecting: the stream is now live from `cursor`.
    Ready {
        cursor: i64,
    },
    Update {
        update: Update,
    },
    /// The cursor is too old: fetch chats again and resume from `cursor`.
    ResyncRequired {
        cursor: i64,
    },
    /// The answer to a client's `send` frame: the stored message, exactly as
    /// `POST /v1/chats/{chat_id}/messages` answers it (`created` is false for a retry).
    Sent {
        request: u64,
        created: bool,
        message: Message,
    },
    /// A client frame was refused, with the error the HTTP endpoint would give; `request` is
    /// absent when the frame could not be read at all. The stream stays open.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
        error: ApiError,
    },
}

/// A frame a client may send on the WebSocket stream, as JSON text. `request` is a number of
/// the client's choosing that the answer (`sent` or `error`) repeats; a connection has at most
/// 64 requests in flight, and the server reads no further frames until one is answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Sends a message, as `POST /v1/chats/{chat_id}/messages` does: answered once the message
    /// is durably stored, and a retry with the same `client_id` returns the same message.
    /// Sends to one chat are stored in the order they were sent on the connection (a failed one
    /// does not hold back the next); their answers may come in another order.
    Send { request: u64, chat_id: i64, message: SendMessage },
}

/// The latest cursor and server time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncState {
    pub cursor: i64,
    pub now: Millis,
}
