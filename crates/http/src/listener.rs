//! [`DualListener`]: one TCP port that serves clients in plain HTTP and other providers in
//! HTTPS with mutual TLS. Each connection's first byte decides: a TLS handshake record (0x16)
//! is answered with TLS when a TLS configuration is installed, anything else is plain HTTP.
//! Handlers see which it was, and the peer's certificate chain, in [`ConnInfo`].
//!
//! Handshakes run in their own tasks, so a slow or silent connection never holds up others.
//!
//! Every listener caps its connections ([`ConnectionLimits`]): overall, per remote address,
//! and by the process's share of file descriptors for clients ([`reserve_descriptors`]). A
//! connection over a cap is closed as soon as it is accepted, and counted in
//! [`ConnectionStats`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::server::TlsStream;

/// How long a new connection may take to send its first byte, and then to finish a TLS
/// handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake is done but that the server has not taken yet.
const READY_QUEUE: usize = 1024;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The TLS configuration in use, replaceable while serving (the trusted CA and the revoked
/// certificates come with the registry's directory, which changes).
#[derive(Clone, Default)]
pub struct TlsSlot(Arc<RwLock<Option<Arc<ServerConfig>>>>);

impl std::fmt::Debug for TlsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSlot").field("installed", &self.current().is_some()).finish()
    }
}

impl TlsSlot {
    /// Installs the configuration that new TLS connections get (`None`: TLS is refused).
    pub fn set(&self, config: Option<Arc<ServerConfig>>) {
        if let Ok(mut slot) = self.0.write() {
            *slot = config;
        }
    }

    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().ok().and_then(|slot| slot.clone())
    }
}

/// What a handler knows of its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The client's certificate chain (leaf first) on a mutual-TLS connection; `None` on
    /// plain HTTP.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected<IncomingStream<'_, DualListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, DualListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self { remote: *stream.remote_addr(), peer_certificates: None }
    }
}

/// The default of [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The default of [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// The default of [`ConnectionLimits::max_per_address`].
pub const DEFAULT_MAX_PER_ADDRESS: usize = 512;
/// The default of the descriptors [`reserve_descriptors`] keeps from client connections.
pub const DEFAULT_RESERVED_DESCRIPTORS: usize = 256;

/// What a listener lets its clients hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, counted from when the server
    /// starts reading them (on a kept-alive connection: from the end of the previous
    /// response, so this is also how long an idle connection stays open).
    pub header_read_timeout: Duration,
    /// Connections open at once on this listener, at most.
    pub max_connections: usize,
    /// Connections open at once from one address, at most (an IPv6 address counts by its
    /// /64, what one host is given).
    pub max_per_address: usize,
    /// Addresses only the overall cap applies to: load balancers and proxies, whose
    /// connections carry many people's.
    pub exempt: Vec<IpAddr>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
            exempt: Vec::new(),
        }
    }
}

/// A listener's connection counters, for metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted (and not refused) since start.
    pub accepted: AtomicU64,
    /// Connections closed at once because the listener had `max_connections` open.
    pub refused_overall: AtomicU64,
    /// ... because their address had `max_per_address` open.
    pub refused_per_address: AtomicU64,
    /// ... because client connections held every file descriptor not reserved.
    pub refused_descriptors: AtomicU64,
    /// Connections closed because their first byte, TLS handshake or request headers did
    /// not arrive in time.
    pub timed_out: AtomicU64,
}

/// File descriptors client connections may hold in this process, across every listener
/// (`usize::MAX` until [`reserve_descriptors`] sets it), and those they hold.
static CLIENT_DESCRIPTORS_ALLOWED: AtomicUsize = AtomicUsize::new(usize::MAX);
static CLIENT_DESCRIPTORS_HELD: AtomicUsize = AtomicUsize::new(0);

/// The process's open-file limit after [`reserve_descriptors`].
#[derive(Debug, Clone, Copy)]
pub struct Descriptors {
    /// The soft limit found at start-up.
    pub was: u64,
    /// The soft limit now (raised to the hard limit when it was lower).
    pub limit: u64,
    /// How many of them client connections may hold, every listener together.
    pub for_clients: usize,
}

/// Raises the open-file limit (`RLIMIT_NOFILE`) to its hard limit and keeps `reserve` file
/// descriptors from client connections, so that the storage, the bus, calls to other
/// providers and the registry, and files go on working when clients are refused.
pub fn reserve_descriptors(reserve: usize) -> Descriptors {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let found = getrlimit(Resource::Nofile);
    let was = found.current.unwrap_or(u64::MAX);
    let mut limit = was;
    if let Some(hard) = found.maximum
        && hard > was
        && setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }).is_ok()
    {
        limit = hard;
    }
    let for_clients = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(reserve).max(1);
    CLIENT_DESCRIPTORS_ALLOWED.store(for_clients, Ordering::Relaxed);
    Descriptors { was, limit, for_clients }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Overall,
    PerAddress,
    Descriptors,
}

/// The connections a listener holds, by address.
#[derive(Debug)]
struct Table {
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
}

