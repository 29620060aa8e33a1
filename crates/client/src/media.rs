//! Media: resumable uploads (tus 1.0), media messages, downloads.

use std::ops::Range;
use std::time::Duration;

use base64::Engine as _;
use peyvand_api::{Content, ErrorCode, MediaItem, MediaKind, MediaLinks, SendMessage};
use reqwest::Method;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::{Client, ClientError, Sent};

const TUS: &str = "1.0.0";
/// Bytes sent per `PATCH` request: each is checked by its checksum and is one step of progress;
/// after a broken connection the upload resumes from the last whole one.
pub const UPLOAD_CHUNK: usize = 4 << 20;
/// How long a download may wait for its next bytes.
const READ_IDLE: Duration = Duration::from_secs(30);

/// What is said of a file when its upload starts.
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    /// The file's name, kept for whoever downloads it.
    pub name: Option<String>,
    /// A voice message's waveform: up to 100 values, 0 to 31.
    pub waveform: Option<Vec<u8>>,
    /// For a video: the id of a finished photo upload, its thumbnail.
    pub thumbnail: Option<String>,
}

/// Where an upload stands, from `HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOffset {
    pub offset: u64,
    pub length: u64,
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(response: &reqwest::Response, name: &str) -> Result<u64, ClientError> {
    header(response, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ClientError::Decode(format!("the answer has no valid {name} header")))
}

/// A failed answer as an error: the server's error body when it sent one.
async fn refused(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    ClientError::from_answer(status, &body)
}

