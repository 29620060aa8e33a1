//! Media on one server: every kind uploaded over tus, sent and fetched; resumed uploads,
//! ranges, links, the headers that keep a browser from running a file, who may fetch, the
//! release of a deleted message's bytes; and bad input, each a clean error with its code
//! while the server stays up.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{Person, Server, code_of, eventually, pair, person, temp_dir};
use peyvand_api::{Content, ErrorCode, Media, MediaKind};
use peyvand_client::NewUpload;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Uploads `bytes` as `kind` through the client library (checked chunks).
async fn upload(
    person: &Person,
    kind: MediaKind,
    name: &str,
    bytes: &[u8],
) -> Result<peyvand_api::MediaItem, peyvand_client::ClientError> {
    let mut reader = std::io::Cursor::new(bytes.to_vec());
    let new = NewUpload { name: Some(name.to_owned()), ..Default::default() };
    person.client.upload(kind, bytes.len() as u64, &new, &mut reader, &mut |_, _| {}).await
}

async fn download(person: &Person, chat_id: i64, seq: i64) -> Vec<u8> {
    let mut out = Vec::new();
    person.client.download_media(chat_id, seq, false, None, &mut out, &mut |_, _| {}).await.expect("download");
    out
}

/// A plain HTTP exchange, to see headers and statuses as a browser would.
async fn get(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A PNG that claims `width`×`height` (8-bit grey) with a tiny compressed body: a
/// decompression bomb when large.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib: a stored empty block would be wrong in size but the header is all that matters.
    png_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// `jpeg` with `segments` APP1 (EXIF) segments of 64 KiB each after its start marker.
fn jpeg_with_exif(jpeg: &[u8], segments: usize) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for _ in 0..segments {
        out.extend_from_slice(&[0xFF, 0xE1, 0xFF, 0xFF]);
        let mut payload = b"Exif\0\0".to_vec();
        payload.resize(65533, 0);
        out.extend_from_slice(&payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn media_of(message: &peyvand_api::Message) -> &Media {
    message.content.media().unwrap_or_else(|| panic!("not a media message: {:?}", message.content))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_sent_and_fetched_byte_for_byte() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121700001", "+989121700002").await;
    let cases: [(MediaKind, &str, Option<u64>); 7] = [
        (MediaKind::Voice, "voice.ogg", Some(1000)),
        (MediaKind::Voice, "voice.webm", Some(1008)),
        (MediaKind::Voice, "voice.m4a", Some(1000)),
        (MediaKind::Video, "video.mp4", Some(1000)),
        (MediaKind::Video, "video.webm", Some(1000)),
        (MediaKind::Audio, "audio.mp3", Some(1152)),
        (MediaKind::File, "README.md", None),
    ];
    for (kind, name, duration) in cases {
        let bytes = read_fixture(name);
        let item = upload(&ali, kind, name, &bytes).await.unwrap_or_else(|e| panic!("upload {name}: {e}"));
        assert_eq!(item.media.kind, kind);
        assert_eq!(item.media.size, bytes.len() as u64, "{name}");
        assert_eq!(item.media.sha256, sha256_hex(&bytes), "{name}");
        assert_eq!(item.media.name.as_deref(), Some(name));
        match (duration, item.media.duration_ms) {
            (Some(want), Some(got)) => assert!(got.abs_diff(want) <= 60, "{name}: {got} ms, not {want}"),
            (None, None) => {}
            (want, got) => panic!("{name}: duration {got:?}, expected {want:?}"),
        }
        let sent = ali.client.send_media(chat.id, &item.id, Some("کپشن")).await.expect("send").message;
        assert_eq!(sent.content.text(), Some("کپشن"));
        assert_eq!(media_of(&sent), &item.media);
        // The other member fetches exactly the bytes.
        assert_eq!(download(&sara, chat.id, sent.seq).await, bytes, "{name}");
    }
    // A video's dimensions come from its container.
    let video = upload(&ali, MediaKind::Video, "v.mp4", &read_fixture("video.mp4")).await.expect("video");
    assert_eq!((video.media.width, video.media.height), (Some(64), Some(48)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_lose_their_metadata_and_get_a_thumbnail_and_preview() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121700011", "+989121700012").await;
    let original = read_fixture("exif-orientation6-gps.jpg");
    let item = upload(&ali, MediaKind::Photo, "عکس.jpg", &original).await.expect("upload");
    let media = &item.media;
    assert_eq!(media.mime, "image/jpeg");
    // Orientation 6: a 64×32 picture shown upright is 32×64.
    assert_eq!((media.width, media.height), (Some(32), Some(64)));
    assert!(media.preview.as_ref().is_some_and(|p| !p.is_empty() && p.len() < 100), "{:?}", media.preview);
    let thumbnail = media.thumbnail.as_ref().expect("a thumbnail");
    assert!(thumbnail.width <= 320 && thumbnail.height <= 320);
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let stored = download(&sara, chat.id, sent.seq).await;
    assert_eq!(sha256_hex(&stored), media.sha256);
    assert_ne!(stored, original, "the stored photo is not the uploaded one: its metadata is gone");
    assert!(!stored.windows(4).any(|w| w == b"Exif"), "EXIF is removed");
    let mut thumb = Vec::new();
    sara.client.download_media(chat.id, sent.seq, true, None, &mut thumb, &mut |_, _| {}).await.expect("thumbnail");
    assert_eq!(&thumb[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(sha256_hex(&thumb), thumbnail.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_have_ranges_tags_and_safe_headers() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121700021", "+989121700022").await;
    let bytes = read_fixture("video.mp4");
    let item = upload(&ali, MediaKind::File, "گزارش سال.pdf", &bytes).await.expect("upload");
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let url = format!("{}/v1/chats/{}/messages/{}/media", server.url, chat.id, sent.seq);
    let token = sara.client.token();

    let whole = get(&url, token, &[]).await;
    assert_eq!(whole.status(), 200);
    let h = whole.headers().clone();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"].to_str().expect("text").starts_with("sandbox"));
    assert_eq!(h["cache-control"], "private, max-age=31536000, immutable");
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = h["etag"].to_str().expect("text").to_owned();
    assert_eq!(etag, format!("\"{}\"", item.media.sha256));
    let disposition = h["content-disposition"].to_str().expect("text");
    assert!(disposition.starts_with("attachment; "), "a file is a download: {disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%DA%AF%D8%B2%D8%A7%D8%B1%D8%B4%20%D8%B3%D8%A7%D9%84.pdf"),
        "{disposition}"
    );
    assert_ne!(h["content-type"], "text/html");
    assert_eq!(whole.bytes().await.expect("body").as_ref(), bytes.as_slice());

    let part = get(&url, token, &[("range", "bytes=100-199")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-199/{}", bytes.len()).as_str());
    assert_eq!(part.bytes().await.expect("body").as_ref(), &bytes[100..200]);
    let tail = get(&url, token, &[("range", "bytes=-10")]).await;
    assert_eq!(tail.bytes().await.expect("body").as_ref(), &bytes[bytes.len() - 10..]);
    let outside = get(&url, token, &[("range", &format!("bytes={}-", bytes.len()))]).await;
    assert_eq!(outside.status(), 416);
    let cached = get(&url, token, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status(), 304);

    // Links work without the session, for a while, and only as signed.
    let links = sara.client.media_links(chat.id, sent.seq).await.expect("links");
    assert!(!links.url.contains(sara.client.token().expect("token")), "no session token in a link");
    let linked = get(&format!("{}{}", server.url, links.url), None, &[("range", "bytes=0-9")]).await;
    assert_eq!(linked.status(), 206);
    assert_eq!(linked.bytes().await.expect("body").as_ref(), &bytes[..10]);
    let forged = links.url.replace("sig=", "sig=0");
    assert_eq!(get(&format!("{}{}", server.url, forged), None, &[]).await.status(), 403);
    let other_seq = links.url.replace(&format!("/{}/content", sent.seq), &format!("/{}/content", sent.seq + 1));
    assert_eq!(get(&format!("{}{}", server.url, other_seq), None, &[]).await.status(), 403);
    assert_eq!(get(&url, None, &[]).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_and_the_uploader_fetch() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121700031", "+989121700032").await;
    let stranger = person(&server, "+989121700033").await;
    let bytes = read_fixture("voice.ogg");
    let item = upload(&ali, MediaKind::Voice, "v.ogg", &bytes).await.expect("upload");
    // Before it is sent, only its uploader sees it.
    assert_eq!(code_of(sara.client.media_item(&item.id).await), ErrorCode::NotFound);
    assert_eq!(ali.client.media_item(&item.id).await.expect("mine").media, item.media);
    // Nobody else may send it.
    let theirs = sara.client.open_direct(stranger.id).await.expect("chat");
    assert_eq!(code_of(sara.client.send_media(theirs.id, &item.id, None).await), ErrorCode::NotFound);
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let mut out = Vec::new();
    let refused = stranger.client.download_media(chat.id, sent.seq, false, None, &mut out, &mut |_, _| {}).await;
    assert_eq!(code_of(refused), ErrorCode::NotFound);
    assert_eq!(code_of(stranger.client.media_links(chat.id, sent.seq).await), ErrorCode::NotFound);
    assert!(out.is_empty());
    // A text message has no media.
    let text = ali.client.send_text(chat.id, "سلام").await.expect("text").message;
    let mut out = Vec::new();
    let none = sara.client.download_media(chat.id, text.seq, false, None, &mut out, &mut |_, _| {}).await;
    assert_eq!(code_of(none), ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_where_the_bytes_stopped() {
    // Small pieces, so that the bytes before the break are stored.
    let server = Server::start_with(&temp_dir("data"), &[("PEYVAND_SERVICE__MEDIA__PIECE_BYTES", "65536")]);
    let (ali, sara, chat) = pair(&server, "+989121700041", "+989121700042").await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id =
        ali.client.create_upload(MediaKind::File, bytes.len() as u64, &NewUpload::default()).await.expect("create");

    // A PATCH that declares every byte but breaks off after 200,000 of them.
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = ali.client.token().expect("token").to_owned();
    let head = format!(
        "PATCH /v1/uploads/{id} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    let sent_part = 200_000;
    std::thread::spawn({
        let part = bytes[..sent_part].to_vec();
        move || {
            let mut socket = std::net::TcpStream::connect(address).expect("connect");
            socket.write_all(head.as_bytes()).expect("headers");
            socket.write_all(&part).expect("body");
            socket.flush().expect("flush");
            socket.shutdown(std::net::Shutdown::Both).expect("break off");
        }
    })
    .join()
    .expect("the broken request");
    // The server kept what arrived (in whole pieces and the rest).
    eventually("the server to store the bytes before the break", || async {
        ali.client.upload_offset(&id).await.expect("head").offset == sent_part as u64
    })
    .await;
    // Resumed from there with the client library; the file arrives whole.
    let mut reader = std::io::Cursor::new(bytes.clone());
    let item = ali.client.upload_rest(&id, &mut reader, &mut |_, _| {}).await.expect("resume");
    assert_eq!(item.media.sha256, sha256_hex(&bytes));
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    assert_eq!(download(&sara, chat.id, sent.seq).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_and_bad_requests_get_their_codes() {
    let server = Server::start_with(&temp_dir("data"), &[("PEYVAND_SERVICE__MEDIA__MAX_UPLOAD_BYTES", "1000000")]);
    let ali = person(&server, "+989121700051").await;
    let html = b"<!doctype html><html><body><script>alert(1)</script></body></html>".to_vec();
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>"#.to_vec();
    let jpeg = read_fixture("exif-orientation6-gps.jpg");
    let cases: Vec<(&str, MediaKind, Vec<u8>, ErrorCode)> = vec![
        ("HTML as a photo", MediaKind::Photo, html.clone(), ErrorCode::MediaTypeMismatch),
        ("SVG as a photo", MediaKind::Photo, svg, ErrorCode::MediaTypeMismatch),
        ("a PNG bomb", MediaKind::Photo, png_claiming(30_000, 30_000), ErrorCode::MediaTooLarge),
        ("a truncated JPEG", MediaKind::Photo, jpeg[..jpeg.len() / 2].to_vec(), ErrorCode::MediaInvalid),
        ("a JPEG with 320 KiB of EXIF", MediaKind::Photo, jpeg_with_exif(&jpeg, 5), ErrorCode::MediaTooLarge),
        ("a photo sent as a voice message", MediaKind::Voice, jpeg.clone(), ErrorCode::MediaTypeMismatch),
        ("a video sent as a voice message", MediaKind::Voice, read_fixture("video.mp4"), ErrorCode::MediaTypeMismatch),
        ("a truncated video", MediaKind::Video, read_fixture("video.mp4")[..2000].to_vec(), ErrorCode::MediaInvalid),
    ];
    for (what, kind, bytes, code) in cases {
        let refused = upload(&ali, kind, "x", &bytes).await;
        assert_eq!(code_of(refused), code, "{what}");
    }
    // HTML as a file is taken, and served as bytes a browser does not run.
    let (ali2, sara, chat) = pair(&server, "+989121700052", "+989121700053").await;
    let item = upload(&ali2, MediaKind::File, "page.html", &html).await.expect("HTML as a file");
    assert_eq!(item.media.mime, "application/octet-stream");
    let sent = ali2.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let url = format!("{}/v1/chats/{}/messages/{}/media", server.url, chat.id, sent.seq);
    let served = get(&url, sara.client.token(), &[]).await;
    assert_eq!(served.headers()["content-type"], "application/octet-stream");
    assert!(served.headers()["content-disposition"].to_str().expect("text").starts_with("attachment"));

    // Over the size limit, refused before any byte is sent.
    assert_eq!(
        code_of(ali.client.create_upload(MediaKind::File, 1_000_001, &NewUpload::default()).await),
        ErrorCode::MediaTooLarge
    );
    // A chunk at the wrong offset, or with the wrong checksum.
    let id = ali.client.create_upload(MediaKind::File, 10, &NewUpload::default()).await.expect("create");
    assert_eq!(code_of(ali.client.upload_chunk(&id, 5, vec![1; 5]).await), ErrorCode::UploadOffsetMismatch);
    let wrong = reqwest::Client::new()
        .patch(format!("{}/v1/uploads/{id}", server.url))
        .bearer_auth(ali.client.token().expect("token"))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("upload-checksum", format!("sha256 {}", base64_of(&Sha256::digest(b"other"))))
        .header("content-type", "application/offset+octet-stream")
        .body(vec![1u8; 10])
        .send()
        .await
        .expect("patch");
    assert_eq!(wrong.status(), 460);
    assert_eq!(ali.client.upload_offset(&id).await.expect("head").offset, 0, "a checksum mismatch keeps nothing");
    // Past the length.
    assert_eq!(code_of(ali.client.upload_chunk(&id, 0, vec![1; 11]).await), ErrorCode::MediaTooLarge);
    // A stranger's upload is not there for them.
    let other = person(&server, "+989121700054").await;
    assert_eq!(code_of(other.client.upload_offset(&id).await), ErrorCode::UploadGone);
    // Media content cannot be forged in a send.
    let forged = peyvand_api::SendMessage {
        client_id: "forged".into(),
        content: Some(Content::Media { media: Box::new(item.media.clone()), caption: None }),
        reply_to: None,
        forward: None,
        media: None,
    };
    assert_eq!(code_of(ali2.client.send(chat.id, &forged).await), ErrorCode::InvalidContent);
    // tus without its version header.
    let plain = reqwest::Client::new()
        .post(format!("{}/v1/uploads", server.url))
        .bearer_auth(ali.client.token().expect("token"))
        .header("upload-length", "10")
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status(), 412);
    assert_eq!(plain.headers()["tus-version"], "1.0.0");
    // And the server is fine.
    assert_eq!(get(&format!("{}/healthz", server.url), None, &[]).await.status(), 200);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_for_everyone_releases_the_blob() {
    let data = temp_dir("data");
    let server = Server::start_with(
        &data,
        &[
            ("PEYVAND_SERVICE__MEDIA__BLOB_GRACE_SECS", "0"),
            ("PEYVAND_SERVICE__MEDIA__SWEEP_SECS", "1"),
            ("PEYVAND_SERVICE__MEDIA__ITEM_TTL_SECS", "8"),
        ],
    );
    let (ali, sara, chat) = pair(&server, "+989121700061", "+989121700062").await;
    let bytes = read_fixture("voice.m4a");
    let item = upload(&ali, MediaKind::Voice, "v.m4a", &bytes).await.expect("upload");
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let blobs = data.join("media").join("blobs");
    let stored = || count_files(&blobs);
    assert_eq!(stored(), 1, "one blob");
    // The item expires; the message keeps the bytes.
    eventually("the item to expire", || async { ali.client.media_item(&item.id).await.is_err() }).await;
    assert_eq!(download(&sara, chat.id, sent.seq).await, bytes);
    // Deleted for everyone, the bytes go.
    ali.client.delete_message(chat.id, sent.seq, true).await.expect("delete");
    eventually("the blob to be removed", || async { stored() == 0 }).await;
    // No upload bytes are left behind either.
    assert_eq!(count_files(&data.join("media").join("uploads")), 0);
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_takes_its_thumbnail_from_a_photo_upload() {
    let server = Server::start();
    let (ali, sara, chat) = pair(&server, "+989121700081", "+989121700082").await;
    let thumb =
        upload(&ali, MediaKind::Photo, "frame.jpg", &read_fixture("exif-orientation6-gps.jpg")).await.expect("photo");
    let video = read_fixture("video.webm");
    let new = NewUpload { name: Some("clip.webm".into()), thumbnail: Some(thumb.id.clone()), ..Default::default() };
    let mut reader = std::io::Cursor::new(video.clone());
    let item = ali
        .client
        .upload(MediaKind::Video, video.len() as u64, &new, &mut reader, &mut |_, _| {})
        .await
        .expect("video");
    assert_eq!(item.media.thumbnail, thumb.media.thumbnail, "the photo's thumbnail is the video's");
    assert_eq!(item.media.preview, thumb.media.preview);
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let mut got = Vec::new();
    sara.client.download_media(chat.id, sent.seq, true, None, &mut got, &mut |_, _| {}).await.expect("thumbnail");
    assert_eq!(sha256_hex(&got), thumb.media.thumbnail.as_ref().expect("thumbnail").sha256);
    // Only a photo upload of one's own is a thumbnail.
    let other =
        upload(&sara, MediaKind::Photo, "x.jpg", &read_fixture("exif-orientation6-gps.jpg")).await.expect("photo");
    let theirs = NewUpload { thumbnail: Some(other.id.clone()), ..Default::default() };
    assert_eq!(code_of(ali.client.create_upload(MediaKind::Video, 10, &theirs).await), ErrorCode::BadRequest);
    let voice = upload(&ali, MediaKind::Voice, "v.ogg", &read_fixture("voice.ogg")).await.expect("voice");
    let not_photo = NewUpload { thumbnail: Some(voice.id), ..Default::default() };
    assert_eq!(code_of(ali.client.create_upload(MediaKind::Video, 10, &not_photo).await), ErrorCode::BadRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_releases_its_uploads() {
    let data = temp_dir("data");
    let server = Server::start_with(
        &data,
        &[("PEYVAND_SERVICE__MEDIA__BLOB_GRACE_SECS", "0"), ("PEYVAND_SERVICE__MEDIA__SWEEP_SECS", "1")],
    );
    let ali = person(&server, "+989121700091").await;
    upload(&ali, MediaKind::Voice, "v.ogg", &read_fixture("voice.ogg")).await.expect("a finished upload");
    let id =
        ali.client.create_upload(MediaKind::File, 100_000, &NewUpload::default()).await.expect("an unfinished one");
    ali.client.upload_chunk(&id, 0, vec![1; 50_000]).await.expect("half of it");
    let media = data.join("media");
    assert_eq!(count_files(&media.join("blobs")), 1);
    assert_eq!(count_files(&media.join("uploads")), 1);
    ali.client.delete_account().await.expect("delete the account");
    eventually("the account's bytes to be removed", || async {
        count_files(&media.join("blobs")) == 0 && count_files(&media.join("uploads")) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_every_byte_but_no_item_is_finished_by_its_head() {
    let data = temp_dir("data");
    let server = Server::start_with(&data, &[]);
    let ali = person(&server, "+989121700101").await;
    let id = ali.client.create_upload(MediaKind::File, 200, &NewUpload::default()).await.expect("create");
    ali.client.upload_chunk(&id, 0, vec![5; 100]).await.expect("half");
    // As if the request that brought the last byte had failed after storing it: the upload's
    // bytes are all there, and no item was made of them.
    let sql = format!("UPDATE uploads SET length = 100 WHERE id = '{id}'");
    let out = std::process::Command::new("sqlite3").arg(data.join("peyvand.db")).arg(&sql).output().expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(code_of(ali.client.media_item(&id).await), ErrorCode::NotFound);
    // A client that asks where it stands finds it complete, and its item made.
    let state = ali.client.upload_offset(&id).await.expect("head");
    assert_eq!((state.offset, state.length), (100, 100));
    let item = ali.client.media_item(&id).await.expect("the item");
    assert_eq!(item.media.sha256, sha256_hex(&[5; 100]));
}
