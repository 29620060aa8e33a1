//! Blobs by key on local disk or an S3-compatible object store.
//!
//! A [`BlobStore`] is one of two backends behind the same calls, both by way of the
//! `object_store` crate: a directory on local disk ([`BlobStore::local`], the embedded default)
//! or a bucket, with an optional prefix, on any S3-compatible server ([`BlobStore::s3`], for
//! a cluster whose nodes share their media). Bytes are streamed both ways: a large upload is
//! sent in parts of [`PART_SIZE`] ([`BlobStore::put_stream`]) and a download comes as a
//! stream of chunks ([`BlobStore::get`]), so memory stays bounded whatever the size of a file.
//!
//! Keys are what the service chooses (`blobs/<upload id>-<attempt>`, `uploads/<id>/<offset>-<nonce>`):
//! ASCII letters, digits, `.`, `_`, `-` and `/` between non-empty segments, none of them `.`
//! or `..`, at most [`MAX_KEY_LEN`] bytes and [`MAX_SEGMENT_LEN`] between two `/`. Anything else is refused with
//! [`StorageError::InvalidLocation`] before any request is made.
//!
//! [`RangeReader`] gives the container parsers (MP4, WebM, Ogg), which want
//! [`std::io::Read`] + [`std::io::Seek`], a view of a stored blob that fetches only the ranges
//! they read; it blocks, so it runs on a blocking thread.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    PutPayloadMut, RetryConfig,
};
use tokio::runtime::Handle;
use tokio::task::JoinSet;

/// The size of each part of a multipart upload ([`BlobStore::put_stream`]): every part but
/// the last is exactly this long (S3 wants at least 5 MiB, and some servers equal parts).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many parts of one upload are sent at the same time: with the part being filled, an
/// upload holds at most `(PARTS_IN_FLIGHT + 1) × PART_SIZE` bytes in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// The longest key accepted, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// The longest segment of a key (between two `/`), in bytes: a file name on local disk,
/// with room for the suffix of a staged upload within the usual 255.
pub const MAX_SEGMENT_LEN: usize = 200;

/// How long [`BlobStore::ping`] waits for its answer.
const PING_DEADLINE: Duration = Duration::from_secs(5);

/// Why a storage operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// There is no blob under that key.
    #[error("no blob under that key")]
    NotFound,
    /// The blob is bigger than the caller allowed ([`BlobStore::read_all`]).
    #[error("the blob is bigger than allowed")]
    TooLarge,
    /// A key, prefix, path or URL that cannot name a blob or a store (the reason says why).
    #[error("invalid location: {0}")]
    InvalidLocation(String),
    /// The store could not do it: unreachable, refused, out of space, or the upload's own
    /// stream failed (the message says which; it never holds a secret).
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            object_store::Error::InvalidPath { source } => Self::InvalidLocation(source.to_string()),
            other => Self::Unavailable(with_causes(&other)),
        }
    }
}

/// An error's message followed by those of its causes, as far as they add something.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !message.contains(&said) {
            message.push_str(": ");
            message.push_str(&said);
        }
        cause = c.source();
    }
    message
}

impl From<StorageError> for io::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => io::Error::new(io::ErrorKind::NotFound, e),
            StorageError::InvalidLocation(_) => io::Error::new(io::ErrorKind::InvalidInput, e),
            StorageError::TooLarge | StorageError::Unavailable(_) => io::Error::other(e),
        }
    }
}

/// How to reach an S3-compatible server; everything is optional.
///
/// What is left unset comes from the standard AWS environment variables, as AWS's own tools
/// do: `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, a web
/// identity token; credentials failing those come from the instance metadata service.
#[derive(Clone, serde::Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct S3Settings {
    /// The server's base URL, such as `https://s3.example.net` or `http://127.0.0.1:9000`;
    /// requests are path-style (`endpoint/bucket/key`). Absent: AWS's own endpoint for the
    /// region.
    pub endpoint: Option<String>,
    /// The region requests are signed for; absent: `us-east-1` (which most S3-compatible
    /// servers accept whatever they call themselves).
    pub region: Option<String>,
    /// The access key id; set together with [`Self::secret_access_key`].
    pub access_key_id: Option<String>,
    /// The secret access key; never shown by [`fmt::Debug`] or [`BlobStore::describe`].
    pub secret_access_key: Option<String>,
    /// Whether a plain `http://` endpoint is allowed (tests, a server on the same host).
    pub allow_http: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Where the blobs of a [`BlobStore`] are, for messages and readiness checks.
