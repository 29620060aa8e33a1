//! MP4 (ISO base media file format): the movie header's duration, each track's handler
//! (picture or sound) and the picture's size from its track header.
//!
//! Only box headers and the few small boxes needed are read; `mdat` (the media data) and
//! the sample tables are skipped by seeking, wherever `moov` is in the file. A fragmented
//! file (what MediaRecorder writes) has no duration in `moov`: it is `mehd`'s when there is
//! one, else where the last fragment (`moof`) ends.

use super::InspectError;
use super::container::{Input, Timed, to_ms, u32_be, u64_be};
use std::io::{Read, Seek};

/// The most boxes looked at on one level: real files have a handful.
const MAX_BOXES: usize = 10_000;
/// The most bytes of a small box (mvhd, tkhd, hdlr, mehd, ftyp) that are read.
const SMALL_BOX: u64 = 4096;

struct BoxHeader {
    kind: [u8; 4],
    /// Where the box's content starts.
    body: u64,
    /// Where the box ends.
    end: u64,
}

/// The header of the box at `pos`, which must end by `end`.
fn box_at<R: Read + Seek>(input: &mut Input<R>, pos: u64, end: u64) -> Result<BoxHeader, InspectError> {
    let bad = || InspectError::invalid("the MP4 file is truncated or corrupt");
    let mut header = [0u8; 16];
    let have = (end - pos).min(16) as usize;
    if have < 8 {
        return Err(bad());
    }
    input.read_at(pos, &mut header[..have])?;
    let size = u64::from(u32_be(&header, 0).ok_or_else(bad)?);
    let kind = [header[4], header[5], header[6], header[7]];
    let (header_len, box_len) = match size {
        0 => (8, end - pos),
        1 => (16, u64_be(&header[..have], 8).ok_or_else(bad)?),
        n => (8, n),
    };
    let box_end = pos.checked_add(box_len).ok_or_else(bad)?;
    if box_len < header_len || box_end > end {
        return Err(bad());
    }
    Ok(BoxHeader { kind, body: pos + header_len, end: box_end })
}

/// The boxes between `start` and `end`, in order.
fn boxes<R: Read + Seek>(input: &mut Input<R>, start: u64, end: u64) -> Result<Vec<BoxHeader>, InspectError> {
    let mut found = Vec::new();
    let mut pos = start;
    while pos < end {
        if found.len() >= MAX_BOXES {
            return Err(InspectError::invalid("an MP4 file with too many boxes"));
        }
        let header = box_at(input, pos, end)?;
        pos = header.end;
        found.push(header);
    }
    Ok(found)
}

fn small<R: Read + Seek>(input: &mut Input<R>, b: &BoxHeader) -> Result<Vec<u8>, InspectError> {
    input.read_up_to(b.body, (b.end - b.body).min(SMALL_BOX))
}

fn find<'a>(boxes: &'a [BoxHeader], kind: &[u8; 4]) -> Option<&'a BoxHeader> {
    boxes.iter().find(|b| &b.kind == kind)
}

