//! Media across messengers, end to end on `peyvand demo` (a registry and three providers): a
//! message carries the file's description, never its bytes; the other provider fetches them
//! from the sender's provider over the interconnect, checks them against the message, keeps
//! them, and serves its own people. Both directions (from the room's hub and from its
//! follower); a provider without a part in the room is refused; bytes that do not match the
//! message leave the file unavailable, never something else.

mod common;

use std::path::Path;

use common::DEADLINE;
use common::demo::Demo;
use peyvand_api::{Audience, Chat, ErrorCode, HistoryQuery, MediaKind, Message, SettingsUpdate};
use peyvand_client::{Client, NewUpload};
use peyvand_interconnect::conformance::KitProvider;
use peyvand_registry::RegistryClient;
use sha2::{Digest, Sha256};

const ALI: &str = "+989122100001";
const BABAK: &str = "+989122100002";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures").join(name)).expect("fixture")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn upload(client: &Client, kind: MediaKind, name: &str, bytes: &[u8]) -> peyvand_api::MediaItem {
    let mut reader = std::io::Cursor::new(bytes.to_vec());
    let new = NewUpload { name: Some(name.to_owned()), ..Default::default() };
    client.upload(kind, bytes.len() as u64, &new, &mut reader, &mut |_, _| {}).await.expect("upload")
}

async fn download(
    client: &Client,
    chat_id: i64,
    seq: i64,
    thumbnail: bool,
) -> Result<Vec<u8>, peyvand_client::ClientError> {
    let mut out = Vec::new();
    client.download_media(chat_id, seq, thumbnail, None, &mut out, &mut |_, _| {}).await.map(|_| out)
}

