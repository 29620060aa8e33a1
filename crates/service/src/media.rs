//! Media: resumable uploads (the tus protocol's state), media items, the bytes of media
//! messages, links for browsers, and the sweeper that removes what nothing refers to.
//!
//! An upload's bytes are stored as they arrive, in pieces of at most `piece_bytes` under
//! `uploads/ID/OFFSET-NONCE`; the store records each piece and moves the offset only from
//! where it is, so a dropped connection loses nothing that arrived and two requests cannot
//! both advance one upload. The last piece finishes it: the file is checked against its
//! declared kind, inspected, and stored once as a blob (`blobs/ID-ATTEMPT`, with
//! `blobs/ID-ATTEMPT-t` for a photo's thumbnail), keyed in the store by its SHA-256.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use peyvand_api::{ApiError, ErrorCode, Media, MediaItem, MediaKind, MediaLinks, Thumbnail};
use peyvand_media::inspect::{self, InspectError};
use peyvand_media::storage::{BlobStore, BlobStream, RangeReader, StorageError};
use peyvand_store::{BlobRecord, MediaItemRecord, UploadPiece, UploadRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::federation::wire;
use crate::{DAY_MS, HOUR_MS, Service, Session, err, now_millis, store_error};

const MIB: u64 = 1 << 20;
/// How much of a file's start type detection reads.
const HEAD_BYTES: u64 = 8192;
/// A voice message's waveform: at most this many values, each 0 to 31.
const WAVEFORM_VALUES: usize = 100;
/// A file name's longest form, in characters.
const NAME_CHARS: usize = 255;
/// A media item is not sent within this long of its expiry (or a quarter of its time, if
/// shorter), so that the sweeper never forgets an item while a message that refers to it is
/// being stored.
const SEND_MARGIN_MS: i64 = 10 * 60 * 1000;

/// What the uploader says of a file when the upload starts (tus `Upload-Metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// The file's name, kept for downloads (Persian names included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A voice message's waveform: up to 100 values, 0 to 31.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Vec<u8>>,
    /// For a video: the id of a finished photo upload of the same person, its thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    pub id: String,
    pub offset: u64,
    pub length: u64,
    pub expires_at: i64,
}

impl UploadState {
    fn of(upload: &UploadRecord) -> Self {
        Self {
            id: upload.id.clone(),
            offset: upload.offset as u64,
            length: upload.length as u64,
            expires_at: upload.expires_at,
        }
    }
}

/// What a request's bytes did to an upload.
#[derive(Debug, Clone)]
pub enum Appended {
    /// More bytes are expected.
    Partial(UploadState),
    /// The upload is complete and is now this media item.
    Finished(UploadState, Box<MediaItem>),
}

/// Which bytes of a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Content,
    Thumbnail,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Content => "content",
            Self::Thumbnail => "thumbnail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Content, Self::Thumbnail].into_iter().find(|v| v.as_str() == s)
    }
}

/// A media item's bytes that the asker may read.
#[derive(Debug, Clone)]
pub struct Download {
    pub media: Media,
    pub variant: Variant,
    /// The type to serve: never one a browser would run.
    pub mime: String,
    pub size: u64,
    pub sha256: String,
    key: String,
}

/// Bytes moved per media kind, for the metrics.
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub uploaded: [AtomicU64; 5],
    pub downloaded: [AtomicU64; 5],
}

impl MediaCounters {
    pub fn index(kind: MediaKind) -> usize {
        MediaKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
    }
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaSwept {
    pub uploads: u64,
    pub items: u64,
    pub blobs: u64,
}

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => err(ErrorCode::MediaUnavailable, "the file's bytes are gone"),
        StorageError::TooLarge => err(ErrorCode::MediaTooLarge, "the file is too large"),
        other => {
            tracing::warn!(error = %other, "media storage failed");
            err(ErrorCode::Unavailable, "the media storage is unavailable; retry later")
        }
    }
}

fn inspect_error(e: InspectError) -> ApiError {
    match e {
        InspectError::TypeMismatch { declared, found } => err(
            ErrorCode::MediaTypeMismatch,
            format!(
                "the file is {} and cannot be sent as {}",
                found.unwrap_or("of an unknown type"),
                declared.as_str()
            ),
        ),
        InspectError::Invalid(why) => err(ErrorCode::MediaInvalid, format!("the file is not valid: {why}")),
        InspectError::TooLarge(why) => err(ErrorCode::MediaTooLarge, why),
    }
}

fn gone() -> ApiError {
    err(ErrorCode::UploadGone, "no such upload: it expired, was cancelled or was finished; start a new one")
}

fn no_media() -> ApiError {
    err(ErrorCode::NotFound, "no such media")
}

/// A random id of 128 bits, as 32 lowercase hex digits.
fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Checks what the uploader said of the file.
fn validate_meta(kind: MediaKind, meta: &mut UploadMeta) -> Result<(), ApiError> {
    if let Some(name) = &meta.name {
        // Only the last path component, with no control or direction characters.
        let base = name.rsplit(['/', '\\']).next().unwrap_or("");
        let clean: String = base
            .chars()
            .filter(|c| !c.is_control() && !peyvand_core::chars::is_direction_control(*c))
            .take(NAME_CHARS)
            .collect();
        let clean = clean.trim().to_owned();
        meta.name = (!clean.is_empty() && clean != "." && clean != "..").then_some(clean);
    }
    if let Some(waveform) = &meta.waveform {
        if kind != MediaKind::Voice {
            return Err(err(ErrorCode::BadRequest, "only a voice message has a waveform"));
        }
        if waveform.len() > WAVEFORM_VALUES || waveform.iter().any(|v| *v > 31) {
            return Err(err(ErrorCode::BadRequest, "a waveform has at most 100 values, each 0 to 31"));
        }
    }
    if meta.thumbnail.is_some() && kind != MediaKind::Video {
        return Err(err(ErrorCode::BadRequest, "only a video takes a thumbnail upload"));
    }
    Ok(())
}

