//! Following the update stream across disconnects: reconnect with backoff and resume from the
//! last cursor seen, so that no durable update is lost or seen twice.

use std::time::Duration;

use peyvand_api::{ErrorCode, StreamFrame, Update};

use crate::{Client, ClientError, UpdateStream};

/// What an [`UpdateFollower`] reports.
#[derive(Debug)]
pub enum FollowEvent {
    /// The backlog has been delivered and the stream is live; `cursor` is what the server's
    /// `ready` frame said.
    Connected { cursor: i64 },
    /// An update. Durable ones (with a cursor) come in cursor order, each exactly once;
    /// ephemeral ones (typing, presence) come only while connected.
    Update(Update),
    /// The server no longer has the updates after the cursor: the caller should fetch its
    /// chats again. Following carries on from `cursor`.
    ResyncRequired { cursor: i64 },
    /// The connection failed or dropped; the next call waits `retry_in` and reconnects.
    Disconnected { error: ClientError, retry_in: Duration },
}

/// Exponential backoff with jitter between reconnects: each wait is drawn between half and all
/// of the current step, which doubles up to the cap. The default starts at 100 ms and caps at
/// one second, so a follower is back within about a second of the server, and many followers
/// cut off together spread their returns over that second.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, current: initial }
    }

    /// The wait before the next attempt; each call doubles the following one, up to the max.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        step.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// Back to the initial wait, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// Follows a person's update stream over WebSocket for as long as it is polled.
#[derive(Debug)]
pub struct UpdateFollower {
    client: Client,
    cursor: i64,
    stream: Option<UpdateStream>,
    backoff: Backoff,
    wait: Option<Duration>,
    idle_timeout: Duration,
}

