//! What every container parser shares: the bounded reader, byte helpers, and what a
//! container says of its file.

use std::io::{Read, Seek, SeekFrom};

use super::InspectError;

/// What a voice message's, audio's or video's container says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timed {
    /// How long it plays, in milliseconds, when the container says so. `None` when it does
    /// not: a live WebM with more blocks than are counted, a FLAC that leaves its total
    /// samples unknown, a fragmented MP4 whose last fragment has no decode time.
    pub duration_ms: Option<u64>,
    /// The width of the video, in pixels as shown, when there is a video track.
    pub width: Option<u32>,
    /// The height of the video, in pixels as shown.
    pub height: Option<u32>,
    /// Whether the file has a video track.
    pub has_video: bool,
    /// Whether the file has a sound track.
    pub has_audio: bool,
}

/// The largest piece of a container read into memory at once: the parsers read headers,
/// never media data.
pub(crate) const MAX_READ: u64 = 1024 * 1024;

/// A reader that knows its length and reads bounded pieces at given offsets.
pub(crate) struct Input<R> {
    reader: R,
    len: u64,
}

impl<R: Read + Seek> Input<R> {
    pub(crate) fn new(mut reader: R) -> Result<Self, InspectError> {
        let len = reader.seek(SeekFrom::End(0)).map_err(io_error)?;
        Ok(Self { reader, len })
    }

    /// The file's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Exactly `buf.len()` bytes from `at`, or Invalid when the file ends before.
    pub(crate) fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), InspectError> {
        if at.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(InspectError::invalid("the file is truncated"));
        }
        self.reader.seek(SeekFrom::Start(at)).map_err(io_error)?;
        self.reader.read_exact(buf).map_err(io_error)
    }

    /// Up to `max` bytes from `at` (fewer at the end of the file), at most [`MAX_READ`].
    pub(crate) fn read_up_to(&mut self, at: u64, max: u64) -> Result<Vec<u8>, InspectError> {
        let n = max.min(MAX_READ).min(self.len.saturating_sub(at));
        let mut buf = vec![0; usize::try_from(n).map_err(|_| InspectError::invalid("too big"))?];
        self.read_at(at, &mut buf)?;
        Ok(buf)
    }

    /// Exactly `len` bytes from `at`, when `len` is at most `cap`; Invalid otherwise.
    pub(crate) fn read_exact_capped(&mut self, at: u64, len: u64, cap: u64) -> Result<Vec<u8>, InspectError> {
        if len > cap.min(MAX_READ) {
            return Err(InspectError::invalid("a header is larger than any real one"));
        }
        let mut buf = vec![0; usize::try_from(len).map_err(|_| InspectError::invalid("too big"))?];
        self.read_at(at, &mut buf)?;
        Ok(buf)
    }
}

fn io_error(error: std::io::Error) -> InspectError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        InspectError::invalid("the file is truncated")
    } else {
        InspectError::Invalid(format!("the file cannot be read: {error}"))
    }
}

pub(crate) fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u64_be(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `count` units at `rate` units a second, in milliseconds; `None` for a zero rate.
pub(crate) fn to_ms(count: u64, rate: u64) -> Option<u64> {
    (rate != 0).then(|| (u128::from(count) * 1000 / u128::from(rate)) as u64)
}