/// The address a connection counts against: IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Table {
    fn admit(self: &Arc<Self>, remote: IpAddr) -> Result<Slot, Refusal> {
        if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            return Err(Refusal::Overall);
        }
        let key = (!self.limits.exempt.contains(&remote)).then(|| address_key(remote));
        if let Some(key) = key {
            let mut by_address = self.by_address.lock().map_err(|_| Refusal::Overall)?;
            let count = by_address.entry(key).or_insert(0);
            if *count >= self.limits.max_per_address {
                return Err(Refusal::PerAddress);
            }
            *count += 1;
        }
        // From here the slot exists, and dropping it (refused or closed) gives back what it took.
        let mut slot = Slot { table: self.clone(), key, admitted: false };
        let held = CLIENT_DESCRIPTORS_HELD.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        if held >= CLIENT_DESCRIPTORS_ALLOWED.load(Ordering::Relaxed) {
            return Err(Refusal::Descriptors);
        }
        slot.admitted = true;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(slot)
    }

    fn count(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Overall => &self.stats.refused_overall,
            Refusal::PerAddress => &self.stats.refused_per_address,
            Refusal::Descriptors => &self.stats.refused_descriptors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's place in its listener's [`Table`], given back when it is dropped.
#[derive(Debug)]
struct Slot {
    table: Arc<Table>,
    key: Option<IpAddr>,
    /// Counted as open (it passed every cap).
    admitted: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let table = &self.table;
        CLIENT_DESCRIPTORS_HELD.fetch_sub(1, Ordering::Relaxed);
        table.open.fetch_sub(1, Ordering::Relaxed);
        if self.admitted {
            table.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(key) = self.key
            && let Ok(mut by_address) = table.by_address.lock()
            && let Some(count) = by_address.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&key);
            }
        }
    }
}

/// A connection, plain or TLS, holding its place among its listener's connections.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    _slot: Slot,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// See the module's documentation.
#[derive(Debug)]
pub struct DualListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(Conn, ConnInfo)>,
    acceptor: tokio::task::JoinHandle<()>,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
}

impl Drop for DualListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl DualListener {
    /// Serves `tcp`; TLS connections get the configuration in `tls` at the moment they arrive.
    pub fn new(tcp: TcpListener, tls: TlsSlot, limits: ConnectionLimits) -> io::Result<Self> {
        Self::start(tcp, tls, true, limits)
    }

    /// Serves `tcp` in TLS only: a connection that does not open with a TLS handshake is
    /// closed (HTTPS-only services, such as a registry with its own certificate).
    pub fn tls_only(tcp: TcpListener, tls: TlsSlot, limits: ConnectionLimits) -> io::Result<Self> {
        Self::start(tcp, tls, false, limits)
    }

    fn start(tcp: TcpListener, tls: TlsSlot, plain: bool, limits: ConnectionLimits) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let stats = Arc::new(ConnectionStats::default());
        let table = Arc::new(Table {
            limits: limits.clone(),
            stats: stats.clone(),
            by_address: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
        });
        let acceptor = tokio::spawn(accept_loop(tcp, tls, plain, table, sender));
        Ok(Self { local, ready, acceptor, limits, stats })
    }

    /// The limits this listener was given.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Its connection counters.
    pub fn stats(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }
}

/// A TLS configuration for an HTTPS server without client certificates (TLS 1.2 and 1.3),
/// from a PEM certificate chain (leaf first) and its PEM private key.
pub fn https_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, String> {
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key file: {e}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// How often at most a refusal is logged as a warning (each is counted in the metrics).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(
    tcp: TcpListener,
    tls: TlsSlot,
    plain: bool,
    table: Arc<Table>,
    ready: mpsc::Sender<(Conn, ConnInfo)>,
) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match table.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Closed at once: a refused client holds nothing.
                drop(stream);
                table.count(refusal);
                if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                    last_warning = Some(tokio::time::Instant::now());
                    let (cap, limit) = match refusal {
                        Refusal::Overall => ("connections", table.limits.max_connections),
                        Refusal::PerAddress => ("connections per address", table.limits.max_per_address),
                        Refusal::Descriptors => {
                            ("file descriptors for clients", CLIENT_DESCRIPTORS_ALLOWED.load(Ordering::Relaxed))
                        }
                    };
                    tracing::warn!(%remote, cap, limit, "refusing connections: a cap is reached (counted in peyvand_connections_refused_total)");
                }
                continue;
            }
        };
        let tls = tls.clone();
        let ready = ready.clone();
        let stats = table.stats.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, classify(stream, remote, &tls, plain)).await {
                Ok(Ok((io, info))) => {
                    let _ = ready.send((Conn { io, _slot: slot }, info)).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "connection dropped before it began"),
                Err(_) => {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "connection dropped: no handshake in time");
                }
            }
        });
    }
}

async fn classify(stream: TcpStream, remote: SocketAddr, tls: &TlsSlot, plain: bool) -> io::Result<(Io, ConnInfo)> {
    // Updates are small frames that must leave at once, not wait for the previous one's ACK.
    stream.set_nodelay(true)?;
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a byte"));
    }
    if first[0] != TLS_HANDSHAKE {
        if !plain {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on an HTTPS-only port"));
        }
        return Ok((Io::Plain(stream), ConnInfo { remote, peer_certificates: None }));
    }
    let Some(config) = tls.current() else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS is not configured on this server"));
    };
    let stream = TlsAcceptor::from(config).accept(stream).await?;
    let certificates = stream.get_ref().1.peer_certificates().map(|chain| Arc::new(chain.to_vec()));
    Ok((Io::Tls(Box::new(stream)), ConnInfo { remote, peer_certificates: certificates }))
}

impl Listener for DualListener {
    type Io = Conn;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo { remote: self.local, peer_certificates: None })
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
