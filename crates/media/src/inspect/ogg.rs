//! Ogg (RFC 3533) with Opus (RFC 7845) or Vorbis: the duration is the granule position of
//! the stream's last page, in samples.

use super::InspectError;
use super::container::{Input, Timed, to_ms, u16_le, u32_le};
use std::io::{Read, Seek};

/// An Ogg page is at most 27 + 255 + 255 × 255 bytes.
const MAX_PAGE: u64 = 27 + 255 + 255 * 255;
/// How far back from the end the last page of the stream is looked for.
const TAIL_SEARCH: u64 = 4 * MAX_PAGE;

struct Page {
    /// Whether this is the first page of its stream.
    first_of_stream: bool,
    granule: u64,
    serial: u32,
    /// Where the page ends, from the start of the buffer it was found in.
    end: usize,
}

/// A whole page that starts at `at` in `buf`, its CRC right; `None` otherwise.
fn page_at(buf: &[u8], at: usize) -> Option<Page> {
    let header = buf.get(at..at + 27)?;
    if &header[..4] != b"OggS" || header[4] != 0 {
        return None;
    }
    let segments = usize::from(header[26]);
    let table = buf.get(at + 27..at + 27 + segments)?;
    let body: usize = table.iter().map(|&s| usize::from(s)).sum();
    let end = at + 27 + segments + body;
    let page = buf.get(at..end)?;
    let stored_crc = u32_le(page, 22)?;
    if crc(page) != stored_crc {
        return None;
    }
    Some(Page {
        first_of_stream: header[5] & 0x02 != 0,
        granule: u64::from_le_bytes(header[6..14].try_into().ok()?),
        serial: u32_le(header, 14)?,
        end,
    })
}

/// The Ogg CRC-32 (polynomial 0x04C11DB7, not reflected), with the CRC field taken as zero.
fn crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &byte) in page.iter().enumerate() {
        let byte = if (22..26).contains(&i) { 0 } else { byte };
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

enum Codec {
    /// Samples at 48 kHz to skip at the start.
    Opus {
        pre_skip: u64,
    },
    Vorbis {
        rate: u64,
    },
}

pub(crate) fn inspect<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let bad = |what: &str| InspectError::Invalid(format!("not a valid Ogg file: {what}"));
    let head = input.read_up_to(0, MAX_PAGE)?;
    let first = page_at(&head, 0).ok_or_else(|| bad("no first page"))?;
    // The first page holds the whole identification header, the first packet.
    let segments = usize::from(head[26]);
    let packet = head.get(27 + segments..first.end).ok_or_else(|| bad("no first packet"))?;
    let codec = if packet.starts_with(b"OpusHead") && packet.len() >= 19 {
        Codec::Opus { pre_skip: u64::from(u16_le(packet, 10).ok_or_else(|| bad("OpusHead"))?) }
    } else if packet.starts_with(b"\x01vorbis") && packet.len() >= 30 {
        let rate = u64::from(u32_le(packet, 12).ok_or_else(|| bad("Vorbis header"))?);
        if rate == 0 {
            return Err(bad("a sample rate of zero"));
        }
        Codec::Vorbis { rate }
    } else {
        return Err(bad("neither Opus nor Vorbis"));
    };

    // The last page of the file must end the file (else it is truncated); the last page of
    // the first stream gives its duration.
    let start = input.len().saturating_sub(TAIL_SEARCH);
    let tail = input.read_up_to(start, TAIL_SEARCH)?;
    let mut last_of_file = None;
    let mut granule = None;
    for at in (0..tail.len().saturating_sub(26)).rev() {
        if tail[at] != b'O' {
            continue;
        }
        let Some(page) = page_at(&tail, at) else { continue };
        if last_of_file.is_none() {
            last_of_file = Some(page.end);
        }
        // -1 marks a page on which no packet ends; no other negative position is valid.
        if page.serial == first.serial && page.granule < 1 << 63 {
            granule = Some(page.granule);
            break;
        }
    }
    if last_of_file != Some(tail.len()) {
        return Err(InspectError::invalid("the Ogg file is truncated"));
    }
    let duration_ms = granule.and_then(|g| match codec {
        Codec::Opus { pre_skip } => to_ms(g.checked_sub(pre_skip)?, 48_000),
        Codec::Vorbis { rate } => to_ms(g, rate),
    });
    Ok(Timed { duration_ms, has_audio: true, has_video: has_video_stream(&head, first.end), ..Timed::default() })
}

/// Whether another stream multiplexed with the first is a picture (Theora): every stream's
/// first page comes before any other page, each holding just its identification header.
fn has_video_stream(head: &[u8], mut at: usize) -> bool {
    while let Some(page) = page_at(head, at) {
        if !page.first_of_stream {
            break;
        }
        let segments = usize::from(head[at + 26]);
        if head.get(at + 27 + segments..page.end).is_some_and(|packet| packet.starts_with(b"\x80theora")) {
            return true;
        }
        at = page.end;
    }
    false
}
