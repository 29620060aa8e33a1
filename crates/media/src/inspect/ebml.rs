//! WebM and Matroska (EBML): the segment's Info (time scale, duration) and Tracks (types,
//! picture size), read before the first Cluster.
//!
//! A browser's MediaRecorder writes a live stream: the Segment and its Clusters have an
//! unknown size and Info has no Duration. The duration is then the latest block time found
//! by walking the clusters' headers (seeking over the media data), for up to
//! [`MAX_BLOCKS`] blocks; past that it is `None`.

use super::InspectError;
use super::container::{Input, Timed};
use std::io::{Read, Seek};

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;

/// The most elements looked at before the first cluster.
const MAX_HEADER_ELEMENTS: usize = 10_000;
/// The most blocks looked at to find the duration of a file whose Info has none: about an
/// hour of Opus in 20 ms frames.
pub(crate) const MAX_BLOCKS: usize = 200_000;
/// The largest Info or Tracks element read.
const MAX_MASTER: u64 = 256 * 1024;

/// An element's header: its id (with the length marker, as the specification writes ids),
/// where its content starts, and its size (`None`: unknown, to the end of its parent).
struct Header {
    id: u32,
    body: u64,
    size: Option<u64>,
}

/// A variable-length integer: its value with the length marker removed (or kept, for ids),
/// and its length; `None` when it is not valid.
fn vint(buf: &[u8], keep_marker: bool) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = buf.get(..len)?;
    // The marker is the first set bit; a length of 8 leaves no value bits in the first byte.
    let mask = (0xFF_u16 >> len) as u8;
    let mut value = u64::from(if keep_marker { first } else { first & mask });
    for &b in &bytes[1..] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

/// The header at `buf[0..]`: id (at most 4 bytes), size, header length.
fn parse_header(buf: &[u8]) -> Option<(u32, Option<u64>, usize)> {
    let (id, id_len) = vint(buf, true)?;
    if id_len > 4 {
        return None;
    }
    let (size, size_len) = vint(buf.get(id_len..)?, false)?;
    // All value bits set means "unknown size".
    let unknown = size == (1u64 << (7 * size_len)) - 1;
    Some((u32::try_from(id).ok()?, (!unknown).then_some(size), id_len + size_len))
}

fn header_at<R: Read + Seek>(input: &mut Input<R>, at: u64) -> Result<Header, InspectError> {
    let buf = input.read_up_to(at, 12)?;
    let (id, size, len) = parse_header(&buf).ok_or_else(|| InspectError::invalid("a corrupt WebM element"))?;
    Ok(Header { id, body: at + len as u64, size })
}

/// The children of an element whose content is in memory; an unknown size runs to the end.
fn children(mut buf: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        let (id, size, len) = parse_header(buf)?;
        let rest = &buf[len..];
        let size = size.map_or(rest.len(), |s| usize::try_from(s).unwrap_or(usize::MAX));
        let body = rest.get(..size)?;
        buf = &rest[size..];
        Some((id, body))
    })
}

