//! The update stream over one WebSocket connection: `GET /v1/updates/ws`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peyvand_api::{ClientFrame, SendMessage, StreamFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Client, ClientError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One live WebSocket connection to the update stream. Ends at the first disconnect: use
/// [`crate::UpdateFollower`] to carry on across disconnects.
#[derive(Debug)]
pub struct UpdateStream {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens the update stream, resuming after the cursor `after` (0: from the start). The
    /// first frame is `ready`, or `resync_required` when the cursor is too old.
    pub async fn updates_ws(&self, after: i64) -> Result<UpdateStream, ClientError> {
        let mut url = self.url("v1/updates/ws")?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: "cannot be a WebSocket URL".into(),
        })?;
        url.query_pairs_mut().append_pair("after", &after.to_string());
        let mut request = url.as_str().into_client_request()?;
        if let Some(token) = self.token() {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ClientError::InvalidToken)?;
            request.headers_mut().insert("authorization", value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let (socket, _response) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        Ok(UpdateStream { socket })
    }
}

impl UpdateStream {
    /// The next frame, or `None` once the server has closed the stream. Pings are answered
    /// while waiting.
    pub async fn next(&mut self) -> Option<Result<StreamFrame, ClientError>> {
        loop {
            let message = match self.socket.next().await? {
                Ok(message) => message,
                Err(error) => return Some(Err(error.into())),
            };
            let text = match message {
                WsMessage::Text(text) => text,
                WsMessage::Close(_) => return None,
                // Pongs are queued by tungstenite itself and flushed by the next read.
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                WsMessage::Binary(_) => {
                    return Some(Err(ClientError::Decode("a binary frame on the update stream".into())));
                }
            };
            return Some(serde_json::from_str(text.as_str()).map_err(|e| ClientError::Decode(e.to_string())));
        }
    }

    /// Sends a message over this connection instead of `POST /v1/chats/{chat_id}/messages`:
    /// one frame out, and its answer later among the frames [`Self::next`] returns, a
    /// [`StreamFrame::Sent`] or a [`StreamFrame::Error`] carrying `request`. Pick a different
    /// `request` for every send still unanswered.
    pub async fn send(&mut self, request: u64, chat_id: i64, message: SendMessage) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Send { request, chat_id, message }).await
    }

    /// Writes one client frame.
    pub async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text = serde_json::to_string(frame).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.send_raw(&text).await
    }

    /// Writes a raw text frame, as a client with a bug might.
    pub async fn send_raw(&mut self, text: &str) -> Result<(), ClientError> {
        self.socket.send(WsMessage::Text(text.into())).await.map_err(ClientError::from)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await.map_err(ClientError::from)
    }
}
