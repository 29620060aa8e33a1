//! Direct chats with people on other messengers (`docs/protocol/delivery.md`).
//!
//! A person on another messenger is known here by a stand-in account that carries their
//! address (`PHONE@PROVIDER-ID`). A cross-messenger room is hosted by the provider where it was
//! started, the hub: the hub's copy is the room, and it gives every message its seq. The other
//! provider, the follower, keeps a copy linked to the hub's room with the same seqs, written
//! only from the events the hub sends (and, so that a send can answer with the stored message,
//! from the message the hub's answer to a send carries; the same event arrives again and is
//! ignored).
//!
//! - A local person acting in a room hosted here: the change is made as in any chat and an
//!   event is queued for each follower provider ([`Service::fan_out`]).
//! - A local person acting in a room hosted elsewhere: the action is submitted to the hub,
//!   which answers with its result; nothing is written here until the hub has accepted it.
//! - A peer's events ([`Service::apply_room_events`]) and submissions
//!   ([`Service::accept_submission`]) are checked against the room's members and the local
//!   person's consent ("connect to other messengers") before anything is stored.
//!
//! The transport (mutual TLS, signatures, the durable queue's worker) is the
//! `peyvand-interconnect` crate's, behind [`Federation`].

use std::sync::Arc;

use async_trait::async_trait;
use peyvand_api::{ApiError, Audience, ErrorCode};
use peyvand_core::phone::PhoneNumber;
use peyvand_store::{MemberRecord, RoomLink, UserRecord};

use crate::{Service, err, store_error};

pub mod wire;

mod follower;
mod hub;
mod invitations;
mod outbound;
mod reports;
mod typing;

use wire::{Invitation, InvitationAnswer, RoomEvent, Submission};

/// The transport to other providers, as the interconnect offers it to the messenger.
#[async_trait]
pub trait Federation: Send + Sync + std::fmt::Debug {
    /// This provider's id.
    fn provider_id(&self) -> &str;
    /// The name people know a provider by (from the registry's directory).
    fn provider_name(&self, provider_id: &str) -> Option<String>;
    /// Whether direct chats may be started with people on `peer`: it is listed, offers the
    /// `chat` capability, and is active.
    fn chat_peer(&self, peer: &str) -> Result<(), ApiError>;
    /// Asks `peer` to let the room reach one of its users; the answer has their name.
    async fn invite(&self, peer: &str, invitation: &Invitation) -> Result<InvitationAnswer, ApiError>;
    /// Submits a local user's action to the room's hub; the answer is the hub's event.
    async fn submit(&self, hub: &str, submission: &Submission) -> Result<RoomEvent, ApiError>;
    /// Tells `peer` that someone is typing; best effort.
    async fn typing(&self, peer: &str, typing: &wire::Typing);
    /// Sends an abuse report to the reported person's provider.
    async fn report(&self, peer: &str, report: &wire::Report) -> Result<(), ApiError>;
    /// Events were queued for `peer`: deliver them soon.
    fn queued(&self, peer: &str);
    /// `peer` sent a forged event or a conflicting one (`forged_event`, `seq_conflict`): for
    /// the metrics.
    fn refused_from(&self, peer: &str, code: ErrorCode);
    /// This provider's origin signature of an event's form.
    fn sign_origin(&self, form: &[u8]) -> String;
    /// Whether `signature` over `form` verifies with a key the directory lists for `provider`.
    fn verify_origin(&self, provider: &str, form: &[u8], signature: &str) -> bool;
    /// Why events for `peer` would wait now, if they would: the directory does not list it as
    /// active, or the last attempt to deliver to it failed and none has succeeded since.
    fn delivery_problem(&self, peer: &str) -> Option<ApiError>;
    /// Asks `holder` for a media message's bytes (media.md); reads at most `max` of them.
    async fn fetch_media(&self, holder: &str, request: &wire::MediaRequest, max: u64) -> Result<MediaBytes, ApiError>;
    /// Counts media bytes served to `peer`, for the metrics.
    fn media_served(&self, peer: &str, bytes: u64);
}

/// A media file's bytes as a peer sends them: a stream of chunks.
pub type MediaBytes = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, ApiError>>;

