//! Media in a cluster: two nodes sharing PostgreSQL, NATS and one S3 bucket (a fresh bucket
//! per test on the machine's S3-compatible server, emptied and removed at the end). An upload
//! resumes on another node, what one node stores the other serves, a deleted message's blob
//! leaves the bucket and the store, and a media link signed on one node works on the other.
//!
//! The S3 server comes from `PEYVAND_TEST_S3` (default `http://127.0.0.1:9000`, where
//! `scripts/services` starts Moto), signed for with `PEYVAND_TEST_S3_ACCESS_KEY` /
//! `PEYVAND_TEST_S3_SECRET_KEY` (default `peyvand` / `peyvand-secret`). As with PostgreSQL
//! and NATS, a missing server fails these tests: they are never skipped.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::cluster::{Cluster, psql_value};
use common::{Person, eventually, person};
use peyvand_api::MediaKind;
use peyvand_client::{Client, NewUpload};
use peyvand_media::storage::{BlobStore, S3Settings};
use sha2::{Digest, Sha256};

fn s3_endpoint() -> String {
    std::env::var("PEYVAND_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9000".into()).trim_end_matches('/').to_owned()
}

fn s3_access_key() -> String {
    std::env::var("PEYVAND_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "peyvand".into())
}

fn s3_secret_key() -> String {
    std::env::var("PEYVAND_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "peyvand-secret".into())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client")
}

/// A bucket of one test's own, created with an unsigned `PUT /bucket` (which Moto accepts),
/// and emptied and removed when this goes.
struct Bucket {
    name: String,
    /// What the nodes keep there, seen as they see it.
    store: BlobStore,
}

impl Bucket {
    async fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("peyvand-cm-{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let url = format!("{}/{name}", s3_endpoint());
        let created = http().put(&url).send().await.unwrap_or_else(|e| {
            panic!("no S3 server at {} ({e}): run scripts/services, or set PEYVAND_TEST_S3", s3_endpoint())
        });
        let status = created.status();
        assert!(status.is_success(), "creating bucket {url}: {status} {}", created.text().await.unwrap_or_default());
        let settings = S3Settings {
            endpoint: Some(s3_endpoint()),
            region: None,
            access_key_id: Some(s3_access_key()),
            secret_access_key: Some(s3_secret_key()),
            allow_http: true,
        };
        let store = BlobStore::s3(&format!("s3://{name}/media"), &settings).expect("S3 store");
        Self { name, store }
    }

    /// The configuration that puts a node's media in this bucket: a configuration file
    /// (`PEYVAND_CONFIG`), since `media` and `[s3]` are not read from the environment.
    fn env(&self) -> Vec<(String, String)> {
        let file = common::temp_dir("s3-config").join("peyvand.toml");
        let config = format!(
            "media = \"s3://{}/media\"\n\n[s3]\nendpoint = \"{}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\nallow_http = true\n",
            self.name,
            s3_endpoint(),
            s3_access_key(),
            s3_secret_key()
        );
        std::fs::write(&file, config).expect("write the configuration");
        vec![("PEYVAND_CONFIG".into(), file.display().to_string())]
    }

    /// The keys of the objects under `prefix` (relative to the nodes' `media/` prefix), from
    /// a ListObjectsV2 on the bucket.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store.list(prefix).await.expect("list the bucket").into_iter().map(|(key, _)| key).collect()
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Dropped inside the test's runtime: the cleaning runs on a thread with one of its own.
        let (store, url) = (self.store.clone(), format!("{}/{}", s3_endpoint(), self.name));
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                for (key, _) in store.list("").await.unwrap_or_default() {
                    let _ = store.delete(&key).await;
                }
                let _ = http().delete(&url).send().await;
            })
        });
        let _ = cleaned.join();
    }
}

