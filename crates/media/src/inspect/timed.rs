//! Voice messages, audio and video: what their containers say about them.

use super::{InspectError, ebml, mp3, mp4, ogg};
use peyvand_api::MediaKind;
use std::io::{Read, Seek, SeekFrom};

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

/// Reads what the container of a file says about it, for the MIME type that
/// [`super::check_kind`] gave (`audio/ogg`, `audio/webm`, `video/webm`, `audio/mp4`,
/// `video/mp4`, `audio/wav`, `audio/flac`, `audio/mpeg`).
///
/// The containers are parsed by hand with bounded reads: no allocation follows a size field
/// without a cap, and every loop moves forward. A truncated or corrupt file gives
/// [`InspectError::Invalid`] (or, where only the end is missing and the container cannot
/// tell, a `None` duration); never a panic.
pub fn timed<R: Read + Seek>(reader: R, mime: &str) -> Result<Timed, InspectError> {
    let mut input = Input::new(reader)?;
    match mime {
        "audio/ogg" => ogg::inspect(&mut input),
        "audio/webm" | "video/webm" => ebml::inspect(&mut input),
        "audio/mp4" | "video/mp4" => mp4::inspect(&mut input),
        "audio/wav" => wav(&mut input),
        "audio/flac" => flac(&mut input),
        "audio/mpeg" => mp3::inspect(&mut input),
        other => Err(InspectError::Invalid(format!("{other} is not an audio or video type"))),
    }
}

/// Whether what the container says fits the declared kind: a voice message or an audio file
/// has sound and no picture; a video has a picture. Photos and files are not timed and
/// always pass.
pub fn check_timed(kind: MediaKind, timed: &Timed) -> Result<(), InspectError> {
    match kind {
        MediaKind::Voice | MediaKind::Audio if timed.has_video => {
            Err(InspectError::TypeMismatch { declared: kind, found: Some("video") })
        }
        MediaKind::Voice | MediaKind::Audio if !timed.has_audio => {
            Err(InspectError::invalid(format!("a {} needs a sound track", kind.as_str())))
        }
        MediaKind::Video if !timed.has_video => {
            Err(InspectError::TypeMismatch { declared: kind, found: Some("audio") })
        }
        _ => Ok(()),
    }
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
    fn new(mut reader: R) -> Result<Self, InspectError> {
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

/// WAV (RIFF/WAVE): the data chunk's size over the format chunk's byte rate.
fn wav<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let bad = || InspectError::invalid("not a valid WAV file");
    let mut header = [0u8; 12];
    input.read_at(0, &mut header)?;
    if &header[..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return Err(bad());
    }
    let mut byte_rate = None;
    let mut pos = 12u64;
    // Each chunk moves at least 8 bytes forward; a file has few chunks before its data.
    for _ in 0..1000 {
        let mut chunk = [0u8; 8];
        input.read_at(pos, &mut chunk)?;
        let len = u64::from(u32_le(&chunk, 4).ok_or_else(bad)?);
        let body = pos + 8;
        match &chunk[..4] {
            b"fmt " => {
                let fmt = input.read_exact_capped(body, len, 1024)?;
                byte_rate = Some(u64::from(u32_le(&fmt, 8).ok_or_else(bad)?));
            }
            b"data" => {
                let rate = byte_rate.ok_or_else(bad)?;
                // Streaming writers leave the size 0 or all ones: the data runs to the end.
                let available = input.len() - body.min(input.len());
                let data_len = if len == 0 || len == u64::from(u32::MAX) {
                    available
                } else if len > available {
                    return Err(InspectError::invalid("the WAV file is truncated"));
                } else {
                    len
                };
                return Ok(Timed { duration_ms: to_ms(data_len, rate), has_audio: true, ..Timed::default() });
            }
            _ => {}
        }
        pos = body + len + (len & 1);
    }
    Err(bad())
}

/// FLAC: the total samples and sample rate of the STREAMINFO block, which comes first.
fn flac<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let bad = || InspectError::invalid("not a valid FLAC file");
    let mut head = [0u8; 8 + 34];
    input.read_at(0, &mut head)?;
    if &head[..4] != b"fLaC" || head[4] & 0x7F != 0 {
        return Err(bad());
    }
    let info = &head[8..];
    // 20 bits of sample rate, 3 of channels, 5 of bits per sample, 36 of total samples.
    let rate = (u64::from(info[10]) << 12) | (u64::from(info[11]) << 4) | (u64::from(info[12]) >> 4);
    let total = (u64::from(info[13] & 0x0F) << 32) | u64::from(u32_be(info, 14).ok_or_else(bad)?);
    if rate == 0 {
        return Err(bad());
    }
    Ok(Timed { duration_ms: if total == 0 { None } else { to_ms(total, rate) }, has_audio: true, ..Timed::default() })
}
