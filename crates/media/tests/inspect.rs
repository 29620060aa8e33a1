//! The inspection of real files (tests/fixtures, made by ffmpeg and Pillow) and of files
//! made here to break it: bombs, oversized metadata, truncations, random mutations.

use image::{DynamicImage, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};
use peyvand_api::MediaKind;
use peyvand_media::inspect::{
    InspectError, Limits, Timed, check_kind, check_timed, detect, photo, timed, video_thumbnail,
};
use std::io::Cursor;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A gradient, so that encoders have something to encode.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128]))
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(picture(width, height))
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("a JPEG is made");
    out
}

fn png_rgba(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, _| Rgba([200, 10, 10, if x < width / 2 { 0 } else { 255 }]));
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("a PNG is made");
    out
}

fn webp(width: u32, height: u32) -> Vec<u8> {
    let image = picture(width, height);
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(image.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("a WebP is made");
    out
}

/// The CRC-32 of PNG chunks.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    chunk
}

/// Inserts PNG chunks right after IHDR.
fn png_with_chunks(png: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let after_ihdr = 8 + 12 + 13;
    let mut out = png[..after_ihdr].to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&png[after_ihdr..]);
    out
}

/// A big-endian TIFF block with an orientation tag and a fake GPS string, as in APP1/eXIf.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff.extend_from_slice(b"GPS 35.6892N 51.3890E");
    tiff
}

