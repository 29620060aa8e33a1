//! Typing in rooms with people on other messengers: to the hub, and from it to the followers.

use std::sync::Arc;

use peyvand_api::{ApiError, ErrorCode};
use peyvand_store::{MemberRecord, RoomLink};

use super::wire::{self, RoomId};
use super::{Route, provider_of, remote_providers};
use crate::{Service, Session, err, now_millis, store_error};

impl Service {
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
}
