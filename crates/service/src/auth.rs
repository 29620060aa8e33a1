//! Sign-in by phone number and one-time code, the second-step PIN, devices and sessions.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use peyvand_api::{ApiError, CodeSent, Device, ErrorCode, Event, SignInRequest, SignedIn, Update};
use peyvand_core::PhoneNumber;
use peyvand_store::CodeRecord;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

use crate::{HOUR_MS, Service, err, now_millis, rate_limited, store_error};

/// A session's last-active time is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

/// An authenticated request's account and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub device_id: i64,
}

pub(crate) fn parse_phone(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|e| err(ErrorCode::InvalidPhone, e.to_string()))
}

fn code_hash(phone: &PhoneNumber, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{phone}:{code}")))
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn validate_pin(pin: &str) -> Result<(), ApiError> {
    let n = pin.chars().count();
    if !(4..=32).contains(&n) || pin.chars().any(char::is_control) {
        return Err(err(ErrorCode::InvalidPin, "a PIN has 4 to 32 characters"));
    }
    Ok(())
}

fn hash_pin(pin: &str) -> Result<String, ApiError> {
    let bytes: [u8; 16] = rand::rng().random();
    let salt =
        SaltString::encode_b64(&bytes).map_err(|e| err(ErrorCode::Internal, format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| err(ErrorCode::Internal, format!("cannot hash the PIN: {e}")))
}

fn pin_matches(pin: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(pin.as_bytes(), &parsed).is_ok())
}

/// A span of time as people say it: `180 days`, `3 hours`, `8 seconds`.
fn span(secs: u64) -> String {
    let (count, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Byte-wise comparison whose time does not depend on where the inputs differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Service {
    pub(crate) async fn limit(&self, key: String, window_ms: i64, limit: u32, what: &str) -> Result<(), ApiError> {
        self.limit_cost(key, window_ms, limit, 1, what).await
    }

    /// Counts `cost` hits at once against a limit.
    pub(crate) async fn limit_cost(
        &self,
        key: String,
        window_ms: i64,
        limit: u32,
        cost: u32,
        what: &str,
    ) -> Result<(), ApiError> {
        match self.store.hit(&key, window_ms, limit, cost, now_millis()).await.map_err(store_error)? {
            Ok(_) => Ok(()),
            Err(retry_ms) => Err(rate_limited(retry_ms, what)),
        }
    }

    /// `POST /v1/auth/code`: sends a sign-in code, within the per-number, per-block and
    /// per-address limits.
    pub async fn request_code(&self, raw_phone: &str, client_address: &str) -> Result<CodeSent, ApiError> {
        let phone = parse_phone(raw_phone)?;
        let limits = &self.config.limits;
        self.limit(
            format!("code:addr:{client_address}"),
            HOUR_MS,
            limits.codes_per_address_per_hour,
            "codes requested from this address",
        )
        .await?;
        // This address's share of the number's codes first, so that what it is refused does not
        // count against the number's allowance, which the person needs.
        self.limit(
            format!("code:num:{phone}:addr:{client_address}"),
            HOUR_MS,
            limits.codes_per_number_from_address_per_hour,
            "codes for this number from this address",
        )
        .await?;
        self.limit(format!("code:num:{phone}"), HOUR_MS, limits.codes_per_number_per_hour, "codes for this number")
            .await?;
        self.limit(
            format!("code:block:{}", phone.block_prefix()),
            HOUR_MS,
            limits.codes_per_block_per_hour,
            "codes for numbers like this one",
        )
        .await?;
        let code: String = {
            let mut rng = rand::rng();
            (0..self.config.code_length).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
        };
        let expires_at = now_millis() + self.config.code_ttl_secs as i64 * 1000;
        self.store
            .put_code(CodeRecord {
                phone: phone.to_string(),
                code_hash: code_hash(&phone, &code),
                expires_at,
                attempts: 0,
            })
            .await
            .map_err(store_error)?;
        self.codes.send(&phone, &code).await.map_err(|why| {
            tracing::error!(%why, "sign-in code delivery failed");
            err(ErrorCode::Unavailable, "the code could not be sent; try again later")
        })?;
        self.metrics.codes_sent.fetch_add(1, Ordering::Relaxed);
        Ok(CodeSent {
            phone: phone.to_string(),
            expires_in: self.config.code_ttl_secs,
            code_length: self.config.code_length,
        })
    }

    /// `POST /v1/auth/sign-in`: checks the code (and the PIN, if the account has one) and
    /// opens a session for a new device, creating the account on first sign-in.
    pub async fn sign_in(&self, request: &SignInRequest, client_address: &str) -> Result<SignedIn, ApiError> {
        let phone = parse_phone(&request.phone)?;
        self.limit(
            format!("signin:addr:{client_address}"),
            HOUR_MS,
            self.config.limits.sign_ins_per_address_per_hour,
            "sign-in attempts from this address",
        )
        .await?;
        // One address's wrong guesses for this number: a stranger runs out of them long before
        // the code does, so the person, elsewhere, can still type it. Only wrong codes count
        // (a person signing in on several devices from home is not guessing); a peek first.
        let guesses = format!("signin:wrong:{phone}:addr:{client_address}");
        let allowed = self.config.limits.code_attempts_per_address.saturating_sub(1);
        if let Err(retry_ms) = self.store.hit(&guesses, HOUR_MS, allowed, 0, now_millis()).await.map_err(store_error)? {
            let mut refused =
                err(ErrorCode::TooManyAttempts, "too many attempts for this number from this address; try again later");
            refused.retry_after = Some((retry_ms.max(0) as u64).div_ceil(1000).max(1));
            return Err(refused);
        }
        let now = now_millis();
        let max = self.config.code_max_attempts;
        let too_many = || err(ErrorCode::TooManyAttempts, "too many wrong codes; ask for a new one");
        let Some(record) = self.store.attempt_code(phone.as_str(), max).await.map_err(store_error)? else {
            // Either no code was sent, or its attempts are spent: then burn it.
            if self.store.take_code(phone.as_str()).await.map_err(store_error)? {
                return Err(too_many());
            }
            return Err(err(ErrorCode::InvalidCode, "no code was sent to this number, or it was already used"));
        };
        if record.expires_at <= now {
            self.store.take_code(phone.as_str()).await.map_err(store_error)?;
            return Err(err(ErrorCode::CodeExpired, "the code has expired; ask for a new one"));
        }
        let given: String = request.code.chars().filter_map(peyvand_core::text::ascii_digit).collect();
        if !same(&code_hash(&phone, &given), &record.code_hash) {
            let _counted = self.store.hit(&guesses, HOUR_MS, u32::MAX, 1, now).await.map_err(store_error)?;
            if record.attempts >= max {
                self.store.take_code(phone.as_str()).await.map_err(store_error)?;
                return Err(too_many());
            }
            return Err(err(ErrorCode::InvalidCode, "the code is wrong"));
        }
        // The code stays valid until the PIN step passes, so a client can ask for the PIN.
        let existing = self.store.user_by_phone(phone.as_str()).await.map_err(store_error)?;
        if let Some(pin_hash) = existing.as_ref().and_then(|u| u.pin_hash.clone()) {
            let user_id = existing.as_ref().map_or(0, |u| u.id);
            let Some(pin) = request.pin.as_deref() else {
                return Err(err(ErrorCode::PinRequired, "this account has a PIN: send it with the code"));
            };
            self.limit(format!("pin:{user_id}"), HOUR_MS, self.config.limits.pin_attempts_per_hour, "PIN attempts")
                .await?;
            if !pin_matches(pin, &pin_hash) {
                return Err(err(ErrorCode::InvalidPin, "the PIN is wrong"));
            }
        }
        if !self.store.take_code(phone.as_str()).await.map_err(store_error)? {
            // Another request with the same code signed in first.
            return Err(err(ErrorCode::InvalidCode, "this code was already used"));
        }
        let (user, created) = self.store.user_by_phone_or_create(phone.as_str(), now).await.map_err(store_error)?;
        let token = {
            let bytes: [u8; 32] = rand::rng().random();
            hex::encode(bytes)
        };
        let name = request.device_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("unnamed device");
        let name: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        let session = self.store.create_session(user.id, &name, &token_hash(&token), now).await.map_err(store_error)?;
        self.metrics.sign_ins.fetch_add(1, Ordering::Relaxed);
        if created {
            self.metrics.sign_ups.fetch_add(1, Ordering::Relaxed);
        }
        Ok(SignedIn { token, device_id: session.id, account: crate::profile::account(&user), new_account: created })
    }

    /// Resolves a bearer token to its session; `unauthorized` if it is unknown or revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Session, ApiError> {
        let unauthorized =
            || err(ErrorCode::Unauthorized, "sign in first: the session token is missing, unknown or revoked");
        if token.is_empty() || token.len() > 256 {
            return Err(unauthorized());
        }
        let hash = token_hash(token);
        if let Some(session) = self.session_cache.get(&hash) {
            return Ok(session);
        }
        let record = self.store.session_by_token(&hash).await.map_err(store_error)?.ok_or_else(unauthorized)?;
        let now = now_millis();
        let idle_ms = i64::try_from(self.config.session_idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if idle_ms > 0 && now - record.last_active > idle_ms {
            // Unused for too long: the token may have leaked with an old device. It ends now.
            self.store.revoke_session(record.user_id, record.id).await.map_err(store_error)?;
            self.announce_sign_out(record.user_id, Some(record.id)).await;
            return Err(err(
                ErrorCode::Unauthorized,
                format!("this session ended after {} without use: sign in again", span(self.config.session_idle_secs)),
            ));
        }
        // Often enough that a session in use never looks idle, however short the limit.
        let touch_every = if idle_ms > 0 { TOUCH_EVERY_MS.min(idle_ms / 4) } else { TOUCH_EVERY_MS };
        if now - record.last_active > touch_every {
            // Bookkeeping for the device list: not worth making the request wait for a commit.
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_session(record.id, now).await {
                    tracing::warn!(error = %e, "could not record a session's last activity");
                }
            });
        }
        let session = Session { user_id: record.user_id, device_id: record.id };
        self.session_cache.put(hash, session);
        Ok(session)
    }

    /// `POST /v1/auth/sign-out`
    pub async fn sign_out(&self, session: Session) -> Result<(), ApiError> {
        self.store.revoke_session(session.user_id, session.device_id).await.map_err(store_error)?;
        self.session_cache.forget(|s| s.device_id == session.device_id);
        self.announce_sign_out(session.user_id, Some(session.device_id)).await;
        Ok(())
    }

    /// Whether the session's device is still signed in. A storage failure counts as yes: a
    /// hiccup must not drop every open stream.
    pub async fn device_signed_in(&self, session: Session) -> bool {
        match self.store.sessions(session.user_id).await {
            Ok(sessions) => sessions.iter().any(|s| s.id == session.device_id),
            Err(_) => true,
        }
    }

    /// `GET /v1/devices`
    pub async fn devices(&self, session: Session) -> Result<Vec<Device>, ApiError> {
        let sessions = self.store.sessions(session.user_id).await.map_err(store_error)?;
        Ok(sessions
            .into_iter()
            .map(|s| Device {
                id: s.id,
                current: s.id == session.device_id,
                name: s.name,
                created_at: s.created_at,
                last_active: s.last_active,
            })
            .collect())
    }

    /// `DELETE /v1/devices/{id}`
    pub async fn revoke_device(&self, session: Session, device_id: i64) -> Result<(), ApiError> {
        if self.store.revoke_session(session.user_id, device_id).await.map_err(store_error)? {
            self.session_cache.forget(|s| s.device_id == device_id);
            self.announce_sign_out(session.user_id, Some(device_id)).await;
            Ok(())
        } else {
            Err(err(ErrorCode::NotFound, "no such device"))
        }
    }

    /// `DELETE /v1/devices`: signs out everywhere, this device too.
    pub async fn revoke_all_devices(&self, session: Session) -> Result<(), ApiError> {
        self.store.revoke_all_sessions(session.user_id).await.map_err(store_error)?;
        self.session_cache.forget(|s| s.user_id == session.user_id);
        self.announce_sign_out(session.user_id, None).await;
        Ok(())
    }

    /// Tells the person's open streams that a device (or every device) was signed out, so
    /// that its streams close now rather than when they next reconnect.
    pub(crate) async fn announce_sign_out(&self, user_id: i64, device_id: Option<i64>) {
        let update = Update { cursor: None, at: now_millis(), event: Event::SignedOut { device_id } };
        self.bus.publish(user_id, std::sync::Arc::new(update)).await;
    }

    /// `PUT /v1/me/pin` and `DELETE /v1/me/pin`: the current PIN is needed to change or remove one.
    pub async fn set_pin(
        &self,
        session: Session,
        new_pin: Option<&str>,
        current_pin: Option<&str>,
    ) -> Result<(), ApiError> {
        let user = self.live_user(session.user_id).await?;
        if let Some(hash) = &user.pin_hash {
            self.limit(format!("pin:{}", user.id), HOUR_MS, self.config.limits.pin_attempts_per_hour, "PIN attempts")
                .await?;
            match current_pin {
                Some(pin) if pin_matches(pin, hash) => {}
                Some(_) => return Err(err(ErrorCode::InvalidPin, "the current PIN is wrong")),
                None => return Err(err(ErrorCode::PinRequired, "give the current PIN to change it")),
            }
        }
        let hash = match new_pin {
            Some(pin) => {
                validate_pin(pin)?;
                Some(hash_pin(pin)?)
            }
            None => None,
        };
        self.store.set_pin_hash(user.id, hash).await.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_people_say_them() {
        assert_eq!(span(180 * 86_400), "180 days");
        assert_eq!(span(3_600), "1 hour");
        assert_eq!(span(90), "90 seconds");
    }

    #[test]
    fn pins_hash_and_verify() {
        let hash = hash_pin("1234").expect("hashes");
        assert!(pin_matches("1234", &hash));
        assert!(!pin_matches("1235", &hash));
        assert!(!pin_matches("1234", "not a hash"));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
