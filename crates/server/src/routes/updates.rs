//! The update stream: long poll, WebSocket, and the current cursor.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::{FutureExt, SinkExt};
use peyvand_api::{ApiError, ErrorBody, ErrorCode, Event, StreamFrame, SyncState, Update, UpdatesPage, UpdatesQuery};
use peyvand_service::{Session, UpdateFeed};

use super::stream_requests::{MAX_IN_FLIGHT, Requests, request_number};
use crate::AppState;
use crate::extract::{ApiResult, Authed, Failure, Json, Query, bearer};

/// The longest a long poll waits.
const MAX_POLL: Duration = Duration::from_secs(60);
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long a stream's sign-in is trusted before a client request checks it again, as long
/// as an HTTP request's cached session is: a device signed out on another node stops sending
/// within this even if its `signed_out` update was lost.
const SESSION_RECHECK: Duration = Duration::from_secs(5);
/// Small buffers: most connections are idle, and their count is what must scale. A larger
/// frame (a client's `send`) just takes more reads.
const WS_BUFFER: usize = 1024;
/// Frames queued on a stream are written out together once they pass this many bytes, or at
/// the flush after everything that was ready at once (an answer to a send and the sender's own
/// update of it, say): one write for several frames. Small for the same reason as `WS_BUFFER`:
/// the buffer keeps the capacity it grew to (this plus the largest frame).
const WS_WRITE_COALESCE: usize = 2048;
/// The most extra rounds (an answer and an update each) the pump takes before it flushes and
/// reads its client again.
const DRAIN_MAX: usize = 16;
/// How long the goodbye of a closing stream may wait for the client.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A client frame may carry a message as large as a request body, plus the frame's own
/// fields; a larger one (up to this) is refused with `payload_too_large`, beyond it the
/// connection is closed.
const WS_MAX_INCOMING: usize = crate::MAX_BODY_BYTES + 16 * 1024;

/// `GET /v1/state`: my newest cursor.
#[utoipa::path(get, path = "/v1/state", tag = "updates", security(("bearer" = [])), responses((status = 200, body = SyncState)))]
pub async fn sync_state(State(s): State<AppState>, Authed(session): Authed) -> ApiResult<Json<SyncState>> {
    Ok(Json(s.service.sync_state(session).await?))
}

/// `GET /v1/updates?after=&timeout=`: the update stream by long poll. A long poll is an
/// update stream while it waits: it counts against the account's and the device's caps.
#[utoipa::path(get, path = "/v1/updates", tag = "updates", security(("bearer" = [])), params(UpdatesQuery),
    responses((status = 200, body = UpdatesPage), (status = 410, description = "resync_required", body = ErrorBody),
               (status = 429, description = "too_many_streams", body = ErrorBody)))]
pub async fn poll_updates(
    State(s): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<UpdatesQuery>,
) -> ApiResult<Json<UpdatesPage>> {
    let _permit = s.streams.open(session)?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(25)).min(MAX_POLL);
    let after = q.after.unwrap_or(0).max(0);
    // A stopping server answers at once: nothing new, poll again (elsewhere).
    let (updates, cursor) = tokio::select! {
        polled = s.service.poll_updates(session, after, timeout) => polled?,
        () = s.going_away.wait() => (Vec::new(), after),
    };
    Ok(Json(UpdatesPage { updates, cursor }))
}

/// The session of a WebSocket request: the Authorization header, or `?token=` for browsers.
pub struct StreamAuth(Session);

impl FromRequestParts<AppState> for StreamAuth {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let from_query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")).map(str::to_owned));
        let token = bearer(parts).map(str::to_owned).or(from_query).unwrap_or_default();
        Ok(Self(state.service.authenticate(&token).await?))
    }
}

/// `GET /v1/updates/ws?after=`: the update stream over a WebSocket. The server sends
/// `StreamFrame`s as JSON text: the backlog after `after`, then `ready`, then live updates.
/// The client may send `ClientFrame`s (JSON text) on the same socket: each `send` is answered
/// by a `sent` or an `error` frame carrying its `request` number. An account and each of its
/// devices may hold a few streams open at once (`too_many_streams` past that, before the
/// upgrade). When the server stops, it answers the requests it began and closes the socket
/// with 1001 (going away): reconnect, to another node if there is one.
#[utoipa::path(get, path = "/v1/updates/ws", tag = "updates", security(("bearer" = [])), params(UpdatesQuery),
    responses((status = 101, description = "WebSocket of StreamFrame JSON text frames; the client may send ClientFrame JSON text frames", body = StreamFrame),
               (status = 401, body = ErrorBody),
               (status = 429, description = "too_many_streams", body = ErrorBody)))]
