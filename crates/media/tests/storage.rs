//! The blob store on both backends: a fresh directory on local disk, and a real S3-compatible
//! server.
//!
//! The S3 server comes from `PEYVAND_TEST_S3` (an endpoint URL; default
//! `http://127.0.0.1:9000`, where `scripts/services` starts Moto), signed for with
//! `PEYVAND_TEST_S3_ACCESS_KEY` / `PEYVAND_TEST_S3_SECRET_KEY` (default `peyvand` /
//! `peyvand-secret`; Moto takes any). The tests create their bucket, `PEYVAND_TEST_S3_BUCKET`
//! (default `peyvand-test`), with an unsigned `PUT /bucket` (which Moto accepts; on a server
//! that does not, create it beforehand), and each test works under a prefix of its own, emptied
//! when it ends. As with PostgreSQL, a missing server fails these tests: it is never skipped.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use peyvand_media::storage::{BlobStore, PART_SIZE, RangeReader, S3Settings, StorageError};
use sha2::{Digest, Sha256};

fn endpoint() -> String {
    std::env::var("PEYVAND_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9000".into()).trim_end_matches('/').to_owned()
}

fn bucket() -> String {
    std::env::var("PEYVAND_TEST_S3_BUCKET").unwrap_or_else(|_| "peyvand-test".into())
}

fn settings() -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint()),
        region: None,
        access_key_id: Some(std::env::var("PEYVAND_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "peyvand".into())),
        secret_access_key: Some(
            std::env::var("PEYVAND_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "peyvand-secret".into()),
        ),
        allow_http: true,
    }
}

fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client")
}

/// Where a test's blobs are, and what it takes to see behind the store's back.
enum Backend {
    Local(PathBuf),
    S3 { prefix: String },
}

struct Fixture {
    store: BlobStore,
    backend: Backend,
}

impl Fixture {
    fn local() -> Self {
        // Not created: the store makes the directory itself.
        let dir = std::env::temp_dir().join(unique("peyvand-storage")).join("blobs");
        let store = BlobStore::local(&dir).expect("local store");
        Self { store, backend: Backend::Local(dir) }
    }

    async fn s3() -> Self {
        let url = format!("{}/{}", endpoint(), bucket());
        let created = http().put(&url).send().await.unwrap_or_else(|e| {
            panic!("no S3 server at {} ({e}): run scripts/services, or set PEYVAND_TEST_S3", endpoint())
        });
        // 409: it exists already (BucketAlreadyOwnedByYou), which is as good.
        let status = created.status();
        assert!(
            status.is_success() || status.as_u16() == 409,
            "creating bucket {url}: {status} {}",
            created.text().await.unwrap_or_default()
        );
        let prefix = unique("test");
        let store = BlobStore::s3(&format!("s3://{}/{prefix}", bucket()), &settings()).expect("S3 store");
        Self { store, backend: Backend::S3 { prefix } }
    }

    /// What is on the backend that the store does not show: files on disk that are no blob
    /// (the staged parts of a multipart upload), or multipart uploads on S3 neither completed
    /// nor aborted.
    async fn leftovers(&self) -> Vec<String> {
        match &self.backend {
            Backend::Local(dir) => {
                let listed: Vec<PathBuf> =
                    self.store.list("").await.expect("list").into_iter().map(|(key, _)| dir.join(key)).collect();
                let mut files = Vec::new();
                let mut todo = vec![dir.clone()];
                while let Some(d) = todo.pop() {
                    for entry in std::fs::read_dir(&d).expect("read dir") {
                        let path = entry.expect("entry").path();
                        if path.is_dir() {
                            todo.push(path)
                        } else if !listed.contains(&path) {
                            files.push(path.display().to_string())
                        }
                    }
                }
                files
            }
            Backend::S3 { prefix } => {
                let url = format!("{}/{}?uploads&prefix={prefix}/", endpoint(), bucket());
                let listing = http().get(&url).send().await.expect("list uploads").text().await.expect("body");
                listing.match_indices("<Key>").map(|(at, _)| listing[at..].chars().take(200).collect()).collect()
            }
        }
    }

    /// Empties the test's prefix (its directory or its part of the bucket).
    async fn clean(self) {
        match &self.backend {
            Backend::Local(dir) => {
                let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(dir));
            }
            Backend::S3 { .. } => {
                for (key, _) in self.store.list("").await.unwrap_or_default() {
                    let _ = self.store.delete(&key).await;
                }
            }
        }
    }
}

