//! Media: resumable uploads over tus 1.0 (core, creation, expiration, checksum with sha256,
//! termination), media items, and the bytes of media messages with range requests.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use peyvand_api::{ApiError, ErrorBody, ErrorCode, MediaItem, MediaKind, MediaLinks};
use peyvand_service::media::{Appended, Download, UploadMeta, UploadState, Variant};
use serde::Deserialize;
use utoipa::IntoParams;

use peyvand_http::range::requested_range;

use crate::AppState;
use crate::extract::{ApiResult, Authed, Failure, Json, Path, Query};

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,expiration,checksum,termination";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

fn bad(message: impl Into<String>) -> Failure {
    Failure(ApiError::new(ErrorCode::BadRequest, message))
}

/// Every tus response says which version it speaks.
fn tus(mut response: Response) -> Response {
    response.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// A tus request must say it speaks 1.0.0; otherwise it is refused with 412 and the versions
/// this server speaks.
fn tus_refusal(headers: &HeaderMap) -> Option<Response> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => None,
        _ => {
            let body = Json(ErrorBody {
                error: ApiError::new(ErrorCode::BadRequest, "this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0"),
            });
            let mut response = (StatusCode::PRECONDITION_FAILED, body).into_response();
            response.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            Some(response)
        }
    }
}

fn http_date(millis: i64) -> HeaderValue {
    let at = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Failure> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
    }
}

/// tus `Upload-Metadata`: comma-separated `key base64value` pairs. `kind` is required; `filename`
/// (or `name`), `waveform` (the values as bytes) and `thumbnail` (a photo upload's id) are read;
/// other keys (`filetype`, ...) are ignored, as the type is detected from the bytes.
fn parse_metadata(raw: &str) -> Result<(String, UploadMeta), Failure> {
    let decode = |key: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad(format!("Upload-Metadata: the value of {key} is not base64")))
    };
    let text = |key: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| bad(format!("Upload-Metadata: the value of {key} is not UTF-8")))
    };
    let (mut kind, mut meta) = (None, UploadMeta::default());
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        let value = value.trim();
        match key {
            "kind" => kind = Some(text(key, decode(key, value)?)?),
            "filename" | "name" => meta.name = Some(text(key, decode(key, value)?)?),
            "waveform" => meta.waveform = Some(decode(key, value)?),
            "thumbnail" => meta.thumbnail = Some(text(key, decode(key, value)?)?),
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| bad("Upload-Metadata must give the kind (photo, voice, video, audio or file)"))?;
    Ok((kind, meta))
}