pub(crate) fn inspect<R: Read + Seek>(input: &mut Input<R>) -> Result<Timed, InspectError> {
    let bad = |what: &str| InspectError::Invalid(format!("not a valid MP4 file: {what}"));
    let top = top_level(input)?;
    let moov = top.moov.ok_or_else(|| bad("no moov box"))?;
    let children = boxes(input, moov.body, moov.end)?;

    let mvhd = find(&children, b"mvhd").ok_or_else(|| bad("no mvhd box"))?;
    let mvhd = small(input, mvhd)?;
    let (timescale, duration) = match mvhd.first() {
        Some(0) => (u32_be(&mvhd, 12).map(u64::from), u32_be(&mvhd, 16).map(u64::from)),
        Some(1) => (u32_be(&mvhd, 20).map(u64::from), u64_be(&mvhd, 24)),
        _ => return Err(bad("an unknown mvhd version")),
    };
    let timescale = timescale.ok_or_else(|| bad("a short mvhd box"))?;
    let mut duration = duration.ok_or_else(|| bad("a short mvhd box"))?;
    // All ones means unknown; a fragmented file (as MediaRecorder writes) says 0 here and
    // may give the whole duration in mvex/mehd.
    if duration == u64::from(u32::MAX) || duration == u64::MAX {
        duration = 0;
    }
    let mvex = match find(&children, b"mvex") {
        Some(mvex) => boxes(input, mvex.body, mvex.end)?,
        None => Vec::new(),
    };
    if duration == 0
        && let Some(mehd) = find(&mvex, b"mehd")
    {
        let mehd = small(input, mehd)?;
        duration = match mehd.first() {
            Some(0) => u32_be(&mehd, 4).map(u64::from).unwrap_or(0),
            Some(1) => u64_be(&mehd, 4).unwrap_or(0),
            _ => 0,
        };
    }

    let mut timed =
        Timed { duration_ms: if duration == 0 { None } else { to_ms(duration, timescale) }, ..Timed::default() };
    let mut tracks = Vec::new();
    for trak in children.iter().filter(|b| &b.kind == b"trak") {
        let trak = boxes(input, trak.body, trak.end)?;
        let tkhd = match find(&trak, b"tkhd") {
            Some(tkhd) => small(input, tkhd)?,
            None => Vec::new(),
        };
        let Some(mdia) = find(&trak, b"mdia") else { continue };
        let mdia = boxes(input, mdia.body, mdia.end)?;
        if let Some(mdhd) = find(&mdia, b"mdhd") {
            let mdhd = small(input, mdhd)?;
            let id = track_id(&tkhd);
            let scale = match mdhd.first() {
                Some(0) => u32_be(&mdhd, 12),
                Some(1) => u32_be(&mdhd, 20),
                _ => None,
            };
            if let (Some(id), Some(scale)) = (id, scale) {
                tracks.push(Track { id, timescale: u64::from(scale), default_duration: 0 });
            }
        }
        let Some(hdlr) = find(&mdia, b"hdlr") else { continue };
        let hdlr = small(input, hdlr)?;
        match hdlr.get(8..12) {
            Some(b"soun") => timed.has_audio = true,
            Some(b"vide") => {
                if !timed.has_video
                    && let Some((width, height)) = track_size(&tkhd)
                {
                    timed.width = Some(width);
                    timed.height = Some(height);
                }
                timed.has_video = true;
            }
            _ => {}
        }
    }

    if timed.duration_ms.is_none()
        && let Some(moof) = top.last_moof
    {
        for trex in mvex.iter().filter(|b| &b.kind == b"trex") {
            let trex = small(input, trex)?;
            if let (Some(id), Some(d)) = (u32_be(&trex, 4), u32_be(&trex, 12))
                && let Some(track) = tracks.iter_mut().find(|t| t.id == id)
            {
                track.default_duration = u64::from(d);
            }
        }
        timed.duration_ms = fragment_end(input, &moof, &tracks)?;
    }
    Ok(timed)
}

/// What the top level holds: `ftyp` first, then `moov` and, in a fragmented file, the
/// last `moof`. Only headers are read, so a file of many fragments costs a seek each.
struct TopLevel {
    moov: Option<BoxHeader>,
    last_moof: Option<BoxHeader>,
}

/// The most top-level boxes: a fragmented recording of hours in fragments of 100 ms.
const MAX_TOP_LEVEL: usize = 1_000_000;

fn top_level<R: Read + Seek>(input: &mut Input<R>) -> Result<TopLevel, InspectError> {
    let bad = || InspectError::invalid("the MP4 file is truncated or corrupt");
    let mut top = TopLevel { moov: None, last_moof: None };
    let mut pos = 0;
    let mut count = 0;
    while pos < input.len() {
        count += 1;
        if count > MAX_TOP_LEVEL {
            return Err(InspectError::invalid("an MP4 file with too many boxes"));
        }
        let header = box_at(input, pos, input.len())?;
        if count == 1 && &header.kind != b"ftyp" {
            return Err(InspectError::invalid("not a valid MP4 file: no ftyp box first"));
        }
        pos = header.end;
        match &header.kind {
            b"moov" if top.moov.is_none() => top.moov = Some(header),
            b"moof" => top.last_moof = Some(header),
            _ => {}
        }
    }
    if count == 0 {
        return Err(bad());
    }
    Ok(top)
}

/// A track's id, time scale and default sample duration (from `trex`).
struct Track {
    id: u32,
    timescale: u64,
    default_duration: u64,
}

fn track_id(tkhd: &[u8]) -> Option<u32> {
    match tkhd.first()? {
        0 => u32_be(tkhd, 12),
        1 => u32_be(tkhd, 20),
        _ => None,
    }
}