/// Checks a media description that did not come from this server's own inspection (another
/// provider's): every field within what this server would make (media.md, MEDIA-4).
pub(crate) fn check_description(media: &Media) -> Result<(), ApiError> {
    let bad = |what: &str| Err(err(ErrorCode::InvalidContent, format!("the media description's {what} is not valid")));
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !inspect::may_serve(media.kind, &media.mime) {
        return Err(err(
            ErrorCode::MediaTypeMismatch,
            format!("a {} is never served as {}", media.kind.as_str(), media.mime),
        ));
    }
    if !hex64(&media.sha256) {
        return bad("sha256");
    }
    if media.size == 0 {
        return bad("size");
    }
    if let Some(name) = &media.name
        && (name.is_empty()
            || name.chars().count() > NAME_CHARS
            || name.contains(['/', '\\'])
            || name.chars().any(|c| c.is_control() || peyvand_core::chars::is_direction_control(c)))
    {
        return bad("name");
    }
    let side = |v: Option<u32>| v.is_none_or(|v| (1..=100_000).contains(&v));
    if !side(media.width) || !side(media.height) {
        return bad("width or height");
    }
    if media.duration_ms.is_some_and(|d| d > 100 * 3600 * 1000) {
        return bad("duration");
    }
    if let Some(waveform) = &media.waveform
        && (media.kind != MediaKind::Voice || waveform.len() > WAVEFORM_VALUES || waveform.iter().any(|v| *v > 31))
    {
        return bad("waveform");
    }
    if media
        .preview
        .as_ref()
        .is_some_and(|p| p.len() > 64 || base64::engine::general_purpose::STANDARD.decode(p).is_err())
    {
        return bad("preview");
    }
    if let Some(t) = &media.thumbnail
        && (!hex64(&t.sha256)
            || t.size == 0
            || t.size > 1 << 20
            || !(1..=320).contains(&t.width)
            || !(1..=320).contains(&t.height))
    {
        return bad("thumbnail");
    }
    if media.thumbnail.is_some() && !matches!(media.kind, MediaKind::Photo | MediaKind::Video) {
        return bad("thumbnail");
    }
    Ok(())
}

/// Whether the pieces cover `[0, length)` without a gap.
fn contiguous(pieces: &[UploadPiece], length: i64) -> bool {
    let mut at = 0;
    for piece in pieces {
        if piece.start != at {
            return false;
        }
        at += piece.len;
    }
    at == length
}

impl Service {
    /// The blob storage, if this server has one.
    fn blobs(&self) -> Result<&BlobStore, ApiError> {
        self.blobs.as_ref().ok_or_else(|| err(ErrorCode::Unavailable, "this server stores no media"))
    }

    fn photo_limits(&self) -> inspect::Limits {
        let media = &self.config.media;
        inspect::Limits {
            max_photo_bytes: media.max_photo_bytes,
            max_width: media.max_photo_side,
            max_height: media.max_photo_side,
            max_pixels: media.max_photo_pixels,
            ..inspect::Limits::default()
        }
    }

    /// `POST /v1/uploads`: starts an upload of `length` bytes of a file of `kind`, within the
    /// size limit, the uploads per hour and the bytes per day.
    pub async fn create_upload(
        &self,
        session: Session,
        kind: &str,
        length: u64,
        mut meta: UploadMeta,
    ) -> Result<UploadState, ApiError> {
        self.blobs()?;
        let kind = MediaKind::parse(kind)
            .ok_or_else(|| err(ErrorCode::BadRequest, "the kind must be one of photo, voice, video, audio, file"))?;
        let config = &self.config.media;
        if length == 0 {
            return Err(err(ErrorCode::MediaInvalid, "the file is empty"));
        }
        let max = if kind == MediaKind::Photo { config.max_photo_bytes } else { config.max_upload_bytes };
        if length > max {
            return Err(err(ErrorCode::MediaTooLarge, format!("a {} may have at most {max} bytes", kind.as_str())));
        }
        validate_meta(kind, &mut meta)?;
        if let Some(thumbnail) = &meta.thumbnail {
            self.own_photo(session, thumbnail).await?;
        }
        let me = session.user_id;
        self.limit(format!("uploads:{me}"), HOUR_MS, config.uploads_per_hour, "uploads").await?;
        let mib = |bytes: u64| u32::try_from(bytes.div_ceil(MIB)).unwrap_or(u32::MAX);
        self.limit_cost(
            format!("upload-mib:{me}"),
            DAY_MS,
            mib(config.upload_bytes_per_day),
            mib(length),
            "bytes uploaded today",
        )
        .await?;
        let now = now_millis();
        let upload = UploadRecord {
            id: random_id(),
            owner: me,
            kind: kind.as_str().to_owned(),
            length: length as i64,
            offset: 0,
            metadata: serde_json::to_string(&meta).map_err(|e| err(ErrorCode::Internal, e.to_string()))?,
            created_at: now,
            expires_at: now + config.upload_expiry_secs as i64 * 1000,
        };
        self.store.create_upload(upload.clone()).await.map_err(store_error)?;
        Ok(UploadState::of(&upload))
    }