impl Client {
    /// Follows the update stream from the cursor `after`, reconnecting as needed.
    pub fn follow_updates(&self, after: i64) -> UpdateFollower {
        UpdateFollower {
            client: self.clone(),
            cursor: after,
            stream: None,
            backoff: Backoff::default(),
            wait: None,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl UpdateFollower {
    /// The cursor of the last durable update delivered (or the starting cursor): where a
    /// later follower should resume.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Uses another backoff between reconnects.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long the stream may stay silent (no frame, no ping) before the connection is taken
    /// for dead and replaced; it should be longer than the server's ping interval.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The next event. Fails only with an error that reconnecting cannot fix (the session was
    /// revoked, say); calling again after that tries again.
    pub async fn next(&mut self) -> Result<FollowEvent, ClientError> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    if let Some(wait) = self.wait.take() {
                        tokio::time::sleep(wait).await;
                    }
                    match self.client.updates_ws(self.cursor).await {
                        Ok(stream) => self.stream.insert(stream),
                        Err(error) if error.code() == Some(ErrorCode::ResyncRequired) => return self.resync().await,
                        Err(error) => return self.disconnected(error),
                    }
                }
            };
            let frame = match tokio::time::timeout(self.idle_timeout, stream.next()).await {
                Ok(Some(Ok(frame))) => {
                    // The server sends the backlog before `ready`: any frame is progress.
                    self.backoff.reset();
                    frame
                }
                Ok(Some(Err(error))) => return self.disconnected(error),
                Ok(None) => return self.disconnected(ClientError::Closed),
                Err(_) => return self.disconnected(ClientError::Timeout(self.idle_timeout)),
            };
            match frame {
                // Ours moves only with updates actually handed out, so that a disconnect
                // between `ready` and an update can never skip one.
                StreamFrame::Ready { cursor } => return Ok(FollowEvent::Connected { cursor }),
                StreamFrame::Update { update } => match update.cursor {
                    // Seen before the last reconnect.
                    Some(cursor) if cursor <= self.cursor => continue,
                    Some(cursor) => {
                        self.cursor = cursor;
                        return Ok(FollowEvent::Update(update));
                    }
                    None => return Ok(FollowEvent::Update(update)),
                },
                // Answers to requests, which a follower never sends.
                StreamFrame::Sent { .. } | StreamFrame::Error { .. } => continue,
                StreamFrame::ResyncRequired { cursor } => {
                    // Reconnect at once from the new cursor, whether or not the server keeps
                    // this connection open.
                    self.cursor = cursor;
                    self.stream = None;
                    return Ok(FollowEvent::ResyncRequired { cursor });
                }
            }
        }
    }

    /// The server refused the cursor before the stream opened, so the frame that would carry
    /// the new cursor never came: ask for the latest one instead.
    async fn resync(&mut self) -> Result<FollowEvent, ClientError> {
        match self.client.state().await {
            Ok(state) => {
                self.cursor = state.cursor;
                Ok(FollowEvent::ResyncRequired { cursor: state.cursor })
            }
            Err(error) => self.disconnected(error),
        }
    }

    fn disconnected(&mut self, error: ClientError) -> Result<FollowEvent, ClientError> {
        self.stream = None;
        if !error.is_retryable() {
            return Err(error);
        }
        let retry_in = self.backoff.next_delay().max(error.retry_after().unwrap_or_default());
        self.wait = Some(retry_in);
        Ok(FollowEvent::Disconnected { error, retry_in })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt;
    use peyvand_api::Event;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    fn update(cursor: Option<i64>) -> StreamFrame {
        let event = match cursor {
            Some(up_to) => Event::Delivered { chat_id: 1, user_id: 2, up_to },
            None => Event::Typing { chat_id: 1, user_id: 2 },
        };
        StreamFrame::Update { update: Update { cursor, at: 0, event } }
    }

    /// Accepts one connection, checks the cursor it resumes from, sends the frames and closes.
    async fn serve_once(listener: &TcpListener, expect_after: i64, frames: Vec<StreamFrame>) {
        let (tcp, _) = listener.accept().await.expect("accepts");
        let mut query = None;
        // The callback's type is tungstenite's, large error variant included.
        #[allow(clippy::result_large_err)]
        let callback = |request: &Request, response: Response| {
            query = request.uri().query().map(str::to_owned);
            Ok(response)
        };
        let mut socket = tokio_tungstenite::accept_hdr_async(tcp, callback).await.expect("handshake");
        assert_eq!(query.as_deref(), Some(format!("after={expect_after}").as_str()));
        for frame in frames {
            let text = serde_json::to_string(&frame).expect("serialises");
            socket.send(WsMessage::text(text)).await.expect("sends");
        }
        socket.close(None).await.expect("closes");
    }

    #[tokio::test]
    async fn resumes_after_the_last_durable_cursor_without_duplicates() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("has an address");
        let server = tokio::spawn(async move {
            let first = vec![StreamFrame::Ready { cursor: 0 }, update(Some(1)), update(None), update(Some(2))];
            serve_once(&listener, 0, first).await;
            let second = vec![StreamFrame::Ready { cursor: 2 }, update(Some(2)), update(Some(3))];
            serve_once(&listener, 2, second).await;
        });
        let client = Client::new(&format!("http://{address}")).expect("valid url").with_token("t");
        let mut follower =
            client.follow_updates(0).with_backoff(Backoff::new(Duration::from_millis(1), Duration::from_millis(5)));
        let mut seen = Vec::new();
        while seen.len() < 7 {
            let event = tokio::time::timeout(Duration::from_secs(10), follower.next())
                .await
                .expect("an event in time")
                .expect("no fatal error");
            seen.push(match event {
                FollowEvent::Connected { cursor } => format!("ready {cursor}"),
                FollowEvent::Update(update) => format!("update {:?}", update.cursor),
                FollowEvent::Disconnected { .. } => "disconnected".to_owned(),
                FollowEvent::ResyncRequired { cursor } => format!("resync {cursor}"),
            });
        }
        let expected =
            ["ready 0", "update Some(1)", "update None", "update Some(2)", "disconnected", "ready 2", "update Some(3)"];
        assert_eq!(seen, expected);
        assert_eq!(follower.cursor(), 3);
        server.await.expect("the fake server ran");
    }

    #[test]
    fn backoff_grows_to_its_max_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(350));
        let first = backoff.next_delay();
        assert!(first >= ms(50) && first <= ms(100), "{first:?}");
        let second = backoff.next_delay();
        assert!(second >= ms(100) && second <= ms(200), "{second:?}");
        for _ in 0..20 {
            let capped = backoff.next_delay();
            assert!(capped >= ms(175) && capped <= ms(350), "{capped:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= ms(100));
    }

    #[test]
    fn the_default_reconnects_within_a_second() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)), "{waits:?}");
        // Jittered: a crowd of followers does not come back in step.
        assert!(waits[10..].windows(2).any(|w| w[0] != w[1]), "{waits:?}");
    }
}
