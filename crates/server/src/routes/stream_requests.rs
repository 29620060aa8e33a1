//! Requests a client sends on its update stream (`ClientFrame`s): each runs as a task of its
//! own and is answered on the stream by a `sent` or `error` frame that repeats its `request`.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use peyvand_api::{ApiError, ClientFrame, ErrorCode, StreamFrame};
use peyvand_service::{Service, Session};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Requests one connection may have in flight; past that the server stops reading the socket
/// until one is answered, so a fast sender is slowed by TCP instead of queued here.
pub(super) const MAX_IN_FLIGHT: usize = 64;

/// What a finished request's task returns: which of ours it was, its chat, and the answer.
type Finished = (u64, i64, StreamFrame);

/// The requests of one connection. A send to a chat begins once the previous send to it is
/// placed in the chat's order (on the embedded store, once its write has run; its commit may
/// still be to come) or over, so they are stored in the order the client sent them on this
/// connection (a failed send does not hold back the next); sends to different chats run side
/// by side.
#[derive(Default)]
pub(super) struct Requests {
    running: FuturesUnordered<JoinHandle<Finished>>,
    /// Per chat, the newest send still running and how the next one waits for it.
    last_in_chat: HashMap<i64, (u64, oneshot::Receiver<()>)>,
    started: u64,
    /// Set when the connection is gone: sends that have not begun by then do not begin.
    closed: Arc<AtomicBool>,
}

impl Drop for Requests {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl Requests {
    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// Reads and starts a client frame. A frame that cannot be read is refused at once with
    /// its `request` number, when it has one, and the error for the `error` frame.
    pub(super) fn start(
        &mut self,
        service: &Service,
        session: Session,
        text: &str,
    ) -> Result<(), (Option<u64>, ApiError)> {
        let frame: ClientFrame = serde_json::from_str(text).map_err(|e| {
            (request_number(text), ApiError::new(ErrorCode::BadRequest, format!("not a client frame: {e}")))
        })?;
        let ClientFrame::Send { request, chat_id, message } = frame;
        self.started += 1;
        let ours = self.started;
        let (done, next_waits) = oneshot::channel();
        let previous = self.last_in_chat.insert(chat_id, (ours, next_waits)).map(|(_, waits)| waits);
        // The next send to the chat may begin once this one is placed in the chat's order (on
        // the embedded store: its write has run, before the commit), or else once it is over.
        let done = Arc::new(Mutex::new(Some(done)));
        let release = move || {
            if let Some(done) = done.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let _ = done.send(());
            }
        };
        let service = service.clone();
        let closed = self.closed.clone();
        // A task of its own: a send that has begun finishes everything after storing (live
        // push, the interconnect's queue) even if the socket closes meanwhile. One not yet
        // begun is dropped with the connection; the client retries with the same client_id.
        self.running.push(tokio::spawn(async move {
            if let Some(previous) = previous {
                // Sent (or dropped) when the earlier send is placed or over, whatever its outcome.
                let _ = previous.await;
            }
            let answer = if closed.load(Ordering::Relaxed) {
                StreamFrame::Error {
                    request: Some(request),
                    error: ApiError::new(ErrorCode::Unavailable, "the stream closed"),
                }
            } else {
                let placed = release.clone();
                match AssertUnwindSafe(service.send_placed(session, chat_id, message, Box::new(placed)))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok((message, created))) => StreamFrame::Sent { request, created, message },
                    Ok(Err(error)) => StreamFrame::Error { request: Some(request), error },
                    Err(_) => {
                        tracing::error!(request, chat_id, "a send on an update stream panicked");
                        StreamFrame::Error {
                            request: Some(request),
                            error: ApiError::new(ErrorCode::Internal, "internal error"),
                        }
                    }
                }
            };
            release();
            (ours, chat_id, answer)
        }));
        Ok(())
    }

    /// The next answer; pending forever while nothing runs (for `select!`).
    pub(super) async fn next(&mut self) -> StreamFrame {
        let Some(finished) = self.running.next().await else { return std::future::pending().await };
        match finished {
            Ok((ours, chat_id, answer)) => {
                if self.last_in_chat.get(&chat_id).is_some_and(|(newest, _)| *newest == ours) {
                    self.last_in_chat.remove(&chat_id);
                }
                answer
            }
            // Panics are caught inside the task; this is a task cancelled at shutdown.
            Err(_) => StreamFrame::Error { request: None, error: ApiError::new(ErrorCode::Internal, "internal error") },
        }
    }
}

/// The `request` number of a frame that could not be read whole, when it has one, so that the
/// client can match the refusal to what it sent.
pub(super) fn request_number(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Numbered {
        request: u64,
    }
    serde_json::from_str::<Numbered>(text).ok().map(|n| n.request)
}