/// Where the last fragment ends, in milliseconds: for each of its track fragments, the
/// decode time of its first sample (`tfdt`) plus the durations of its samples (`trun`, or
/// the defaults of `tfhd` and `trex`). The latest track wins.
fn fragment_end<R: Read + Seek>(
    input: &mut Input<R>,
    moof: &BoxHeader,
    tracks: &[Track],
) -> Result<Option<u64>, InspectError> {
    let mut end_ms = None;
    for traf in boxes(input, moof.body, moof.end)?.iter().filter(|b| &b.kind == b"traf") {
        let traf = boxes(input, traf.body, traf.end)?;
        let Some(tfhd) = find(&traf, b"tfhd") else { continue };
        let tfhd = small(input, tfhd)?;
        let Some(track) = u32_be(&tfhd, 4).and_then(|id| tracks.iter().find(|t| t.id == id)) else { continue };
        let flags = u32_be(&tfhd, 0).unwrap_or(0) & 0x00FF_FFFF;
        // Optional fields in order: base data offset (8), sample description index (4),
        // default sample duration (4).
        let mut at = 8;
        if flags & 0x01 != 0 {
            at += 8;
        }
        if flags & 0x02 != 0 {
            at += 4;
        }
        let default_duration = if flags & 0x08 != 0 {
            u32_be(&tfhd, at).map_or(track.default_duration, u64::from)
        } else {
            track.default_duration
        };
        let start = match find(&traf, b"tfdt") {
            Some(tfdt) => {
                let tfdt = small(input, tfdt)?;
                match tfdt.first() {
                    Some(0) => u32_be(&tfdt, 4).map(u64::from),
                    Some(1) => u64_be(&tfdt, 4),
                    _ => None,
                }
            }
            None => None,
        };
        let Some(start) = start else { continue };
        let mut total = 0u64;
        for trun in traf.iter().filter(|b| &b.kind == b"trun") {
            let trun = input.read_up_to(trun.body, trun.end - trun.body)?;
            let Some(samples) = trun_duration(&trun, default_duration) else { return Ok(None) };
            total = total.saturating_add(samples);
        }
        let ms = to_ms(start.saturating_add(total), track.timescale);
        end_ms = end_ms.max(ms);
    }
    Ok(end_ms)
}

/// The durations of a track run's samples: each sample's own when the run has them, else
/// the default. `None` when the run is cut short.
fn trun_duration(trun: &[u8], default_duration: u64) -> Option<u64> {
    let flags = u32_be(trun, 0)? & 0x00FF_FFFF;
    let count = u64::from(u32_be(trun, 4)?);
    if flags & 0x100 == 0 {
        return Some(count.saturating_mul(default_duration));
    }
    let mut at = 8 + if flags & 0x01 != 0 { 4 } else { 0 } + if flags & 0x04 != 0 { 4 } else { 0 };
    let per_sample = 4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count();
    let mut total = 0u64;
    for _ in 0..count {
        total = total.saturating_add(u64::from(u32_be(trun, at)?));
        at += per_sample;
    }
    Some(total)
}

/// The width and height of a track header (16.16 fixed point), swapped when its matrix
/// turns the picture a quarter turn (as phones record upright video).
fn track_size(tkhd: &[u8]) -> Option<(u32, u32)> {
    let matrix_at = match tkhd.first()? {
        0 => 4 + 36,
        1 => 4 + 48,
        _ => return None,
    };
    let a = u32_be(tkhd, matrix_at)?;
    let d = u32_be(tkhd, matrix_at + 16)?;
    let width = u32_be(tkhd, matrix_at + 36)? >> 16;
    let height = u32_be(tkhd, matrix_at + 40)? >> 16;
    if width == 0 || height == 0 {
        return None;
    }
    let quarter_turn = a == 0 && d == 0;
    Some(if quarter_turn { (height, width) } else { (width, height) })
}

#[cfg(test)]
mod tests {
    use super::super::timed::timed;
    use super::*;
    use std::io::Cursor;

    fn mp4_box(kind: &[u8; 4], content: &[u8]) -> Vec<u8> {
        [&((content.len() + 8) as u32).to_be_bytes()[..], kind, content].concat()
    }

    fn full_box(kind: &[u8; 4], version: u8, content: &[u8]) -> Vec<u8> {
        mp4_box(kind, &[&[version, 0, 0, 0][..], content].concat())
    }