#[derive(Debug)]
enum Backend {
    Local { dir: PathBuf },
    S3 { bucket: String, prefix: String, endpoint: String, region: String },
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

/// Blobs by key, on local disk or in an S3-compatible bucket. Cheap to clone: clones share
/// one store (and, for S3, one pool of connections).
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlobStore").field(&self.describe()).finish()
    }
}

/// A blob, or a range of it, as it is read: the size of the whole blob, the range of bytes
/// that the stream holds, and the stream of their chunks.
pub struct BlobStream {
    /// The size of the whole blob, whatever range was asked for.
    pub size: u64,
    /// The bytes that [`Self::stream`] holds: the range asked for, clamped to the blob (so
    /// empty when the range starts at or past its end), or the whole blob.
    pub range: Range<u64>,
    /// The bytes, chunk by chunk, in order; an error ends it.
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream").field("size", &self.size).field("range", &self.range).finish_non_exhaustive()
    }
}

impl BlobStream {
    /// All the bytes of the stream in memory; for ranges the caller knows to be small.
    pub async fn bytes(self) -> Result<Bytes, StorageError> {
        // Reserved up front, within reason: a wrong size must not cost memory.
        let capacity = usize::try_from(self.range.end - self.range.start).unwrap_or(0).min(PART_SIZE);
        let mut stream = self.stream;
        let Some(first) = stream.try_next().await? else { return Ok(Bytes::new()) };
        let Some(second) = stream.try_next().await? else { return Ok(first) };
        let mut all = Vec::with_capacity(capacity);
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(chunk) = stream.try_next().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.into())
    }
}

/// Checks a key (or, with `allow_empty`, a prefix) and makes the store's path of it.
fn key_path(key: &str, allow_empty: bool) -> Result<Path, StorageError> {
    let invalid = |why: &str| Err(StorageError::InvalidLocation(format!("key {key:?}: {why}")));
    if key.is_empty() {
        return if allow_empty { Ok(Path::default()) } else { invalid("empty") };
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("too long");
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))) {
        return invalid(&format!("{c:?} is not allowed (only A-Z, a-z, 0-9, '.', '_', '-' and '/')"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("an empty segment (a leading, trailing or doubled '/')"),
            "." | ".." => return invalid("a '.' or '..' segment"),
            _ if segment.len() > MAX_SEGMENT_LEN => return invalid("a segment too long"),
            _ => {}
        }
    }
    Path::parse(key).map_err(|e| StorageError::InvalidLocation(e.to_string()))
}

/// The retries and deadlines of S3 requests: a few retries of what may pass (a dropped
/// connection, a 5xx, a timeout), not minutes of them, so that a store that is down says so.
fn s3_client() -> (ClientOptions, RetryConfig) {
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        // For the whole of one request, body included: a part of PART_SIZE on a slow link,
        // or a download that its reader consumes slowly (a broken-off download is resumed
        // from where it stopped, within the retries).
        .with_timeout(Duration::from_secs(300));
    let retry =
        RetryConfig { backoff: BackoffConfig::default(), max_retries: 4, retry_timeout: Duration::from_secs(60) };
    (options, retry)
}

impl BlobStore {
    fn new(store: Arc<dyn ObjectStore>, backend: Backend) -> Self {
        Self { inner: Arc::new(Inner { store, backend }) }
    }

