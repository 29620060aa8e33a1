//! Direct chats: opening one, sending, history, edits, deletes, reactions, receipts, typing
//! and search, with the privacy rules that decide who may write to whom.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use peyvand_api::Audience;
use peyvand_api::{
    ApiError, Chat, ChatKind, Content, Delivery, DeliveryState, ErrorCode, Event, ForwardedFrom, Message, Reaction,
    SearchHit, SearchResults, SendMessage, Update,
};
use peyvand_core::content::validate_text;
use peyvand_core::text::fold_for_search;
use peyvand_store::{
    ChatView, DeliveryChange, MemberRecord, NewMessage, Page, Placed, RecipientFacts, SendContext, SendGate,
    SendOutcome,
};

use crate::federation::wire::{Action, RoomEvent};
use crate::federation::{Route, has_remote};
use crate::{DAY_MS, Service, Session, err, now_millis, store_error};

const MAX_PAGE: u32 = 200;

/// The members who are people here (the ones with update streams).
fn local_ids(members: &[MemberRecord]) -> Vec<i64> {
    members.iter().filter(|m| m.remote_address.is_none()).map(|m| m.user_id).collect()
}

fn no_chat() -> ApiError {
    err(ErrorCode::NotFound, "no such chat")
}

/// A search query that folds to nothing: empty, or made only of invisible characters.
pub(crate) fn empty_query() -> ApiError {
    err(ErrorCode::BadRequest, "the search query is empty (it has no visible character)")
}

fn no_reply() -> ApiError {
    err(ErrorCode::BadRequest, "reply_to names no message of this chat")
}

/// The privacy rules for writing to one person.
fn may_message(facts: &RecipientFacts) -> Result<(), ApiError> {
    if facts.deleted {
        return Err(err(ErrorCode::NotFound, "this account was deleted"));
    }
    if facts.blocked_by_sender {
        return Err(err(ErrorCode::Blocked, "you have blocked this person; unblock them to write"));
    }
    if facts.blocked_sender {
        return Err(err(ErrorCode::Blocked, "this person does not accept your messages"));
    }
    if facts.messages != Audience::Everybody && !facts.has_sender_as_contact {
        return Err(err(ErrorCode::PrivacyRestricted, "this person accepts messages only from their contacts"));
    }
    Ok(())
}

/// Checks a text (a message's or a caption) in place: direction controls balanced first
/// (closed at the end of their line), so that a message cannot turn around what a client
/// shows after it.
fn validate_text_in_place(text: &mut String) -> Result<(), ApiError> {
    if let std::borrow::Cow::Owned(balanced) = peyvand_core::chars::balance_direction_controls(text) {
        *text = balanced;
    }
    validate_text(text).map_err(|e| err(ErrorCode::InvalidContent, e.to_string()))
}

/// Checks a message's content and returns its search folding: a text, or a media message's
/// caption and file name. Media content is made by the server from a media item (a client
/// gives the item's id), so only its caption is the sender's.
pub(crate) fn validate_content(content: &mut Content) -> Result<String, ApiError> {
    match content {
        Content::Text { text } => {
            validate_text_in_place(text)?;
            Ok(fold_for_search(text))
        }
        Content::Media { media, caption } => {
            crate::media::check_description(media)?;
            if let Some(text) = caption {
                validate_text_in_place(text)?;
            }
            let searchable = [caption.as_deref(), media.name.as_deref()];
            Ok(fold_for_search(&searchable.into_iter().flatten().collect::<Vec<_>>().join(" ")))
        }
        Content::Deleted => Err(err(ErrorCode::InvalidContent, "a message cannot be sent as deleted")),
    }
}

/// A client gives media by the id of its upload: the server describes the file. (A media
/// description in a send comes only from the provider of a person on another messenger.)
fn refuse_client_media(request: &SendMessage) -> Result<(), ApiError> {
    if matches!(request.content, Some(Content::Media { .. })) {
        return Err(err(
            ErrorCode::InvalidContent,
            "media is sent by its id (`media`), with the caption as text content",
        ));
    }
    Ok(())
}

pub(crate) fn validate_client_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(ErrorCode::BadRequest, "client_id must be 1 to 64 printable ASCII characters"));
    }
    Ok(())
}

/// A reaction is one emoji of the Unicode table, here and from other providers alike.
pub(crate) fn validate_emoji(emoji: &str) -> Result<(), ApiError> {
    if !peyvand_core::chars::is_single_emoji(emoji) {
        return Err(err(ErrorCode::InvalidContent, "a reaction is one emoji"));
    }
    Ok(())
}