/// Each test, once on local disk and once on S3.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::local();
                    super::$name(&fixture).await;
                    fixture.clean().await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::s3().await;
                    super::$name(&fixture).await;
                    fixture.clean().await;
                }
            )*
        }
    };
}

on_both_backends!(
    round_trip,
    ranges,
    listing,
    put_stream_of_40_mib,
    put_stream_small_and_empty,
    put_stream_failing_half_way_leaves_nothing,
    put_stream_failing_at_once_leaves_nothing,
    put_stream_dropped_half_way_leaves_nothing,
    read_all_refuses_too_big,
    invalid_keys_are_refused,
    range_reader_seeks_and_reads,
    ping_answers,
);

/// Deterministic bytes that do not repeat with any short period (xorshift).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn round_trip(f: &Fixture) {
    let store = &f.store;
    let key = "blobs/ab/abcdef0123-1";
    assert_eq!(store.size(key).await, Ok(None));
    store.put(key, Bytes::from_static(b"hello, world")).await.expect("put");
    assert_eq!(store.size(key).await, Ok(Some(12)));

    let whole = store.get(key, None).await.expect("get");
    assert_eq!((whole.size, whole.range.clone()), (12, 0..12));
    assert_eq!(whole.bytes().await.expect("bytes"), Bytes::from_static(b"hello, world"));
    assert_eq!(store.read_all(key, 12).await.expect("read_all"), Bytes::from_static(b"hello, world"));

    // Replacing.
    store.put(key, Bytes::from_static(b"bye")).await.expect("put again");
    assert_eq!(store.read_all(key, 100).await.expect("read_all"), Bytes::from_static(b"bye"));

    store.delete(key).await.expect("delete");
    assert_eq!(store.size(key).await, Ok(None));
    assert_eq!(store.get(key, None).await.err(), Some(StorageError::NotFound));
    assert_eq!(store.get(key, Some(0..1)).await.err(), Some(StorageError::NotFound));
    assert_eq!(store.read_all(key, 100).await.err(), Some(StorageError::NotFound));
    // Deleting what is not there is fine.
    store.delete(key).await.expect("delete again");
    store.delete("blobs/never/was").await.expect("delete of a missing key");
    // So is an empty blob.
    store.put("blobs/empty", Bytes::new()).await.expect("put empty");
    assert_eq!(store.size("blobs/empty").await, Ok(Some(0)));
    assert_eq!(store.read_all("blobs/empty", 0).await.expect("read empty"), Bytes::new());
}

async fn ranges(f: &Fixture) {
    let store = &f.store;
    let key = "blobs/cd/ranges-1";
    let bytes = pattern(7, 100_000);
    store.put(key, Bytes::from(bytes.clone())).await.expect("put");

    for range in [0..1, 0..100_000, 10..20, 65_535..65_537, 99_999..100_000, 12_345..98_765] {
        let got = store.get(key, Some(range.clone())).await.expect("get range");
        assert_eq!((got.size, got.range.clone()), (100_000, range.clone()));
        let data = got.bytes().await.expect("bytes");
        assert_eq!(&data[..], &bytes[range.start as usize..range.end as usize], "range {range:?}");
    }

    // Past the end: clamped, as HTTP does.
    let got = store.get(key, Some(99_990..200_000)).await.expect("range past the end");
    assert_eq!((got.size, got.range.clone()), (100_000, 99_990..100_000));
    assert_eq!(&got.bytes().await.expect("bytes")[..], &bytes[99_990..]);
    // Starting at or past the end, or empty: no bytes, and the size to answer 416 with.
    // The last is reversed, as a careless caller could make it.
    for range in [100_000..100_001, 150_000..160_000, 500..500, std::ops::Range { start: 600, end: 10 }] {
        let got = store.get(key, Some(range.clone())).await.expect("range with no bytes");
        assert_eq!(got.size, 100_000, "{range:?}");
        assert!(got.range.is_empty(), "{range:?} gave {:?}", got.range);
        assert!(got.bytes().await.expect("bytes").is_empty());
    }

    // The stream comes in chunks, which together are the blob.
    let whole = store.get(key, None).await.expect("get");
    let chunks: Vec<Bytes> = whole.stream.try_collect().await.expect("chunks");
    assert_eq!(chunks.concat(), bytes);
}

