//! The admin API: licences and the audit log, for holders of an admin token.

use axum::extract::State;
use axum::http::StatusCode;

use crate::http::extract::{Admin, ApiResult, Json, Path, Query};
use crate::model::{
    AuditLog, AuditQuery, Certificate, CertificateList, EnrolmentToken, IssueLicence, Licence, LicenceList,
    StatusChange, UpdateLicence,
};
use crate::registry::Registry;

/// `GET /v1/admin/licences`: every licence, by provider id.
pub async fn list_licences(State(registry): State<Registry>, _admin: Admin) -> ApiResult<Json<LicenceList>> {
    Ok(Json(LicenceList { licences: registry.licences().await? }))
}

/// `POST /v1/admin/licences`: issues a licence to a new provider (201).
pub async fn issue_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Json(request): Json<IssueLicence>,
) -> ApiResult<(StatusCode, Json<Licence>)> {
    Ok((StatusCode::CREATED, Json(registry.issue(&actor, request).await?)))
}

/// `GET /v1/admin/licences/{provider_id}`: one licence.
pub async fn get_licence(
    State(registry): State<Registry>,
    _admin: Admin,
    Path(provider_id): Path<String>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.licence(&provider_id).await?))
}

/// `PATCH /v1/admin/licences/{provider_id}`: changes the endpoint, signing keys,
/// capabilities, name, contact or end of validity.
pub async fn update_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
    Json(request): Json<UpdateLicence>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.update(&actor, &provider_id, request).await?))
}

/// `POST /v1/admin/licences/{provider_id}/suspend`: suspends an active licence.
pub async fn suspend_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
    Json(change): Json<StatusChange>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.suspend(&actor, &provider_id, &change.reason).await?))
}

/// `POST /v1/admin/licences/{provider_id}/reinstate`: reinstates a suspended licence.
pub async fn reinstate_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
    Json(change): Json<StatusChange>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.reinstate(&actor, &provider_id, &change.reason).await?))
}

/// `POST /v1/admin/licences/{provider_id}/revoke`: revokes a licence for good.
pub async fn revoke_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
    Json(change): Json<StatusChange>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.revoke(&actor, &provider_id, &change.reason).await?))
}

/// `POST /v1/admin/licences/{provider_id}/delist`: takes a revoked licence (and its revoked
/// certificates) out of the directory; the licence stays, and its id stays taken.
pub async fn delist_licence(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
    Json(change): Json<StatusChange>,
) -> ApiResult<Json<Licence>> {
    Ok(Json(registry.delist(&actor, &provider_id, &change.reason).await?))
}

/// `POST /v1/admin/licences/{provider_id}/enrolment-tokens`: a one-time token (201) with which
/// the provider gets a certificate at `POST /v1/enrol`; shown only in this answer.
pub async fn create_enrolment_token(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(provider_id): Path<String>,
) -> ApiResult<(StatusCode, Json<EnrolmentToken>)> {
    Ok((StatusCode::CREATED, Json(registry.create_enrolment_token(&actor, &provider_id).await?)))
}

/// `GET /v1/admin/licences/{provider_id}/certificates`: every certificate issued to the
/// provider, oldest first.
pub async fn list_certificates(
    State(registry): State<Registry>,
    _admin: Admin,
    Path(provider_id): Path<String>,
) -> ApiResult<Json<CertificateList>> {
    Ok(Json(CertificateList { certificates: registry.certificates(&provider_id).await? }))
}

/// `POST /v1/admin/certificates/{serial}/revoke`: revokes one certificate.
pub async fn revoke_certificate(
    State(registry): State<Registry>,
    Admin(actor): Admin,
    Path(serial): Path<String>,
    Json(change): Json<StatusChange>,
) -> ApiResult<Json<Certificate>> {
    Ok(Json(registry.revoke_certificate(&actor, &serial, &change.reason).await?))
}

/// `GET /v1/admin/audit`: audit entries, oldest first (`provider_id`, `after`, `limit`).
pub async fn audit_log(
    State(registry): State<Registry>,
    _admin: Admin,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    Ok(Json(AuditLog { entries: registry.audit(query).await? }))
}