/// `PHONE@PROVIDER-ID`, checked: the phone number in E.164 and a provider id.
pub fn parse_address(address: &str) -> Result<(PhoneNumber, &str), ApiError> {
    let bad = || err(ErrorCode::BadRequest, format!("`{address}` is not an address like +989121234567@provider"));
    let (phone, provider) = address.rsplit_once('@').ok_or_else(bad)?;
    let provider_ok = !provider.is_empty()
        && provider.len() <= 63
        && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !provider_ok || !phone.starts_with('+') {
        return Err(bad());
    }
    let phone = PhoneNumber::parse(phone).map_err(|_| bad())?;
    Ok((phone, provider))
}

fn address(phone: &str, provider: &str) -> String {
    format!("{phone}@{provider}")
}

fn provider_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, p)| p)
}

/// Whether some member of a chat is on another messenger.
pub(crate) fn has_remote(members: &[MemberRecord]) -> bool {
    members.iter().any(|m| m.remote_address.is_some())
}

/// The providers of a room's members on other messengers.
pub(crate) fn remote_providers(members: &[MemberRecord]) -> Vec<String> {
    let mut providers: Vec<String> =
        members.iter().filter_map(|m| m.remote_address.as_deref()).map(|a| provider_of(a).to_owned()).collect();
    providers.sort();
    providers.dedup();
    providers
}

/// Where an action in a chat goes: made here (a local chat, or a room hosted here), or
/// submitted to the hub of the room this chat follows.
pub(crate) enum Route {
    Here,
    Hub(RoomLink),
}

impl Service {
    /// Connects the messenger to other providers. Once only; later calls are ignored.
    pub fn set_federation(&self, federation: Arc<dyn Federation>) {
        if self.federation.set(federation).is_err() {
            tracing::warn!("the interconnect was already set");
        }
    }

    pub(crate) fn federation(&self) -> Result<&Arc<dyn Federation>, ApiError> {
        self.federation
            .get()
            .ok_or_else(|| err(ErrorCode::InterconnectDisabled, "this server is not connected to other messengers"))
    }

    /// Whether an action in the chat whose members are `members` is made here or at a hub.
    pub(crate) async fn route(&self, chat_id: i64, members: &[MemberRecord]) -> Result<Route, ApiError> {
        if !has_remote(members) {
            return Ok(Route::Here);
        }
        Ok(match self.store.room_link(chat_id).await.map_err(store_error)? {
            Some(link) => Route::Hub(link),
            None => Route::Here,
        })
    }

    /// A local person's address.
    async fn address_of(&self, user: &UserRecord) -> Result<String, ApiError> {
        if let Some(remote) = &user.remote_address {
            return Ok(remote.clone());
        }
        let phone = user.phone.as_deref().ok_or_else(|| err(ErrorCode::NotFound, "this account has no number"))?;
        Ok(address(phone, self.federation()?.provider_id()))
    }

