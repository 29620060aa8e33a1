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

mod across;
mod downloads;
mod uploads;

pub(crate) use across::check_description;

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

/// The chunks sent on a channel, as the stream a streamed write takes.
fn channel_stream(
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
    Box::pin(futures_util::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) }))
}

/// A random id of 128 bits, as 32 lowercase hex digits.
fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Service {
    /// The blob storage, if this server has one.
    pub(super) fn blobs(&self) -> Result<&BlobStore, ApiError> {
        self.blobs.as_ref().ok_or_else(|| err(ErrorCode::Unavailable, "this server stores no media"))
    }

    pub(super) fn photo_limits(&self) -> inspect::Limits {
        let media = &self.config.media;
        inspect::Limits {
            max_photo_bytes: media.max_photo_bytes,
            max_width: media.max_photo_side,
            max_height: media.max_photo_side,
            max_pixels: media.max_photo_pixels,
            ..inspect::Limits::default()
        }
    }

    /// Removes keys from the blob storage; a failure is logged (the sweeper does not see
    /// these again: the store no longer refers to them).
    pub(super) async fn remove_keys(&self, keys: &[String]) {
        let Ok(blobs) = self.blobs() else { return };
        for key in keys {
            if let Err(e) = blobs.delete(key).await {
                tracing::warn!(%key, error = %e, "could not remove media bytes");
            }
        }
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