impl Service {
    /// The members of a chat, if `user_id` is one of them.
    async fn members_if_member(&self, user_id: i64, chat_id: i64) -> Result<Vec<MemberRecord>, ApiError> {
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        if members.iter().any(|m| m.user_id == user_id) { Ok(members) } else { Err(no_chat()) }
    }

    pub(crate) async fn publish(&self, updates: Vec<(i64, Update)>) {
        for (user_id, update) in updates {
            self.metrics.updates_published.fetch_add(1, Ordering::Relaxed);
            self.bus.publish(user_id, Arc::new(update)).await;
        }
    }

    /// Whether `sender` may write to `recipient`: neither has blocked the other, and the
    /// recipient's "who can message me" setting lets the sender in.
    async fn check_may_message(&self, sender: i64, recipient: i64) -> Result<(), ApiError> {
        if sender == recipient {
            return Ok(());
        }
        let target = self.live_user(recipient).await?;
        let facts = RecipientFacts {
            user_id: recipient,
            deleted: target.deleted,
            messages: target.privacy.messages,
            has_sender_as_contact: self.store.has_contact(recipient, sender).await.map_err(store_error)?,
            blocked_by_sender: self.store.is_blocked(sender, recipient).await.map_err(store_error)?,
            blocked_sender: self.store.is_blocked(recipient, sender).await.map_err(store_error)?,
        };
        may_message(&facts)
    }

    pub(crate) async fn chat_of(&self, viewer: i64, view: ChatView) -> Result<Chat, ApiError> {
        let other = view.others.first();
        let peer = match other {
            Some(m) => match self.store.user(m.user_id).await.map_err(store_error)? {
                Some(user) => Some(self.view_of(viewer, &user).await?),
                None => None,
            },
            // A chat with oneself ("saved messages").
            None => Some(self.view_of(viewer, &self.live_user(viewer).await?).await?),
        };
        Ok(Chat {
            id: view.chat.id,
            kind: ChatKind::Direct,
            peer,
            last_message: view.last_message,
            unread: view.unread,
            read_up_to: view.me.read_up_to,
            peer_delivered_up_to: other.map_or(view.me.delivered_up_to, |m| m.delivered_up_to),
            peer_read_up_to: other.map_or(view.me.read_up_to, |m| m.read_up_to),
            updated_at: view.chat.updated_at,
        })
    }

    /// `POST /v1/chats/direct`: the direct chat with a person, opened if new. Opening a chat
    /// with someone not in one's contacts counts against a daily limit.
    pub async fn open_direct(&self, session: Session, user_id: i64) -> Result<Chat, ApiError> {
        let me = session.user_id;
        if let Some(chat_id) = self.store.direct_chat(me, user_id).await.map_err(store_error)?
            && let Some(view) = self.store.chat_view(me, chat_id).await.map_err(store_error)?
        {
            return self.chat_of(me, view).await;
        }
        if let Some(remote) = self.live_user(user_id).await?.remote_address {
            return Box::pin(self.open_remote(session, &remote)).await;
        }
        self.check_new_chat(me, user_id).await?;
        let (chat_id, _) = self.store.open_direct_chat(me, user_id, now_millis()).await.map_err(store_error)?;
        let view = self.store.chat_view(me, chat_id).await.map_err(store_error)?.ok_or_else(no_chat)?;
        self.chat_of(me, view).await
    }

    /// Whether `me` may start a chat with `user_id`: the privacy rules, and a daily limit on
    /// new chats with people outside one's contacts.
    pub(crate) async fn check_new_chat(&self, me: i64, user_id: i64) -> Result<(), ApiError> {
        self.check_may_message(me, user_id).await?;
        if me != user_id && !self.store.has_contact(me, user_id).await.map_err(store_error)? {
            self.limit(
                format!("newchat:{me}"),
                DAY_MS,
                self.config.limits.new_chats_with_strangers_per_day,
                "new chats with people outside your contacts",
            )
            .await?;
        }
        Ok(())
    }

    /// `GET /v1/chats`
    pub async fn chats(&self, session: Session) -> Result<Vec<Chat>, ApiError> {
        let views = self.store.chats_of(session.user_id, 500).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(views.len());
        for view in views {
            out.push(self.chat_of(session.user_id, view).await?);
        }
        Ok(out)
    }

