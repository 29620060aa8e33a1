//! What the interconnect asks of the messenger: whether a person here may be reached from
//! another messenger ("connect to other messengers" in their privacy settings), and limits.
//! The protocol itself lives in the `peyvand-interconnect` crate.

use peyvand_api::{ApiError, Audience};

use crate::{Service, Session, err, store_error};

/// A person here whom another provider's user may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    pub user_id: i64,
    /// E.164.
    pub phone: String,
    pub display_name: String,
}

impl Service {
    /// Whether the person with this number lets a user of another messenger (whose number is
    /// `requester_phone`, when the peer said) find and message them: they turned
    /// "connect to other messengers" on for everybody, or for their contacts and have the
    /// requester's number among them. `None` for everyone else, so a peer cannot tell a number
    /// without an account from one that did not opt in.
    pub async fn reachable_from_peer(
        &self,
        raw_phone: &str,
        requester_phone: Option<&str>,
    ) -> Result<Option<Reachable>, ApiError> {
        let phone = crate::auth::parse_phone(raw_phone)?;
        let Some(user) = self.store.user_by_phone(phone.as_str()).await.map_err(store_error)? else {
            return Ok(None);
        };
        if user.deleted {
            return Ok(None);
        }
        let allowed = match user.privacy.interconnect {
            Audience::Everybody => true,
            Audience::Contacts => match requester_phone.map(crate::auth::parse_phone).transpose()? {
                Some(requester) => {
                    self.store.has_contact_phone(user.id, requester.as_str()).await.map_err(store_error)?
                }
                None => false,
            },
            Audience::Nobody => false,
        };
        Ok(allowed.then(|| Reachable {
            user_id: user.id,
            phone: phone.as_str().to_owned(),
            display_name: user.display_name,
        }))
    }

    /// The signed-in person's phone number (E.164), which other providers see when they look
    /// someone up for them (so that "contacts only" can be honoured there).
    pub async fn phone_of(&self, session: Session) -> Result<String, ApiError> {
        self.live_user(session.user_id)
            .await?
            .phone
            .ok_or_else(|| err(peyvand_api::ErrorCode::NotFound, "this account has no phone number"))
    }

    /// Counts one hit on a shared rate limit (`key` within windows of `window_ms`); refused
    /// with `rate_limited` and when to retry once `limit` is passed. `what` names what is
    /// limited, for the message.
    pub async fn rate_limit(&self, key: String, window_ms: i64, limit: u32, what: &str) -> Result<(), ApiError> {
        self.limit(key, window_ms, limit, what).await
    }

    /// [`Service::rate_limit`], counting `cost` at once (bytes in MiB, say).
    pub async fn rate_limit_cost(
        &self,
        key: String,
        window_ms: i64,
        limit: u32,
        cost: u32,
        what: &str,
    ) -> Result<(), ApiError> {
        self.limit_cost(key, window_ms, limit, cost, what).await
    }
}
