//! Contacts (by phone number) and blocking.

use peyvand_api::{ApiError, ErrorCode, ImportedContact, UserProfile};
use peyvand_core::PhoneNumber;

use crate::{DAY_MS, Service, Session, err, store_error};

/// The most numbers one import may carry.
pub const MAX_IMPORT: usize = 1000;

impl Service {
    /// `POST /v1/contacts/import`: saves the valid numbers as contacts and says which belong
    /// to people the importer may find. Every number counts against the daily lookup limit,
    /// so the address book cannot be used to walk the number space.
    pub async fn import_contacts(&self, session: Session, phones: &[String]) -> Result<Vec<ImportedContact>, ApiError> {
        if phones.len() > MAX_IMPORT {
            return Err(err(ErrorCode::BadRequest, format!("at most {MAX_IMPORT} numbers per import")));
        }
        let parsed: Vec<(String, Option<PhoneNumber>)> =
            phones.iter().map(|raw| (raw.clone(), PhoneNumber::parse(raw).ok())).collect();
        let mut valid: Vec<String> = parsed.iter().filter_map(|(_, p)| p.as_ref().map(ToString::to_string)).collect();
        valid.sort();
        valid.dedup();
        let cost = u32::try_from(valid.len()).unwrap_or(u32::MAX);
        self.limit_cost(
            format!("lookup:{}", session.user_id),
            DAY_MS,
            self.config.limits.contact_lookups_per_day,
            cost,
            "phone number lookups",
        )
        .await?;
        self.store.add_contacts(session.user_id, &valid).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(parsed.len());
        for (input, phone) in parsed {
            let user = match &phone {
                Some(p) => match self.store.user_by_phone(p.as_str()).await.map_err(store_error)? {
                    Some(u) if u.id != session.user_id && self.may_find_by_phone(session.user_id, &u).await? => {
                        Some(self.view_of(session.user_id, &u).await?)
                    }
                    _ => None,
                },
                None => None,
            };
            out.push(ImportedContact { input, phone: phone.map(|p| p.to_string()), user });
        }
        Ok(out)
    }

    /// `GET /v1/contacts`: the contacts who are on this messenger and findable by the owner.
    pub async fn contacts(&self, session: Session) -> Result<Vec<UserProfile>, ApiError> {
        let users = self.store.contacts(session.user_id).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(users.len());
        for user in &users {
            if self.may_find_by_phone(session.user_id, user).await? {
                out.push(self.view_of(session.user_id, user).await?);
            }
        }
        Ok(out)
    }

    /// `DELETE /v1/contacts/{user_id}`
    pub async fn remove_contact(&self, session: Session, user_id: i64) -> Result<(), ApiError> {
        let user = self.live_user(user_id).await?;
        if let Some(phone) = &user.phone {
            self.store.remove_contact(session.user_id, phone).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// `PUT /v1/blocks/{user_id}` and `DELETE /v1/blocks/{user_id}`
    pub async fn set_blocked(&self, session: Session, user_id: i64, blocked: bool) -> Result<(), ApiError> {
        if user_id == session.user_id {
            return Err(err(ErrorCode::BadRequest, "you cannot block yourself"));
        }
        self.live_user(user_id).await?;
        self.store.set_blocked(session.user_id, user_id, blocked).await.map_err(store_error)
    }

    /// `GET /v1/blocks`
    pub async fn blocked(&self, session: Session) -> Result<Vec<UserProfile>, ApiError> {
        let users = self.store.blocked(session.user_id).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(users.len());
        for user in &users {
            out.push(self.view_of(session.user_id, user).await?);
        }
        Ok(out)
    }
}