async fn listing(f: &Fixture) {
    let store = &f.store;
    assert_eq!(store.list("").await.expect("list empty"), vec![]);
    for (key, len) in [("blobs/ab/ab1-1", 3), ("blobs/ab/ab2-1", 5), ("blobs/cd/cd1-2", 7), ("uploads/u1/0-n1", 1)] {
        store.put(key, Bytes::from(vec![b'x'; len])).await.expect("put");
    }
    let all = store.list("").await.expect("list all");
    assert_eq!(
        all,
        vec![
            ("blobs/ab/ab1-1".to_owned(), 3),
            ("blobs/ab/ab2-1".to_owned(), 5),
            ("blobs/cd/cd1-2".to_owned(), 7),
            ("uploads/u1/0-n1".to_owned(), 1),
        ]
    );
    assert_eq!(store.list("blobs").await.expect("list blobs").len(), 3);
    assert_eq!(store.list("blobs/").await.expect("list blobs/").len(), 3);
    assert_eq!(
        store.list("blobs/ab").await.expect("list blobs/ab"),
        vec![("blobs/ab/ab1-1".to_owned(), 3), ("blobs/ab/ab2-1".to_owned(), 5)]
    );
    // Whole segments only.
    assert_eq!(store.list("blob").await.expect("list blob"), vec![]);
    assert_eq!(store.list("nothing/here").await.expect("list nothing"), vec![]);
    store.delete("uploads/u1/0-n1").await.expect("delete");
    assert_eq!(store.list("uploads").await.expect("list uploads"), vec![]);
}

/// A stream of `total` bytes in chunks of odd sizes, with the SHA-256 of what it yields. It
/// panics if polled again after its end, as a stream that is not fused may.
fn chunked(total: usize) -> (impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + Unpin, String) {
    let data = Bytes::from(pattern(42, total));
    let hash = hex::encode(Sha256::digest(&data));
    let sizes = [1, 4_093, 65_536, 100_003, 7, 1_000_000];
    let chunks = stream::unfold((0, 0), move |(at, i)| {
        let data = data.clone();
        async move {
            if at >= total {
                return None;
            }
            let len = sizes[i % sizes.len()].min(total - at);
            Some((Ok(data.slice(at..at + len)), (at + len, i + 1)))
        }
    });
    (Box::pin(chunks), hash)
}

async fn hash_of(store: &BlobStore, key: &str) -> (u64, String) {
    let got = store.get(key, None).await.expect("get");
    let size = got.size;
    let mut hasher = Sha256::new();
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.expect("chunk"));
    }
    (size, hex::encode(hasher.finalize()))
}

async fn put_stream_of_40_mib(f: &Fixture) {
    let store = &f.store;
    let total = 40 * 1024 * 1024 + 12_345; // five full parts and a short last one
    let (stream, hash) = chunked(total);
    let key = "blobs/ef/forty-mib-1";
    assert_eq!(store.put_stream(key, stream).await.expect("put_stream"), total as u64);
    assert_eq!(store.size(key).await, Ok(Some(total as u64)));
    assert_eq!(hash_of(store, key).await, (total as u64, hash));
    assert_eq!(f.leftovers().await, Vec::<String>::new(), "parts left behind");

    // Exactly a number of parts.
    let (stream, hash) = chunked(2 * PART_SIZE);
    assert_eq!(store.put_stream(key, stream).await.expect("put_stream again"), 2 * PART_SIZE as u64);
    assert_eq!(hash_of(store, key).await, (2 * PART_SIZE as u64, hash));
}

async fn put_stream_small_and_empty(f: &Fixture) {
    let store = &f.store;
    let (stream, hash) = chunked(300_000);
    assert_eq!(store.put_stream("uploads/x/0-a", stream).await.expect("small"), 300_000);
    assert_eq!(hash_of(store, "uploads/x/0-a").await, (300_000, hash));
    let (stream, hash) = chunked(PART_SIZE);
    assert_eq!(store.put_stream("uploads/x/1-b", stream).await.expect("one part"), PART_SIZE as u64);
    assert_eq!(hash_of(store, "uploads/x/1-b").await, (PART_SIZE as u64, hash));
    let empty = stream::iter(Vec::<Result<Bytes, io::Error>>::new());
    assert_eq!(store.put_stream("uploads/x/2-c", empty).await.expect("empty"), 0);
    assert_eq!(store.size("uploads/x/2-c").await, Ok(Some(0)));
}