    /// Blobs as files under `dir`, created (with its parents) if missing. A key's `/` are
    /// directories; directories left empty by a delete are removed.
    pub fn local(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| StorageError::Unavailable(format!("cannot resolve {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| StorageError::InvalidLocation(format!("{}: {e}", dir.display())))?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(store), Backend::Local { dir }))
    }

    /// Blobs in an S3 bucket: `url` is `s3://bucket` or `s3://bucket/optional/prefix`, the
    /// prefix (checked as a key is) being put before every key.
    pub fn s3(url: &str, settings: &S3Settings) -> Result<Self, StorageError> {
        let invalid = |why: &str| StorageError::InvalidLocation(format!("{url:?}: {why}"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !bucket_ok {
            return Err(invalid("the bucket name is 3 to 63 of a-z, 0-9, '.' and '-'"));
        }
        let prefix_path = key_path(prefix, true)?;
        let region = settings.region.clone().unwrap_or_else(|| "us-east-1".to_owned());

        let (options, retry) = s3_client();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options.with_allow_http(settings.allow_http))
            .with_retry(retry);
        if let Some(endpoint) = &settings.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(invalid("the endpoint is an http:// or https:// URL"));
            }
            builder = builder.with_endpoint(endpoint);
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => builder = builder.with_access_key_id(id).with_secret_access_key(secret),
            (None, None) => {}
            _ => return Err(invalid("an access key id and a secret access key go together")),
        }
        // As configured, from the settings or the environment.
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"))
            .trim_end_matches('/')
            .to_owned();
        let s3 = builder.build().map_err(|e| invalid(&e.to_string()))?;
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix_path)) };
        let backend = Backend::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned(), endpoint, region };
        Ok(Self::new(store, backend))
    }

    /// A store from a configured location: `s3://bucket/prefix` (then `settings` apply),
    /// `file:///absolute/path`, or a plain path (relative to the working directory).
    pub fn open(location: &str, settings: &S3Settings) -> Result<Self, StorageError> {
        if location.starts_with("s3://") {
            return Self::s3(location, settings);
        }
        if let Some(path) = location.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StorageError::InvalidLocation(format!("{location:?}: a file:// URL has an absolute path")));
            }
            return Self::local(std::path::Path::new(path));
        }
        if location.is_empty() {
            return Err(StorageError::InvalidLocation("an empty location".into()));
        }
        if let Some((scheme, _)) = location.split_once("://") {
            return Err(StorageError::InvalidLocation(format!(
                "{location:?}: {scheme}:// is not a store (s3://, file:// or a path)"
            )));
        }
        Self::local(std::path::Path::new(location))
    }

    /// Where the blobs are, for logs and error messages (no credentials): "local disk at
    /// /var/lib/peyvand/media" or "S3 bucket media (prefix node1) at endpoint
    /// http://127.0.0.1:9000, region us-east-1".
    pub fn describe(&self) -> String {
        match &self.inner.backend {
            Backend::Local { dir } => format!("local disk at {}", dir.display()),
            Backend::S3 { bucket, prefix, endpoint, region } if prefix.is_empty() => {
                format!("S3 bucket {bucket} at endpoint {endpoint}, region {region}")
            }
            Backend::S3 { bucket, prefix, endpoint, region } => {
                format!("S3 bucket {bucket} (prefix {prefix}) at endpoint {endpoint}, region {region}")
            }
        }
    }

    /// Stores `bytes` under `key` in one request, replacing what was there. A reader sees
    /// the old blob or the new one, never a part.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = key_path(key, false)?;
        self.inner.store.put(&path, PutPayload::from_bytes(bytes)).await?;
        self.durable(key).await
    }

    /// On local disk, waits until the file under `key` and its directory entry are on the
    /// disk (object_store's local store does not sync), so that a blob the store records
    /// survives a power loss as the record does. S3 answers a put only once it is durable.
    async fn durable(&self, key: &str) -> Result<(), StorageError> {
        let Backend::Local { dir } = &self.inner.backend else { return Ok(()) };
        let file = dir.join(key);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(parent) = file.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("syncing a blob: {e}")))?
        .map_err(|e| StorageError::Unavailable(format!("syncing a blob to disk: {e}")))
    }

    /// Stores what `stream` yields under `key`, replacing what was there, and says how many
    /// bytes that was. Memory stays bounded whatever the size: up to [`PART_SIZE`] is kept
    /// and, if the stream ends by then, stored in one request; past that the bytes go in a
    /// multipart upload of parts of [`PART_SIZE`] (so at most 10,000 × 8 MiB on S3), a few
    /// at a time. The blob appears only when the stream has ended well. If the stream or the
    /// store fails, the multipart upload is aborted, so that nothing (not even the parts) is
    /// left behind, and the stream's own error comes back as [`StorageError::Unavailable`];
    /// if the returned future is dropped before it ends, the abort is sent in the background.
    pub async fn put_stream<S>(&self, key: &str, mut stream: S) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let path = key_path(key, false)?;
        let mut filling = Filling { part: new_part(), rest: Bytes::new(), written: 0 };

        // The first part: a small blob needs no multipart upload.
        if filling.fill(&mut stream).await? {
            self.inner.store.put(&path, filling.part.into()).await?;
            self.durable(key).await?;
            return Ok(filling.written);
        }

        let mut upload = Unfinished(Some(self.inner.store.put_multipart(&path).await?));
        let mut sending: JoinSet<Result<(), object_store::Error>> = JoinSet::new();
        let sent = |joined: Result<Result<(), object_store::Error>, tokio::task::JoinError>| match joined {
            Ok(result) => result.map_err(StorageError::from),
            Err(e) => Err(StorageError::Unavailable(format!("sending a part: {e}"))),
        };
        let outcome: Result<(), StorageError> = async {
            // Not polled again once it has ended: a stream need not be fused.
            let mut ended = false;
            loop {
                // The part is full, or the last one: send it once there is room.
                while sending.len() >= PARTS_IN_FLIGHT {
                    if let Some(joined) = sending.join_next().await {
                        sent(joined)?;
                    }
                }
                let part = std::mem::replace(&mut filling.part, new_part());
                if part.is_empty() {
                    break;
                }
                sending.spawn(upload.get()?.put_part(part.into()));
                if ended {
                    break;
                }
                ended = filling.fill(&mut stream).await?;
            }
            while let Some(joined) = sending.join_next().await {
                sent(joined)?;
            }
            Ok(())
        }
        .await;

        let outcome = match outcome {
            Ok(()) => upload.get()?.complete().await.map(drop).map_err(StorageError::from),
            Err(e) => {
                sending.shutdown().await;
                Err(e)
            }
        };
        let mut upload = upload.take()?;
        match outcome {
            Ok(()) => self.durable(key).await.map(|()| filling.written),
            Err(e) => {
                // Best effort: the upload's own error is the one that matters.
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// Reads the blob under `key`: all of it, or the bytes of `range` (end exclusive). A
    /// range that goes past the end of the blob is clamped to it, as HTTP does: one that
    /// starts at or past the end (or an empty one) gives no bytes, the blob's size and an
    /// empty [`BlobStream::range`], so that the caller can answer "416 Range Not
    /// Satisfiable". [`StorageError::NotFound`] when there is no blob.
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<BlobStream, StorageError> {
        let path = key_path(key, false)?;
        let store = &self.inner.store;
        let options = match &range {
            None => GetOptions::default(),
            Some(r) if r.start >= r.end => {
                let size = store.head(&path).await?.size;
                return Ok(empty_at(r.start, size));
            }
            Some(r) => GetOptions { range: Some(GetRange::Bounded(r.clone())), ..GetOptions::default() },
        };
        match store.get_opts(&path, options).await {
            Ok(result) => {
                let size = result.meta.size;
                let range = result.range.clone();
                let stream = result.into_stream().map_err(StorageError::from).boxed();
                Ok(BlobStream { size, range, stream })
            }
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => match range {
                // A range that starts past the end is an error to both backends (each its
                // own): whether it was that takes the blob's size.
                Some(r) => match store.head(&path).await {
                    Ok(meta) if r.start >= meta.size => Ok(empty_at(r.start, meta.size)),
                    Ok(_) => Err(e.into()),
                    Err(head) => Err(head.into()),
                },
                None => Err(e.into()),
            },
        }
    }

    /// The whole blob under `key` in memory; [`StorageError::TooLarge`] (before its bytes
    /// are read) if it is bigger than `max` bytes.
    pub async fn read_all(&self, key: &str, max: u64) -> Result<Bytes, StorageError> {
        let path = key_path(key, false)?;
        let result = self.inner.store.get_opts(&path, GetOptions::default()).await?;
        if result.meta.size > max {
            return Err(StorageError::TooLarge);
        }
        let blob = BlobStream { size: result.meta.size, range: result.range.clone(), stream: stream::empty().boxed() };
        let stream = result.into_stream().map_err(StorageError::from);
        // Checked as it comes too: the blob could be replaced by a bigger one meanwhile.
        let mut seen = 0u64;
        let stream = stream.and_then(move |chunk| {
            seen += chunk.len() as u64;
            let fits = seen <= max;
            async move { if fits { Ok(chunk) } else { Err(StorageError::TooLarge) } }
        });
        BlobStream { stream: stream.boxed(), ..blob }.bytes().await
    }

    /// The size in bytes of the blob under `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let path = key_path(key, false)?;
        match self.inner.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the blob under `key`; that there is none is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = key_path(key, false)?;
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob whose key is under `prefix`, with its size, sorted by key. The prefix is
    /// whole segments: `uploads/ab` lists `uploads/ab/1` but not `uploads/abc`; a trailing
    /// `/` is allowed and an empty prefix lists everything. Keys are as given to
    /// [`Self::put`] (the prefix of an `s3://` URL not included). Everything is in memory:
    /// this is for maintenance (clean-up of old uploads), not for serving.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let path = key_path(prefix.trim_end_matches('/'), true)?;
        let prefix = if path.as_ref().is_empty() { None } else { Some(&path) };
        let mut all: Vec<(String, u64)> =
            self.inner.store.list(prefix).map_ok(|meta| (meta.location.to_string(), meta.size)).try_collect().await?;
        all.sort_unstable();
        Ok(all)
    }

    /// One cheap round trip to the store, for readiness: the local directory is there; the
    /// bucket answers a listing of an empty prefix (which, unlike a missing key, tells a
    /// missing bucket or wrong credentials). [`StorageError::Unavailable`] when not, or when
    /// no answer comes within 5 seconds.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match &self.inner.backend {
            Backend::Local { dir } => match tokio::fs::metadata(dir).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(StorageError::Unavailable(format!("{} is not a directory", dir.display()))),
                Err(e) => Err(StorageError::Unavailable(format!("{}: {e}", dir.display()))),
            },
            Backend::S3 { .. } => {
                let probe = Path::from("peyvand-ping");
                let mut listing = self.inner.store.list(Some(&probe));
                match tokio::time::timeout(PING_DEADLINE, listing.next()).await {
                    Err(_) => Err(StorageError::Unavailable(format!("no answer within {PING_DEADLINE:?}"))),
                    Ok(None | Some(Ok(_))) => Ok(()),
                    Ok(Some(Err(e))) => Err(StorageError::Unavailable(e.to_string())),
                }
            }
        }
    }
}