/// Two nodes on a fresh schema, bus prefix and bucket, with extra configuration `env`. The
/// bucket comes first, so that a test binding both drops the nodes before it cleans the bucket.
async fn cluster(label: &str, env: &[(&str, &str)]) -> (Bucket, Cluster) {
    let bucket = Bucket::new(label).await;
    let mut all = bucket.env();
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cluster = Cluster::start(label, 2, &all);
    (bucket, cluster)
}

/// The same person's session, used through another node.
fn via(person: &Person, node: &common::Server) -> Client {
    Client::new(&node.url).expect("client").with_token(person.client.token().expect("signed in").to_owned())
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes without a short period (xorshift).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn upload(client: &Client, kind: MediaKind, name: &str, bytes: &[u8]) -> peyvand_api::MediaItem {
    let mut reader = std::io::Cursor::new(bytes.to_vec());
    let new = NewUpload { name: Some(name.to_owned()), ..Default::default() };
    client
        .upload(kind, bytes.len() as u64, &new, &mut reader, &mut |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("upload {name}: {e}"))
}

async fn download(
    client: &Client,
    chat_id: i64,
    seq: i64,
    thumbnail: bool,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    client.download_media(chat_id, seq, thumbnail, range, &mut out, &mut |_, _| {}).await.expect("download");
    out
}

async fn get(url: &str) -> reqwest::Response {
    http().get(url).send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_begun_on_one_node_finishes_on_the_other_and_is_served_by_both() {
    // Small pieces, so that the first chunk is stored as pieces of its own in the bucket.
    let (bucket, cluster) = cluster("resume", &[("PEYVAND_SERVICE__MEDIA__PIECE_BYTES", "65536")]).await;
    let [n1, n2] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ali = person(n1, "+989121800001").await;
    let sara = person(n1, "+989121800002").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");
    let (ali_on_2, sara_on_2) = (via(&ali, n2), via(&sara, n2));

    let bytes = pattern(300_000);
    let id = ali
        .client
        .create_upload(
            MediaKind::File,
            bytes.len() as u64,
            &NewUpload { name: Some("دو گره.bin".into()), ..Default::default() },
        )
        .await
        .expect("create on node 1");
    let first = 100_000;
    let offset = ali.client.upload_chunk(&id, 0, bytes[..first].to_vec()).await.expect("first chunk on node 1");
    assert_eq!(offset, first as u64);
    // Node 2 knows where the upload stands, and the bytes so far are in the bucket.
    let state = ali_on_2.upload_offset(&id).await.expect("head on node 2");
    assert_eq!((state.offset, state.length), (first as u64, bytes.len() as u64));
    assert!(!bucket.keys(&format!("uploads/{id}")).await.is_empty(), "the first chunk's pieces are in the bucket");

    // The rest through node 2, resuming where node 1 left it.
    let mut reader = std::io::Cursor::new(bytes.clone());
    let item = ali_on_2.upload_rest(&id, &mut reader, &mut |_, _| {}).await.expect("the rest on node 2");
    assert_eq!((item.media.size, item.media.sha256.clone()), (bytes.len() as u64, sha256_hex(&bytes)));
    assert_eq!(ali.client.media_item(&id).await.expect("the item on node 1").media, item.media);
    // One blob in the bucket, and its pieces gone.
    eventually("the upload's pieces to be removed from the bucket", || async {
        bucket.keys(&format!("uploads/{id}")).await.is_empty()
    })
    .await;
    assert_eq!(bucket.keys("blobs").await.len(), 1, "one blob: {:?}", bucket.keys("").await);

    // Sent through node 2, fetched through node 1 by Sara, byte for byte.
    let sent = ali_on_2.send_media(chat.id, &item.id, Some("از گره دو")).await.expect("send on node 2").message;
    assert_eq!(download(&sara.client, chat.id, sent.seq, false, None).await, bytes);
    // And a range of it through node 2.
    assert_eq!(download(&sara_on_2, chat.id, sent.seq, false, Some(100..200)).await, &bytes[100..200]);
    let url = format!("{}/v1/chats/{}/messages/{}/media", n2.url, chat.id, sent.seq);
    let part = http()
        .get(&url)
        .bearer_auth(sara.client.token().expect("token"))
        .header("range", "bytes=299990-")
        .send()
        .await
        .expect("range on node 2");
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 299990-299999/{}", bytes.len()).as_str());
    assert_eq!(part.bytes().await.expect("body").as_ref(), &bytes[299_990..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_uploaded_on_one_node_has_its_thumbnail_served_by_the_other() {
    let (bucket, cluster) = cluster("photo", &[]).await;
    let [n1, n2] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ali = person(n2, "+989121800011").await;
    let sara = person(n1, "+989121800012").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");

    let item = upload(&ali.client, MediaKind::Photo, "عکس.jpg", &read_fixture("exif-orientation6-gps.jpg")).await;
    let thumbnail = item.media.thumbnail.clone().expect("a thumbnail");
    // The photo and its thumbnail: two blobs in the bucket.
    assert_eq!(bucket.keys("blobs").await.len(), 2, "{:?}", bucket.keys("").await);
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send on node 2").message;

    let thumb = download(&sara.client, chat.id, sent.seq, true, None).await;
    assert_eq!(&thumb[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(sha256_hex(&thumb), thumbnail.sha256);
    let photo = download(&sara.client, chat.id, sent.seq, false, None).await;
    assert_eq!(sha256_hex(&photo), item.media.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_for_everyone_on_one_node_removes_the_blob_from_the_bucket_and_the_store() {
    let (bucket, cluster) = cluster(
        "release",
        &[
            ("PEYVAND_SERVICE__MEDIA__BLOB_GRACE_SECS", "0"),
            ("PEYVAND_SERVICE__MEDIA__SWEEP_SECS", "1"),
            ("PEYVAND_SERVICE__MEDIA__ITEM_TTL_SECS", "8"),
        ],
    )
    .await;
    let [n1, n2] = [&cluster.nodes[0], &cluster.nodes[1]];
    let schema = cluster.schema.name.clone();
    let blob_rows = || psql_value(&format!("SELECT count(*) FROM {schema}.blobs"));
    let ali = person(n1, "+989121800021").await;
    let sara = person(n2, "+989121800022").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");

    let bytes = read_fixture("voice.m4a");
    let item = upload(&ali.client, MediaKind::Voice, "v.m4a", &bytes).await;
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let blobs = bucket.keys("blobs").await;
    assert_eq!(blobs.len(), 1, "one blob: {:?}", bucket.keys("").await);
    assert_eq!(blob_rows(), "1");
    let key = psql_value(&format!("SELECT key FROM {schema}.blobs"));
    assert_eq!(blobs[0], key, "the row names the object");

    // The item expires (on whichever node sweeps first); the message keeps the bytes.
    eventually("the item to expire", || async { ali.client.media_item(&item.id).await.is_err() }).await;
    assert_eq!(download(&sara.client, chat.id, sent.seq, false, None).await, bytes);
    assert_eq!(bucket.keys("blobs").await.len(), 1, "a sent message's blob stays");
    assert_eq!(blob_rows(), "1");

    // Deleted for everyone through node 1, the bytes go from the bucket and the store.
    ali.client.delete_message(chat.id, sent.seq, true).await.expect("delete for everyone");
    eventually("the blob to leave the bucket", || async { bucket.keys("blobs").await.is_empty() }).await;
    eventually("the blob's row to go", || async { blob_rows() == "0" }).await;
    // Nothing is left in the bucket at all: no upload pieces either.
    assert_eq!(bucket.keys("").await, Vec::<String>::new());
    let mut out = Vec::new();
    let gone = via(&sara, n1).download_media(chat.id, sent.seq, false, None, &mut out, &mut |_, _| {}).await;
    assert!(gone.is_err(), "a deleted message has no media");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_links_made_on_one_node_work_on_the_other() {
    let (_bucket, cluster) = cluster("links", &[]).await;
    let [n1, n2] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ali = person(n1, "+989121800031").await;
    let sara = person(n1, "+989121800032").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");
    let original = read_fixture("exif-orientation6-gps.jpg");
    let item = upload(&ali.client, MediaKind::Photo, "p.jpg", &original).await;
    let sent = ali.client.send_media(chat.id, &item.id, None).await.expect("send").message;
    let stored = download(&sara.client, chat.id, sent.seq, false, None).await;

    let links = sara.client.media_links(chat.id, sent.seq).await.expect("links on node 1");
    assert!(links.url.starts_with("/v1/files/"), "{}", links.url);
    // Node 1's link, without a session, on both nodes.
    for node in [n1, n2] {
        let linked = get(&format!("{}{}", node.url, links.url)).await;
        assert_eq!(linked.status(), 200, "{} on {}", links.url, node.url);
        assert_eq!(linked.bytes().await.expect("body").as_ref(), stored.as_slice());
    }
    let thumbnail_url = links.thumbnail_url.expect("a photo's thumbnail link");
    let thumb = get(&format!("{}{thumbnail_url}", n2.url)).await;
    assert_eq!(thumb.status(), 200);
    let thumb = thumb.bytes().await.expect("body");
    assert_eq!(sha256_hex(&thumb), item.media.thumbnail.expect("a thumbnail").sha256);
    // A link node 2 makes is the same kind of link, good on node 1; a forged one is good on neither.
    let from_2 = via(&sara, n2).media_links(chat.id, sent.seq).await.expect("links on node 2");
    assert_eq!(get(&format!("{}{}", n1.url, from_2.url)).await.status(), 200);
    let forged = links.url.replace("sig=", "sig=0");
    for node in [n1, n2] {
        assert_eq!(get(&format!("{}{forged}", node.url)).await.status(), 403);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_chunk_sent_to_both_nodes_at_once_counts_once_and_leaves_no_bytes_behind() {
    // A client that gives up on a slow node and sends the chunk again to another, while the
    // first request still runs. Small pieces, so that each request writes several.
    let (bucket, cluster) = cluster("race", &[("PEYVAND_SERVICE__MEDIA__PIECE_BYTES", "65536")]).await;
    let [n1, n2] = [&cluster.nodes[0], &cluster.nodes[1]];
    let ali = person(n1, "+989121800041").await;
    let ali_on_2 = via(&ali, n2);
    let bytes = pattern(400_000);
    for round in 0..3 {
        let id =
            ali.client.create_upload(MediaKind::File, bytes.len() as u64, &NewUpload::default()).await.expect("create");
        let chunk = bytes[..300_000].to_vec();
        let (on_1, on_2) =
            tokio::join!(ali.client.upload_chunk(&id, 0, chunk.clone()), ali_on_2.upload_chunk(&id, 0, chunk));
        let won: Vec<u64> = [&on_1, &on_2].iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(won, [300_000], "round {round}: exactly one counts: {on_1:?} {on_2:?}");
        for lost in [on_1, on_2].into_iter().filter_map(Result::err) {
            assert_eq!(lost.code(), Some(peyvand_api::ErrorCode::UploadOffsetMismatch), "round {round}: {lost}");
        }
        assert_eq!(ali_on_2.upload_offset(&id).await.expect("head").offset, 300_000);
        let item = ali_on_2.upload_chunk(&id, 300_000, bytes[300_000..].to_vec()).await.expect("the rest");
        assert_eq!(item, bytes.len() as u64);
        assert_eq!(ali.client.media_item(&id).await.expect("finished").media.sha256, sha256_hex(&bytes));
        // The loser's pieces are gone with the winner's: nothing is left under uploads/.
        let deadline = std::time::Instant::now() + common::DEADLINE;
        loop {
            let left = bucket.keys("uploads").await;
            if left.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "round {round}: upload pieces left behind: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