/// `Upload-Checksum: sha256 BASE64`.
fn parse_checksum(headers: &HeaderMap) -> Result<Option<[u8; 32]>, Failure> {
    let Some(raw) = headers.get("upload-checksum") else { return Ok(None) };
    let raw = raw.to_str().map_err(|_| bad("Upload-Checksum is not text"))?;
    let (algorithm, value) = raw.trim().split_once(' ').ok_or_else(|| bad("Upload-Checksum is `sha256 BASE64`"))?;
    if algorithm != "sha256" {
        return Err(bad("the only checksum algorithm is sha256"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad("Upload-Checksum's value is not base64"))?;
    let digest: [u8; 32] = bytes.try_into().map_err(|_| bad("a sha256 checksum has 32 bytes"))?;
    Ok(Some(digest))
}

fn upload_headers(response: &mut Response, state: &UploadState) {
    let headers = response.headers_mut();
    headers.insert("upload-offset", number(state.offset));
    headers.insert("upload-expires", http_date(state.expires_at));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `OPTIONS /v1/uploads`: what this server's tus speaks.
#[utoipa::path(options, path = "/v1/uploads", tag = "media",
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size and Tus-Checksum-Algorithm headers")))]
pub async fn upload_options(State(s): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert("tus-max-size", number(s.service.config().media.max_upload_bytes));
    headers.insert("tus-checksum-algorithm", HeaderValue::from_static("sha256"));
    tus(response)
}

/// `POST /v1/uploads`: starts an upload (tus creation). Headers: `Tus-Resumable: 1.0.0`,
/// `Upload-Length`, and `Upload-Metadata` with `kind` (photo, voice, video, audio, file) and
/// optionally `filename`, `waveform` (a voice message's, up to 100 values 0 to 31, as bytes)
/// and `thumbnail` (for a video: the id of a finished photo upload). Answers 201 with the
/// upload's address in `Location`; its id is the media item's once finished.
#[utoipa::path(post, path = "/v1/uploads", tag = "media", security(("bearer" = [])),
    params(("Tus-Resumable" = inline(TusResumable), Header), ("Upload-Length" = u64, Header), ("Upload-Metadata" = String, Header)),
    responses((status = 201, description = "created: Location, Upload-Offset, Upload-Expires"),
               (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
               (status = 413, description = "media_too_large", body = ErrorBody),
               (status = 422, description = "media_invalid: an empty file", body = ErrorBody),
               (status = 429, description = "rate_limited: uploads per hour or bytes per day", body = ErrorBody)))]
pub async fn create_upload(State(s): State<AppState>, Authed(session): Authed, headers: HeaderMap) -> Response {
    if let Some(refused) = tus_refusal(&headers) {
        return tus(refused);
    }
    let made = async {
        if headers.contains_key("upload-defer-length") {
            return Err(bad("Upload-Defer-Length is not supported: give Upload-Length"));
        }
        let length = header_u64(&headers, "upload-length")?.ok_or_else(|| bad("Upload-Length is required"))?;
        let raw = headers.get("upload-metadata").and_then(|v| v.to_str().ok()).unwrap_or("");
        let (kind, meta) = parse_metadata(raw)?;
        Ok::<_, Failure>(s.service.create_upload(session, &kind, length, meta).await?)
    }
    .await;
    let response = match made {
        Ok(state) => {
            let mut response = StatusCode::CREATED.into_response();
            upload_headers(&mut response, &state);
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/uploads/{}", state.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(failure) => failure.into_response(),
    };
    tus(response)
}

/// `HEAD /v1/uploads/{id}`: where an upload stands: `Upload-Offset`, `Upload-Length`,
/// `Upload-Expires`. 410 once it expired, was cancelled or finished.
#[utoipa::path(head, path = "/v1/uploads/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = inline(TusResumable), Header)),
    responses((status = 200, description = "Upload-Offset and Upload-Length headers"),
               (status = 410, description = "upload_gone"),
               (status = 412, description = "Tus-Resumable is not 1.0.0 (Tus-Version says what is)")))]
pub async fn upload_head(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = tus_refusal(&headers) {
        return tus(refused);
    }
    let response = match s.service.upload_state(session, &id).await {
        Ok(state) => {
            let mut response = StatusCode::OK.into_response();
            upload_headers(&mut response, &state);
            response.headers_mut().insert("upload-length", number(state.length));
            response
        }
        // A HEAD answer has no body: the status says it.
        Err(e) => StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::GONE).into_response(),
    };
    tus(response)
}

/// The only tus version this server speaks (`Tus-Resumable`); any other is refused with 412.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1,
}

/// The body of a tus `PATCH`: bytes, as they are.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct OffsetBytes(Vec<u8>);

/// `PATCH /v1/uploads/{id}`: the upload's next bytes at `Upload-Offset` (where it stands),
/// with `Content-Type: application/offset+octet-stream` and optionally `Upload-Checksum:
/// sha256 BASE64` of the body. Answers 204 with the new `Upload-Offset`; the request that
/// brings the last byte finishes the upload (the file is checked and becomes a media item,
/// `GET /v1/media/{id}`). Bytes that arrived before a request broke off are kept (without a
/// checksum), so a client resumes from the offset `HEAD` gives.
#[utoipa::path(patch, path = "/v1/uploads/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = inline(TusResumable), Header), ("Upload-Offset" = u64, Header),
           ("Upload-Checksum" = Option<String>, Header)),
    request_body(content = OffsetBytes, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "stored: Upload-Offset"),
               (status = 409, description = "upload_offset_mismatch", body = ErrorBody),
               (status = 410, description = "upload_gone", body = ErrorBody),
               (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
               (status = 413, description = "media_too_large: past the upload's length, or a photo too large", body = ErrorBody),
               (status = 415, description = "the body is not application/offset+octet-stream; media_type_mismatch", body = ErrorBody),
               (status = 422, description = "media_invalid", body = ErrorBody),
               (status = 460, description = "checksum_mismatch", body = ErrorBody)))]