/// `good` bytes of a stream, then an error.
fn failing_after(good: usize) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
    let (head, _) = chunked(good);
    head.chain(stream::iter([Err(io::Error::new(io::ErrorKind::ConnectionReset, "the client went away"))]))
        .chain(stream::iter([Ok(Bytes::from_static(b"never read"))]))
}

async fn put_stream_failing_half_way_leaves_nothing(f: &Fixture) {
    let store = &f.store;
    let key = "uploads/y/0-half";
    let failed = store.put_stream(key, failing_after(20 * 1024 * 1024 + 5)).await;
    match failed {
        Err(StorageError::Unavailable(why)) => assert!(why.contains("the client went away"), "{why}"),
        other => panic!("a failing stream gave {other:?}"),
    }
    assert_eq!(store.size(key).await, Ok(None));
    assert_eq!(store.list("").await.expect("list"), vec![]);
    assert_eq!(f.leftovers().await, Vec::<String>::new(), "parts left behind");

    // A blob that was there before stays as it was.
    store.put(key, Bytes::from_static(b"before")).await.expect("put");
    assert!(store.put_stream(key, failing_after(PART_SIZE * 2 + 1)).await.is_err());
    assert_eq!(store.read_all(key, 100).await.expect("still there"), Bytes::from_static(b"before"));
    store.delete(key).await.expect("delete");
    assert_eq!(f.leftovers().await, Vec::<String>::new(), "parts left behind");
}

async fn put_stream_failing_at_once_leaves_nothing(f: &Fixture) {
    let store = &f.store;
    for good in [0, 1000, PART_SIZE] {
        let key = format!("uploads/z/{good}-early");
        assert!(store.put_stream(&key, failing_after(good)).await.is_err(), "{good}");
        assert_eq!(store.size(&key).await, Ok(None));
    }
    assert_eq!(store.list("").await.expect("list"), vec![]);
    assert_eq!(f.leftovers().await, Vec::<String>::new(), "parts left behind");
}

async fn put_stream_dropped_half_way_leaves_nothing(f: &Fixture) {
    let store = &f.store;
    let key = "uploads/w/0-dropped";
    // Two parts and a bit, then nothing more, ever: the client is stuck.
    let (head, _) = chunked(2 * PART_SIZE + 10);
    let stuck = head.chain(stream::pending());
    let dropped = tokio::time::timeout(Duration::from_secs(3), store.put_stream(key, stuck)).await;
    assert!(dropped.is_err(), "the upload cannot end: {dropped:?}");
    // The abort goes in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = f.leftovers().await;
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "parts left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.size(key).await, Ok(None));
}

async fn read_all_refuses_too_big(f: &Fixture) {
    let store = &f.store;
    store.put("blobs/big/one-1", Bytes::from(vec![1; 1000])).await.expect("put");
    assert_eq!(store.read_all("blobs/big/one-1", 999).await, Err(StorageError::TooLarge));
    assert_eq!(store.read_all("blobs/big/one-1", 0).await, Err(StorageError::TooLarge));
    assert_eq!(store.read_all("blobs/big/one-1", 1000).await.expect("fits").len(), 1000);
    assert_eq!(store.read_all("blobs/big/one-1", u64::MAX).await.expect("fits").len(), 1000);
}

const INVALID_KEYS: &[&str] = &[
    "",
    "/blobs/ab/x",
    "blobs/../etc/passwd",
    "..",
    ".",
    "blobs/./x",
    "blobs//x",
    "blobs/x/",
    "blobs/a b",
    "blobs/ä",
    "blobs\\x",
    "blobs/x?y",
    "blobs/x#1",
    "blobs/x%2F",
    "blobs/x\n",
];