/// Inserts JPEG segments right after SOI.
fn jpeg_with_segments(jpeg: &[u8], segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, body) in segments {
        out.extend_from_slice(&[0xFF, *marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn app1_exif(orientation: u16) -> (u8, Vec<u8>) {
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(&exif_tiff(orientation));
    (0xE1, body)
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("the image decodes")
}

fn timed_of(name: &str, mime: &str) -> Timed {
    timed(Cursor::new(fixture(name)), mime).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_near(name: &str, actual: Option<u64>, expected: u64) {
    let actual = actual.unwrap_or_else(|| panic!("{name}: no duration"));
    assert!(actual.abs_diff(expected) <= 50, "{name}: {actual} ms, expected {expected} ms");
}

// ---- detection and kinds ----

#[test]
fn every_fixture_is_detected_and_allowed_for_its_kind() {
    let cases: &[(&str, MediaKind, &str, &str)] = &[
        ("voice.ogg", MediaKind::Voice, "audio/ogg", "audio/ogg"),
        ("voice.webm", MediaKind::Voice, "video/webm", "audio/webm"),
        ("voice-live.webm", MediaKind::Voice, "video/webm", "audio/webm"),
        ("voice.m4a", MediaKind::Voice, "audio/mp4", "audio/mp4"),
        ("voice-fragmented.m4a", MediaKind::Voice, "video/mp4", "audio/mp4"),
        ("audio-vorbis.ogg", MediaKind::Audio, "audio/ogg", "audio/ogg"),
        ("audio.mp3", MediaKind::Audio, "audio/mpeg", "audio/mpeg"),
        ("audio.flac", MediaKind::Audio, "audio/flac", "audio/flac"),
        ("audio.wav", MediaKind::Audio, "audio/wav", "audio/wav"),
        ("voice.m4a", MediaKind::Audio, "audio/mp4", "audio/mp4"),
        ("voice.webm", MediaKind::Audio, "video/webm", "audio/webm"),
        ("video.mp4", MediaKind::Video, "video/mp4", "video/mp4"),
        ("video.webm", MediaKind::Video, "video/webm", "video/webm"),
        ("exif-orientation6-gps.jpg", MediaKind::Photo, "image/jpeg", "image/jpeg"),
    ];
    for &(name, kind, detected, served) in cases {
        let bytes = fixture(name);
        let found = detect(&bytes);
        assert_eq!(found.map(|d| d.mime), Some(detected), "{name}");
        assert_eq!(check_kind(kind, found.as_ref()), Ok(served), "{name} as {}", kind.as_str());
        // Whatever it is, it can be sent as a file, and is served as what it is.
        assert_eq!(check_kind(MediaKind::File, found.as_ref()), Ok(detected), "{name} as a file");
    }
}

#[test]
fn kinds_refuse_what_they_do_not_allow() {
    let mismatch = |kind, name: &str| {
        let bytes = fixture(name);
        let found = detect(&bytes);
        assert!(
            matches!(check_kind(kind, found.as_ref()), Err(InspectError::TypeMismatch { declared, .. }) if declared == kind),
            "{name} as {kind:?}"
        );
    };
    mismatch(MediaKind::Photo, "voice.ogg");
    mismatch(MediaKind::Voice, "audio.mp3");
    mismatch(MediaKind::Video, "voice.ogg");
    mismatch(MediaKind::Video, "audio.wav");
    mismatch(MediaKind::Voice, "exif-orientation6-gps.jpg");
    mismatch(MediaKind::Audio, "exif-orientation6-gps.jpg");
    let gif =
        b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;";
    let found = detect(gif);
    assert_eq!(found.map(|d| d.mime), Some("image/gif"));
    assert!(matches!(check_kind(MediaKind::Photo, found.as_ref()), Err(InspectError::TypeMismatch { .. })));
    assert_eq!(
        check_kind(MediaKind::Photo, None),
        Err(InspectError::TypeMismatch { declared: MediaKind::Photo, found: None })
    );
}

const HTML: &[u8] = b"\xEF\xBB\xBF\n  <!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";
const SVG: &[u8] = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";

#[test]
fn pages_are_recognised_and_never_served_as_pages() {
    let html = detect(HTML);
    assert_eq!(html.map(|d| d.mime), Some("text/html"));
    assert_eq!(detect(b"<p>hello").map(|d| d.mime), Some("text/html"));
    assert_eq!(detect(b"<SCRIPT>x()</SCRIPT>").map(|d| d.mime), Some("text/html"));
    let svg = detect(SVG);
    assert_eq!(svg.map(|d| d.mime), Some("image/svg+xml"));
    assert_eq!(detect(b"<svg xmlns='http://www.w3.org/2000/svg'/>").map(|d| d.mime), Some("image/svg+xml"));
    assert_eq!(detect(b"<?xml version='1.0'?><feed/>").map(|d| d.mime), Some("application/xml"));
    // Plain text that only starts with a '<' is not taken for a page.
    assert_eq!(detect(b"<bread> is not a tag"), None);

    for page in [html, svg] {
        assert!(matches!(
            check_kind(MediaKind::Photo, page.as_ref()),
            Err(InspectError::TypeMismatch { declared: MediaKind::Photo, found: Some(_) })
        ));
        assert_eq!(check_kind(MediaKind::File, page.as_ref()), Ok("application/octet-stream"));
    }
    assert!(matches!(photo(HTML, &Limits::default()), Err(InspectError::TypeMismatch { .. })));
    assert!(matches!(photo(SVG, &Limits::default()), Err(InspectError::TypeMismatch { .. })));
    // Unknown bytes and scripts are downloads of no particular type.
    assert_eq!(check_kind(MediaKind::File, detect(b"just some text").as_ref()), Ok("application/octet-stream"));
    assert_eq!(check_kind(MediaKind::File, detect(b"#!/bin/sh\nrm -rf /\n").as_ref()), Ok("application/octet-stream"));
    assert_eq!(check_kind(MediaKind::File, detect(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n").as_ref()), Ok("application/pdf"));
}

// ---- timed media ----

#[test]
fn durations_and_tracks_of_voice_and_audio() {
    let audio_only = |name: &str, mime: &str, expected_ms: u64| {
        let t = timed_of(name, mime);
        assert_near(name, t.duration_ms, expected_ms);
        assert!(t.has_audio && !t.has_video, "{name}: {t:?}");
        assert_eq!((t.width, t.height), (None, None), "{name}");
        assert_eq!(check_timed(MediaKind::Voice, &t), Ok(()), "{name}");
        assert_eq!(check_timed(MediaKind::Audio, &t), Ok(()), "{name}");
        assert!(matches!(check_timed(MediaKind::Video, &t), Err(InspectError::TypeMismatch { .. })), "{name}");
    };
    // The last granule position less OpusHead's pre-skip: exactly the second that was encoded
    // (ffprobe, which does not subtract the pre-skip, says 1.0065 s).
    audio_only("voice.ogg", "audio/ogg", 1000);
    audio_only("voice.webm", "audio/webm", 1008);
    // No Duration in Info: the latest block's time.
    audio_only("voice-live.webm", "audio/webm", 1000);
    audio_only("voice.m4a", "audio/mp4", 1000);
    // Fragmented, with no duration in moov: where the last fragment ends.
    audio_only("voice-fragmented.m4a", "audio/mp4", 1064);
    audio_only("audio-vorbis.ogg", "audio/ogg", 1000);
    audio_only("audio.mp3", "audio/mpeg", 1152);
    audio_only("audio.flac", "audio/flac", 500);
    audio_only("audio.wav", "audio/wav", 500);
}

#[test]
fn durations_and_sizes_of_videos() {
    let mp4 = timed_of("video.mp4", "video/mp4");
    assert_near("video.mp4", mp4.duration_ms, 1000);
    assert_eq!((mp4.width, mp4.height, mp4.has_video, mp4.has_audio), (Some(64), Some(48), true, true));
    let webm = timed_of("video.webm", "video/webm");
    assert_near("video.webm", webm.duration_ms, 1000);
    assert_eq!((webm.width, webm.height, webm.has_video, webm.has_audio), (Some(64), Some(48), true, false));
    for t in [mp4, webm] {
        assert_eq!(check_timed(MediaKind::Video, &t), Ok(()));
        assert!(matches!(check_timed(MediaKind::Voice, &t), Err(InspectError::TypeMismatch { .. })));
    }
    assert!(matches!(check_timed(MediaKind::Voice, &Timed::default()), Err(InspectError::Invalid(_))));
}

#[test]
fn an_ogg_with_a_theora_stream_is_not_a_voice_message() {
    let bytes = fixture("opus-with-theora.ogg");
    let found = detect(&bytes);
    assert_eq!(check_kind(MediaKind::Voice, found.as_ref()), Ok("audio/ogg"));
    let t = timed_of("opus-with-theora.ogg", "audio/ogg");
    assert!(t.has_audio && t.has_video, "{t:?}");
    assert_near("opus-with-theora.ogg", t.duration_ms, 500);
    assert!(matches!(
        check_timed(MediaKind::Voice, &t),
        Err(InspectError::TypeMismatch { declared: MediaKind::Voice, found: Some("video") })
    ));
}

#[test]
fn a_type_that_is_not_timed_is_refused() {
    assert!(matches!(timed(Cursor::new(fixture("voice.ogg")), "image/png"), Err(InspectError::Invalid(_))));
    // And a container of another type than said.
    assert!(matches!(timed(Cursor::new(fixture("voice.ogg")), "video/mp4"), Err(InspectError::Invalid(_))));
    assert!(matches!(timed(Cursor::new(fixture("video.mp4")), "audio/webm"), Err(InspectError::Invalid(_))));
}

#[test]
fn truncated_containers_are_invalid() {
    for (name, mime) in [
        ("voice.ogg", "audio/ogg"),
        ("audio-vorbis.ogg", "audio/ogg"),
        ("voice.webm", "audio/webm"),
        ("voice-live.webm", "audio/webm"),
        ("video.webm", "video/webm"),
        ("voice.m4a", "audio/mp4"),
        ("voice-fragmented.m4a", "audio/mp4"),
        ("video.mp4", "video/mp4"),
        ("audio.wav", "audio/wav"),
    ] {
        let bytes = fixture(name);
        for keep in [10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 7] {
            let result = timed(Cursor::new(&bytes[..keep]), mime);
            assert!(matches!(result, Err(InspectError::Invalid(_))), "{name} cut to {keep} bytes: {result:?}");
        }
    }
    assert!(matches!(timed(Cursor::new(&[][..]), "video/mp4"), Err(InspectError::Invalid(_))));
}

#[test]
fn an_mp4_box_of_size_zero_runs_to_the_end_and_a_huge_size_is_refused() {
    // ftyp, then an mdat of size 0 ("to the end of the file"): no moov, so invalid, and quick.
    let mut file = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
    file.extend_from_slice(b"\0\0\0\0mdat");
    file.extend_from_slice(&[0; 100]);
    assert!(matches!(timed(Cursor::new(&file), "video/mp4"), Err(InspectError::Invalid(_))));
    // A box that claims 2^63 bytes.
    let mut file = b"\0\0\0\x10ftypisom\0\0\0\0".to_vec();
    file.extend_from_slice(b"\0\0\0\x01moov\x80\0\0\0\0\0\0\0");
    assert!(matches!(timed(Cursor::new(&file), "video/mp4"), Err(InspectError::Invalid(_))));
}

// ---- photos ----

#[test]
fn a_jpeg_photo_is_measured_thumbnailed_and_previewed() {
    let original = jpeg(1000, 500);
    let p = photo(&original, &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/jpeg", 1000, 500));
    // Upright and without metadata: stored as it came.
    assert_eq!(p.bytes, original);
    assert_eq!((p.thumbnail_width, p.thumbnail_height), (320, 160));
    let thumbnail = decode(&p.thumbnail);
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 160));
    assert_eq!(image::guess_format(&p.thumbnail).unwrap(), image::ImageFormat::Jpeg);
    assert!((5..=64).contains(&p.preview.len()), "{} bytes of preview", p.preview.len());
    let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&p.preview).unwrap();
    assert!(w > h && rgba.len() == w * h * 4, "{w}×{h}");
}

#[test]
fn a_small_photo_is_not_enlarged_for_its_thumbnail() {
    let p = photo(&jpeg(40, 30), &Limits::default()).unwrap();
    assert_eq!((p.thumbnail_width, p.thumbnail_height), (40, 30));
}

#[test]
fn a_png_stays_png_and_loses_its_text_and_exif() {
    let original = png_rgba(64, 48);
    let with_metadata = png_with_chunks(
        &original,
        &[
            png_chunk(b"tEXt", b"Comment\0GPS 35.6892N 51.3890E"),
            png_chunk(b"eXIf", &exif_tiff(1)),
            png_chunk(b"tIME", &[7, 234, 12, 7, 0, 0, 0]),
        ],
    );
    let p = photo(&with_metadata, &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/png", 64, 48));
    assert_eq!(p.bytes, original, "the chunks are dropped, the rest copied as is");
    assert!(!contains(&p.bytes, b"GPS 35.6892N"));
    // The transparent half is white in the JPEG thumbnail.
    let thumbnail = decode(&p.thumbnail).to_rgb8();
    let left = thumbnail.get_pixel(2, 24).0;
    assert!(left.iter().all(|&c| c > 230), "{left:?}");
}

#[test]
fn a_webp_loses_its_exif_and_xmp_chunks() {
    let simple = webp(64, 48);
    // The extended form: VP8X (with the EXIF and XMP flags), the image, EXIF and XMP.
    let image_chunk = &simple[12..];
    let mut vp8x = b"VP8X\x0a\0\0\0".to_vec();
    vp8x.push(0b0000_1100);
    vp8x.extend_from_slice(&[0, 0, 0]);
    vp8x.extend_from_slice(&(64u32 - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(48u32 - 1).to_le_bytes()[..3]);
    let mut exif = b"EXIF".to_vec();
    let tiff = exif_tiff(1);
    exif.extend_from_slice(&(tiff.len() as u32).to_le_bytes());
    exif.extend_from_slice(&tiff);
    if tiff.len() % 2 == 1 {
        exif.push(0);
    }
    let xmp_body = b"<x:xmpmeta>GPS here</x:xmpmeta>";
    let mut xmp = b"XMP ".to_vec();
    xmp.extend_from_slice(&(xmp_body.len() as u32).to_le_bytes());
    xmp.extend_from_slice(xmp_body);
    if xmp_body.len() % 2 == 1 {
        xmp.push(0);
    }
    let body = [b"WEBP".to_vec(), vp8x, image_chunk.to_vec(), exif, xmp].concat();
    let file = [b"RIFF".to_vec(), (body.len() as u32).to_le_bytes().to_vec(), body].concat();
    assert_eq!(decode(&file).width(), 64, "the test file is a valid WebP");

    let p = photo(&file, &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/webp", 64, 48));
    assert!(!contains(&p.bytes, b"GPS 35.6892N") && !contains(&p.bytes, b"GPS here"));
    assert_eq!(p.bytes[20] & 0b1100, 0, "the VP8X flags no longer claim EXIF or XMP");
    let riff_len = u32::from_le_bytes(p.bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff_len + 8, p.bytes.len());
    assert_eq!(decode(&p.bytes).to_rgb8(), decode(&simple).to_rgb8());
}

#[test]
fn exif_gps_and_comments_are_removed_from_an_upright_jpeg_losslessly() {
    let original = jpeg(64, 48);
    let with_exif = jpeg_with_segments(
        &original,
        &[app1_exif(1), (0xED, b"Photoshop 3.0\0IPTC city Tehran".to_vec()), (0xFE, b"a comment".to_vec())],
    );
    let p = photo(&with_exif, &Limits::default()).unwrap();
    assert_eq!((p.width, p.height), (64, 48));
    assert_eq!(p.bytes, original);
    // Anything after the end of the image (a phone's appended video) goes too.
    let mut trailing = original.clone();
    trailing.extend_from_slice(b"\0\0\0\x18ftypmp42 a motion photo");
    assert_eq!(photo(&trailing, &Limits::default()).unwrap().bytes, original);
}

#[test]
fn an_orientation_6_photo_is_turned_upright_without_its_exif() {
    let original = fixture("exif-orientation6-gps.jpg");
    assert!(contains(&original, b"Exif\0\0") && contains(&original, b"PeyvandTestCam"));
    let p = photo(&original, &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/jpeg", 32, 64), "width and height as shown");
    for secret in [&b"Exif\0\0"[..], b"PeyvandTestCam", b"PeyvandSecretComment", b"\x88\x25"] {
        assert!(!contains(&p.bytes, secret), "{:?} is still there", String::from_utf8_lossy(secret));
    }
    // Left half red, right half blue, turned a quarter clockwise: red on top.
    let shown = decode(&p.bytes).to_rgb8();
    assert_eq!((shown.width(), shown.height()), (32, 64));
    let top = shown.get_pixel(16, 8).0;
    let bottom = shown.get_pixel(16, 56).0;
    assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    assert_eq!((p.thumbnail_width, p.thumbnail_height), (32, 64));
    assert!(decode(&p.thumbnail).to_rgb8().get_pixel(16, 8).0[0] > 200);
}

#[test]
fn a_rotated_png_is_turned_and_stays_png() {
    let original = png_rgba(64, 32);
    let rotated = png_with_chunks(&original, &[png_chunk(b"eXIf", &exif_tiff(8))]);
    let p = photo(&rotated, &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/png", 32, 64));
    assert!(!contains(&p.bytes, b"eXIf"));
    assert_eq!(decode(&p.bytes).height(), 64);
}

/// A PNG that claims 30000×30000 pixels: decoded, it would take 3.6 GB.
fn png_bomb() -> Vec<u8> {
    let mut ihdr = 30_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    // A zlib stream of one stored block of zeros: valid, tiny, far too short.
    let mut idat = vec![0x78, 0x01, 0x01, 0x10, 0x00, 0xEF, 0xFF];
    idat.extend_from_slice(&[0; 16]);
    idat.extend_from_slice(&[0, 0x10, 0, 1]);
    [b"\x89PNG\r\n\x1a\n".to_vec(), png_chunk(b"IHDR", &ihdr), png_chunk(b"IDAT", &idat), png_chunk(b"IEND", &[])]
        .concat()
}

#[test]
fn a_png_bomb_is_refused_before_decoding() {
    let start = Instant::now();
    let result = photo(&png_bomb(), &Limits::default());
    assert!(matches!(result, Err(InspectError::TooLarge(_))), "{result:?}");
    assert!(start.elapsed() < Duration::from_millis(500), "took {:?}", start.elapsed());
}

#[test]
fn dimensions_and_sizes_above_the_limits_are_refused() {
    let limits = Limits { max_width: 100, max_height: 100, max_pixels: 5000, ..Limits::default() };
    assert!(matches!(photo(&jpeg(101, 10), &limits), Err(InspectError::TooLarge(_))));
    assert!(matches!(photo(&jpeg(10, 101), &limits), Err(InspectError::TooLarge(_))));
    assert!(matches!(photo(&jpeg(80, 80), &limits), Err(InspectError::TooLarge(_))));
    assert!(photo(&jpeg(70, 70), &limits).is_ok());
    let small = Limits { max_photo_bytes: 100, ..Limits::default() };
    assert!(matches!(photo(&jpeg(64, 48), &small), Err(InspectError::TooLarge(_))));
    let tight = Limits { decoder_alloc: 1000, ..Limits::default() };
    assert!(matches!(photo(&jpeg(640, 480), &tight), Err(InspectError::TooLarge(_))));
}

#[test]
fn a_jpeg_with_too_much_exif_is_refused() {
    let original = jpeg(64, 48);
    let block = |i: u8| (0xE1, [b"Exif\0\0".to_vec(), vec![i; 60 * 1024]].concat());
    let huge = jpeg_with_segments(&original, &[block(1), block(2), block(3), block(4), block(5)]);
    assert!(matches!(photo(&huge, &Limits::default()), Err(InspectError::TooLarge(_))));
    // One such segment is within the limit, and is removed.
    let one = jpeg_with_segments(&original, &[block(1)]);
    assert_eq!(photo(&one, &Limits::default()).unwrap().bytes, original);
}

#[test]
fn truncated_or_corrupt_photos_are_invalid() {
    for (name, bytes) in [("jpeg", jpeg(200, 100)), ("png", png_rgba(200, 100)), ("webp", webp(200, 100))] {
        for keep in [20, bytes.len() / 2, bytes.len() - 1] {
            let result = photo(&bytes[..keep], &Limits::default());
            assert!(matches!(result, Err(InspectError::Invalid(_))), "{name} cut to {keep}: {result:?}");
        }
    }
    let mut corrupt = jpeg(64, 48);
    let sos = corrupt.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    corrupt[sos + 2] = 0xFF; // a segment length past the end
    assert!(matches!(photo(&corrupt, &Limits::default()), Err(InspectError::Invalid(_))));
}

#[test]
fn a_video_thumbnail_is_a_small_jpeg_made_again() {
    let p = video_thumbnail(&jpeg(640, 360), &Limits::default()).unwrap();
    assert_eq!((p.mime, p.width, p.height), ("image/jpeg", 320, 180));
    assert_eq!(p.bytes, p.thumbnail);
    assert_eq!(decode(&p.bytes).width(), 320);
    let rotated = video_thumbnail(&fixture("exif-orientation6-gps.jpg"), &Limits::default()).unwrap();
    assert_eq!((rotated.width, rotated.height), (32, 64));
    assert!(!contains(&rotated.bytes, b"Exif"));
    assert!(matches!(video_thumbnail(&png_rgba(64, 48), &Limits::default()), Err(InspectError::TypeMismatch { .. })));
    assert!(matches!(video_thumbnail(&jpeg(1281, 10), &Limits::default()), Err(InspectError::TooLarge(_))));
}

// ---- robustness ----

/// xorshift64*: a fixed sequence, so that a failure can be replayed.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Flips, overwrites, cuts or repeats a few bytes.
fn mutate(prng: &mut Prng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + prng.below(4) {
        let at = prng.below(bytes.len());
        match prng.below(5) {
            0 => bytes[at] ^= 1 << prng.below(8),
            1 => bytes[at] = [0, 0xFF, 0x7F, 0x80, 1][prng.below(5)],
            2 => bytes.truncate(at.max(1)),
            3 => {
                let end = (at + 1 + prng.below(64)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {
                let end = (at + 4).min(bytes.len());
                bytes[at..end].fill(0xFF);
            }
        }
        if bytes.is_empty() {
            bytes.push(0);
        }
    }
    bytes
}

#[test]
fn mutated_files_never_panic() {
    let mut prng = Prng(0x5EED_1234_ABCD_0001);
    let limits = Limits::default();
    let photos = [fixture("exif-orientation6-gps.jpg"), jpeg(48, 32), png_rgba(32, 24), webp(32, 24)];
    for original in &photos {
        for _ in 0..150 {
            let _ = photo(&mutate(&mut prng, original), &limits);
        }
    }
    let containers = [
        ("voice.ogg", "audio/ogg"),
        ("audio-vorbis.ogg", "audio/ogg"),
        ("voice.webm", "audio/webm"),
        ("voice-live.webm", "audio/webm"),
        ("video.webm", "video/webm"),
        ("voice.m4a", "audio/mp4"),
        ("voice-fragmented.m4a", "audio/mp4"),
        ("video.mp4", "video/mp4"),
        ("audio.wav", "audio/wav"),
        ("audio.flac", "audio/flac"),
        ("audio.mp3", "audio/mpeg"),
    ];
    for (name, mime) in containers {
        let original = fixture(name);
        for _ in 0..500 {
            let mutated = mutate(&mut prng, &original);
            let _ = timed(Cursor::new(&mutated), mime);
            let _ = detect(&mutated);
        }
    }
}

#[test]
fn photos_of_extreme_proportions_keep_at_least_one_pixel() {
    for (width, height) in [(5000, 1), (1, 5000), (2000, 3)] {
        let p = photo(&jpeg(width, height), &Limits::default()).unwrap();
        assert_eq!((p.width, p.height), (width, height));
        assert!(p.thumbnail_width.max(p.thumbnail_height) <= 320);
        assert!(p.thumbnail_width >= 1 && p.thumbnail_height >= 1);
        assert!(thumbhash::thumb_hash_to_rgba(&p.preview).is_ok());
    }
}