    /// `GET /v1/chats/{chat_id}`
    pub async fn chat(&self, session: Session, chat_id: i64) -> Result<Chat, ApiError> {
        let view = self.store.chat_view(session.user_id, chat_id).await.map_err(store_error)?.ok_or_else(no_chat)?;
        self.chat_of(session.user_id, view).await
    }

    /// `POST /v1/chats/{chat_id}/messages`: returns the message and whether it is new; a retry
    /// with the same client id returns the stored message.
    pub async fn send(
        &self,
        session: Session,
        chat_id: i64,
        request: SendMessage,
    ) -> Result<(Message, bool), ApiError> {
        refuse_client_media(&request)?;
        self.send_here(session, chat_id, request, None, Box::new(|| {})).await
    }

    /// [`Service::send`], calling `placed` once no later send to the chat can be stored before
    /// this one (see [`peyvand_store::ChatStore::send_message_placed`]); not at all when the
    /// send fails before the store has placed it, or goes to another messenger's members. A
    /// client's stream starts its next send to the chat then, instead of after this commit.
    pub async fn send_placed(
        &self,
        session: Session,
        chat_id: i64,
        request: SendMessage,
        placed: Placed,
    ) -> Result<(Message, bool), ApiError> {
        refuse_client_media(&request)?;
        self.send_here(session, chat_id, request, None, placed).await
    }

