//! MP3: the frame count of a Xing/Info or VBRI header in the first frame, or else the size
//! over the bit rate of a constant-rate file. ID3v2 tags before the first frame are skipped.

use super::InspectError;
use super::container::{Input, Timed, to_ms, u32_be};
use std::io::{Read, Seek};

/// How far past the tags the first frame is looked for.
const SYNC_SEARCH: u64 = 64 * 1024;

struct Frame {
    /// Bits a second.
    bitrate: u64,
    sample_rate: u64,
    samples: u64,
    /// Where a Xing/Info header would start, from the frame's start.
    xing_at: usize,
}

fn frame_header(b: &[u8]) -> Option<Frame> {
    let h = u32_be(b, 0)?;
    if h >> 21 != 0x7FF {
        return None;
    }
    let version = (h >> 19) & 3; // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
    let layer = (h >> 17) & 3; // 1: III, 2: II, 3: I
    let bitrate_index = ((h >> 12) & 0xF) as usize;
    let rate_index = ((h >> 10) & 3) as usize;
    let mono = (h >> 6) & 3 == 3;
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const V1: [[u16; 14]; 3] = [
        [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
        [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
        [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    ];
    const V2: [[u16; 14]; 3] = [
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    ];
    let mpeg1 = version == 3;
    let table = if mpeg1 { &V1 } else { &V2 };
    let kbps = table[layer as usize - 1][bitrate_index - 1];
    let base_rate = [44_100u64, 48_000, 32_000][rate_index];
    let sample_rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let samples = match (layer, mpeg1) {
        (3, _) => 384,
        (2, _) | (1, true) => 1152,
        _ => 576,
    };
    let side_info = match (mpeg1, mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    Some(Frame { bitrate: u64::from(kbps) * 1000, sample_rate, samples, xing_at: 4 + side_info })
}

pub(crate) fn inspect<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let mut start = 0u64;
    // ID3v2 tags: "ID3", version, flags, a 28-bit "syncsafe" size, maybe a footer.
    for _ in 0..4 {
        let tag = input.read_up_to(start, 10)?;
        if tag.len() < 10 || &tag[..3] != b"ID3" {
            break;
        }
        let size = tag[6..10].iter().fold(0u64, |v, &b| (v << 7) | u64::from(b & 0x7F));
        let footer = if tag[5] & 0x10 != 0 { 10 } else { 0 };
        start += 10 + size + footer;
    }
    let window = input.read_up_to(start, SYNC_SEARCH + 64)?;
    let found = (0..window.len().saturating_sub(4)).find_map(|i| Some((i, frame_header(&window[i..])?)));
    let Some((offset, frame)) = found else {
        return Err(InspectError::invalid("no MP3 frame found"));
    };
    let first = &window[offset..];
    let vbr_frames = match first.get(frame.xing_at..frame.xing_at + 4) {
        Some(b"Xing" | b"Info") => {
            let flags = u32_be(first, frame.xing_at + 4).unwrap_or(0);
            if flags & 1 != 0 { u32_be(first, frame.xing_at + 8) } else { None }
        }
        _ if first.get(36..40) == Some(b"VBRI") => u32_be(first, 36 + 14),
        _ => None,
    };
    let duration_ms = match vbr_frames {
        Some(frames) => to_ms(u64::from(frames) * frame.samples, frame.sample_rate),
        None => {
            let audio_start = start + offset as u64;
            let mut end = input.len();
            if end >= 128 && input.read_up_to(end - 128, 3)? == b"TAG" {
                end -= 128;
            }
            to_ms(end.saturating_sub(audio_start) * 8, frame.bitrate)
        }
    };
    Ok(Timed { duration_ms, has_audio: true, ..Timed::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers() {
        // MPEG 1 layer III, 128 kbit/s, 44.1 kHz, stereo.
        let f = frame_header(&[0xFF, 0xFB, 0x90, 0x00]).unwrap();
        assert_eq!((f.bitrate, f.sample_rate, f.samples, f.xing_at), (128_000, 44_100, 1152, 36));
        // MPEG 2.5 layer III, 8 kbit/s, 8 kHz, mono (what the fixture is).
        let f = frame_header(&[0xFF, 0xE3, 0x18, 0xC0]).unwrap();
        assert_eq!((f.bitrate, f.sample_rate, f.samples, f.xing_at), (8_000, 8_000, 576, 13));
        assert!(frame_header(&[0xFF, 0xFB, 0xF0, 0x00]).is_none(), "bit rate index 15");
        assert!(frame_header(&[0xFF, 0xEB, 0x90, 0x00]).is_none(), "reserved version");
        assert!(frame_header(&[0xFF, 0xFB]).is_none());
    }
}
