//! [`DualListener`]: one TCP port that serves clients in plain HTTP and other providers in
//! HTTPS with mutual TLS. Each connection's first byte decides: a TLS handshake record (0x16)
//! is answered with TLS when a TLS configuration is installed, anything else is plain HTTP.
//! Handlers see which it was, and the peer's certificate chain, in [`ConnInfo`].
//!
//! Handshakes run in their own tasks, so a slow or silent connection never holds up others.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
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

/// A connection: plain or TLS.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// See the module's documentation.
#[derive(Debug)]
pub struct DualListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(Conn, ConnInfo)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for DualListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl DualListener {
    /// Serves `tcp`; TLS connections get the configuration in `tls` at the moment they arrive.
    pub fn new(tcp: TcpListener, tls: TlsSlot) -> io::Result<Self> {
        Self::start(tcp, tls, true)
    }

    /// Serves `tcp` in TLS only: a connection that does not open with a TLS handshake is
    /// closed (HTTPS-only services, such as a registry with its own certificate).
    pub fn tls_only(tcp: TcpListener, tls: TlsSlot) -> io::Result<Self> {
        Self::start(tcp, tls, false)
    }

    fn start(tcp: TcpListener, tls: TlsSlot, plain: bool) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, tls, plain, sender));
        Ok(Self { local, ready, acceptor })
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

async fn accept_loop(tcp: TcpListener, tls: TlsSlot, plain: bool, ready: mpsc::Sender<(Conn, ConnInfo)>) {
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
        let tls = tls.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, classify(stream, remote, &tls, plain)).await {
                Ok(Ok(conn)) => {
                    let _ = ready.send(conn).await;
                }
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "connection dropped before it began"),
                Err(_) => tracing::debug!(%remote, "connection dropped: no handshake in time"),
            }
        });
    }
}

async fn classify(stream: TcpStream, remote: SocketAddr, tls: &TlsSlot, plain: bool) -> io::Result<(Conn, ConnInfo)> {
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
        return Ok((Conn::Plain(stream), ConnInfo { remote, peer_certificates: None }));
    }
    let Some(config) = tls.current() else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS is not configured on this server"));
    };
    let stream = TlsAcceptor::from(config).accept(stream).await?;
    let certificates = stream.get_ref().1.peer_certificates().map(|chain| Arc::new(chain.to_vec()));
    Ok((Conn::Tls(Box::new(stream)), ConnInfo { remote, peer_certificates: certificates }))
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
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