fn uint(body: &[u8]) -> Option<u64> {
    if body.len() > 8 {
        return None;
    }
    Some(body.iter().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

fn float(body: &[u8]) -> Option<f64> {
    match body.len() {
        4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
        _ => None,
    }
}

fn truncated() -> InspectError {
    InspectError::invalid("the WebM file is truncated or corrupt")
}

pub(crate) fn inspect<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let header = header_at(input, 0)?;
    let header_size = header.size.ok_or_else(truncated)?;
    if header.id != EBML {
        return Err(InspectError::invalid("not an EBML file"));
    }
    let ebml = input.read_exact_capped(header.body, header_size, 4096)?;
    let doc_type = children(&ebml).find(|(id, _)| *id == DOC_TYPE).map(|(_, body)| body);
    if !matches!(doc_type, Some(b"webm" | b"matroska")) {
        return Err(InspectError::invalid("neither WebM nor Matroska"));
    }

    let segment = header_at(input, header.body + header_size)?;
    if segment.id != SEGMENT {
        return Err(InspectError::invalid("no segment after the EBML header"));
    }
    let segment_end = match segment.size {
        Some(size) => segment.body.checked_add(size).filter(|&end| end <= input.len()).ok_or_else(truncated)?,
        None => input.len(),
    };

    let mut timecode_scale = 1_000_000u64;
    let mut duration = None;
    let mut timed = Timed::default();
    let mut first_cluster = None;
    let mut pos = segment.body;
    for _ in 0..MAX_HEADER_ELEMENTS {
        if pos >= segment_end {
            break;
        }
        let element = header_at(input, pos)?;
        if element.id == CLUSTER {
            first_cluster = Some(pos);
            break;
        }
        let size = element.size.ok_or_else(truncated)?;
        let end = element.body.checked_add(size).filter(|&end| end <= segment_end).ok_or_else(truncated)?;
        match element.id {
            INFO => {
                let info = input.read_exact_capped(element.body, size, MAX_MASTER)?;
                for (id, body) in children(&info) {
                    match id {
                        TIMECODE_SCALE => timecode_scale = uint(body).filter(|&s| s > 0).ok_or_else(truncated)?,
                        DURATION => duration = float(body),
                        _ => {}
                    }
                }
            }
            TRACKS => {
                let tracks = input.read_exact_capped(element.body, size, MAX_MASTER)?;
                read_tracks(&tracks, &mut timed);
            }
            _ => {}
        }
        pos = end;
    }

    timed.duration_ms = match duration {
        Some(d) if d.is_finite() && d >= 0.0 => {
            let ms = d * timecode_scale as f64 / 1e6;
            (ms < 1e15).then_some(ms.round() as u64)
        }
        Some(_) => return Err(InspectError::invalid("a WebM duration that is not a number")),
        None => match first_cluster {
            Some(at) => last_block_time(input, at, segment_end)?
                .map(|t| (u128::from(t) * u128::from(timecode_scale) / 1_000_000) as u64),
            None => None,
        },
    };
    Ok(timed)
}

fn read_tracks(tracks: &[u8], timed: &mut Timed) {
    for (_, entry) in children(tracks).filter(|(id, _)| *id == TRACK_ENTRY) {
        let mut kind = None;
        let mut size = (None, None);
        for (id, body) in children(entry) {
            match id {
                TRACK_TYPE => kind = uint(body),
                VIDEO => {
                    for (id, body) in children(body) {
                        match id {
                            PIXEL_WIDTH => size.0 = uint(body).and_then(|v| u32::try_from(v).ok()),
                            PIXEL_HEIGHT => size.1 = uint(body).and_then(|v| u32::try_from(v).ok()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        match kind {
            Some(1) => {
                if !timed.has_video {
                    timed.width = size.0;
                    timed.height = size.1;
                }
                timed.has_video = true;
            }
            Some(2) => timed.has_audio = true,
            _ => {}
        }
    }
}

/// The latest time of a block, in time-scale units, walking clusters from `pos`: a cluster
/// (of known size or not) and a block group are entered, a Timecode read, a block's
/// relative time read from its first bytes, and anything else skipped. `None` past
/// [`MAX_BLOCKS`] blocks or when there is no block.
fn last_block_time<R: Read + Seek>(input: &mut Input<R>, mut pos: u64, end: u64) -> Result<Option<u64>, InspectError> {
    let mut cluster_time: i64 = 0;
    let mut latest: Option<i64> = None;
    let mut blocks = 0usize;
    // Each step moves forward by at least one header; the cap bounds the steps.
    for _ in 0..MAX_BLOCKS * 4 {
        if pos >= end {
            return Ok(latest.and_then(|t| u64::try_from(t).ok()));
        }
        let element = header_at(input, pos)?;
        match (element.id, element.size) {
            (CLUSTER, _) | (BLOCK_GROUP, Some(_)) => {
                // Entered, not skipped: but a known size must still fit in the file.
                if let Some(size) = element.size
                    && element.body.checked_add(size).is_none_or(|e| e > end)
                {
                    return Err(truncated());
                }
                pos = element.body;
            }
            (TIMECODE, Some(size)) => {
                let body = input.read_exact_capped(element.body, size, 8)?;
                cluster_time = uint(&body).and_then(|t| i64::try_from(t).ok()).ok_or_else(truncated)?;
                pos = element.body + size;
            }
            (SIMPLE_BLOCK | BLOCK, Some(size)) => {
                if element.body.checked_add(size).is_none_or(|e| e > end) {
                    return Err(truncated());
                }
                let head = input.read_up_to(element.body, size.min(10))?;
                let (_, track_len) = vint(&head, false).ok_or_else(truncated)?;
                let relative = head.get(track_len..track_len + 2).ok_or_else(truncated)?;
                let time = cluster_time + i64::from(i16::from_be_bytes([relative[0], relative[1]]));
                latest = Some(latest.map_or(time, |l| l.max(time)));
                blocks += 1;
                if blocks > MAX_BLOCKS {
                    return Ok(None);
                }
                pos = element.body + size;
            }
            (_, Some(size)) => {
                pos = element.body.checked_add(size).filter(|&e| e <= end).ok_or_else(truncated)?;
            }
            // Another element of unknown size: nothing more can be walked.
            (_, None) => break,
        }
    }
    Ok(latest.and_then(|t| u64::try_from(t).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_length_integers() {
        assert_eq!(vint(&[0x81], false), Some((1, 1)));
        assert_eq!(vint(&[0x40, 0x02], false), Some((2, 2)));
        assert_eq!(vint(&[0x1A, 0x45, 0xDF, 0xA3], true), Some((0x1A45_DFA3, 4)));
        assert_eq!(vint(&[0x01, 0, 0, 0, 0, 0, 0, 5], false), Some((5, 8)));
        assert_eq!(vint(&[0x00, 1, 2], false), None, "no marker in the first byte");
        assert_eq!(vint(&[0x20, 1], false), None, "shorter than it says");
    }

    #[test]
    fn unknown_sizes() {
        assert_eq!(
            parse_header(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Some((SEGMENT, None, 12))
        );
        assert_eq!(parse_header(&[0x1F, 0x43, 0xB6, 0x75, 0xFF]), Some((CLUSTER, None, 5)));
        assert_eq!(parse_header(&[0xE7, 0x81]), Some((TIMECODE, Some(1), 2)));
        assert_eq!(parse_header(&[0x08, 0, 0, 0, 0, 0x81]), None, "an id longer than 4 bytes");
    }

    #[test]
    fn children_stop_at_a_size_past_the_end() {
        let buf = [0xE7, 0x81, 0x05, 0xA3, 0x85, 1, 2];
        let found: Vec<_> = children(&buf).collect();
        assert_eq!(found, vec![(TIMECODE, &[5u8][..])]);
    }
}
