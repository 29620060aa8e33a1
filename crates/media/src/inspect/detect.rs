//! The real type of a file from its first bytes, and which types each kind allows.

use super::{Detected, InspectError};
use peyvand_api::MediaKind;

/// How many of a file's first bytes [`detect`] looks at; give it at least these when there
/// are as many (a WebM's DocType may sit a few hundred bytes in).
pub const DETECT_HEAD_BYTES: usize = 8 * 1024;

/// What a file served as a download is served as when its type is not on the safe list.
const OCTET_STREAM: &str = "application/octet-stream";

/// The real type of a file from its first bytes (up to [`DETECT_HEAD_BYTES`] are looked at).
///
/// Binary formats are named by their magic bytes (the `infer` crate), with the names of audio
/// and video types made canonical (`audio/ogg` for Ogg whatever its codec, `audio/mp4` for
/// M4A, `audio/flac`, `audio/wav`). Markup that a browser could run as a page is recognised
/// too, so that it can be refused: HTML (as a browser sniffs it), SVG and other XML.
pub fn detect(head: &[u8]) -> Option<Detected> {
    let head = &head[..head.len().min(DETECT_HEAD_BYTES)];
    let infer = infer::get(head);
    // infer names some markup `text/xml` or `text/html`; SVG is told apart here.
    if infer.is_none_or(|found| found.mime_type().starts_with("text/"))
        && let Some(markup) = markup(head)
    {
        return Some(markup);
    }
    if let Some(found) = infer {
        let (mime, ext) = canonical(found.mime_type(), found.extension());
        return Some(Detected { mime, ext });
    }
    None
}

/// Canonical names for the audio and video types whose names `infer` spells otherwise.
fn canonical(mime: &'static str, ext: &'static str) -> (&'static str, &'static str) {
    match mime {
        "audio/opus" | "audio/ogg" => ("audio/ogg", "ogg"),
        "audio/m4a" => ("audio/mp4", "m4a"),
        "video/x-m4v" => ("video/mp4", "mp4"),
        "audio/x-flac" => ("audio/flac", "flac"),
        "audio/x-wav" => ("audio/wav", "wav"),
        _ => (mime, ext),
    }
}

/// HTML, SVG or XML: the markup a browser would render or run, after an optional byte order
/// mark and white space. HTML is recognised by the tags the WHATWG sniffing algorithm looks
/// for, so that whatever a browser would take for a page is caught here too.
fn markup(head: &[u8]) -> Option<Detected> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0C))?;
    let text = &text[start..];
    if starts_with_ignore_case(text, b"<?xml") {
        return Some(if contains_ignore_case(text, b"<svg") {
            SVG
        } else {
            Detected { mime: "application/xml", ext: "xml" }
        });
    }
    if starts_with_tag(text, b"<svg") {
        return Some(SVG);
    }
    const HTML_TAGS: [&[u8]; 16] = [
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
    ];
    let is_html = HTML_TAGS.iter().any(|tag| starts_with_tag(text, tag))
        || text.starts_with(b"<!-- ")
        || text.starts_with(b"<!-->");
    if is_html {
        return Some(Detected { mime: "text/html", ext: "html" });
    }
    if starts_with_ignore_case(text, b"<!doctype svg") {
        return Some(SVG);
    }
    None
}

const SVG: Detected = Detected { mime: "image/svg+xml", ext: "svg" };

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The tag name followed by a space or `>`, as the WHATWG sniffing algorithm requires
/// (so that `<br` does not match `<bread`).
fn starts_with_tag(text: &[u8], tag: &[u8]) -> bool {
    starts_with_ignore_case(text, tag)
        && matches!(text.get(tag.len()), Some(b' ' | b'>' | b'\t' | b'\n' | b'\r' | 0x0C | b'/'))
}

