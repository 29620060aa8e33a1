//! What goes between providers for cross-messenger chats (JSON).

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::wire;

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