/// A part being filled for [`BlobStore::put_stream`]: its bytes, what was read past its end,
/// and how many bytes were read in all.
struct Filling {
    part: PutPayloadMut,
    rest: Bytes,
    written: u64,
}

/// Chunks up to this size are copied into the part's own blocks, larger ones kept as they
/// are: a stream of tiny chunks costs no bookkeeping per chunk, nor keeps the big buffers
/// that tiny slices may point into.
const COPIED_CHUNK: usize = 64 * 1024;

fn new_part() -> PutPayloadMut {
    PutPayloadMut::new().with_block_size(COPIED_CHUNK)
}

impl Filling {
    /// Fills the part up to [`PART_SIZE`] from what was left over, then from `stream`; true
    /// when the stream has ended (the part may then be shorter, or empty).
    async fn fill<S>(&mut self, stream: &mut S) -> Result<bool, StorageError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        while self.part.content_length() < PART_SIZE {
            let mut chunk = if self.rest.is_empty() {
                match stream.next().await {
                    None => return Ok(true),
                    Some(Err(e)) => return Err(StorageError::Unavailable(format!("the upload's stream failed: {e}"))),
                    Some(Ok(chunk)) => {
                        self.written += chunk.len() as u64;
                        chunk
                    }
                }
            } else {
                std::mem::take(&mut self.rest)
            };
            let room = PART_SIZE - self.part.content_length();
            if chunk.len() > room {
                self.rest = chunk.split_off(room);
            }
            if chunk.len() <= COPIED_CHUNK {
                self.part.extend_from_slice(&chunk);
            } else {
                self.part.push(chunk);
            }
        }
        Ok(false)
    }
}

