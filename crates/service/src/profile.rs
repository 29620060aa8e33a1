//! Profiles, usernames, privacy settings, how one person sees another, and account deletion.

use peyvand_api::{Account, ApiError, ErrorCode, PrivacySettings, ProfileUpdate, SettingsUpdate, UserProfile};
use peyvand_core::text::fold_for_search;
use peyvand_store::{ProfileChange, UserRecord};

use crate::{Service, Session, err, store_error};

const MAX_NAME_CHARS: usize = 64;
const MAX_BIO_CHARS: usize = 140;

pub(crate) fn account(user: &UserRecord) -> Account {
    Account {
        id: user.id,
        phone: user.phone.clone().unwrap_or_default(),
        display_name: user.display_name.clone(),
        username: user.username.clone(),
        bio: user.bio.clone(),
        has_pin: user.pin_hash.is_some(),
        created_at: user.created_at,
    }
}

/// Usernames: 5 to 32 characters of Latin letters, digits and `_`, starting with a letter;
/// unique regardless of case. Returns the username and its folded (lower-case) form.
fn validate_username(raw: &str) -> Result<(String, String), ApiError> {
    let name = raw.trim().trim_start_matches('@');
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !(5..=32).contains(&name.len()) || !ok_chars || !starts_with_letter {
        return Err(err(
            ErrorCode::InvalidUsername,
            "a username has 5 to 32 Latin letters, digits or _, and starts with a letter",
        ));
    }
    Ok((name.to_owned(), name.to_ascii_lowercase()))
}