pub async fn upload_patch(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = tus_refusal(&headers) {
        return tus(refused);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != OFFSET_STREAM {
        let refused = ApiError::new(ErrorCode::BadRequest, format!("the body's Content-Type must be {OFFSET_STREAM}"));
        return tus((StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(ErrorBody { error: refused })).into_response());
    }
    let appended = async {
        let offset = header_u64(&headers, "upload-offset")?.ok_or_else(|| bad("Upload-Offset is required"))?;
        let checksum = parse_checksum(&headers)?;
        let stream = body.into_data_stream();
        Ok::<_, Failure>(s.service.append_upload(session, &id, offset, checksum, stream).await?)
    }
    .await;
    let response = match appended {
        Ok(Appended::Partial(state)) | Ok(Appended::Finished(state, _)) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            upload_headers(&mut response, &state);
            response
        }
        Err(failure) => failure.into_response(),
    };
    tus(response)
}

/// `DELETE /v1/uploads/{id}`: cancels an upload (tus termination); its bytes are removed.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "media", security(("bearer" = [])), params(("id" = String, Path), ("Tus-Resumable" = inline(TusResumable), Header)),
    responses((status = 204, description = "cancelled"), (status = 410, description = "upload_gone", body = ErrorBody),
               (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody)))]
pub async fn upload_delete(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = tus_refusal(&headers) {
        return tus(refused);
    }
    tus(match s.service.cancel_upload(session, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => Failure(e).into_response(),
    })
}

/// `GET /v1/media/{id}`: a finished upload of mine (a media item not yet expired): what the
/// server found in the file.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "media", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = MediaItem)))]
pub async fn get_media_item(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> ApiResult<Json<MediaItem>> {
    Ok(Json(s.service.media_item(session, &id).await?))
}

/// `GET /v1/media/{id}/{variant}`: the bytes of a media item of mine: `content` or
/// `thumbnail`. Range requests work.
#[utoipa::path(get, path = "/v1/media/{id}/{variant}", tag = "media", security(("bearer" = [])),
    params(("id" = String, Path), ("variant" = String, Path, description = "content or thumbnail"), ("Range" = Option<String>, Header)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a range of the bytes"),
               (status = 304, description = "not modified (If-None-Match)"),
               (status = 416, description = "the range is outside the file")))]
pub async fn get_media_bytes(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((id, variant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let download = async {
        let variant = parse_variant(&variant)?;
        Ok::<_, Failure>(s.service.item_download(session, &id, variant).await?)
    }
    .await;
    answer(&s, download, &headers).await
}

fn parse_variant(raw: &str) -> Result<Variant, Failure> {
    Variant::parse(raw).ok_or_else(|| Failure(ApiError::new(ErrorCode::NotFound, "no such media variant")))
}

/// `GET /v1/chats/{chat_id}/messages/{seq}/media`: a media message's file, for a member of
/// the chat. Range requests work.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/messages/{seq}/media", tag = "media", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("seq" = i64, Path), ("Range" = Option<String>, Header)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a range of the bytes"),
               (status = 304, description = "not modified (If-None-Match)"),
               (status = 416, description = "the range is outside the file")))]
pub async fn get_message_media(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Response {
    let download = s.service.message_download(session, chat_id, seq, Variant::Content).await;
    answer(&s, download.map_err(Failure), &headers).await
}

/// `GET /v1/chats/{chat_id}/messages/{seq}/media/thumbnail`: a photo's or video's thumbnail.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/messages/{seq}/media/thumbnail", tag = "media", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("seq" = i64, Path), ("Range" = Option<String>, Header)),
    responses((status = 200, description = "a JPEG"), (status = 206, description = "a range of the bytes"),
               (status = 304, description = "not modified (If-None-Match)"),
               (status = 416, description = "the range is outside the file")))]
pub async fn get_message_thumbnail(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
    headers: HeaderMap,
) -> Response {
    let download = s.service.message_download(session, chat_id, seq, Variant::Thumbnail).await;
    answer(&s, download.map_err(Failure), &headers).await
}

/// `GET /v1/chats/{chat_id}/messages/{seq}/media/links`: short-lived addresses of a media
/// message's file and thumbnail that need no `Authorization` header (for `<img>`, `<audio>`,
/// `<video>`). They hold no session token.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/messages/{seq}/media/links", tag = "media", security(("bearer" = [])),
    params(("chat_id" = i64, Path), ("seq" = i64, Path)), responses((status = 200, body = MediaLinks)))]
pub async fn get_media_links(
    State(s): State<AppState>,
    Authed(session): Authed,
    Path((chat_id, seq)): Path<(i64, i64)>,
) -> ApiResult<Json<MediaLinks>> {
    Ok(Json(s.service.media_links(session, chat_id, seq).await?))
}

/// The signature of a media link.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LinkQuery {
    /// When the link stops working, in milliseconds since the epoch.
    pub expires: i64,
    pub sig: String,
}