/// A multipart upload that is aborted, in the background, if it is dropped before it is
/// taken out to be completed or aborted: when the future of [`BlobStore::put_stream`] is
/// dropped half-way (the client went away and its request with it).
struct Unfinished(Option<Box<dyn MultipartUpload>>);

impl Unfinished {
    fn get(&mut self) -> Result<&mut Box<dyn MultipartUpload>, StorageError> {
        self.0.as_mut().ok_or_else(|| StorageError::Unavailable("the upload is over".into()))
    }

    fn take(&mut self) -> Result<Box<dyn MultipartUpload>, StorageError> {
        self.0.take().ok_or_else(|| StorageError::Unavailable("the upload is over".into()))
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let (Some(mut upload), Ok(runtime)) = (self.0.take(), Handle::try_current()) {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// No bytes, at `start` clamped to a blob of `size` bytes.
fn empty_at(start: u64, size: u64) -> BlobStream {
    let at = start.min(size);
    BlobStream { size, range: at..at, stream: stream::empty().boxed() }
}

/// A stored blob as [`Read`] + [`Seek`], for parsers that want a file (MP4, WebM, Ogg):
/// it fetches the blob in blocks of [`RangeReader::BLOCK`] bytes, as they are read, and keeps
/// the last few, so that reading a header, seeking to the end and coming back costs a few
/// ranged requests and never the whole blob.
///
/// **It blocks**: each fetch waits with [`Handle::block_on`] on the runtime it was opened on.
/// Use it only on a blocking thread, inside [`tokio::task::spawn_blocking`] (or a thread of
/// one's own), never directly in async code: `block_on` panics on a runtime thread.
///
/// ```no_run
/// # async fn f(store: peyvand_media::storage::BlobStore) -> Result<(), Box<dyn std::error::Error>> {
/// use std::io::{Read, Seek, SeekFrom};
/// let mut reader = peyvand_media::storage::RangeReader::open(&store, "blobs/ab/abcd-1").await?;
/// let tail = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
///     reader.seek(SeekFrom::End(-8))?;
///     let mut tail = vec![0; 8];
///     reader.read_exact(&mut tail)?;
///     Ok(tail)
/// })
/// .await??;
/// # Ok(()) }
/// ```
pub struct RangeReader {
    store: BlobStore,
    key: String,
    handle: Handle,
    size: u64,
    position: u64,
    /// The blocks fetched, most recently used last: (offset, bytes).
    blocks: VecDeque<(u64, Bytes)>,
}

impl fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeReader")
            .field("store", &self.store)
            .field("key", &self.key)
            .field("size", &self.size)
            .field("position", &self.position)
            .field("cached_blocks", &self.blocks.len())
            .finish()
    }
}

impl RangeReader {
    /// The bytes fetched at a time (a read never waits for more than one such request).
    pub const BLOCK: u64 = 64 * 1024;

