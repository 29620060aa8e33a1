//! Update-stream WebSockets: connecting from a chosen loopback source address, and reading
//! just enough of each frame to know what it is.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type Socket = WebSocketStream<TcpStream>;

/// Connections per source address, each on its own port.
const PER_SOURCE: usize = 20_000;
const FIRST_PORT: u16 = 20_000;

/// The loopback source address and port of the `i`th connection: 127.0.0.2 and up (all of
/// 127.0.0.0/8 is local on Linux), 20,000 ports each. The bench picks the port itself because
/// the kernel's search for a free port on `bind(addr, 0)` grows with the ports in use and, at
/// tens of thousands of connections, costs more CPU than everything else in the bench.
pub fn source(i: usize) -> SocketAddr {
    let address = Ipv4Addr::new(127, 0, 0, 2 + ((i / PER_SOURCE) % 250) as u8);
    SocketAddr::new(IpAddr::V4(address), FIRST_PORT + (i % PER_SOURCE) as u16)
}

fn bound_socket(source: SocketAddr) -> anyhow::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    // A port left in TIME_WAIT by an earlier run may be bound again.
    socket.set_reuseaddr(true)?;
    if socket.bind(source).is_ok() {
        return Ok(socket);
    }
    // Taken by something else: let the kernel choose on the same address.
    let socket = TcpSocket::new_v4()?;
    let any_port = SocketAddr::new(source.ip(), 0);
    socket.bind(any_port).with_context(|| format!("cannot bind to {any_port}"))?;
    Ok(socket)
}

/// Opens the update stream of the session `token`, from `source`.
pub async fn connect(server: SocketAddr, source: SocketAddr, token: &str) -> anyhow::Result<Socket> {
    let socket = bound_socket(source)?;
    let stream = socket.connect(server).await.with_context(|| format!("cannot connect from {source} to {server}"))?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{server}/v1/updates/ws").into_client_request()?;
    request.headers_mut().insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}"))?);
    // tungstenite reserves 128 KiB per connection for reading by default; at 100,000
    // connections that alone would be 12 GiB on the generator's side.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// Reads until the server says the stream is live, skipping any backlog.
pub async fn wait_ready(socket: &mut Socket, timeout: Duration) -> anyhow::Result<()> {
    let wait = async {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message?
                && let Seen::Ready = classify(&text)
            {
                return Ok(());
            }
        }
        bail!("the server closed the stream before it was ready")
    };
    tokio::time::timeout(timeout, wait).await.context("no ready frame in time")?
}

/// What a frame is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    Ready,
    Message {
        sender_id: i64,
        client_id: Cow<'a, str>,
    },
    /// The answer to a send made on the stream: `request` is the message's index.
    Sent {
        request: u64,
        created: bool,
    },
    Refused {
        request: Option<u64>,
        code: Cow<'a, str>,
    },
    Other,
}

// The bench shares the CPU with the server, so frames are decoded into these few fields
// (borrowing the strings) rather than into the API's full `StreamFrame`.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    frame: Cow<'a, str>,
    #[serde(default, borrow)]
    update: Option<FrameUpdate<'a>>,
    #[serde(default)]
    request: Option<u64>,
    #[serde(default)]
    created: bool,
    #[serde(default, borrow)]
    error: Option<FrameError<'a>>,
}

#[derive(Deserialize)]
struct FrameError<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

#[derive(Deserialize)]
struct FrameUpdate<'a> {
    #[serde(borrow)]
    event: FrameEvent<'a>,
}

#[derive(Deserialize)]
struct FrameEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<FrameMessage<'a>>,
}

#[derive(Deserialize)]
struct FrameMessage<'a> {
    sender_id: i64,
    #[serde(borrow)]
    client_id: Cow<'a, str>,
}

pub fn classify(text: &str) -> Seen<'_> {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else { return Seen::Other };
    match (frame.frame.as_ref(), frame.update) {
        ("ready", _) => Seen::Ready,
        ("sent", _) => match frame.request {
            Some(request) => Seen::Sent { request, created: frame.created },
            None => Seen::Other,
        },
        ("error", _) => {
            Seen::Refused { request: frame.request, code: frame.error.map_or(Cow::Borrowed("unknown"), |e| e.code) }
        }
        ("update", Some(FrameUpdate { event: FrameEvent { kind, message: Some(m) } })) if kind == "message_new" => {
            Seen::Message { sender_id: m.sender_id, client_id: m.client_id }
        }
        _ => Seen::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peyvand_api::{Content, Event, Message as ApiMessage, StreamFrame, Update};

    #[test]
    fn frames_as_the_server_writes_them() {
        let ready = serde_json::to_string(&StreamFrame::Ready { cursor: 7 }).expect("serialises");
        assert_eq!(classify(&ready), Seen::Ready);
        let message = ApiMessage {
            chat_id: 3,
            seq: 9,
            sender_id: 42,
            sender_address: None,
            client_id: "b123".into(),
            content: Content::Text { text: "bench \"quoted\" 123".into() },
            reply_to: None,
            forwarded_from: None,
            sent_at: 1,
            edited_at: None,
            reactions: Vec::new(),
            delivery: None,
        };
        let update = Update { cursor: Some(10), at: 1, event: Event::MessageNew { message: message.clone() } };
        let frame = serde_json::to_string(&StreamFrame::Update { update }).expect("serialises");
        assert_eq!(classify(&frame), Seen::Message { sender_id: 42, client_id: Cow::Borrowed("b123") });
        let typing = Update { cursor: None, at: 1, event: Event::Typing { chat_id: 3, user_id: 42 } };
        let frame = serde_json::to_string(&StreamFrame::Update { update: typing }).expect("serialises");
        assert_eq!(classify(&frame), Seen::Other);
        assert_eq!(classify("not json"), Seen::Other);
        let sent = StreamFrame::Sent { request: 12, created: true, message };
        let sent = serde_json::to_string(&sent).expect("serialises");
        assert_eq!(classify(&sent), Seen::Sent { request: 12, created: true });
        let error = peyvand_api::ApiError::new(peyvand_api::ErrorCode::RateLimited, "slow down");
        let refused = serde_json::to_string(&StreamFrame::Error { request: Some(13), error }).expect("serialises");
        assert_eq!(classify(&refused), Seen::Refused { request: Some(13), code: Cow::Borrowed("rate_limited") });
    }

    #[test]
    fn every_connection_has_its_own_source() {
        assert_eq!(source(5), "127.0.0.2:20005".parse().expect("address"));
        assert_eq!(source(20_000), "127.0.0.3:20000".parse().expect("address"));
        let all: std::collections::HashSet<SocketAddr> = (0..100_000).map(source).collect();
        assert_eq!(all.len(), 100_000);
        assert_eq!(all.iter().map(SocketAddr::ip).collect::<std::collections::HashSet<_>>().len(), 5);
    }
}