    /// The upload, if it is the person's and has not expired.
    async fn own_upload(&self, session: Session, id: &str) -> Result<UploadRecord, ApiError> {
        let upload = self.store.upload(id).await.map_err(store_error)?;
        match upload {
            Some(u) if u.owner == session.user_id && u.expires_at > now_millis() => Ok(u),
            _ => Err(gone()),
        }
    }

    /// A finished photo upload of the person's, to be a video's thumbnail.
    async fn own_photo(&self, session: Session, id: &str) -> Result<MediaItemRecord, ApiError> {
        match self.store.media_item(id).await.map_err(store_error)? {
            Some(item) if item.owner == session.user_id && item.media.kind == MediaKind::Photo => Ok(item),
            _ => Err(err(ErrorCode::BadRequest, "the thumbnail must be a finished photo upload of yours")),
        }
    }

    /// `HEAD /v1/uploads/{id}`: where the upload stands.
    pub async fn upload_state(&self, session: Session, id: &str) -> Result<UploadState, ApiError> {
        Ok(UploadState::of(&self.own_upload(session, id).await?))
    }

    /// `DELETE /v1/uploads/{id}`: cancels the upload and removes its bytes.
    pub async fn cancel_upload(&self, session: Session, id: &str) -> Result<(), ApiError> {
        let upload = self.own_upload(session, id).await?;
        let keys = match self.store.delete_upload(&upload.id).await {
            Ok(keys) => keys,
            Err(peyvand_store::StoreError::NotFound) => return Err(gone()),
            Err(e) => return Err(store_error(e)),
        };
        self.remove_keys(&keys).await;
        Ok(())
    }

