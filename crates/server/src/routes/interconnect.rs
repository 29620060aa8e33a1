//! The client API's cross-messenger calls, and the interconnect's own endpoints for peers.

use axum::extract::State;
use peyvand_api::{ApiError, ErrorBody, ErrorCode, LookupQuery, ReachableList};

use crate::AppState;
use crate::extract::{ApiResult, Authed, Json, Query};

/// `GET /v1/interconnect/lookup?phone=`: the messengers where this number can be reached
/// (this one included); peers that could not be asked are listed with the reason.
#[utoipa::path(get, path = "/v1/interconnect/lookup", tag = "interconnect", security(("bearer" = [])), params(LookupQuery),
    responses((status = 200, body = ReachableList), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn interconnect_lookup(
    State(s): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<LookupQuery>,
) -> ApiResult<Json<ReachableList>> {
    let interconnect = s.interconnect.as_ref().ok_or_else(|| {
        ApiError::new(ErrorCode::InterconnectDisabled, "this server is not connected to other messengers")
    })?;
    Ok(Json(interconnect.lookup(session, &q.phone).await?))
}
