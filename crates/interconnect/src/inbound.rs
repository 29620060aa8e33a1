//! The interconnect's endpoints, as other providers call them (`/interconnect/v1/...` on the
//! provider's endpoint, over mutual TLS only). [`authenticate`] runs before every handler.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use peyvand_api::{ApiError, ErrorCode};
use peyvand_http::listener::ConnInfo;
use peyvand_http::{Failure, Json};
use peyvand_registry::DirectoryProvider;

use peyvand_service::federation::wire;

use crate::Interconnect;
use crate::peers::active_peer;
use crate::protocol::{
    HEADER_NONCE, HEADER_PROVIDER, HEADER_SIGNATURE, HEADER_TARGET, HEADER_TIMESTAMP, LookupRequest, LookupResponse,
    PROTOCOL, ProviderInfo, RemoteUser, address,
};
use crate::signing::{MAX_SKEW_MS, Signed, valid_nonce};
use crate::tls::certificate_facts;

/// The largest request body a peer may send: the server's limit for every route.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// The provider that sent the request, as the directory lists it; put on the request by
/// [`authenticate`].
#[derive(Debug, Clone)]
pub struct Peer(pub DirectoryProvider);

type PeerResult<T> = Result<T, Failure>;

fn refuse(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure(ApiError::new(code, message))
}

/// The endpoints, with [`authenticate`] in front of each.
pub fn router(interconnect: Interconnect) -> Router {
    Router::new()
        .route("/interconnect/v1/provider", get(provider))
        .route("/interconnect/v1/lookup", post(lookup))
        .route("/interconnect/v1/invite", post(invite))
        .route("/interconnect/v1/submit", post(submit))
        .route("/interconnect/v1/transactions", post(transactions))
        .route("/interconnect/v1/typing", post(typing))
        .route("/interconnect/v1/reports", post(report))
        .route("/interconnect/v1/media", get(media))
        .route("/interconnect/{version}/{*rest}", axum::routing::any(other_path))
        .route_layer(axum::middleware::from_fn_with_state(interconnect.clone(), authenticate))
        .with_state(interconnect)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> PeerResult<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse(ErrorCode::InvalidSignature, format!("the request has no `{name}` header")))
}

/// Lets a request through only when all of these hold, in this order, each with its own code:
/// it came over mutual TLS with a certificate from the registry's CA (`peer_not_listed`
/// otherwise); the certificate's provider is in the current directory (`peer_not_listed`),
/// active with this certificate not revoked (`peer_not_active`); it is signed, for this
/// provider, by a key the directory lists for the sender (`invalid_signature`); it was signed
/// within [`MAX_SKEW_MS`] of now (`stale_request`); its nonce is new (`replayed_request`).
pub async fn authenticate(State(interconnect): State<Interconnect>, request: Request, next: Next) -> Response {
    match check(&interconnect, request).await {
        Ok(request) => next.run(request).await,
        Err(failure) => {
            tracing::info!(code = %failure.0.code, message = %failure.0.message, "refused a peer's request");
            failure.into_response()
        }
    }
}

async fn check(interconnect: &Interconnect, request: Request) -> PeerResult<Request> {
    let certificates = request
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .and_then(|info| info.0.peer_certificates.clone())
        .ok_or_else(|| {
            refuse(ErrorCode::PeerNotListed, "providers must call over mutual TLS with their registry certificate")
        })?;
    let facts = certificates
        .first()
        .and_then(|leaf| certificate_facts(leaf))
        .ok_or_else(|| refuse(ErrorCode::PeerNotListed, "the certificate names no provider"))?;
    let directory = interconnect.directory().ok_or_else(|| {
        refuse(ErrorCode::Unavailable, "this provider has no current directory from the registry; retry later")
    })?;
    if directory.revoked_certificates.contains(&facts.serial) {
        return Err(refuse(ErrorCode::PeerNotActive, format!("certificate {} is revoked", facts.serial)));
    }
    let provider = match active_peer(&directory, &facts.provider_id) {
        Ok(provider) => provider.clone(),
        Err(e) if e.code == ErrorCode::UnknownProvider => return Err(refuse(ErrorCode::PeerNotListed, e.message)),
        Err(e) => return Err(Failure(e)),
    };

    let (parts, body) = request.into_parts();
    let from = header(&parts.headers, HEADER_PROVIDER)?;
    if from != provider.id {
        return Err(refuse(
            ErrorCode::InvalidSignature,
            format!("the request says it is from `{from}` but the certificate is `{}`'s", provider.id),
        ));
    }
    let to = header(&parts.headers, HEADER_TARGET)?;
    if to != interconnect.provider_id() {
        return Err(refuse(ErrorCode::InvalidSignature, format!("the request is for `{to}`, not this provider")));
    }
    let timestamp = header(&parts.headers, HEADER_TIMESTAMP)?;
    // Plain decimal digits only: the canonical form writes the number back the same way.
    let timestamp: i64 = Some(timestamp)
        .filter(|t| !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| refuse(ErrorCode::InvalidSignature, "the timestamp must be milliseconds in decimal digits"))?;
    let nonce = header(&parts.headers, HEADER_NONCE)?;
    if !valid_nonce(nonce) {
        return Err(refuse(ErrorCode::InvalidSignature, "the nonce must be 32 lowercase hex digits"));
    }
    let signature = header(&parts.headers, HEADER_SIGNATURE)?;
    let body = read_body(body).await?;
    let path_and_query = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
    let signed = Signed { method: parts.method.as_str(), path_and_query, from, to, timestamp, nonce, body: &body };
    if !signed.verify(signature, &provider.signing_keys) {
        return Err(refuse(
            ErrorCode::InvalidSignature,
            format!("the signature does not verify with `{}`'s keys in the directory", provider.id),
        ));
    }
    let now = peyvand_service::now_millis();
    if (now - timestamp).abs() > MAX_SKEW_MS {
        return Err(refuse(
            ErrorCode::StaleRequest,
            format!("the request was signed {} s from this provider's clock", (now - timestamp) / 1000),
        ));
    }
    if !crate::replay::first_use(interconnect.service(), &provider.id, nonce, timestamp, now).await.map_err(Failure)? {
        return Err(refuse(ErrorCode::ReplayedRequest, "this request (its nonce) was already received"));
    }
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(Peer(provider));
    Ok(request)
}