    /// A version 1 track header of `width`×`height`, with a quarter-turn matrix or none.
    fn tkhd_v1(width: u32, height: u32, quarter_turn: bool) -> Vec<u8> {
        let mut c = vec![0; 8 + 8 + 4 + 4 + 8 + 8 + 8];
        let one = 0x0001_0000u32.to_be_bytes();
        let minus_one = 0xFFFF_0000u32.to_be_bytes();
        let matrix: [[u8; 4]; 9] = if quarter_turn {
            [[0; 4], one, [0; 4], minus_one, [0; 4], [0; 4], [0; 4], [0; 4], 0x4000_0000u32.to_be_bytes()]
        } else {
            [one, [0; 4], [0; 4], [0; 4], one, [0; 4], [0; 4], [0; 4], 0x4000_0000u32.to_be_bytes()]
        };
        c.extend(matrix.concat());
        c.extend((width << 16).to_be_bytes());
        c.extend((height << 16).to_be_bytes());
        full_box(b"tkhd", 1, &c)
    }

    fn trak(handler: &[u8; 4], tkhd: Vec<u8>) -> Vec<u8> {
        let hdlr = full_box(b"hdlr", 0, &[&[0; 4][..], handler, &[0; 12], b"handler\0"].concat());
        mp4_box(b"trak", &[tkhd, mp4_box(b"mdia", &hdlr)].concat())
    }

    fn file(moov: &[Vec<u8>]) -> Vec<u8> {
        let ftyp = mp4_box(b"ftyp", b"isom\0\0\0\0isomiso2");
        // A 64-bit mdat before moov, as some muxers write.
        let mut mdat = 1u32.to_be_bytes().to_vec();
        mdat.extend_from_slice(b"mdat");
        mdat.extend_from_slice(&(16u64 + 32).to_be_bytes());
        mdat.extend_from_slice(&[0xAB; 32]);
        [ftyp, mdat, mp4_box(b"moov", &moov.concat())].concat()
    }

    #[test]
    fn version_1_headers_and_a_rotated_phone_video() {
        // mvhd v1: creation, modification (8 each), timescale 90 000, duration 2.5 s.
        let mvhd = full_box(
            b"mvhd",
            1,
            &[&[0; 16][..], &90_000u32.to_be_bytes(), &225_000u64.to_be_bytes(), &[0; 80]].concat(),
        );
        let bytes = file(&[mvhd, trak(b"soun", tkhd_v1(0, 0, false)), trak(b"vide", tkhd_v1(1920, 1080, true))]);
        let t = timed(Cursor::new(bytes), "video/mp4").unwrap();
        assert_eq!(t.duration_ms, Some(2500));
        assert_eq!((t.width, t.height), (Some(1080), Some(1920)), "shown upright");
        assert!(t.has_video && t.has_audio);
    }

    #[test]
    fn a_fragmented_file_takes_its_duration_from_mehd_or_has_none() {
        let mvhd = full_box(b"mvhd", 0, &[&[0; 8][..], &1000u32.to_be_bytes(), &0u32.to_be_bytes(), &[0; 80]].concat());
        let mehd = full_box(b"mehd", 0, &4321u32.to_be_bytes());
        let with = file(&[mvhd.clone(), mp4_box(b"mvex", &mehd), trak(b"soun", tkhd_v1(0, 0, false))]);
        assert_eq!(timed(Cursor::new(with), "audio/mp4").unwrap().duration_ms, Some(4321));
        let without = file(&[mvhd, mp4_box(b"mvex", &[]), trak(b"soun", tkhd_v1(0, 0, false))]);
        let t = timed(Cursor::new(without), "audio/mp4").unwrap();
        assert_eq!((t.duration_ms, t.has_audio, t.has_video), (None, true, false));
    }

    #[test]
    fn a_box_smaller_than_its_header_is_invalid() {
        let bytes = [mp4_box(b"ftyp", b"isom\0\0\0\0"), b"\0\0\0\x04moov".to_vec()].concat();
        assert!(matches!(timed(Cursor::new(bytes), "video/mp4"), Err(InspectError::Invalid(_))));
        let no_ftyp = mp4_box(b"moov", &[]);
        assert!(matches!(timed(Cursor::new(no_ftyp), "video/mp4"), Err(InspectError::Invalid(_))));
    }
}