    async fn address_of_id(&self, user_id: i64) -> Result<String, ApiError> {
        let user = self
            .store
            .user(user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, "no such user"))?;
        self.address_of(&user).await
    }

    /// Whether the local person `local` lets the person on another messenger `remote` (a
    /// stand-in) reach them: "connect to other messengers" allows them, "who can message me"
    /// too, and neither has blocked the other.
    pub(crate) async fn remote_may_reach(&self, local: &UserRecord, remote: &UserRecord) -> Result<(), ApiError> {
        let nobody = || err(ErrorCode::NotFound, "no one who accepts messages from other messengers has this address");
        if local.deleted {
            return Err(nobody());
        }
        let remote_phone = remote.remote_address.as_deref().and_then(|a| a.rsplit_once('@')).map(|(p, _)| p);
        let in_contacts = match remote_phone {
            Some(phone) => self.store.has_contact_phone(local.id, phone).await.map_err(store_error)?,
            None => false,
        };
        if !local.privacy.interconnect.allows(in_contacts) {
            return Err(nobody());
        }
        if local.privacy.messages != Audience::Everybody && !in_contacts {
            return Err(err(ErrorCode::PrivacyRestricted, "this person accepts messages only from their contacts"));
        }
        if self.store.is_blocked(local.id, remote.id).await.map_err(store_error)? {
            return Err(err(ErrorCode::Blocked, "this person does not accept your messages"));
        }
        Ok(())
    }

    /// The local person an address of this provider names, for a peer.
    async fn local_by_address(&self, raw: &str) -> Result<UserRecord, ApiError> {
        let (phone, provider) = parse_address(raw)?;
        if provider != self.federation()?.provider_id() {
            return Err(err(ErrorCode::BadRequest, format!("`{raw}` is not an address of this provider")));
        }
        match self.store.user_by_phone(phone.as_str()).await.map_err(store_error)? {
            Some(user) if !user.deleted => Ok(user),
            _ => Err(err(ErrorCode::NotFound, "no one who accepts messages from other messengers has this address")),
        }
    }

    /// The member of a chat that an address names (a local person or a stand-in).
    async fn member_by_address(&self, raw: &str, members: &[MemberRecord]) -> Result<i64, ApiError> {
        let (phone, provider) = parse_address(raw)?;
        let user = if provider == self.federation()?.provider_id() {
            self.store.user_by_phone(phone.as_str()).await.map_err(store_error)?
        } else {
            self.store.remote_user_by_address(raw).await.map_err(store_error)?
        };
        user.map(|u| u.id)
            .filter(|id| members.iter().any(|m| m.user_id == *id))
            .ok_or_else(|| err(ErrorCode::NotFound, format!("`{raw}` is not a member of this room")))
    }

    /// How a person on another messenger looks to a local viewer: their name, and where they
    /// are (their address holds their number) only to the people who share a chat with them.
    pub(crate) async fn view_of_remote(
        &self,
        viewer: i64,
        target: &UserRecord,
        address: &str,
    ) -> Result<peyvand_api::UserProfile, ApiError> {
        let shares_chat = self.store.direct_chat(viewer, target.id).await.map_err(store_error)?.is_some();
        let provider_id = provider_of(address).to_owned();
        let messenger = shares_chat.then(|| peyvand_api::Messenger {
            name: self
                .federation
                .get()
                .and_then(|f| f.provider_name(&provider_id))
                .unwrap_or_else(|| provider_id.clone()),
            provider_id,
            address: address.to_owned(),
        });
        let phone = if shares_chat { address.rsplit_once('@').map(|(p, _)| p.to_owned()) } else { None };
        let is_contact = match &phone {
            Some(phone) => self.store.has_contact_phone(viewer, phone).await.map_err(store_error)?,
            None => false,
        };
        Ok(peyvand_api::UserProfile {
            id: target.id,
            display_name: target.display_name.clone(),
            username: None,
            bio: String::new(),
            phone,
            presence: None,
            is_contact,
            blocked: self.store.is_blocked(viewer, target.id).await.map_err(store_error)?,
            deleted: false,
            messenger,
        })
    }
}

/// A display name from a peer: trimmed, without control characters, at most 64 characters.
/// A name from another provider as a stand-in shows it: no controls, no direction embeddings,
/// overrides or isolates, at most 64 characters, and empty (so the address shows instead) when
/// nothing visible is left.
fn clean_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|&c| !c.is_control() && !peyvand_core::chars::is_direction_control(c))
        .take(64)
        .collect();
    if peyvand_core::chars::has_visible(&name) { name.trim().to_owned() } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_other_providers_lose_what_spoofs() {
        assert_eq!(clean_name(" \u{202E}سارا\u{202C} "), "سارا");
        assert_eq!(clean_name("\u{200F}\u{200B}\u{3164}"), "");
        assert_eq!(clean_name("نیم\u{200C}فاصله"), "نیم\u{200C}فاصله", "ZWNJ is Persian spelling");
    }

    #[test]
    fn addresses_are_checked() {
        let (phone, provider) = parse_address("+989121234567@damavand").unwrap();
        assert_eq!((phone.as_str(), provider), ("+989121234567", "damavand"));
        for bad in
            ["09121234567@damavand", "+989121234567", "+989121234567@", "+98912@Damavand", "x@y", "+989121234567@a/b"]
        {
            assert_eq!(parse_address(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }
}