    /// `PATCH /v1/uploads/{id}`: stores the request's bytes at `offset`, which must be where
    /// the upload stands. With a `checksum` (SHA-256 of the request's bytes), the bytes count
    /// only if they match; without one, every piece that arrived counts, even when the
    /// request breaks off. The request that brings the last byte finishes the upload.
    pub async fn append_upload<S, E>(
        &self,
        session: Session,
        id: &str,
        offset: u64,
        checksum: Option<[u8; 32]>,
        mut body: S,
    ) -> Result<Appended, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let blobs = self.blobs()?.clone();
        let upload = self.own_upload(session, id).await?;
        if offset != upload.offset as u64 {
            return Err(err(
                ErrorCode::UploadOffsetMismatch,
                format!("the upload is at offset {}, not {offset}", upload.offset),
            ));
        }
        let length = upload.length as u64;
        let piece_bytes = self.config.media.piece_bytes.max(64 * 1024);
        let mut hasher = checksum.map(|_| Sha256::new());
        // Pieces written but, under a checksum, not yet recorded.
        let mut pending: Vec<(u64, u64, String)> = Vec::new();
        let mut at = offset;
        let mut buffer = BytesMut::new();
        let mut broken: Option<String> = None;
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    broken = Some(e.to_string());
                    break;
                }
                None => break,
            };
            if at + buffer.len() as u64 + chunk.len() as u64 > length {
                self.drop_pieces(&blobs, &pending).await;
                return Err(err(
                    ErrorCode::MediaTooLarge,
                    format!("the request goes past the upload's length, {length}"),
                ));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            buffer.extend_from_slice(&chunk);
            while buffer.len() as u64 >= piece_bytes {
                let piece = buffer.split_to(piece_bytes as usize).freeze();
                at = self.store_piece(&blobs, &upload, at, piece, checksum.is_none(), &mut pending).await?;
            }
        }
        if broken.is_some() && checksum.is_some() {
            // Bytes that cannot be checked do not count.
            self.drop_pieces(&blobs, &pending).await;
            return Err(err(ErrorCode::BadRequest, "the request broke off before its checksum could be checked"));
        }
        if !buffer.is_empty() {
            at = self.store_piece(&blobs, &upload, at, buffer.freeze(), checksum.is_none(), &mut pending).await?;
        }
        if let (Some(expected), Some(h)) = (checksum, hasher) {
            if h.finalize().as_slice() != expected {
                self.drop_pieces(&blobs, &pending).await;
                return Err(err(ErrorCode::ChecksumMismatch, "the bytes do not match Upload-Checksum; none were kept"));
            }
            let mut unrecorded = std::mem::take(&mut pending).into_iter();
            while let Some((start, len, key)) = unrecorded.next() {
                let recorded = self.store.add_upload_piece(&upload.id, start as i64, len as i64, &key).await;
                // The pieces after one that is not recorded never will be: nothing refers to
                // them, so they go now (else they would stay in the storage for good).
                let rest: Vec<(u64, u64, String)> = match &recorded {
                    Ok(true) => continue,
                    Ok(false) => unrecorded.chain([(start, len, key)]).collect(),
                    // Whether this one was recorded is not known; the rest were not.
                    Err(_) => unrecorded.collect(),
                };
                self.drop_pieces(&blobs, &rest).await;
                recorded.map_err(store_error)?;
                return Err(err(ErrorCode::UploadOffsetMismatch, "another request moved the upload on"));
            }
        }
        if let Some(why) = broken {
            return Err(err(ErrorCode::BadRequest, format!("the request broke off: {why}")));
        }
        let kind = MediaKind::parse(&upload.kind).unwrap_or(MediaKind::File);
        self.metrics.media.uploaded[MediaCounters::index(kind)].fetch_add(at - offset, Ordering::Relaxed);
        let state = UploadState { offset: at, ..UploadState::of(&upload) };
        if at < length {
            return Ok(Appended::Partial(state));
        }
        let item = self.finish_upload(UploadRecord { offset: at as i64, ..upload }).await?;
        Ok(Appended::Finished(state, Box::new(item)))
    }

    /// Writes one piece of an upload at `at` and, unless it waits for a checksum, records it;
    /// returns the offset after it.
    async fn store_piece(
        &self,
        blobs: &BlobStore,
        upload: &UploadRecord,
        at: u64,
        piece: Bytes,
        record: bool,
        pending: &mut Vec<(u64, u64, String)>,
    ) -> Result<u64, ApiError> {
        let len = piece.len() as u64;
        let key = format!("uploads/{}/{at:020}-{}", upload.id, random_id());
        if let Err(e) = blobs.put(&key, piece).await {
            // The pieces before it, waiting for the checksum, will not be recorded either.
            self.drop_pieces(blobs, pending).await;
            return Err(storage_error(e));
        }
        if record {
            let recorded =
                self.store.add_upload_piece(&upload.id, at as i64, len as i64, &key).await.map_err(store_error)?;
            if !recorded {
                let _ = blobs.delete(&key).await;
                return Err(err(ErrorCode::UploadOffsetMismatch, "another request moved the upload on"));
            }
        } else {
            pending.push((at, len, key));
        }
        Ok(at + len)
    }

    async fn drop_pieces(&self, blobs: &BlobStore, pending: &[(u64, u64, String)]) {
        for (_, _, key) in pending {
            let _ = blobs.delete(key).await;
        }
    }

    /// Removes keys from the blob storage; a failure is logged (the sweeper does not see
    /// these again: the store no longer refers to them).
    async fn remove_keys(&self, keys: &[String]) {
        let Ok(blobs) = self.blobs() else { return };
        for key in keys {
            if let Err(e) = blobs.delete(key).await {
                tracing::warn!(%key, error = %e, "could not remove media bytes");
            }
        }
    }

    /// Discards an upload whose file was refused, with its bytes.
    async fn discard(&self, upload: &UploadRecord, also: &[String]) {
        if let Ok(keys) = self.store.delete_upload(&upload.id).await {
            self.remove_keys(&keys).await;
        }
        self.remove_keys(also).await;
    }

    /// Turns a complete upload into a media item: checks and inspects the file, stores it
    /// once as a blob, and removes the pieces. A refused file is discarded with its upload.
    async fn finish_upload(&self, upload: UploadRecord) -> Result<MediaItem, ApiError> {
        let pieces = self.store.upload_pieces(&upload.id).await.map_err(store_error)?;
        if !contiguous(&pieces, upload.length) {
            return Err(err(ErrorCode::Internal, "the upload's pieces do not cover it"));
        }
        let kind = MediaKind::parse(&upload.kind).unwrap_or(MediaKind::File);
        let meta: UploadMeta = serde_json::from_str(&upload.metadata).unwrap_or_default();
        let (media, blobs, keys) = match self.make_media(&upload, &pieces, kind, &meta).await {
            Ok(made) => made,
            Err(refused) => {
                // A storage failure may pass; a refused file never will.
                if refused.code != ErrorCode::Unavailable {
                    self.discard(&upload, &[]).await;
                }
                return Err(refused);
            }
        };
        let now = now_millis();
        let item = MediaItemRecord { id: upload.id.clone(), owner: upload.owner, media, created_at: now };
        let put = match self.store.finish_upload(item.clone(), blobs, now).await {
            Ok(put) => put,
            Err(e) => {
                self.remove_keys(&keys).await;
                return Err(match e {
                    peyvand_store::StoreError::NotFound => gone(),
                    other => store_error(other),
                });
            }
        };
        self.remove_keys(&put.redundant).await;
        let piece_keys: Vec<String> = pieces.into_iter().map(|p| p.key).collect();
        self.remove_keys(&piece_keys).await;
        Ok(MediaItem { id: item.id, media: item.media, created_at: item.created_at })
    }

    /// Reads `[range)` of an upload from its pieces, into memory.
    async fn read_pieces(&self, pieces: &[UploadPiece], range: Range<u64>) -> Result<Bytes, ApiError> {
        let blobs = self.blobs()?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for piece in pieces {
            let (start, end) = (piece.start as u64, (piece.start + piece.len) as u64);
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            let mut stream = blobs.get(&piece.key, Some(from..to)).await.map_err(storage_error)?.stream;
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.map_err(storage_error)?);
            }
        }
        Ok(out.freeze())
    }

    /// Checks the file and makes its media description and blobs; returns them with the
    /// keys written (to remove should the item not be stored).
    async fn make_media(
        &self,
        upload: &UploadRecord,
        pieces: &[UploadPiece],
        kind: MediaKind,
        meta: &UploadMeta,
    ) -> Result<(Media, Vec<BlobRecord>, Vec<String>), ApiError> {
        let blobs = self.blobs()?.clone();
        let length = upload.length as u64;
        let head = self.read_pieces(pieces, 0..length.min(HEAD_BYTES)).await?;
        let detected = inspect::detect(&head);
        let mime = inspect::check_kind(kind, detected.as_ref()).map_err(inspect_error)?;
        // Unique to this attempt: should two requests finish the same upload at once, the one
        // whose item is not stored removes only its own bytes.
        let attempt = &random_id()[..8];
        let key = format!("blobs/{}-{attempt}", upload.id);
        let base = Media {
            kind,
            mime: mime.to_owned(),
            size: length,
            sha256: String::new(),
            name: meta.name.clone(),
            width: None,
            height: None,
            duration_ms: None,
            waveform: meta.waveform.clone(),
            preview: None,
            thumbnail: None,
        };
        if kind == MediaKind::Photo {
            let bytes = self.read_pieces(pieces, 0..length).await?;
            let limits = self.photo_limits();
            let photo = tokio::task::spawn_blocking(move || inspect::photo(&bytes, &limits))
                .await
                .map_err(|e| err(ErrorCode::Internal, format!("photo inspection failed: {e}")))?
                .map_err(inspect_error)?;
            let sha = hex::encode(Sha256::digest(&photo.bytes));
            let thumb_sha = hex::encode(Sha256::digest(&photo.thumbnail));
            let thumb_key = format!("blobs/{}-{attempt}-t", upload.id);
            let (size, thumb_size) = (photo.bytes.len() as u64, photo.thumbnail.len() as u64);
            blobs.put(&key, Bytes::from(photo.bytes)).await.map_err(storage_error)?;
            if let Err(e) = blobs.put(&thumb_key, Bytes::from(photo.thumbnail)).await {
                let _ = blobs.delete(&key).await;
                return Err(storage_error(e));
            }
            let media = Media {
                mime: photo.mime.to_owned(),
                size,
                sha256: sha.clone(),
                width: Some(photo.width),
                height: Some(photo.height),
                preview: Some(base64::engine::general_purpose::STANDARD.encode(&photo.preview)),
                thumbnail: Some(Thumbnail {
                    sha256: thumb_sha.clone(),
                    size: thumb_size,
                    width: photo.thumbnail_width,
                    height: photo.thumbnail_height,
                }),
                ..base
            };
            let records = vec![
                BlobRecord { sha256: sha, key: key.clone(), size: size as i64 },
                BlobRecord { sha256: thumb_sha, key: thumb_key.clone(), size: thumb_size as i64 },
            ];
            return Ok((media, records, vec![key, thumb_key]));
        }

        let sha = self.concatenate(&blobs, pieces, &key).await?;
        let mut media = Media { sha256: sha.clone(), ..base };
        if matches!(kind, MediaKind::Voice | MediaKind::Video | MediaKind::Audio) {
            let reader = match RangeReader::open(&blobs, &key).await {
                Ok(reader) => reader,
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(storage_error(e));
                }
            };
            let mime = mime.to_owned();
            let timed = tokio::task::spawn_blocking(move || inspect::timed(reader, &mime))
                .await
                .map_err(|e| err(ErrorCode::Internal, format!("inspection failed: {e}")));
            let timed = match timed.and_then(|t| t.map_err(inspect_error)) {
                Ok(t) => t,
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(e);
                }
            };
            if let Err(e) = inspect::check_timed(kind, &timed) {
                let _ = blobs.delete(&key).await;
                return Err(inspect_error(e));
            }
            media.duration_ms = timed.duration_ms;
            if kind == MediaKind::Video {
                media.width = timed.width;
                media.height = timed.height;
            }
        }
        if let Some(thumbnail) = &meta.thumbnail {
            let session = Session { user_id: upload.owner, device_id: 0 };
            match self.own_photo(session, thumbnail).await {
                Ok(photo) => {
                    media.thumbnail = photo.media.thumbnail;
                    media.preview = photo.media.preview;
                }
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(e);
                }
            }
        }
        Ok((media, vec![BlobRecord { sha256: sha, key: key.clone(), size: length as i64 }], vec![key]))
    }

    /// Streams an upload's pieces, in order, into one blob at `key`; returns its SHA-256.
    async fn concatenate(&self, blobs: &BlobStore, pieces: &[UploadPiece], key: &str) -> Result<String, ApiError> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let reader = {
            let (blobs, pieces) = (blobs.clone(), pieces.to_vec());
            tokio::spawn(async move {
                let mut hasher = Sha256::new();
                for piece in pieces {
                    let mut stream = match blobs.get(&piece.key, None).await {
                        Ok(blob) => blob.stream,
                        Err(e) => {
                            let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                            return None;
                        }
                    };
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => {
                                hasher.update(&chunk);
                                if sender.send(Ok(chunk)).await.is_err() {
                                    return None;
                                }
                            }
                            Err(e) => {
                                let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                                return None;
                            }
                        }
                    }
                }
                Some(hex::encode(hasher.finalize()))
            })
        };
        let stream =
            futures_util::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) });
        let written = blobs.put_stream(key, Box::pin(stream)).await.map_err(storage_error);
        let sha = reader.await.map_err(|e| err(ErrorCode::Internal, format!("reading the upload failed: {e}")))?;
        written?;
        sha.ok_or_else(|| {
            err(ErrorCode::Unavailable, "the upload's bytes could not be read back from the media storage")
        })
    }

    /// `GET /v1/media/{id}`: a finished upload of the person's, not yet expired.
    pub async fn media_item(&self, session: Session, id: &str) -> Result<MediaItem, ApiError> {
        let item = self.store.media_item(id).await.map_err(store_error)?;
        match item {
            Some(item) if item.owner == session.user_id => {
                Ok(MediaItem { id: item.id, media: item.media, created_at: item.created_at })
            }
            _ => Err(no_media()),
        }
    }

    /// The media of a media item the sender may send now: theirs, and not about to expire.
    pub(crate) async fn sendable_media(&self, session: Session, id: &str) -> Result<Media, ApiError> {
        let item = self.media_item(session, id).await?;
        let ttl = self.config.media.item_ttl_secs as i64 * 1000;
        if now_millis() > item.created_at + ttl - SEND_MARGIN_MS.min(ttl / 4) {
            return Err(err(ErrorCode::UploadGone, "this upload is too old to send: upload the file again"));
        }
        Ok(item.media)
    }

    /// A media item's bytes for its owner (`GET /v1/media/{id}/content`).
    pub async fn item_download(&self, session: Session, id: &str, variant: Variant) -> Result<Download, ApiError> {
        let item = self.media_item(session, id).await?;
        self.download_of(item.media, variant).await
    }

    /// A media message's bytes for a member of its chat
    /// (`GET /v1/chats/{chat_id}/messages/{seq}/media`).
    pub async fn message_download(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
        variant: Variant,
    ) -> Result<Download, ApiError> {
        let message = self.media_message(session.user_id, chat_id, seq).await?;
        self.local_download(&message, variant).await
    }

    /// A media message the person may see.
    async fn media_message(&self, user_id: i64, chat_id: i64, seq: i64) -> Result<peyvand_api::Message, ApiError> {
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        if !members.iter().any(|m| m.user_id == user_id) {
            return Err(no_media());
        }
        let message = self.store.message(chat_id, seq).await.map_err(store_error)?;
        message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)
    }

    /// The media of a message the person may see.
    async fn message_media(&self, user_id: i64, chat_id: i64, seq: i64) -> Result<Media, ApiError> {
        let message = self.media_message(user_id, chat_id, seq).await?;
        message.content.media().cloned().ok_or_else(no_media)
    }

    /// A media message's bytes here: stored here already, or fetched now from the provider
    /// that holds them (the sender's, for a message from another messenger) and kept.
    pub(crate) async fn local_download(
        &self,
        message: &peyvand_api::Message,
        variant: Variant,
    ) -> Result<Download, ApiError> {
        let media = message.content.media().cloned().ok_or_else(no_media)?;
        match self.download_of(media.clone(), variant).await {
            Err(e) if e.code == ErrorCode::MediaUnavailable && message.sender_address.is_some() => {
                self.fetch_from_holder(message, &media, variant).await?;
                self.download_of(media, variant).await
            }
            other => other,
        }
    }

    async fn download_of(&self, media: Media, variant: Variant) -> Result<Download, ApiError> {
        let (sha256, mime) = match variant {
            Variant::Content => (media.sha256.clone(), media.mime.clone()),
            Variant::Thumbnail => match &media.thumbnail {
                Some(t) => (t.sha256.clone(), "image/jpeg".to_owned()),
                None => return Err(err(ErrorCode::NotFound, "this media has no thumbnail")),
            },
        };
        let blob = self.store.blob(&sha256).await.map_err(store_error)?;
        let blob = blob.ok_or_else(|| err(ErrorCode::MediaUnavailable, "the file's bytes are not available"))?;
        Ok(Download { media, variant, mime, size: blob.size as u64, sha256, key: blob.key })
    }

    /// Opens a download's bytes, all or `range` (end exclusive), and counts them.
    pub async fn read_download(&self, download: &Download, range: Option<Range<u64>>) -> Result<BlobStream, ApiError> {
        let blobs = self.blobs()?;
        let stream = blobs.get(&download.key, range.clone()).await.map_err(storage_error)?;
        let bytes = range.map_or(download.size, |r| r.end - r.start);
        self.metrics.media.downloaded[MediaCounters::index(download.media.kind)].fetch_add(bytes, Ordering::Relaxed);
        Ok(stream)
    }

    /// Opens a download's bytes for another provider (`peer`), and counts them as sent to it.
    pub async fn read_for_peer(
        &self,
        peer: &str,
        download: &Download,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, ApiError> {
        let blobs = self.blobs()?;
        let stream = blobs.get(&download.key, range.clone()).await.map_err(storage_error)?;
        if let Ok(federation) = self.federation() {
            federation.media_served(peer, range.map_or(download.size, |r| r.end - r.start));
        }
        Ok(stream)
    }

    /// The key that signs media links, read from the store once.
    async fn link_key(&self) -> Result<Arc<Vec<u8>>, ApiError> {
        self.link_key
            .get_or_try_init(|| async {
                let candidate = rand::random::<[u8; 32]>().to_vec();
                self.store.media_link_key(candidate).await.map(Arc::new).map_err(store_error)
            })
            .await
            .cloned()
    }

    async fn link_signature(&self, chat_id: i64, seq: i64, variant: Variant, expires: i64) -> Result<String, ApiError> {
        let key = self.link_key().await?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        mac.update(format!("peyvand-media-link-v1\n{chat_id}\n{seq}\n{}\n{expires}", variant.as_str()).as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// `GET /v1/chats/{chat_id}/messages/{seq}/media/links`: addresses of a media message's
    /// bytes that work without the session token, for `link_ttl_secs`.
    pub async fn media_links(&self, session: Session, chat_id: i64, seq: i64) -> Result<MediaLinks, ApiError> {
        let media = self.message_media(session.user_id, chat_id, seq).await?;
        let expires_at = now_millis() + self.config.media.link_ttl_secs as i64 * 1000;
        let link = |variant: Variant, sig: String| {
            format!("/v1/files/{chat_id}/{seq}/{}?expires={expires_at}&sig={sig}", variant.as_str())
        };
        let url = link(Variant::Content, self.link_signature(chat_id, seq, Variant::Content, expires_at).await?);
        let thumbnail_url = match media.thumbnail {
            Some(_) => {
                Some(link(Variant::Thumbnail, self.link_signature(chat_id, seq, Variant::Thumbnail, expires_at).await?))
            }
            None => None,
        };
        Ok(MediaLinks { url, thumbnail_url, expires_at })
    }

    /// `GET /v1/files/{chat_id}/{seq}/{variant}`: a media link's bytes, if the link is good.
    pub async fn link_download(
        &self,
        chat_id: i64,
        seq: i64,
        variant: Variant,
        expires: i64,
        sig: &str,
    ) -> Result<Download, ApiError> {
        let expected = self.link_signature(chat_id, seq, variant, expires).await?;
        if !crate::auth::same(sig, &expected) {
            return Err(err(ErrorCode::Forbidden, "this media link is not valid"));
        }
        if expires < now_millis() {
            return Err(err(ErrorCode::Forbidden, "this media link has expired: ask for a new one"));
        }
        let message = self.store.message(chat_id, seq).await.map_err(store_error)?;
        let message = message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)?;
        self.local_download(&message, variant).await
    }

    /// `GET /interconnect/v1/media` from `peer`: a media message's bytes, if `peer` takes
    /// part in the room and this provider holds them (media.md, MEDIA-5 to MEDIA-7).
    pub async fn peer_media(&self, peer: &str, request: &wire::MediaRequest) -> Result<Download, ApiError> {
        let variant = Variant::parse(&request.variant)
            .ok_or_else(|| err(ErrorCode::BadRequest, "the variant is `content` or `thumbnail`"))?;
        let me = self.federation()?.provider_id().to_owned();
        let chat_id = if request.hub == me {
            Some(request.room)
        } else {
            let link = peyvand_store::RoomLink { hub: request.hub.clone(), hub_chat: request.room };
            self.store.chat_by_room(&link).await.map_err(store_error)?
        };
        let not_shared = || err(ErrorCode::Forbidden, "this room is not one your provider takes part in");
        let chat_id = chat_id.ok_or_else(not_shared)?;
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        let takes_part = members
            .iter()
            .any(|m| m.remote_address.as_deref().is_some_and(|a| a.rsplit_once('@').is_some_and(|(_, p)| p == peer)));
        if !takes_part {
            return Err(not_shared());
        }
        let message = self.store.message(chat_id, request.seq).await.map_err(store_error)?;
        let message = message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)?;
        // Only what was sent from here: a copy fetched from elsewhere is not passed on.
        if message.sender_address.is_some() {
            return Err(err(ErrorCode::MediaUnavailable, "this provider does not hold this file: its sender's does"));
        }
        let media = message.content.media().cloned().ok_or_else(no_media)?;
        self.download_of(media, variant).await
    }

    /// The room a chat here is, as providers name it.
    async fn room_of(&self, chat_id: i64) -> Result<wire::RoomId, ApiError> {
        Ok(match self.store.room_link(chat_id).await.map_err(store_error)? {
            Some(link) => wire::RoomId { hub: link.hub, id: link.hub_chat },
            None => wire::RoomId { hub: self.federation()?.provider_id().to_owned(), id: chat_id },
        })
    }

    /// Fetches a message's file (or thumbnail) from the provider of its sender, checks it is
    /// what the message says (size, SHA-256, type), and keeps it (media.md, MEDIA-8). Bytes
    /// that do not match are refused and dropped: the file stays unavailable.
    async fn fetch_from_holder(
        &self,
        message: &peyvand_api::Message,
        media: &Media,
        variant: Variant,
    ) -> Result<(), ApiError> {
        let blobs = self.blobs()?.clone();
        let holder = message
            .sender_address
            .as_deref()
            .and_then(|a| a.rsplit_once('@').map(|(_, p)| p.to_owned()))
            .ok_or_else(no_media)?;
        let (sha256, size) = match variant {
            Variant::Content => (media.sha256.clone(), media.size),
            Variant::Thumbnail => match &media.thumbnail {
                Some(t) => (t.sha256.clone(), t.size),
                None => return Err(no_media()),
            },
        };
        if size > self.config.media.max_upload_bytes {
            return Err(err(ErrorCode::MediaTooLarge, "the file is larger than this provider takes from others"));
        }
        let room = self.room_of(message.chat_id).await?;
        let request =
            wire::MediaRequest { hub: room.hub, room: room.id, seq: message.seq, variant: variant.as_str().to_owned() };
        let unavailable =
            |why: &str| err(ErrorCode::MediaUnavailable, format!("the file could not be had from `{holder}`: {why}"));
        let mut stream = self.federation()?.fetch_media(&holder, &request, size).await?;
        let key = format!("blobs/r-{}", random_id());
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let writer = {
            let (blobs, key) = (blobs.clone(), key.clone());
            tokio::spawn(async move {
                let stream =
                    futures_util::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) });
                blobs.put_stream(&key, Box::pin(stream)).await
            })
        };
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut head = BytesMut::new();
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > size {
                        failure = Some(unavailable("it sent more bytes than the message says"));
                        break;
                    }
                    if (head.len() as u64) < HEAD_BYTES {
                        let take = (HEAD_BYTES as usize - head.len()).min(chunk.len());
                        head.extend_from_slice(&chunk[..take]);
                    }
                    hasher.update(&chunk);
                    if sender.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && received != size {
            failure = Some(unavailable("it sent fewer bytes than the message says"));
        }
        if failure.is_none() && hex::encode(hasher.finalize()) != sha256 {
            failure = Some(unavailable("its bytes do not match the message's SHA-256"));
        }
        if failure.is_none() && variant == Variant::Content {
            let served = inspect::check_kind(media.kind, inspect::detect(&head).as_ref());
            if served.map_or(true, |mime| mime != media.mime) {
                failure = Some(unavailable("its bytes are not of the type the message says"));
            }
        }
        match &failure {
            Some(_) => drop(sender.send(Err(std::io::Error::other("refused"))).await),
            None => drop(sender),
        }
        let written = writer.await.map_err(|e| err(ErrorCode::Internal, format!("storing the file failed: {e}")))?;
        if let Some(refused) = failure {
            let _ = blobs.delete(&key).await;
            tracing::warn!(peer = %holder, code = %refused.code, message = %refused.message, "refused a peer's media");
            return Err(refused);
        }
        written.map_err(storage_error)?;
        let put = self
            .store
            .put_blobs(vec![BlobRecord { sha256, key, size: size as i64 }], now_millis())
            .await
            .map_err(store_error)?;
        self.remove_keys(&put.redundant).await;
        Ok(())
    }

    /// Makes sure a media message's bytes are here (fetched from their holder if need be),
    /// before it is forwarded from here.
    pub(crate) async fn keep_media_of(&self, message: &peyvand_api::Message) -> Result<(), ApiError> {
        let Some(media) = message.content.media() else { return Ok(()) };
        self.local_download(message, Variant::Content).await?;
        if media.thumbnail.is_some() {
            self.local_download(message, Variant::Thumbnail).await?;
        }
        Ok(())
    }

    /// Removes expired uploads with their bytes, forgets media items past their time, and
    /// removes blobs nothing has referred to for the grace period. Run periodically.
    pub async fn sweep_media(&self) -> Result<MediaSwept, ApiError> {
        let mut swept = MediaSwept::default();
        if self.blobs.is_none() {
            return Ok(swept);
        }
        let now = now_millis();
        loop {
            let expired = self.store.expired_uploads(now, 100).await.map_err(store_error)?;
            if expired.is_empty() {
                break;
            }
            for upload in &expired {
                match self.store.delete_upload(&upload.id).await {
                    Ok(keys) => {
                        self.remove_keys(&keys).await;
                        swept.uploads += 1;
                    }
                    Err(peyvand_store::StoreError::NotFound) => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        let media = &self.config.media;
        swept.items =
            self.store.expire_media_items(now - media.item_ttl_secs as i64 * 1000).await.map_err(store_error)?;
        loop {
            let keys =
                self.store.collect_blobs(now - media.blob_grace_secs as i64 * 1000, 100).await.map_err(store_error)?;
            if keys.is_empty() {
                break;
            }
            swept.blobs += keys.len() as u64;
            self.remove_keys(&keys).await;
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_persian_and_lose_paths_and_controls() {
        let mut meta = UploadMeta { name: Some("../../etc/گزارش\u{202e}فصل.pdf".into()), ..Default::default() };
        validate_meta(MediaKind::File, &mut meta).expect("valid");
        assert_eq!(meta.name.as_deref(), Some("گزارشفصل.pdf"));
        let mut meta = UploadMeta { name: Some("..".into()), ..Default::default() };
        validate_meta(MediaKind::File, &mut meta).expect("valid");
        assert_eq!(meta.name, None);
    }

    #[test]
    fn waveforms_are_bounded_and_only_for_voice() {
        let mut ok = UploadMeta { waveform: Some(vec![31; 100]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut ok).is_ok());
        let mut long = UploadMeta { waveform: Some(vec![1; 101]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut long).is_err());
        let mut high = UploadMeta { waveform: Some(vec![32]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut high).is_err());
        let mut photo = UploadMeta { waveform: Some(vec![1]), ..Default::default() };
        assert!(validate_meta(MediaKind::Photo, &mut photo).is_err());
    }

    #[test]
    fn pieces_must_cover_the_upload() {
        let piece = |start, len| UploadPiece { start, len, key: String::new() };
        assert!(contiguous(&[piece(0, 4), piece(4, 6)], 10));
        assert!(!contiguous(&[piece(0, 4), piece(5, 5)], 10));
        assert!(!contiguous(&[piece(0, 4)], 10));
        assert!(contiguous(&[], 0));
    }
}
