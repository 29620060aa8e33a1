//! Opening a room with a person on another messenger, and being invited to one.

use peyvand_api::{ApiError, ErrorCode};
use peyvand_store::RoomLink;

use super::wire::{Invitation, InvitationAnswer, RoomEvent, RoomId};
use super::{address, clean_name, parse_address};
use crate::{Service, Session, err, now_millis, store_error};

impl Service {
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

    /// A message for a room this provider has no copy of (its invitation did not arrive):
    /// the copy is made if the recipient lets the sender reach them, as an invitation would.
    pub(super) async fn follow_on_first_message(
        &self,
        peer: &str,
        link: &RoomLink,
        event: &RoomEvent,
    ) -> Result<i64, ApiError> {
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
}
