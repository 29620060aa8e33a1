//! Voice messages, audio and video: what their containers say about them.

use super::container::{Input, Timed, to_ms, u32_be, u32_le};
use super::{InspectError, ebml, mp3, mp4, ogg};
use peyvand_api::MediaKind;
use std::io::{Read, Seek};

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