    /// A send in a chat hosted here, by a local person or (`forwarded` given by the hub's
    /// submission handling) a person on another messenger; a chat that follows another
    /// provider's room submits the send to its hub.
    pub(crate) async fn send_here(
        &self,
        session: Session,
        chat_id: i64,
        request: SendMessage,
        forwarded: Option<ForwardedFrom>,
        placed: Placed,
    ) -> Result<(Message, bool), ApiError> {
        let me = session.user_id;
        validate_client_id(&request.client_id)?;
        let (mut content, forwarded_from) = match (request.content, request.forward, request.media) {
            (caption, None, Some(media_id)) => {
                let caption = match caption {
                    None => None,
                    Some(Content::Text { text }) => Some(text),
                    Some(_) => return Err(err(ErrorCode::InvalidContent, "a caption is text")),
                };
                (Content::Media { media: Box::new(self.sendable_media(session, &media_id).await?), caption }, forwarded)
            }
            (Some(content), None, None) => (content, forwarded),
            (None, Some(source), None) => {
                self.members_if_member(me, source.chat_id).await?;
                let original = self.store.message(source.chat_id, source.seq).await.map_err(store_error)?;
                let original = original
                    .filter(|m| m.content != Content::Deleted)
                    .ok_or_else(|| err(ErrorCode::NotFound, "no such message to forward"))?;
                // A file from another messenger is fetched first: from here on, this
                // provider holds it.
                self.keep_media_of(&original).await?;
                let from = original
                    .forwarded_from
                    .clone()
                    .unwrap_or(ForwardedFrom { user_id: original.sender_id, sent_at: original.sent_at });
                (original.content, Some(from))
            }
            _ => {
                return Err(err(ErrorCode::BadRequest, "give content, media (with content as its caption) or forward"));
            }
        };
        let folded = validate_content(&mut content)?;
        let new = NewMessage {
            chat_id,
            sender_id: me,
            client_id: request.client_id,
            content,
            folded,
            reply_to: request.reply_to,
            forwarded_from,
            sent_at: now_millis(),
            delivery: None,
        };
        // The gate runs after the store has checked membership, a retry and `reply_to`, so a
        // retry of a stored message is answered and never counted against the limit.
        let refusal = Arc::new(Mutex::new(None));
        let gate: SendGate = {
            let (limiter, per_minute, refusal) =
                (self.send_limiter.clone(), self.config.limits.messages_per_minute, refusal.clone());
            Box::new(move |context: &SendContext| {
                let allowed =
                    context.recipients.iter().try_for_each(may_message).and_then(|()| limiter.send(me, per_minute));
                let ok = allowed.is_ok();
                if let Err(refused) = allowed {
                    *refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(refused);
                }
                ok
            })
        };
        match self.store.send_message_placed(new, gate, placed).await.map_err(store_error)? {
            SendOutcome::Stored { message, created, updates } => Ok(self.sent(message, created, updates).await),
            SendOutcome::NotMember => Err(no_chat()),
            SendOutcome::NoSuchReply => Err(no_reply()),
            SendOutcome::Refused(_) => Err(refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| err(ErrorCode::Internal, "the store refused a send without asking its gate"))),
            SendOutcome::Remote { context, new } => self.send_with_remote_members(session, new, &context).await,
        }
    }

    /// Counts a stored send and publishes its updates.
    async fn sent(&self, message: Message, created: bool, updates: Vec<(i64, Update)>) -> (Message, bool) {
        if created {
            self.metrics.messages_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.publish(updates).await;
        (message, created)
    }

    /// A send in a chat with members on other messengers: the same checks as
    /// [`ChatStore::send_message`](peyvand_store::ChatStore::send_message) makes in one step,
    /// then either a submission to the room's hub or a local append queued for every provider.
    async fn send_with_remote_members(
        &self,
        session: Session,
        new: NewMessage,
        context: &SendContext,
    ) -> Result<(Message, bool), ApiError> {
        let me = session.user_id;
        let chat_id = new.chat_id;
        if let Some(reply_to) = new.reply_to
            && self.store.message(chat_id, reply_to).await.map_err(store_error)?.is_none()
        {
            return Err(no_reply());
        }
        if let Err(refused) = context.recipients.iter().try_for_each(may_message).and_then(|()| self.limit_messages(me))
        {
            // A retry of a send stored before a block or a limit still gets its message.
            let stored = self.store.message_by_client_id(chat_id, me, &new.client_id).await.map_err(store_error)?;
            return stored.map(|message| (message, false)).ok_or(refused);
        }
        if let Route::Hub(link) = self.route(chat_id, &context.members).await? {
            let action = Action::Send {
                client_id: new.client_id,
                content: new.content,
                reply_to: new.reply_to,
                forwarded_sent_at: new.forwarded_from.map(|f| f.sent_at),
            };
            let event = self.submit(session, &link, action).await?;
            return self.store_submitted_message(session, chat_id, &context.members, event).await;
        }
        let notify = local_ids(&context.members);
        // A local person's message to people on other messengers: pending until their
        // messengers take it, and already saying why it waits when that is known.
        let local_sender = context.members.iter().any(|m| m.user_id == me && m.remote_address.is_none());
        let mut new = new;
        if local_sender {
            new.delivery = Some(Delivery::pending(self.delivery_problem(&context.members).as_ref()));
        }
        let (message, created, updates) = self.store.append_message(new, notify).await.map_err(store_error)?;
        let (mut message, created) = self.sent(message, created, updates).await;
        // The retry of a message that failed queues it again (below): pending again.
        if !created && local_sender && message.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed) {
            let pending = Delivery::pending(self.delivery_problem(&context.members).as_ref());
            let change = DeliveryChange { chat_id, seq: message.seq, delivery: pending.clone() };
            self.delivery_changed(vec![change]).await?;
            message.delivery = Some(pending);
        }
        // Queued again on a retry (created or not): the queue write could have been lost.
        if let Some(event) = self.message_event(&message, &context.members).await {
            self.fan_out(chat_id, &context.members, event).await;
        }
        Ok((message, created))
    }

    /// `GET /v1/chats/{chat_id}/messages`
    pub async fn history(
        &self,
        session: Session,
        chat_id: i64,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, ApiError> {
        self.members_if_member(session.user_id, chat_id).await?;
        let limit = limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let page = match (before, after) {
            (Some(_), Some(_)) => return Err(err(ErrorCode::BadRequest, "give before or after, not both")),
            (Some(seq), None) => Page::Before { seq, limit },
            (None, Some(seq)) => Page::After { seq, limit },
            (None, None) => Page::Before { seq: i64::MAX, limit },
        };
        self.store.history(session.user_id, chat_id, page).await.map_err(store_error)
    }

    async fn own_live_message(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
    ) -> Result<(Message, Vec<MemberRecord>), ApiError> {
        let members = self.members_if_member(session.user_id, chat_id).await?;
        let message = self.store.message(chat_id, seq).await.map_err(store_error)?;
        let message = message
            .filter(|m| m.content != Content::Deleted)
            .ok_or_else(|| err(ErrorCode::NotFound, "no such message"))?;
        if message.sender_id != session.user_id {
            return Err(err(ErrorCode::Forbidden, "only the sender can change a message for everyone"));
        }
        Ok((message, members))
    }

    /// `PATCH /v1/chats/{chat_id}/messages/{seq}`: only the sender edits; the message is
    /// marked edited.
    pub async fn edit(&self, session: Session, chat_id: i64, seq: i64, content: Content) -> Result<Message, ApiError> {
        self.edit_here(session, chat_id, seq, content).await
    }

    pub(crate) async fn edit_here(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
        content: Content,
    ) -> Result<Message, ApiError> {
        let (mut original, members) = self.own_live_message(session, chat_id, seq).await?;
        // A media message's edit changes its caption: the new text, or none if it is empty.
        let mut content = match (content, &original.content) {
            // From a follower's provider: the same file with a new caption.
            (Content::Media { media, caption }, Content::Media { media: file, .. }) if media == *file => {
                Content::Media { media, caption }
            }
            (Content::Media { .. }, _) => {
                return Err(err(ErrorCode::InvalidContent, "an edit gives text: a message's, or a media caption"));
            }
            (Content::Text { text }, Content::Media { media, .. }) => {
                Content::Media { media: media.clone(), caption: (!text.trim().is_empty()).then_some(text) }
            }
            (content, _) => content,
        };
        let folded = validate_content(&mut content)?;
        if let Route::Hub(link) = self.route(chat_id, &members).await? {
            // The copy here changes when the hub's event arrives.
            match self.submit(session, &link, Action::Edit { seq, content }).await? {
                RoomEvent::Edit { content, edited_at, .. } => {
                    original.content = content;
                    original.edited_at = Some(edited_at);
                    return Ok(original);
                }
                _ => return Err(err(ErrorCode::PeerProtocol, "the hub answered an edit with another kind of event")),
            }
        }
        let notify = local_ids(&members);
        let (message, updates) =
            self.store.edit_message(chat_id, seq, content, folded, now_millis(), notify).await.map_err(store_error)?;
        self.publish(updates).await;
        if has_remote(&members) {
            let event = RoomEvent::Edit {
                seq,
                content: message.content.clone(),
                edited_at: message.edited_at.unwrap_or_else(now_millis),
            };
            self.fan_out(chat_id, &members, event).await;
        }
        Ok(message)
    }

    /// `DELETE /v1/chats/{chat_id}/messages/{seq}`: for everyone (the sender only) or for me.
    pub async fn delete(&self, session: Session, chat_id: i64, seq: i64, for_everyone: bool) -> Result<(), ApiError> {
        if for_everyone {
            return self.delete_here(session, chat_id, seq).await;
        }
        self.members_if_member(session.user_id, chat_id).await?;
        let updates =
            self.store.hide_message(session.user_id, chat_id, seq, now_millis()).await.map_err(store_error)?;
        self.publish(updates).await;
        Ok(())
    }

    /// Deletes a message for everyone.
    pub(crate) async fn delete_here(&self, session: Session, chat_id: i64, seq: i64) -> Result<(), ApiError> {
        let (_, members) = self.own_live_message(session, chat_id, seq).await?;
        if let Route::Hub(link) = self.route(chat_id, &members).await? {
            self.submit(session, &link, Action::Delete { seq }).await?;
            return Ok(());
        }
        let updates =
            self.store.delete_message(chat_id, seq, now_millis(), local_ids(&members)).await.map_err(store_error)?;
        self.publish(updates).await;
        if has_remote(&members) {
            self.fan_out(chat_id, &members, RoomEvent::Delete { seq }).await;
        }
        Ok(())
    }

    /// `PUT` / `DELETE /v1/chats/{chat_id}/messages/{seq}/reaction`: one reaction per person.
    pub async fn react(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
        emoji: Option<String>,
    ) -> Result<Vec<Reaction>, ApiError> {
        self.react_here(session, chat_id, seq, emoji).await
    }

    pub(crate) async fn react_here(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
        emoji: Option<String>,
    ) -> Result<Vec<Reaction>, ApiError> {
        if let Some(e) = &emoji {
            validate_emoji(e)?;
        }
        let members = self.members_if_member(session.user_id, chat_id).await?;
        if let Route::Hub(link) = self.route(chat_id, &members).await? {
            self.submit(session, &link, Action::React { seq, emoji: emoji.clone() }).await?;
            return self.reactions_after(chat_id, seq, session.user_id, emoji).await;
        }
        let (reactions, updates) = self
            .store
            .set_reaction(chat_id, seq, session.user_id, emoji.clone(), now_millis(), local_ids(&members))
            .await
            .map_err(store_error)?;
        self.publish(updates).await;
        if has_remote(&members)
            && let Some(event) = self.user_event(session.user_id, |user| RoomEvent::Reaction { seq, user, emoji }).await
        {
            self.fan_out(chat_id, &members, event).await;
        }
        Ok(reactions)
    }

    /// `GET` one message, as its chat's members see it.
    pub async fn message(&self, session: Session, chat_id: i64, seq: i64) -> Result<Message, ApiError> {
        self.members_if_member(session.user_id, chat_id).await?;
        // Through the viewer's history, so that a message they deleted for themselves is gone.
        let page =
            self.store.history(session.user_id, chat_id, Page::After { seq: seq.saturating_sub(1), limit: 1 }).await;
        page.map_err(store_error)?
            .into_iter()
            .find(|m| m.seq == seq)
            .ok_or_else(|| err(ErrorCode::NotFound, "no such message"))
    }

    /// `POST /v1/chats/{chat_id}/read`: every device of mine shows the chat read; the other
    /// person sees a read receipt.
    pub async fn mark_read(&self, session: Session, chat_id: i64, up_to: i64) -> Result<(), ApiError> {
        self.receipt_here(session, chat_id, up_to, true).await
    }

    /// `POST /v1/chats/{chat_id}/delivered`: my device received messages up to `up_to`.
    pub async fn mark_delivered(&self, session: Session, chat_id: i64, up_to: i64) -> Result<(), ApiError> {
        self.receipt_here(session, chat_id, up_to, false).await
    }

    /// A read (`read`) or delivery receipt.
    pub(crate) async fn receipt_here(
        &self,
        session: Session,
        chat_id: i64,
        up_to: i64,
        read: bool,
    ) -> Result<(), ApiError> {
        let members = self.members_if_member(session.user_id, chat_id).await?;
        if let Route::Hub(link) = self.route(chat_id, &members).await? {
            let action = if read { Action::Read { up_to } } else { Action::Delivered { up_to } };
            // My devices learn of it when the hub's event arrives.
            self.submit(session, &link, action).await?;
            return Ok(());
        }
        let notify = local_ids(&members).into_iter().filter(|&u| u != session.user_id).collect();
        let now = now_millis();
        let updates = if read {
            self.store.mark_read(chat_id, session.user_id, up_to, now, notify).await
        } else {
            self.store.mark_delivered(chat_id, session.user_id, up_to, now, notify).await
        };
        self.publish(updates.map_err(store_error)?).await;
        if has_remote(&members) {
            let event = self
                .user_event(session.user_id, |user| {
                    if read { RoomEvent::Read { user, up_to } } else { RoomEvent::Delivered { user, up_to } }
                })
                .await;
            if let Some(event) = event {
                self.fan_out(chat_id, &members, event).await;
            }
        }
        Ok(())
    }

    /// `POST /v1/chats/{chat_id}/typing`: an ephemeral signal to the other members.
    pub async fn typing(&self, session: Session, chat_id: i64) -> Result<(), ApiError> {
        let members = self.members_if_member(session.user_id, chat_id).await?;
        let update = Arc::new(Update {
            cursor: None,
            at: now_millis(),
            event: Event::Typing { chat_id, user_id: session.user_id },
        });
        for member in members.iter().filter(|m| m.user_id != session.user_id && m.remote_address.is_none()) {
            let blocked = self.store.is_blocked(member.user_id, session.user_id).await.map_err(store_error)?
                || self.store.is_blocked(session.user_id, member.user_id).await.map_err(store_error)?;
            if !blocked {
                self.bus.publish(member.user_id, update.clone()).await;
            }
        }
        if has_remote(&members) {
            let route = self.route(chat_id, &members).await?;
            self.typing_across(session, chat_id, &members, &route).await;
        }
        Ok(())
    }

    /// `GET /v1/search?q=`: my chats whose person matches by name or username, and my
    /// messages whose text matches, both folded for Persian. A query that folds to nothing
    /// (empty, or only invisible characters such as NUL) is refused.
    pub async fn search(&self, session: Session, query: &str, limit: Option<u32>) -> Result<SearchResults, ApiError> {
        let folded = fold_for_search(query);
        if folded.is_empty() {
            return Err(empty_query());
        }
        let limit = limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let messages = self.store.search_messages(session.user_id, &folded, limit).await.map_err(store_error)?;
        let chats = self
            .chats(session)
            .await?
            .into_iter()
            .filter(|c| {
                c.peer.as_ref().is_some_and(|p| {
                    fold_for_search(&p.display_name).contains(&folded)
                        || p.username.as_deref().is_some_and(|u| u.to_ascii_lowercase().contains(&folded))
                })
            })
            .collect();
        Ok(SearchResults {
            chats,
            messages: messages.into_iter().map(|m| SearchHit { chat_id: m.chat_id, message: m }).collect(),
        })
    }
}
