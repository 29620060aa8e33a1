//! The hub: what a room hosted here does with its own people's changes and its peers'
//! submissions.

use peyvand_api::{ApiError, ErrorCode, ForwardedFrom, Message};
use peyvand_store::{MemberRecord, UserRecord};

use super::wire::{self, Action, Envelope, RoomEvent, RoomId, Submission};
use super::{clean_name, parse_address, remote_providers};
use crate::{Service, Session, err, now_millis, store_error};

tokio::task_local! {
    /// The origin of the submission being made here, passed on with the events it causes.
    static RELAYED: wire::Origin;
}

impl Service {
    /// Queues `event` of the room hosted here for every provider of its remote members, and
    /// tells the transport. Callers build the event only when [`has_remote`](super::has_remote) says so.
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
}