/// `GET /v1/files/{chat_id}/{seq}/{variant}`: a media link (from `.../media/links`): the
/// bytes, without a session.
#[utoipa::path(get, path = "/v1/files/{chat_id}/{seq}/{variant}", tag = "media",
    params(("chat_id" = i64, Path), ("seq" = i64, Path), ("variant" = String, Path, description = "content or thumbnail"), LinkQuery,
           ("Range" = Option<String>, Header)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a range of the bytes"),
               (status = 304, description = "not modified (If-None-Match)"),
               (status = 403, description = "forbidden: the link is not valid or has expired", body = ErrorBody),
               (status = 416, description = "the range is outside the file")))]
pub async fn get_linked_file(
    State(s): State<AppState>,
    Path((chat_id, seq, variant)): Path<(i64, i64, String)>,
    Query(link): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let download = async {
        let variant = parse_variant(&variant)?;
        Ok::<_, Failure>(s.service.link_download(chat_id, seq, variant, link.expires, &link.sig).await?)
    }
    .await;
    answer(&s, download, &headers).await
}

/// A file name for `Content-Disposition` (RFC 6266): an ASCII fallback in `filename`, and the
/// name as it is (Persian kept) in `filename*` (RFC 5987, UTF-8, percent-encoded).
pub(crate) fn content_disposition(disposition: &str, name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._- ".contains(c) { c } else { '_' }).collect();
    let fallback = if fallback.trim_matches(['_', ' ', '.']).is_empty() { "file".to_owned() } else { fallback };
    const ATTR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR);
    format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The file's name for a download: the sender's, or one made from the kind and type.
fn download_name(download: &Download) -> String {
    if download.variant == Variant::Thumbnail {
        return "thumbnail.jpg".to_owned();
    }
    download.media.name.clone().unwrap_or_else(|| {
        let ext = peyvand_media::inspect::extension(&download.mime).unwrap_or("bin");
        format!("{}.{ext}", download.media.kind.as_str())
    })
}

/// A download's answer: its bytes ([`serve`]), or why there are none.
async fn answer(s: &AppState, download: Result<Download, Failure>, headers: &HeaderMap) -> Response {
    match download {
        Ok(download) => serve(s, &download, headers).await,
        Err(failure) => failure.into_response(),
    }
}

/// Serves a download: the detected type (never one a browser runs as a page), `nosniff`, a
/// sandbox policy, the hash as `ETag`, cached privately for good, and a range when asked.
async fn serve(s: &AppState, download: &Download, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", download.sha256);
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"\"")));
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    common.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    common.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let inline = download.variant == Variant::Thumbnail || download.media.kind != MediaKind::File;
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, &download_name(download));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        common.insert(header::CONTENT_DISPOSITION, value);
    }
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().extend(common);
        return response;
    }
    let size = download.size;
    let range = match requested_range(headers, size) {
        Ok(range) => range,
        Err(_) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().extend(common);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let blob = match s.service.read_download(download, range.clone()).await {
        Ok(blob) => blob,
        Err(e) => return Failure(e).into_response(),
    };
    let body = Body::from_stream(blob.stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.extend(common);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&download.mime).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    match range {
        Some(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, number(range.end - range.start));
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1)) {
                headers.insert(header::CONTENT_RANGE, value);
            }
        }
        None => {
            response.headers_mut().insert(header::CONTENT_LENGTH, number(size));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_keep_persian_names_safely() {
        assert_eq!(
            content_disposition("attachment", "گزارش.pdf"),
            "attachment; filename=\"_____.pdf\"; filename*=UTF-8''%DA%AF%D8%B2%D8%A7%D8%B1%D8%B4.pdf"
        );
        assert_eq!(
            content_disposition("inline", "a\"b;c.txt"),
            "inline; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%3Bc.txt"
        );
        assert_eq!(
            content_disposition("inline", "بی‌نام"),
            "inline; filename=\"file\"; filename*=UTF-8''%D8%A8%DB%8C%E2%80%8C%D9%86%D8%A7%D9%85"
        );
    }

    #[test]
    fn metadata_needs_a_kind_and_base64_values() {
        let (kind, meta) =
            parse_metadata("kind cGhvdG8=,filename 2LnaqdizLmpwZw==,filetype aW1hZ2UvanBlZw==").expect("valid");
        assert_eq!(kind, "photo");
        assert_eq!(meta.name.as_deref(), Some("عکس.jpg"));
        assert!(parse_metadata("filename YQ==").is_err());
        assert!(parse_metadata("kind !!!").is_err());
    }
}