    /// How many blocks are kept.
    const CACHED: usize = 8;

    /// A reader of the blob under `key` (its size is read now: [`StorageError::NotFound`]
    /// when there is none), positioned at its start, fetching on the current runtime. Call
    /// it in async code, then move the reader to a blocking thread.
    pub async fn open(store: &BlobStore, key: &str) -> Result<Self, StorageError> {
        let size = store.size(key).await?.ok_or(StorageError::NotFound)?;
        Ok(Self {
            store: store.clone(),
            key: key.to_owned(),
            handle: Handle::current(),
            size,
            position: 0,
            blocks: VecDeque::with_capacity(Self::CACHED),
        })
    }

    /// The size of the blob in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The block that starts at `offset`, from the cache or fetched (blocking).
    fn block(&mut self, offset: u64) -> io::Result<Bytes> {
        if let Some(i) = self.blocks.iter().position(|(at, _)| *at == offset) {
            let entry = self.blocks.remove(i).ok_or_else(|| io::Error::other("cache entry vanished"))?;
            let bytes = entry.1.clone();
            self.blocks.push_back(entry);
            return Ok(bytes);
        }
        let end = offset.saturating_add(Self::BLOCK).min(self.size);
        let (store, key) = (&self.store, self.key.as_str());
        let bytes = self.handle.block_on(async { store.get(key, Some(offset..end)).await?.bytes().await })?;
        if self.blocks.len() >= Self::CACHED {
            self.blocks.pop_front();
        }
        self.blocks.push_back((offset, bytes.clone()));
        Ok(bytes)
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position >= self.size {
            return Ok(0);
        }
        let offset = self.position - self.position % Self::BLOCK;
        let block = self.block(offset)?;
        let within = usize::try_from(self.position - offset).map_err(io::Error::other)?;
        // A blob that shrank since it was opened ends where its bytes end.
        let Some(available) = block.get(within..) else { return Ok(0) };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek to a negative or overflowing position"))?;
        self.position = target;
        Ok(target)
    }
}