fn validate_text_field(raw: &str, max: usize, what: &str) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(err(ErrorCode::InvalidProfile, format!("the {what} has more than {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(err(ErrorCode::InvalidProfile, format!("the {what} contains a control character")));
    }
    Ok(text.to_owned())
}

impl Service {
    pub(crate) async fn live_user(&self, id: i64) -> Result<UserRecord, ApiError> {
        match self.store.user(id).await.map_err(store_error)? {
            Some(user) if !user.deleted => Ok(user),
            _ => Err(err(ErrorCode::NotFound, "no such user")),
        }
    }

    /// `GET /v1/me`
    pub async fn me(&self, session: Session) -> Result<Account, ApiError> {
        Ok(account(&self.live_user(session.user_id).await?))
    }

    /// `PATCH /v1/me`
    pub async fn update_profile(&self, session: Session, update: ProfileUpdate) -> Result<Account, ApiError> {
        let mut change = ProfileChange::default();
        if let Some(name) = &update.display_name {
            let name = validate_text_field(name, MAX_NAME_CHARS, "name")?;
            if !peyvand_core::chars::has_visible(&name) {
                return Err(err(ErrorCode::InvalidProfile, "the name needs at least one visible character"));
            }
            if name.chars().any(peyvand_core::chars::is_direction_control) {
                return Err(err(
                    ErrorCode::InvalidProfile,
                    "the name cannot contain direction embeddings, overrides or isolates",
                ));
            }
            if name.contains('\n') {
                return Err(err(ErrorCode::InvalidProfile, "the name cannot have line breaks"));
            }
            let folded = fold_for_search(&name);
            change.display_name = Some((name, folded));
        }
        if let Some(username) = &update.username {
            change.username = Some(if username.trim().is_empty() { None } else { Some(validate_username(username)?) });
        }
        if let Some(bio) = &update.bio {
            change.bio = Some(validate_text_field(bio, MAX_BIO_CHARS, "bio")?);
        }
        let user = self.store.update_profile(session.user_id, change).await.map_err(store_error)?;
        Ok(account(&user))
    }

    /// `GET /v1/me/settings`
    pub async fn settings(&self, session: Session) -> Result<PrivacySettings, ApiError> {
        Ok(self.live_user(session.user_id).await?.privacy)
    }

    /// `PATCH /v1/me/settings`
    pub async fn update_settings(&self, session: Session, update: SettingsUpdate) -> Result<PrivacySettings, ApiError> {
        let mut privacy = self.live_user(session.user_id).await?.privacy;
        if let Some(v) = update.last_seen {
            privacy.last_seen = v;
        }
        if let Some(v) = update.phone_discovery {
            privacy.phone_discovery = v;
        }
        if let Some(v) = update.messages {
            privacy.messages = v;
        }
        if let Some(v) = update.group_invites {
            privacy.group_invites = v;
        }
        if let Some(v) = update.interconnect {
            privacy.interconnect = v;
        }
        self.store.set_privacy(session.user_id, privacy).await.map_err(store_error)?;
        Ok(privacy)
    }

    /// `DELETE /v1/me`: erases the account. Messages the person sent stay in the chats of the
    /// people who received them, shown as from a deleted account (ARCHITECTURE.md says why).
    pub async fn delete_account(&self, session: Session) -> Result<(), ApiError> {
        self.presences.forget(session.user_id);
        self.store.delete_user(session.user_id).await.map_err(store_error)?;
        self.session_cache.forget(|s| s.user_id == session.user_id);
        self.announce_sign_out(session.user_id, None).await;
        Ok(())
    }

    /// How `viewer` sees `target`, within the target's privacy settings.
    pub(crate) async fn view_of(&self, viewer: i64, target: &UserRecord) -> Result<UserProfile, ApiError> {
        if target.deleted {
            return Ok(UserProfile {
                id: target.id,
                display_name: String::new(),
                username: None,
                bio: String::new(),
                phone: None,
                presence: None,
                is_contact: false,
                blocked: false,
                deleted: true,
                messenger: None,
            });
        }
        let myself = viewer == target.id;
        if let Some(address) = &target.remote_address {
            return self.view_of_remote(viewer, target, address).await;
        }
        let messenger = None;
        // "Contacts" in a person's settings means the people in *their* contact list.
        let target_has_viewer = myself || self.store.has_contact(target.id, viewer).await.map_err(store_error)?;
        // Having someone's number in one's contacts counts only if their settings let one find
        // them by it: otherwise importing a number would link it to the account.
        let is_contact = !myself
            && target.privacy.phone_discovery.allows(target_has_viewer)
            && self.store.has_contact(viewer, target.id).await.map_err(store_error)?;
        let blocked = !myself && self.store.is_blocked(viewer, target.id).await.map_err(store_error)?;
        let blocked_by_target = !myself && self.store.is_blocked(target.id, viewer).await.map_err(store_error)?;
        // Someone who found a person by username does not learn their number.
        let phone = (myself || is_contact || target_has_viewer).then(|| target.phone.clone()).flatten();
        let presence = if myself || (!blocked_by_target && target.privacy.last_seen.allows(target_has_viewer)) {
            Some(self.presence_of(target).await.map_err(store_error)?)
        } else {
            None
        };
        Ok(UserProfile {
            id: target.id,
            display_name: target.display_name.clone(),
            username: target.username.clone(),
            bio: target.bio.clone(),
            phone,
            presence,
            is_contact,
            blocked,
            deleted: false,
            messenger,
        })
    }

    /// `GET /v1/users/{id}`
    pub async fn user_profile(&self, session: Session, user_id: i64) -> Result<UserProfile, ApiError> {
        let target = self
            .store
            .user(user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| err(ErrorCode::NotFound, "no such user"))?;
        self.view_of(session.user_id, &target).await
    }

    /// Whether `viewer` may find `target` by phone number.
    pub(crate) async fn may_find_by_phone(&self, viewer: i64, target: &UserRecord) -> Result<bool, ApiError> {
        if target.deleted {
            return Ok(false);
        }
        if viewer == target.id {
            return Ok(true);
        }
        let target_has_viewer = self.store.has_contact(target.id, viewer).await.map_err(store_error)?;
        Ok(target.privacy.phone_discovery.allows(target_has_viewer))
    }

    /// `GET /v1/users/resolve?q=`: `@username` or a phone number (within the person's
    /// phone-discovery setting; each lookup counts against the daily lookup limit).
    pub async fn resolve(&self, session: Session, query: &str) -> Result<UserProfile, ApiError> {
        let query = query.trim();
        let not_found = || err(ErrorCode::NotFound, "nobody found");
        let target = if let Some(username) = query.strip_prefix('@') {
            self.store.user_by_username(&username.to_ascii_lowercase()).await.map_err(store_error)?
        } else {
            let phone = crate::auth::parse_phone(query)?;
            self.limit(
                format!("lookup:{}", session.user_id),
                crate::DAY_MS,
                self.config.limits.contact_lookups_per_day,
                "phone number lookups",
            )
            .await?;
            match self.store.user_by_phone(phone.as_str()).await.map_err(store_error)? {
                Some(user) if self.may_find_by_phone(session.user_id, &user).await? => Some(user),
                _ => None,
            }
        };
        let target = target.filter(|u| !u.deleted).ok_or_else(not_found)?;
        self.view_of(session.user_id, &target).await
    }

    /// `GET /v1/users/search?q=`: by name or username. A query with nothing visible to look
    /// for (empty, or only NUL, zero-width or direction characters) is refused; one of a
    /// single character finds nobody.
    pub async fn search_users(&self, session: Session, query: &str) -> Result<Vec<UserProfile>, ApiError> {
        let folded = fold_for_search(query.trim().trim_start_matches('@'));
        if folded.is_empty() {
            return Err(crate::chats::empty_query());
        }
        if folded.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let users = self.store.search_users(&folded, 20).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(users.len());
        for user in &users {
            out.push(self.view_of(session.user_id, user).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_and_folded() {
        assert_eq!(validate_username("@Ali_Reza").ok(), Some(("Ali_Reza".into(), "ali_reza".into())));
        for bad in ["abc", "1abcde", "علیرضا", "ali reza", &"a".repeat(33)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }
}