/// How much of a body over [`MAX_REQUEST_BYTES`] is read (and dropped) before it is refused.
const DRAIN_BYTES: usize = 1024 * 1024;

/// A request's body, at most [`MAX_REQUEST_BYTES`]. A larger one is refused with
/// `payload_too_large` once up to [`DRAIN_BYTES`] more of it were read: a connection closed
/// with unread bytes is reset, and the reset can reach the caller before the refusal does.
async fn read_body(body: Body) -> PeerResult<Bytes> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| refuse(ErrorCode::BadRequest, format!("the request body could not be read: {e}")))?;
        total += chunk.len();
        if total <= MAX_REQUEST_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > MAX_REQUEST_BYTES + DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_REQUEST_BYTES {
        return Err(refuse(ErrorCode::PayloadTooLarge, format!("at most {MAX_REQUEST_BYTES} bytes")));
    }
    Ok(Bytes::from(kept))
}

/// `GET /interconnect/v1/provider`: who this provider is and which protocol it speaks.
async fn provider(State(interconnect): State<Interconnect>) -> Json<ProviderInfo> {
    Json(ProviderInfo {
        provider_id: interconnect.provider_id().to_owned(),
        protocol: PROTOCOL.to_owned(),
        capabilities: crate::CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
    })
}

/// `POST /interconnect/v1/lookup`: whether a number is reachable here for the requester.
/// Limited per peer and per (peer, requester).
async fn lookup(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(request): Json<LookupRequest>,
) -> PeerResult<Json<LookupResponse>> {
    let service = interconnect.service();
    let limits = &interconnect.config().limits;
    service
        .rate_limit(format!("ic:lookup:{}", peer.id), MINUTE_MS, limits.lookups_per_peer_per_minute, "lookups")
        .await?;
    let requester = peyvand_core::phone::PhoneNumber::parse(&request.requester_phone)
        .map_err(|e| refuse(ErrorCode::InvalidPhone, format!("requester_phone: {e}")))?;
    service
        .rate_limit(
            format!("ic:lookup:{}:{}", peer.id, requester.as_str()),
            HOUR_MS,
            limits.lookups_per_remote_user_per_hour,
            "lookups by this person",
        )
        .await?;
    let found = service.reachable_from_peer(&request.phone, Some(requester.as_str())).await?;
    Ok(Json(match found {
        Some(user) => LookupResponse {
            found: true,
            user: Some(RemoteUser {
                address: address(&user.phone, interconnect.provider_id()),
                display_name: user.display_name,
            }),
        },
        None => LookupResponse { found: false, user: None },
    }))
}

/// Counts one request of `peer` against its per-minute allowance.
async fn peer_allowance(interconnect: &Interconnect, peer: &str) -> PeerResult<()> {
    let limit = interconnect.config().limits.requests_per_peer_per_minute;
    interconnect.service().rate_limit(format!("ic:req:{peer}"), MINUTE_MS, limit, "requests").await?;
    Ok(())
}

/// `POST /interconnect/v1/invite`: a room hosted by the caller asks to reach a person here.
async fn invite(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(invitation): Json<wire::Invitation>,
) -> PeerResult<Json<wire::InvitationAnswer>> {
    peer_allowance(&interconnect, &peer.id).await?;
    let limit = interconnect.config().limits.invitations_per_remote_user_per_hour;
    interconnect
        .service()
        .rate_limit(format!("ic:invite:{}", invitation.from), HOUR_MS, limit, "new chats by this person")
        .await?;
    Ok(Json(interconnect.service().accept_invitation(&peer.id, invitation).await?))
}