pub async fn updates_ws(
    State(s): State<AppState>,
    StreamAuth(session): StreamAuth,
    Query(q): Query<UpdatesQuery>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let permit = s.streams.open(session)?;
    let alive = s.going_away.alive();
    let after = q.after.unwrap_or(0).max(0);
    Ok(ws
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_WRITE_COALESCE)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(WS_MAX_INCOMING)
        .max_frame_size(WS_MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            stream(s, session, after, socket).await;
            drop((permit, alive));
        }))
}

/// Runs one write to the client, which fails when the client has not taken it within
/// `stream_write_timeout`. A client that stops reading would otherwise hold its pump (and the
/// feed, buffers and socket with it) for as long as it stays connected; disconnected, it
/// resumes from its cursor.
async fn timed_write(state: &AppState, write: impl Future<Output = Result<(), axum::Error>>) -> bool {
    match tokio::time::timeout(state.stream_write_timeout, write).await {
        Ok(result) => result.is_ok(),
        Err(_) => {
            state.metrics.websocket_write_timeouts.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Sends a frame now.
async fn send(socket: &mut WebSocket, state: &AppState, frame: &StreamFrame) -> bool {
    queue(socket, state, frame).await && timed_write(state, socket.flush()).await
}

/// Queues a frame for the next flush (written at once only past `WS_WRITE_COALESCE`).
async fn queue(socket: &mut WebSocket, state: &AppState, frame: &StreamFrame) -> bool {
    let Ok(text) = serde_json::to_string(frame) else { return false };
    state.metrics.websocket_frames_sent.fetch_add(1, Ordering::Relaxed);
    timed_write(state, socket.feed(WsMessage::Text(text.into()))).await
}

/// Says goodbye to the client, best effort: it may be gone already, or be the client that
/// stopped reading, so this waits at most `CLOSE_WAIT` and counts no timeout.
async fn close(socket: &mut WebSocket, state: &AppState) {
    let wait = CLOSE_WAIT.min(state.stream_write_timeout);
    let _ = tokio::time::timeout(wait, socket.send(WsMessage::Close(None))).await;
}

/// The goodbye of a stopping server: the requests the client already sent are answered,
/// then the socket closes with 1001 (going away), so that the client reconnects at once.
async fn go_away(socket: &mut WebSocket, state: &AppState, requests: &mut Requests) {
    let answered = async {
        while requests.len() > 0 {
            let answer = requests.next().await;
            if !queue(socket, state, &answer).await {
                return false;
            }
        }
        timed_write(state, socket.flush()).await
    };
    // Each write is bounded by the write timeout; the requests themselves by this.
    if !matches!(tokio::time::timeout(state.stream_write_timeout, answered).await, Ok(true)) {
        return;
    }
    let goodbye = CloseFrame { code: close_code::AWAY, reason: "the server is going away; reconnect".into() };
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(WsMessage::Close(Some(goodbye)))).await;
}

/// Whether the pump goes on after what the feed gave.
enum Flow {
    Go,
    Stop,
}

/// Queues what the feed gave: updates, then `ready` once the backlog is out. Closes the stream
/// when the device was signed out, the feed ended, or the client must re-sync.
async fn on_feed(
    socket: &mut WebSocket,
    state: &AppState,
    session: Session,
    feed: &UpdateFeed,
    announced: &mut bool,
    next: Result<Option<Vec<Update>>, ApiError>,
) -> Flow {
    match next {
        Ok(Some(updates)) => {
            let signed_out = updates.iter().any(|u| {
                matches!(u.event, Event::SignedOut { device_id } if device_id.is_none_or(|d| d == session.device_id))
            });
            for update in updates {
                if !queue(socket, state, &StreamFrame::Update { update }).await {
                    return Flow::Stop;
                }
            }
            if signed_out {
                close(socket, state).await;
                return Flow::Stop;
            }
            // The backlog is out: say once that the stream is live.
            if !*announced && feed.caught_up() {
                *announced = true;
                if !queue(socket, state, &StreamFrame::Ready { cursor: feed.cursor() }).await {
                    return Flow::Stop;
                }
            }
            Flow::Go
        }
        Ok(None) => Flow::Stop,
        Err(e) => {
            refuse(socket, state, session, e).await;
            Flow::Stop
        }
    }
}

async fn stream(state: AppState, session: Session, after: i64, mut socket: WebSocket) {
    let feed = match state.service.open_feed(session, after).await {
        Ok(feed) => feed,
        Err(e) => {
            refuse(&mut socket, &state, session, e).await;
            return;
        }
    };
    state.metrics.websockets_open.fetch_add(1, Ordering::Relaxed);
    let feed = pump(&state, session, feed, &mut socket).await;
    state.metrics.websockets_open.fetch_sub(1, Ordering::Relaxed);
    feed.close().await;
}

async fn refuse(socket: &mut WebSocket, state: &AppState, session: Session, e: ApiError) {
    if e.code == ErrorCode::ResyncRequired {
        let cursor = state.service.sync_state(session).await.map_or(0, |s| s.cursor);
        send(socket, state, &StreamFrame::ResyncRequired { cursor }).await;
    }
    close(socket, state).await;
}

/// Moves updates from the feed to the socket until either side ends, and answers the client's
/// requests. Every ping tick it also checks that the client answered since the last one (else
/// the connection is dead), that the device is still signed in (its `signed_out` update may
/// have been lost to lag), and that the store has nothing the feed missed on the bus.
async fn pump(state: &AppState, session: Session, mut feed: UpdateFeed, socket: &mut WebSocket) -> UpdateFeed {
    let mut announced = false;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut heard_since_ping = true;
    let mut requests = Requests::default();
    let mut session_checked = tokio::time::Instant::now();
    let mut going_away = state.going_away.watch();
    if state.going_away.begun() {
        go_away(socket, state, &mut requests).await;
        return feed;
    }
    loop {
        tokio::select! {
            () = crate::streams::until_set(&mut going_away) => {
                go_away(socket, state, &mut requests).await;
                return feed;
            },
            next = feed.next() => {
                if let Flow::Stop = on_feed(socket, state, session, &feed, &mut announced, next).await {
                    return feed;
                }
            },
            answer = requests.next() => {
                if !queue(socket, state, &answer).await {
                    return feed;
                }
            },
            incoming = socket.recv(), if requests.len() < MAX_IN_FLIGHT => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return feed,
                Some(Ok(WsMessage::Text(text))) => {
                    heard_since_ping = true;
                    state.metrics.websocket_frames_received.fetch_add(1, Ordering::Relaxed);
                    if session_checked.elapsed() >= SESSION_RECHECK {
                        if !state.service.device_signed_in(session).await {
                            let error = ApiError::new(ErrorCode::Unauthorized, "this device is signed out");
                            send(socket, state, &StreamFrame::Error { request: request_number(&text), error }).await;
                            close(socket, state).await;
                            return feed;
                        }
                        session_checked = tokio::time::Instant::now();
                    }
                    let started = if text.len() > crate::MAX_BODY_BYTES {
                        let limit = crate::MAX_BODY_BYTES / 1024;
                        Err((request_number(&text), ApiError::new(ErrorCode::PayloadTooLarge, format!("a client frame may have at most {limit} KiB"))))
                    } else {
                        requests.start(&state.service, session, text.as_str())
                    };
                    if let Err((request, error)) = started
                        && !queue(socket, state, &StreamFrame::Error { request, error }).await
                    {
                        return feed;
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    heard_since_ping = true;
                    let error = ApiError::new(ErrorCode::BadRequest, "client frames are JSON text");
                    if !queue(socket, state, &StreamFrame::Error { request: None, error }).await {
                        return feed;
                    }
                }
                Some(Ok(_)) => heard_since_ping = true,
            },
            _ = ping.tick() => {
                // While the client's requests fill every slot its frames (pongs too) are not
                // read: it is busy, not dead.
                let busy = requests.len() >= MAX_IN_FLIGHT;
                if (!heard_since_ping && !busy) || !state.service.device_signed_in(session).await {
                    close(socket, state).await;
                    return feed;
                }
                heard_since_ping = false;
                if !timed_write(state, socket.send(WsMessage::Ping(Vec::new().into()))).await {
                    return feed;
                }
                feed.recheck().await;
            }
        }
        // Whatever else is ready now goes out in the same write, up to a bound, so that a busy
        // stream still reads its client. The feed is asked only when it is live; should it find
        // that it must read the store, it says so at once and the next turn's call reads.
        for _ in 0..DRAIN_MAX {
            let mut more = false;
            if let Some(answer) = requests.next().now_or_never() {
                more = true;
                if !queue(socket, state, &answer).await {
                    return feed;
                }
            }
            if feed.caught_up()
                && let Some(next) = feed.next().now_or_never()
            {
                more = true;
                if let Flow::Stop = on_feed(socket, state, session, &feed, &mut announced, next).await {
                    return feed;
                }
            }
            if !more {
                break;
            }
        }
        if !timed_write(state, socket.flush()).await {
            return feed;
        }
    }
}