async fn invalid_keys_are_refused(f: &Fixture) {
    let store = &f.store;
    let long = vec!["a".repeat(200); 6].join("/");
    let long_segment = "a".repeat(201);
    for key in INVALID_KEYS.iter().copied().chain([long.as_str(), long_segment.as_str()]) {
        let invalid = |r: Result<(), StorageError>| matches!(r, Err(StorageError::InvalidLocation(_)));
        assert!(invalid(store.put(key, Bytes::new()).await), "put {key:?}");
        let empty = stream::iter(Vec::<Result<Bytes, io::Error>>::new());
        assert!(invalid(store.put_stream(key, empty).await.map(drop)), "put_stream {key:?}");
        assert!(invalid(store.get(key, None).await.map(drop)), "get {key:?}");
        assert!(invalid(store.read_all(key, 10).await.map(drop)), "read_all {key:?}");
        assert!(invalid(store.size(key).await.map(drop)), "size {key:?}");
        assert!(invalid(store.delete(key).await), "delete {key:?}");
        assert!(invalid(RangeReader::open(store, key).await.map(drop)), "RangeReader {key:?}");
        if !key.is_empty() && key != "blobs/x/" {
            assert!(invalid(store.list(key).await.map(drop)), "list {key:?}");
        }
    }
    // What the service uses is fine.
    let longest =
        ["a".repeat(200), "b".repeat(200), "c".repeat(200), "d".repeat(200), "e".repeat(200), "f".repeat(19)].join("/");
    assert_eq!(longest.len(), 1024);
    for key in ["blobs/ab/abcdef0123456789-1", "uploads/0193a6b2-aa/1048576-Zx_9.part", longest.as_str()] {
        store.put(key, Bytes::from_static(b"ok")).await.expect(key);
        store.delete(key).await.expect(key);
    }
}

async fn range_reader_seeks_and_reads(f: &Fixture) {
    let store = &f.store;
    let len = 3 * RangeReader::BLOCK as usize + 1_234;
    let bytes = pattern(3, len);
    store.put("blobs/rr/reader-1", Bytes::from(bytes.clone())).await.expect("put");
    let mut reader = RangeReader::open(store, "blobs/rr/reader-1").await.expect("open");
    assert_eq!(reader.len(), len as u64);
    assert!(!reader.is_empty());
    assert_eq!(RangeReader::open(store, "blobs/rr/none").await.err(), Some(StorageError::NotFound));

    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; 1000];
        // The middle, across a block boundary.
        let mid = RangeReader::BLOCK - 300;
        assert_eq!(reader.seek(SeekFrom::Start(mid)).expect("seek"), mid);
        reader.read_exact(&mut buf).expect("read the middle");
        assert_eq!(buf, bytes[mid as usize..mid as usize + 1000]);
        assert_eq!(reader.stream_position().expect("position"), mid + 1000);

        // The end.
        assert_eq!(reader.seek(SeekFrom::End(-10)).expect("seek to the end"), len as u64 - 10);
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).expect("read the end");
        assert_eq!(tail, bytes[len - 10..]);
        assert_eq!(reader.read(&mut buf).expect("read at the end"), 0);

        // Back to the start, and relative seeks.
        reader.seek(SeekFrom::Start(0)).expect("seek back");
        let mut head = [0; 16];
        reader.read_exact(&mut head).expect("read the head");
        assert_eq!(head, bytes[..16]);
        reader.seek(SeekFrom::Current(-8)).expect("seek back a little");
        reader.read_exact(&mut head).expect("read again");
        assert_eq!(head, bytes[8..24]);
        reader.seek(SeekFrom::Current(100_000)).expect("seek forward");
        reader.read_exact(&mut head).expect("read further");
        assert_eq!(head, bytes[100_024..100_040]);

        // All of it, in one go.
        reader.rewind().expect("rewind");
        let mut all = Vec::new();
        reader.read_to_end(&mut all).expect("read all");
        assert_eq!(all, bytes);

        // Past the end: reads give nothing, read_exact says so; before the start is refused.
        reader.seek(SeekFrom::Start(len as u64 + 5)).expect("seek past the end");
        assert_eq!(reader.read(&mut buf).expect("read past the end"), 0);
        reader.seek(SeekFrom::End(-3)).expect("seek");
        assert_eq!(reader.read_exact(&mut buf).expect_err("short").kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(reader.seek(SeekFrom::Start(2)).expect("seek"), 2);
        assert_eq!(reader.seek(SeekFrom::Current(-3)).expect_err("negative").kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            reader.seek(SeekFrom::End(-(len as i64) - 1)).expect_err("negative").kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(reader.stream_position().expect("position"), 2);
    })
    .await
    .expect("the blocking reads");

    // A blob that goes away while read gives an error, not garbage.
    let mut reader = RangeReader::open(store, "blobs/rr/reader-1").await.expect("open");
    store.delete("blobs/rr/reader-1").await.expect("delete");
    let error = tokio::task::spawn_blocking(move || reader.read(&mut [0; 10]).expect_err("gone")).await.expect("read");
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

