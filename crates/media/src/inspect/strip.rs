//! Metadata removed losslessly, by walking a photo's segments or chunks and copying the
//! others as they are: the pixels are not decoded again, so a photo that is already upright
//! is stored exactly as it was taken, less what it says about where and by what.
//!
//! Each walk also checks the file's structure (every length inside the file, the end marker
//! present), so a truncated photo is refused here whatever the decoder would forgive, and
//! anything after the end marker (a phone's appended "motion photo" video or gain map) is
//! dropped with the rest.

use super::InspectError;

/// A photo with its metadata removed, and how much metadata there was.
#[derive(Debug)]
pub(crate) struct Stripped {
    pub(crate) bytes: Vec<u8>,
    /// The bytes of every metadata segment or chunk found, kept or not.
    pub(crate) metadata_bytes: u64,
}

fn truncated(format: &str) -> InspectError {
    InspectError::invalid(format!("the {format} is truncated or corrupt"))
}

/// A JPEG without its APP1 (EXIF, XMP), APP13 (IPTC, Photoshop), other application segments
/// and comments, and without anything after its end marker. APP0 (JFIF), APP2 when it is an
/// ICC profile (how the colours are meant) and APP14 (Adobe: how the colours are coded) are
/// kept, as they change how the pixels look.
pub(crate) fn jpeg(data: &[u8]) -> Result<Stripped, InspectError> {
    let bad = || truncated("JPEG");
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut metadata_bytes = 0u64;
    let mut pos = 2;
    // Markers and their segments, up to the first scan; then entropy-coded data, in which a
    // marker is 0xFF followed by anything but 0x00 (a stuffed byte) or a restart marker.
    let mut in_scan = false;
    loop {
        if in_scan {
            let scan_start = pos;
            loop {
                let b = *data.get(pos).ok_or_else(bad)?;
                if b == 0xFF {
                    let next = *data.get(pos + 1).ok_or_else(bad)?;
                    if next != 0x00 && !(0xD0..=0xD7).contains(&next) {
                        break;
                    }
                    pos += 2;
                } else {
                    pos += 1;
                }
            }
            out.extend_from_slice(&data[scan_start..pos]);
        }
        // Fill bytes (0xFF repeated) may precede a marker.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if data.get(pos) != Some(&0xFF) {
            return Err(bad());
        }
        let marker = *data.get(pos + 1).ok_or_else(bad)?;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Ok(Stripped { bytes: out, metadata_bytes });
            }
            // Standalone markers with no length: TEM and restarts.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&data[pos..pos + 2]);
                pos += 2;
                continue;
            }
            _ => {}
        }
        let len_bytes = data.get(pos + 2..pos + 4).ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err(bad());
        }
        let end = pos + 2 + len;
        let segment = data.get(pos..end).ok_or_else(bad)?;
        let body = &segment[4..];
        let is_metadata = matches!(marker, 0xE0..=0xEF | 0xFE);
        if is_metadata {
            metadata_bytes += segment.len() as u64;
        }
        let keep = match marker {
            0xE0 => true,
            0xE2 => body.starts_with(b"ICC_PROFILE\0"),
            0xEE => body.starts_with(b"Adobe"),
            _ => !is_metadata,
        };
        if keep {
            out.extend_from_slice(segment);
        }
        pos = end;
        in_scan = marker == 0xDA;
    }
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// A PNG without its EXIF, text and time chunks (eXIf, tEXt, zTXt, iTXt, tIME), and without
/// anything after IEND. The other chunks are copied as they are, with their own CRCs.
pub(crate) fn png(data: &[u8]) -> Result<Stripped, InspectError> {
    let bad = || truncated("PNG");
    if !data.starts_with(PNG_SIGNATURE) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut metadata_bytes = 0u64;
    let mut pos = PNG_SIGNATURE.len();
    loop {
        let header = data.get(pos..pos + 8).ok_or_else(bad)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        // Length, type, data, CRC.
        let end = usize::try_from(len).ok().and_then(|len| pos.checked_add(12 + len)).ok_or_else(bad)?;
        let chunk = data.get(pos..end).ok_or_else(bad)?;
        let is_metadata = matches!(&kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME" | b"iCCP");
        if is_metadata {
            metadata_bytes += chunk.len() as u64;
        }
        // iCCP is counted as metadata but kept: it says how the colours are meant.
        if !is_metadata || &kind == b"iCCP" {
            out.extend_from_slice(chunk);
        }
        pos = end;
        if &kind == b"IEND" {
            return Ok(Stripped { bytes: out, metadata_bytes });
        }
    }
}

/// A WebP without its EXIF and XMP chunks, with the RIFF size and the VP8X flags that said
/// they were there corrected, and without anything after the RIFF.
pub(crate) fn webp(data: &[u8]) -> Result<Stripped, InspectError> {
    let bad = || truncated("WebP");
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WEBP" {
        return Err(bad());
    }
    let riff_len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let riff_end = usize::try_from(riff_len).ok().and_then(|len| len.checked_add(8)).ok_or_else(bad)?;
    let body = data.get(12..riff_end).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut metadata_bytes = 0u64;
    let mut vp8x_at = None;
    let mut pos = 0;
    while pos < body.len() {
        let header = body.get(pos..pos + 8).ok_or_else(bad)?;
        let kind = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        // Chunks are padded to an even length.
        let padded = usize::try_from(len).ok().and_then(|len| len.checked_add(len & 1)).ok_or_else(bad)?;
        let end = pos.checked_add(8 + padded).ok_or_else(bad)?;
        let chunk = body.get(pos..end).ok_or_else(bad)?;
        let is_metadata = matches!(&kind, b"EXIF" | b"XMP " | b"ICCP");
        if is_metadata {
            metadata_bytes += chunk.len() as u64;
        }
        if &kind == b"VP8X" {
            vp8x_at = Some(out.len());
        }
        if !is_metadata || &kind == b"ICCP" {
            out.extend_from_slice(chunk);
        }
        pos = end;
    }
    if let Some(at) = vp8x_at {
        // The VP8X flags byte: bit 3 says EXIF is present, bit 2 XMP.
        let flags = out.get_mut(at + 8).ok_or_else(bad)?;
        *flags &= !(0b1000 | 0b0100);
    }
    let riff_len = u32::try_from(out.len() - 8).map_err(|_| bad())?;
    out[4..8].copy_from_slice(&riff_len.to_le_bytes());
    Ok(Stripped { bytes: out, metadata_bytes })
}
