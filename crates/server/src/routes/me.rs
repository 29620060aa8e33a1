//! The signed-in person's account, PIN, privacy settings and devices.

use axum::extract::State;
use axum::http::StatusCode;
use peyvand_api::{Account, DeviceList, ErrorBody, PinRequest, PrivacySettings, ProfileUpdate, SettingsUpdate};

use crate::AppState;
use crate::extract::{ApiResult, Authed, Json, Path, no_content};

/// `GET /v1/me`: my account.
#[utoipa::path(get, path = "/v1/me", tag = "account", security(("bearer" = [])), responses((status = 200, body = Account), (status = 401, body = ErrorBody)))]
pub async fn get_me(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<Account>> {
    Ok(Json(s.service.me(session).await?))
}

/// `PATCH /v1/me`: changes my name, username or bio.
#[utoipa::path(patch, path = "/v1/me", tag = "account", security(("bearer" = [])), request_body = ProfileUpdate,
    responses((status = 200, body = Account), (status = 400, description = "invalid_profile, invalid_username", body = ErrorBody),
               (status = 409, description = "username_taken", body = ErrorBody)))]
pub async fn patch_me(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<ProfileUpdate>,
) -> ApiResult<Json<Account>> {
    Ok(Json(s.service.update_profile(session, body).await?))
}

/// `DELETE /v1/me`: deletes my account and my data.
#[utoipa::path(delete, path = "/v1/me", tag = "account", security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn delete_me(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<StatusCode> {
    s.service.delete_account(session).await?;
    Ok(no_content())
}

/// `PUT /v1/me/pin`: sets or changes the second-step PIN.
#[utoipa::path(put, path = "/v1/me/pin", tag = "account", security(("bearer" = [])), request_body = PinRequest,
    responses((status = 204), (status = 401, description = "pin_required, invalid_pin", body = ErrorBody),
               (status = 429, description = "rate_limited: PIN attempts per hour", body = ErrorBody)))]
pub async fn put_pin(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<PinRequest>,
) -> ApiResult<StatusCode> {
    let Some(pin) = body.pin.as_deref() else {
        return Err(peyvand_api::ApiError::new(peyvand_api::ErrorCode::BadRequest, "give the new pin").into());
    };
    s.service.set_pin(session, Some(pin), body.current_pin.as_deref()).await?;
    Ok(no_content())
}

/// `DELETE /v1/me/pin`: removes the PIN (the current one is needed).
#[utoipa::path(delete, path = "/v1/me/pin", tag = "account", security(("bearer" = [])), request_body = PinRequest,
    responses((status = 204), (status = 401, description = "pin_required, invalid_pin", body = ErrorBody),
               (status = 429, description = "rate_limited: PIN attempts per hour", body = ErrorBody)))]
pub async fn delete_pin(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<PinRequest>,
) -> ApiResult<StatusCode> {
    s.service.set_pin(session, None, body.current_pin.as_deref()).await?;
    Ok(no_content())
}

/// `GET /v1/me/settings`: my privacy settings.
#[utoipa::path(get, path = "/v1/me/settings", tag = "account", security(("bearer" = [])), responses((status = 200, body = PrivacySettings)))]
pub async fn get_settings(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<PrivacySettings>> {
    Ok(Json(s.service.settings(session).await?))
}

/// `PATCH /v1/me/settings`: changes some privacy settings.
#[utoipa::path(patch, path = "/v1/me/settings", tag = "account", security(("bearer" = [])), request_body = SettingsUpdate,
    responses((status = 200, body = PrivacySettings), (status = 400, body = ErrorBody)))]
pub async fn patch_settings(
    State(s): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<SettingsUpdate>,
) -> ApiResult<Json<PrivacySettings>> {
    Ok(Json(s.service.update_settings(session, body).await?))
}

/// `GET /v1/devices`: my signed-in devices.
#[utoipa::path(get, path = "/v1/devices", tag = "account", security(("bearer" = [])), responses((status = 200, body = DeviceList)))]
pub async fn list_devices(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<DeviceList>> {
    Ok(Json(DeviceList { devices: s.service.devices(session).await? }))
}

/// `DELETE /v1/devices/{id}`: signs one device out.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "account", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.service.revoke_device(session, id).await?;
    Ok(no_content())
}

/// `DELETE /v1/devices`: signs out everywhere, this device included.
#[utoipa::path(delete, path = "/v1/devices", tag = "account", security(("bearer" = [])), responses((status = 204)))]
pub async fn revoke_all_devices(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<StatusCode> {
    s.service.revoke_all_devices(session).await?;
    Ok(no_content())
}