/// `POST /interconnect/v1/submit`: a person on the caller acts in a room hosted here.
async fn submit(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(submission): Json<wire::Submission>,
) -> PeerResult<Json<wire::SubmissionAnswer>> {
    peer_allowance(&interconnect, &peer.id).await?;
    let limit = interconnect.config().limits.actions_per_remote_user_per_minute;
    interconnect
        .service()
        .rate_limit(format!("ic:act:{}", submission.user), MINUTE_MS, limit, "actions by this person")
        .await?;
    let event = interconnect.service().accept_submission(&peer.id, submission).await?;
    Ok(Json(wire::SubmissionAnswer { event }))
}

/// `POST /interconnect/v1/transactions`: events of rooms the caller hosts.
async fn transactions(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(transaction): Json<wire::Transaction>,
) -> PeerResult<Json<wire::TransactionAnswer>> {
    peer_allowance(&interconnect, &peer.id).await?;
    let id = transaction.id.as_str();
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(ErrorCode::BadRequest, "a transaction id is 1 to 128 printable ASCII characters"));
    }
    let refused = interconnect.service().apply_room_events(&peer.id, id, transaction.events).await?;
    Ok(Json(wire::TransactionAnswer { refused }))
}

/// `POST /interconnect/v1/typing`
async fn typing(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(typing): Json<wire::Typing>,
) -> PeerResult<Json<serde_json::Value>> {
    peer_allowance(&interconnect, &peer.id).await?;
    interconnect.service().accept_typing(&peer.id, typing).await?;
    Ok(Json(serde_json::json!({})))
}

/// `POST /interconnect/v1/reports`: a person on the caller reports a person here.
async fn report(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    Json(report): Json<wire::Report>,
) -> PeerResult<Json<serde_json::Value>> {
    let limit = interconnect.config().limits.reports_per_peer_per_hour;
    interconnect.service().rate_limit(format!("ic:reports:{}", peer.id), HOUR_MS, limit, "reports").await?;
    interconnect.service().accept_report(&peer.id, report).await?;
    Ok(Json(serde_json::json!({})))
}

/// `GET /interconnect/v1/media`: a media message's bytes, for a provider that takes part in
/// the room, from the provider that holds them (media.md). Range requests work. Limited per
/// peer in fetches and in bytes.
async fn media(
    State(interconnect): State<Interconnect>,
    axum::Extension(Peer(peer)): axum::Extension<Peer>,
    peyvand_http::Query(request): peyvand_http::Query<wire::MediaRequest>,
    headers: HeaderMap,
) -> Response {
    match serve_media(&interconnect, &peer.id, &request, &headers).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

async fn serve_media(
    interconnect: &Interconnect,
    peer: &str,
    request: &wire::MediaRequest,
    headers: &HeaderMap,
) -> PeerResult<Response> {
    use axum::http::{HeaderValue, StatusCode, header};
    let service = interconnect.service();
    let limits = &interconnect.config().limits;
    service
        .rate_limit(format!("ic:media:{peer}"), MINUTE_MS, limits.media_fetches_per_peer_per_minute, "media fetches")
        .await?;
    let download = service.peer_media(peer, request).await?;
    let range = peyvand_http::range::requested_range(headers, download.size).map_err(|_| {
        refuse(ErrorCode::BadRequest, format!("the range is outside the file ({} bytes)", download.size))
    })?;
    let bytes = range.as_ref().map_or(download.size, |r| r.end - r.start);
    let mib = u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
    service
        .rate_limit_cost(
            format!("ic:media-mib:{peer}"),
            HOUR_MS,
            limits.media_mib_per_peer_per_hour,
            mib,
            "media bytes",
        )
        .await?;
    let blob = service.read_for_peer(peer, &download, range.clone()).await?;
    let body = Body::from_stream(futures_util::StreamExt::map(blob.stream, |c| c.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", download.sha256)) {
        out.insert(header::ETAG, etag);
    }
    if let Some(range) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{}", range.start, range.end - 1, download.size))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// Any other path under `/interconnect/`: of version 1, an endpoint it does not define
/// (`not_found`); of another version, one this provider does not speak (`unsupported_version`,
/// endpoints.md, EP-21). After the transport checks, like every endpoint.
async fn other_path(axum::extract::Path((version, _)): axum::extract::Path<(String, String)>) -> Failure {
    if version == "v1" {
        return refuse(ErrorCode::NotFound, format!("{PROTOCOL} has no such endpoint"));
    }
    refuse(
        ErrorCode::UnsupportedVersion,
        format!("this provider speaks {PROTOCOL} only (/interconnect/v1/), not `{version}`"),
    )
}
