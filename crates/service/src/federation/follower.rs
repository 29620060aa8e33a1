//! The follower: this provider's copy of a room hosted elsewhere, written from the hub's
//! events and answers.

use peyvand_api::{ApiError, Delivery, ErrorCode, ForwardedFrom, Message, Reaction};
use peyvand_store::{MemberRecord, NewMessage, RoomLink};

use super::wire::{self, Action, Envelope, EventRefusal, RoomEvent, RoomId, Submission};
use super::{clean_name, provider_of};
use crate::chats::{validate_client_id, validate_content, validate_emoji};
use crate::{Service, Session, err, now_millis, store_error};

impl Service {
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
}
