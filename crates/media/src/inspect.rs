//! What a file is: detection, kinds and their allow-lists, photo, audio and video inspection.
//!
//! Everything here is a pure function over bytes (or, for audio and video containers, over a
//! `Read + Seek` reader), with every limit checked before the expensive work it guards:
//!
//! - [`detect`] names the real type of a file from its first bytes, and [`check_kind`] says
//!   whether that type is allowed for the kind the client declared and which MIME type the
//!   file may be served as. What could run as a page (HTML, SVG, XML, scripts) is only ever
//!   served as `application/octet-stream`.
//! - [`photo`] checks a photo's dimensions from its header before decoding it, removes its
//!   metadata (EXIF with its GPS position, XMP, IPTC, comments), turns it upright, and makes
//!   its thumbnail and inline preview; [`video_thumbnail`] does the same for the small JPEG a
//!   client makes of a video.
//! - [`timed()`] reads a voice message's, audio's or video's duration, dimensions and tracks
//!   from its container (Ogg, WebM/Matroska, MP4, WAV, FLAC, MP3), parsed by hand with
//!   bounded reads, and [`check_timed`] says whether they fit the declared kind.

mod container;
mod detect;
mod ebml;
mod mp3;
mod mp4;
mod ogg;
mod photo;
mod strip;
mod timed;

pub use container::Timed;
pub use detect::{DETECT_HEAD_BYTES, check_kind, detect, extension, may_serve};
pub use photo::{Photo, photo, video_thumbnail};
pub use timed::{check_timed, timed};

use peyvand_api::{ErrorCode, MediaKind};

/// The limits a file is checked against. [`Limits::default`] holds the values the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest photo, in bytes (default 20 MiB).
    pub max_photo_bytes: u64,
    /// The widest photo, in pixels as stored (before any EXIF rotation; default 10 000).
    pub max_width: u32,
    /// The tallest photo, in pixels as stored (default 10 000).
    pub max_height: u32,
    /// The most pixels in a photo, width × height (default 40 000 000).
    pub max_pixels: u64,
    /// The most memory the image decoder may allocate, in bytes (default 512 MiB).
    pub decoder_alloc: u64,
    /// The longer side of a thumbnail, in pixels (default 320).
    pub thumbnail_side: u32,
    /// The most bytes of metadata a photo may carry, all its metadata segments or chunks
    /// together (EXIF, XMP, IPTC, comments, text chunks, ICC profile; default 256 KiB). A photo
    /// with more is refused with [`InspectError::TooLarge`] rather than stripped: a real
    /// camera writes far less (EXIF fits in one 64 KiB JPEG segment), so more is either a
    /// crafted file or data hidden in a photo.
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_photo_bytes: 20 * 1024 * 1024,
            max_width: 10_000,
            max_height: 10_000,
            max_pixels: 40_000_000,
            decoder_alloc: 512 * 1024 * 1024,
            thumbnail_side: 320,
            max_metadata_bytes: 256 * 1024,
        }
    }
}

/// A file's real type, as its bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The MIME type, e.g. `image/jpeg`, `audio/ogg`, `text/html`.
    pub mime: &'static str,
    /// The usual file name extension, without the dot, e.g. `jpg`.
    pub ext: &'static str,
}

/// Why a file was refused. The service maps these to the API's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The file is not of a type the declared kind allows (`media_type_mismatch`).
    #[error("a {} cannot be {}", declared.as_str(), found.unwrap_or("of an unknown type"))]
    TypeMismatch {
        /// The kind the client declared.
        declared: MediaKind,
        /// The MIME type found in the file's bytes, if any was recognised; from
        /// [`check_timed`], `video` or `audio`: what its tracks show the file is.
        found: Option<&'static str>,
    },
    /// The file is truncated, corrupt or not what its first bytes claim (`media_invalid`).
    #[error("invalid media: {0}")]
    Invalid(String),
    /// The file, its dimensions or its metadata are above a limit (`media_too_large`).
    #[error("media too large: {0}")]
    TooLarge(String),
}

impl InspectError {
    /// The API's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TypeMismatch { .. } => ErrorCode::MediaTypeMismatch,
            Self::Invalid(_) => ErrorCode::MediaInvalid,
            Self::TooLarge(_) => ErrorCode::MediaTooLarge,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Self::Invalid(what.into())
    }
}