fn contains_ignore_case(text: &[u8], needle: &[u8]) -> bool {
    text.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether a file of the detected type may be stored as the declared kind; gives the MIME
/// type to serve it as.
///
/// - photo: JPEG, PNG or WebP (never GIF, SVG or HTML);
/// - voice: Ogg (Opus), WebM or MP4 — what browsers' MediaRecorder writes — served as
///   `audio/ogg`, `audio/webm` or `audio/mp4` (a WebM or MP4 file is detected as video from
///   its first bytes; [`super::check_timed`] then checks it has no video track);
/// - video: MP4 or WebM;
/// - audio: MP3, Ogg, MP4 (M4A), FLAC, WAV or WebM;
/// - file: anything, served as its detected type when that is on a safe list (documents,
///   archives, images, audio, video) and as `application/octet-stream` otherwise; HTML, SVG,
///   XML and scripts are always `application/octet-stream`.
pub fn check_kind(kind: MediaKind, detected: Option<&Detected>) -> Result<&'static str, InspectError> {
    let found = detected.map(|d| d.mime);
    let served = match (kind, found) {
        (MediaKind::File, found) => Some(found.filter(|m| SAFE_DOWNLOADS.contains(m)).unwrap_or(OCTET_STREAM)),
        (MediaKind::Photo, Some(m @ ("image/jpeg" | "image/png" | "image/webp"))) => Some(m),
        (MediaKind::Voice | MediaKind::Audio, Some("audio/ogg")) => Some("audio/ogg"),
        (MediaKind::Voice | MediaKind::Audio, Some("audio/webm" | "video/webm")) => Some("audio/webm"),
        (MediaKind::Voice | MediaKind::Audio, Some("audio/mp4" | "video/mp4")) => Some("audio/mp4"),
        (MediaKind::Audio, Some(m @ ("audio/mpeg" | "audio/flac" | "audio/wav"))) => Some(m),
        (MediaKind::Video, Some(m @ ("video/mp4" | "video/webm"))) => Some(m),
        _ => None,
    };
    served.ok_or(InspectError::TypeMismatch { declared: kind, found })
}

/// The detected types a file download is served as; anything else is served as
/// `application/octet-stream`. None of them can run as a page in a browser.
const SAFE_DOWNLOADS: &[&str] = &[
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-7z-compressed",
    "application/x-tar",
    "application/vnd.rar",
    "application/epub+zip",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/avif",
    "image/heif",
    "image/bmp",
    "image/tiff",
    "audio/mpeg",
    "audio/ogg",
    "audio/mp4",
    "audio/flac",
    "audio/wav",
    "audio/aac",
    "audio/amr",
    "video/mp4",
    "video/webm",
    "video/x-matroska",
    "video/quicktime",
    "video/3gpp",
];

/// The usual file extension of a served type, for naming a download that came without a name.
pub fn extension(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "audio/ogg" => "ogg",
        "audio/webm" | "video/webm" => "webm",
        "audio/mp4" => "m4a",
        "video/mp4" => "mp4",
        "audio/mpeg" => "mp3",
        "audio/flac" => "flac",
        "audio/wav" => "wav",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        _ => return None,
    })
}

/// Whether `mime` is a type a file of `kind` may be served as: one [`check_kind`] gives. For
/// a media description another provider sends, whose bytes this provider has not seen yet.
pub fn may_serve(kind: MediaKind, mime: &str) -> bool {
    let detected = |m: &'static str| Detected { mime: m, ext: "" };
    match kind {
        MediaKind::File => mime == OCTET_STREAM || SAFE_DOWNLOADS.contains(&mime),
        _ => SAFE_DOWNLOADS.iter().chain(["audio/webm"].iter()).any(|candidate| {
            *candidate == mime && check_kind(kind, Some(&detected(candidate))).is_ok_and(|served| served == mime)
        }),
    }
}

#[cfg(test)]
mod may_serve_tests {
    use super::*;

    #[test]
    fn served_types_follow_the_kinds() {
        assert!(may_serve(MediaKind::Photo, "image/jpeg"));
        assert!(!may_serve(MediaKind::Photo, "image/svg+xml"));
        assert!(!may_serve(MediaKind::Photo, "image/gif"));
        assert!(may_serve(MediaKind::Voice, "audio/webm"));
        assert!(!may_serve(MediaKind::Voice, "video/webm"));
        assert!(may_serve(MediaKind::Video, "video/mp4"));
        assert!(may_serve(MediaKind::File, "application/octet-stream"));
        assert!(!may_serve(MediaKind::File, "text/html"));
        assert!(!may_serve(MediaKind::File, "image/svg+xml"));
    }
}