/// The message at `seq` of a chat, once it is there.
async fn message_at(client: &Client, chat_id: i64, seq: i64) -> Message {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let query = HistoryQuery { before: None, after: Some(seq - 1), limit: Some(1) };
        let page = client.history(chat_id, &query).await.expect("history").messages;
        if let Some(found) = page.into_iter().find(|m| m.seq == seq) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for message {seq}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The chat with someone on `provider`, once it is in the list.
async fn chat_with(client: &Client, provider: &str) -> Chat {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let chats = client.chats().await.expect("chats").chats;
        if let Some(chat) = chats
            .into_iter()
            .find(|c| c.peer.as_ref().and_then(|p| p.messenger.as_ref()).is_some_and(|m| m.provider_id == provider))
        {
            return chat;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for a chat with {provider}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn consent() -> SettingsUpdate {
    SettingsUpdate { interconnect: Some(Audience::Everybody), ..SettingsUpdate::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_crosses_messengers_both_ways_checked_against_the_message() {
    let demo = Demo::start(&[]);
    let ali = demo.sign_in("alborz", ALI).await;
    let babak = demo.sign_in("damavand", BABAK).await;
    ali.update_settings(&consent()).await.expect("on");
    babak.update_settings(&consent()).await.expect("on");
    // Ali starts the room: alborz is its hub, damavand follows it.
    let hub_chat = ali.open_address(&format!("{BABAK}@damavand")).await.expect("open");

    // From the hub: a photo. Babak's provider fetches it from alborz when he asks.
    let photo = fixture("exif-orientation6-gps.jpg");
    let item = upload(&ali, MediaKind::Photo, "عکس.jpg", &photo).await;
    let sent = ali.send_media(hub_chat.id, &item.id, Some("از البرز")).await.expect("send").message;
    let copy = chat_with(&babak, "alborz").await;
    let arrived = message_at(&babak, copy.id, sent.seq).await;
    assert_eq!(arrived.content.media(), Some(&item.media), "the description crosses as it was made");
    assert_eq!(arrived.content.text(), Some("از البرز"));
    let got = download(&babak, copy.id, sent.seq, false).await.expect("Babak downloads the photo");
    assert_eq!(sha256_hex(&got), item.media.sha256);
    let thumbnail = download(&babak, copy.id, sent.seq, true).await.expect("and its thumbnail");
    assert_eq!(sha256_hex(&thumbnail), item.media.thumbnail.as_ref().expect("thumbnail").sha256);
    // Kept: the second download is served from damavand's own copy, as are ranges.
    assert_eq!(download(&babak, copy.id, sent.seq, false).await.expect("again"), got);
    let mut part = Vec::new();
    babak.download_media(copy.id, sent.seq, false, Some(10..20), &mut part, &mut |_, _| {}).await.expect("range");
    assert_eq!(part, got[10..20]);

    // From the follower: a voice message, byte for byte at the hub.
    let voice = fixture("voice.ogg");
    let item = upload(&babak, MediaKind::Voice, "voice.ogg", &voice).await;
    let sent = babak.send_media(copy.id, &item.id, None).await.expect("send").message;
    let at_hub = message_at(&ali, hub_chat.id, sent.seq).await;
    assert_eq!(at_hub.content.media().map(|m| m.duration_ms), Some(item.media.duration_ms));
    assert_eq!(download(&ali, hub_chat.id, sent.seq, false).await.expect("Ali downloads the voice"), voice);

    // Every other kind, from the follower too, byte for byte at the hub.
    for (kind, name) in
        [(MediaKind::Video, "video.mp4"), (MediaKind::Audio, "audio.mp3"), (MediaKind::File, "README.md")]
    {
        let bytes = fixture(name);
        let item = upload(&babak, kind, name, &bytes).await;
        let other = babak.send_media(copy.id, &item.id, None).await.expect("send").message;
        message_at(&ali, hub_chat.id, other.seq).await;
        assert_eq!(
            download(&ali, hub_chat.id, other.seq, false).await.expect("downloaded at the hub"),
            bytes,
            "{name}"
        );
    }

    // A forward of a file from another messenger into a chat here: alborz keeps it first.
    let cyrus = demo.sign_in("alborz", "+989122100003").await;
    let cyrus_id = cyrus.me().await.expect("me").id;
    let local = ali.open_direct(cyrus_id).await.expect("a chat on alborz");
    let forward = peyvand_api::SendMessage {
        client_id: "fwd-voice".into(),
        content: None,
        reply_to: None,
        forward: Some(peyvand_api::ForwardSource { chat_id: hub_chat.id, seq: sent.seq }),
        media: None,
    };
    let forwarded = ali.send(local.id, &forward).await.expect("forward").message;
    assert_eq!(download(&cyrus, local.id, forwarded.seq, false).await.expect("Cyrus downloads it"), voice);

    // A provider without a part in the room may not fetch its files.
    let registry = RegistryClient::new(&demo.registry, Some(demo.admin_token.clone())).expect("registry client");
    let mut stranger = KitProvider::enrol(&registry, "alborz").await.expect("a licensed stranger");
    stranger.retarget(&demo.url("alborz").replace("http://", "https://"));
    stranger.wait_until_known(DEADLINE).await.expect("alborz lists it");
    let path: &'static str = Box::leak(
        format!("/interconnect/v1/media?hub=alborz&room={}&seq={}&variant=content", hub_chat.id, sent.seq - 1)
            .into_boxed_str(),
    );
    let (status, answer) = stranger.send(&stranger.sign_get(path)).await.expect("answered");
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")), "{answer}");
    stranger.withdraw(&registry).await.expect("withdrawn");

    // Bytes that do not match the message: alborz's copy of a new photo is damaged on disk
    // (same size, other bytes); damavand refuses what it gets, and the file is unavailable.
    let item = upload(&ali, MediaKind::File, "report.bin", &vec![7u8; 5000]).await;
    let sent = ali.send_media(hub_chat.id, &item.id, None).await.expect("send").message;
    let blobs = demo.data.join("alborz").join("media").join("blobs");
    let stored = std::fs::read_dir(&blobs)
        .expect("alborz's blobs")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&item.id)))
        .expect("the file's blob");
    std::fs::write(&stored, vec![8u8; 5000]).expect("damage alborz's copy");
    message_at(&babak, copy.id, sent.seq).await;
    let refused = download(&babak, copy.id, sent.seq, false).await.expect_err("a mismatch is refused");
    assert_eq!(refused.code(), Some(ErrorCode::MediaUnavailable), "{refused}");
    // And nothing was kept: asking again asks alborz again, and is refused again.
    let again = download(&babak, copy.id, sent.seq, false).await.expect_err("still refused");
    assert_eq!(again.code(), Some(ErrorCode::MediaUnavailable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_cannot_send_a_lying_media_description() {
    let demo = Demo::start(&[]);
    let hana = demo.sign_in("damavand", "+989122100011").await;
    hana.update_settings(&consent()).await.expect("on");
    let registry = RegistryClient::new(&demo.registry, Some(demo.admin_token.clone())).expect("registry client");
    let mut hub = KitProvider::enrol(&registry, "damavand").await.expect("a licensed hub");
    hub.retarget(&demo.url("damavand").replace("http://", "https://"));
    hub.wait_until_known(DEADLINE).await.expect("damavand lists it");
    let hana_address = "+989122100011@damavand";
    let kit_person = format!("+12025550161@{}", hub.id());
    let room = serde_json::json!({"hub": hub.id(), "id": 1});
    let invite = hub.sign_post(
        "/interconnect/v1/invite",
        serde_json::json!({"room": room, "from": kit_person, "from_name": "Hub", "to": hana_address}),
    );
    assert_eq!(hub.send(&invite).await.expect("answered").0, 200);
    let media = |kind: &str, mime: &str, sha: &str| serde_json::json!({"type": "media", "media": {"kind": kind, "mime": mime, "size": 10, "sha256": sha}});
    let good_sha = "a".repeat(64);
    let message = |seq: i64, content: serde_json::Value| {
        serde_json::json!({"room": room, "event": {"type": "message", "seq": seq, "sender": kit_person, "sender_name": "",
            "recipient": hana_address, "client_id": format!("m{seq}"), "content": content,
            "sent_at": peyvand_service::now_millis()}})
    };
    let transaction = hub.with_origins(serde_json::json!({"id": "t1", "events": [
        message(1, media("photo", "image/svg+xml", &good_sha)),
        message(2, media("file", "text/html", &good_sha)),
        message(3, media("photo", "image/jpeg", "not-a-hash")),
        message(4, media("file", "application/pdf", &good_sha)),
    ]}));
    let (status, answer) =
        hub.send(&hub.sign_post("/interconnect/v1/transactions", transaction)).await.expect("answered");
    assert_eq!(status, 200, "{answer}");
    let refused: Vec<(i64, &str)> = answer["refused"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|r| (r["index"].as_i64().unwrap_or(-1), r["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(refused, [(0, "media_type_mismatch"), (1, "media_type_mismatch"), (2, "invalid_content")]);
    // The honest one is there; its bytes cannot be had (the hub serves nothing): unavailable.
    let copy = chat_with(&hana, hub.id()).await;
    let shown = message_at(&hana, copy.id, 4).await;
    assert_eq!(shown.content.media().map(|m| m.mime.as_str()), Some("application/pdf"));
    let missing = download(&hana, copy.id, 4, false).await.expect_err("nothing to fetch");
    assert!(matches!(missing.code(), Some(ErrorCode::MediaUnavailable | ErrorCode::PeerUnavailable)), "{missing}");
    hub.withdraw(&registry).await.expect("withdrawn");
}