impl Client {
    /// `POST /v1/uploads`: starts an upload of `length` bytes of a file of `kind`; returns its
    /// id (the media item's, once finished).
    pub async fn create_upload(&self, kind: MediaKind, length: u64, new: &NewUpload) -> Result<String, ClientError> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut metadata = vec![format!("kind {}", b64(kind.as_str().as_bytes()))];
        if let Some(name) = &new.name {
            metadata.push(format!("filename {}", b64(name.as_bytes())));
        }
        if let Some(waveform) = &new.waveform {
            metadata.push(format!("waveform {}", b64(waveform)));
        }
        if let Some(thumbnail) = &new.thumbnail {
            metadata.push(format!("thumbnail {}", b64(thumbnail.as_bytes())));
        }
        let response = self
            .request(Method::POST, "v1/uploads")?
            .header("tus-resumable", TUS)
            .header("upload-length", length)
            .header("upload-metadata", metadata.join(","))
            .send()
            .await?;
        if response.status().as_u16() != 201 {
            return Err(refused(response).await);
        }
        let location = header(&response, "location")
            .ok_or_else(|| ClientError::Decode("the upload's answer has no Location".into()))?;
        location
            .rsplit('/')
            .next()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode(format!("the upload's Location {location:?} names no upload")))
    }

    /// `HEAD /v1/uploads/{id}`: how much of the upload the server has.
    pub async fn upload_offset(&self, id: &str) -> Result<UploadOffset, ClientError> {
        let response =
            self.request(Method::HEAD, &format!("v1/uploads/{id}"))?.header("tus-resumable", TUS).send().await?;
        if !response.status().is_success() {
            // A HEAD answer has no body: the status tells.
            let status = response.status().as_u16();
            let code = match status {
                404 | 410 => ErrorCode::UploadGone,
                401 => ErrorCode::Unauthorized,
                _ => return Err(ClientError::Status { status, body: String::new() }),
            };
            return Err(ClientError::Api { status, error: peyvand_api::ApiError::new(code, "no such upload") });
        }
        Ok(UploadOffset {
            offset: header_u64(&response, "upload-offset")?,
            length: header_u64(&response, "upload-length")?,
        })
    }

    /// `PATCH /v1/uploads/{id}`: sends `bytes` at `offset`, with their SHA-256 checksum;
    /// returns the new offset.
    pub async fn upload_chunk(&self, id: &str, offset: u64, bytes: Vec<u8>) -> Result<u64, ClientError> {
        let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        let response = self
            .request(Method::PATCH, &format!("v1/uploads/{id}"))?
            .timeout(Duration::from_secs(120))
            .header("tus-resumable", TUS)
            .header("upload-offset", offset)
            .header("upload-checksum", format!("sha256 {checksum}"))
            .header("content-type", "application/offset+octet-stream")
            .body(bytes)
            .send()
            .await?;
        if response.status().as_u16() != 204 {
            return Err(refused(response).await);
        }
        header_u64(&response, "upload-offset")
    }

    /// `DELETE /v1/uploads/{id}`: cancels an upload.
    pub async fn cancel_upload(&self, id: &str) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, &format!("v1/uploads/{id}"))?.header("tus-resumable", TUS)).await
    }

    /// Sends what remains of upload `id` from `file`, resuming at the offset the server has,
    /// retrying a chunk whose connection broke (from wherever the server then stands), and
    /// calling `progress(sent, length)` after each chunk. Returns the finished media item.
    pub async fn upload_rest<R: AsyncRead + AsyncSeek + Unpin>(
        &self,
        id: &str,
        file: &mut R,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<MediaItem, ClientError> {
        let UploadOffset { mut offset, length } = self.upload_offset(id).await?;
        progress(offset, length);
        let mut failures = 0;
        while offset < length {
            file.seek(std::io::SeekFrom::Start(offset)).await.map_err(ClientError::LocalFile)?;
            let want = (length - offset).min(UPLOAD_CHUNK as u64) as usize;
            let mut chunk = vec![0u8; want];
            file.read_exact(&mut chunk).await.map_err(ClientError::LocalFile)?;
            match self.upload_chunk(id, offset, chunk).await {
                Ok(next) => {
                    offset = next;
                    failures = 0;
                    progress(offset, length);
                }
                Err(e) if (e.is_retryable() || e.code() == Some(ErrorCode::UploadOffsetMismatch)) && failures < 5 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    // The server may have kept part of the chunk before the break.
                    offset = self.upload_offset(id).await?.offset;
                }
                Err(e) => return Err(e),
            }
        }
        self.media_item(id).await
    }

    /// Uploads a whole file from `file` (`length` bytes): a new upload, sent in checked chunks.
    pub async fn upload<R: AsyncRead + AsyncSeek + Unpin>(
        &self,
        kind: MediaKind,
        length: u64,
        new: &NewUpload,
        file: &mut R,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<MediaItem, ClientError> {
        let id = self.create_upload(kind, length, new).await?;
        self.upload_rest(&id, file, progress).await
    }

    /// `GET /v1/media/{id}`: a finished upload of mine.
    pub async fn media_item(&self, id: &str) -> Result<MediaItem, ClientError> {
        Self::json(self.request(Method::GET, &format!("v1/media/{id}"))?).await
    }

    /// Sends a media item to a chat, with an optional caption, under a fresh client id.
    pub async fn send_media(&self, chat_id: i64, media_id: &str, caption: Option<&str>) -> Result<Sent, ClientError> {
        let message = SendMessage {
            client_id: crate::new_client_id(),
            content: caption.map(|text| Content::Text { text: text.to_owned() }),
            reply_to: None,
            forward: None,
            media: Some(media_id.to_owned()),
        };
        self.send(chat_id, &message).await
    }

    /// `GET /v1/chats/{chat_id}/messages/{seq}/media/links`.
    pub async fn media_links(&self, chat_id: i64, seq: i64) -> Result<MediaLinks, ClientError> {
        Self::json(self.request(Method::GET, &format!("v1/chats/{chat_id}/messages/{seq}/media/links"))?).await
    }

    /// Downloads a media message's file (or its thumbnail) into `out`, all of it or `range`;
    /// calls `progress(received, total)`. Returns the bytes written.
    pub async fn download_media<W: AsyncWrite + Unpin>(
        &self,
        chat_id: i64,
        seq: i64,
        thumbnail: bool,
        range: Option<Range<u64>>,
        out: &mut W,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, ClientError> {
        let path = match thumbnail {
            false => format!("v1/chats/{chat_id}/messages/{seq}/media"),
            true => format!("v1/chats/{chat_id}/messages/{seq}/media/thumbnail"),
        };
        self.download_path(&path, range, out, progress).await
    }

    /// Downloads the bytes at `path` (relative to the server, such as a media link's `url`
    /// without its leading `/`).
    pub async fn download_path<W: AsyncWrite + Unpin>(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        out: &mut W,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, ClientError> {
        // No overall deadline (a large file takes long), but one on each read.
        let mut builder = self.request(Method::GET, path)?.timeout(Duration::from_secs(24 * 3600));
        if let Some(range) = &range {
            builder = builder.header("range", format!("bytes={}-{}", range.start, range.end.saturating_sub(1)));
        }
        let mut response = builder.send().await?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let total = response.content_length().unwrap_or(0);
        let mut received = 0u64;
        progress(0, total);
        loop {
            let chunk = tokio::time::timeout(READ_IDLE, response.chunk())
                .await
                .map_err(|_| ClientError::Timeout(READ_IDLE))??;
            let Some(chunk) = chunk else { break };
            out.write_all(&chunk).await.map_err(ClientError::LocalFile)?;
            received += chunk.len() as u64;
            progress(received, total);
        }
        out.flush().await.map_err(ClientError::LocalFile)?;
        if total != 0 && received != total {
            return Err(ClientError::Decode(format!("the download stopped at {received} of {total} bytes")));
        }
        Ok(received)
    }
}