async fn ping_answers(f: &Fixture) {
    f.store.ping().await.expect("ping");
}

#[tokio::test]
async fn ping_fails_when_the_store_is_gone() {
    let fixture = Fixture::local();
    let Backend::Local(dir) = &fixture.backend else { unreachable!() };
    std::fs::remove_dir_all(dir).expect("remove the store's directory");
    assert!(matches!(fixture.store.ping().await, Err(StorageError::Unavailable(_))));
    fixture.clean().await;

    // A bucket that does not exist, on a server that does.
    let store = BlobStore::s3("s3://peyvand-no-such-bucket", &settings()).expect("S3 store");
    match store.ping().await {
        Err(StorageError::Unavailable(why)) => assert!(!why.contains("peyvand-secret"), "{why}"),
        other => panic!("ping of a missing bucket gave {other:?}"),
    }
    // A server that does not answer.
    let nobody = S3Settings { endpoint: Some("http://127.0.0.1:9".into()), ..settings() };
    let store = BlobStore::s3("s3://peyvand-test", &nobody).expect("S3 store");
    let started = std::time::Instant::now();
    assert!(matches!(store.ping().await, Err(StorageError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(10), "ping took {:?}", started.elapsed());
}

#[test]
fn locations_are_parsed() {
    let settings = settings();
    let dir = std::env::temp_dir().join(unique("peyvand-open"));
    let url = format!("file://{}", dir.display());
    let store = BlobStore::open(&url, &settings).expect("file URL");
    assert!(store.describe().starts_with("local disk at /"), "{}", store.describe());
    assert!(dir.is_dir(), "the directory is created");
    let store = BlobStore::open(&dir.join("plain").display().to_string(), &settings).expect("plain path");
    assert!(store.describe().ends_with("/plain"), "{}", store.describe());
    std::fs::remove_dir_all(&dir).expect("clean up");

    let store = BlobStore::open("s3://media-bucket/node-1/media", &settings).expect("S3 URL");
    let described = store.describe();
    assert_eq!(
        described,
        format!("S3 bucket media-bucket (prefix node-1/media) at endpoint {}, region us-east-1", endpoint())
    );
    let debug = format!("{store:?} {settings:?}");
    assert!(!debug.contains("peyvand-secret") && !described.contains("peyvand-secret"), "{debug}");
    let store =
        BlobStore::s3("s3://media-bucket/", &S3Settings { region: Some("ir-thr-1".into()), ..settings.clone() })
            .expect("S3 URL, no prefix");
    assert_eq!(store.describe(), format!("S3 bucket media-bucket at endpoint {}, region ir-thr-1", endpoint()));

    let no_secret = S3Settings { secret_access_key: None, ..settings.clone() };
    for (location, settings) in [
        ("ftp://host/x", &settings),
        ("", &settings),
        ("file://relative/path", &settings),
        ("s3://", &settings),
        ("s3://UPPER", &settings),
        ("s3://b", &settings),
        ("s3://bucket/../x", &settings),
        ("s3://bucket//x", &settings),
        ("s3://bucket/x", &no_secret),
        ("s3://bucket/x", &S3Settings { endpoint: Some("127.0.0.1:9000".into()), ..settings.clone() }),
    ] {
        assert!(
            matches!(BlobStore::open(location, settings), Err(StorageError::InvalidLocation(_))),
            "{location:?} with {settings:?}"
        );
    }
}

#[test]
fn settings_come_from_configuration() {
    let parsed: S3Settings =
        serde_json::from_str(r#"{"endpoint": "http://s3.local:9000", "allow_http": true}"#).expect("settings");
    assert_eq!(parsed.endpoint.as_deref(), Some("http://s3.local:9000"));
    assert!(parsed.allow_http && parsed.region.is_none() && parsed.access_key_id.is_none());
    let parsed: S3Settings = serde_json::from_str("{}").expect("empty settings");
    assert_eq!(parsed, S3Settings::default());
}
