//! The NATS connection a node listens on. It carries the subscription of every person
//! connected to the node: one `SUB` each, with a numeric id, on the person's subject. So a
//! person's interest costs an entry in two maps, not a channel and a task of its own. async-nats
//! gives every subscription a channel whose first block holds 32 messages (~6 KB) before
//! anything is sent, which more than doubled the memory of an idle stream on a cluster node.
//! Publishing stays on async-nats, on a connection of its own.
//!
//! This speaks the NATS client protocol (`INFO`, `CONNECT`, `SUB`, `UNSUB`, `PING`/`PONG`,
//! `MSG`, `+OK`/`-ERR`), in plain text over TCP, without headers. A `PING` after each batch of
//! `SUB`s confirms them: NATS handles a connection's commands in order, so its `PONG` means the
//! server listens. The connection pings every `PING_EVERY` too, and one that leaves a `PING`
//! unanswered for two of those is taken as dead. On any loss it reconnects for ever, with
//! backoff, over the given addresses in turn. It subscribes everyone again, and once NATS
//! confirms that, it tells every local subscriber to read the store, since updates published
//! meanwhile were missed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::ServerAddr;
use peyvand_api::Update;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::LocalFanout;
use crate::nats::{Counters, subject};

/// How long connecting, and the server's answer to `CONNECT`, may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A liveness `PING` this often; a `PING` unanswered for two of these ends the connection.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Reconnection backoff: from the first to the last, doubling (with jitter).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(2);
/// A link that held this long starts its next reconnection from `BACKOFF_FIRST`.
const STEADY: Duration = Duration::from_secs(30);
/// While reconnecting fails, a warning this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Requests to listen are taken in batches of at most this many, confirmed by one `PING`.
const SUBSCRIBE_BATCH: usize = 1024;
/// The longest control line accepted (`MSG` with its subject, `INFO` with its JSON).
const MAX_CONTROL_LINE: usize = 64 * 1024;
/// The largest message accepted; NATS's own default maximum is 1 MiB.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// A request to listen for a person, answered once NATS confirms the subscription (or the
/// connection is lost first: the reconnection's resync then covers the person).
pub(crate) type Listen = (i64, oneshot::Sender<()>);

/// The `PING`s sent and not yet answered, in order, each with when it went out.
type Pings = VecDeque<(Instant, Pending)>;

/// What a `PONG` answers, in the order the `PING`s went out.
enum Pending {
    /// New subscriptions, and who waits for them.
    Subscribed(Vec<Listen>),
    /// Everyone subscribed again after a reconnection: local subscribers must read the store.
    Resubscribed,
    /// A liveness check.
    Alive,
}

/// A server frame; a message's reply subject (empty when it has none) and payload are where
/// they lie in the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Msg { sid: u64, reply: std::ops::Range<usize>, payload: std::ops::Range<usize> },
    Ping,
    Pong,
    Ok,
    Err(String),
    Info(String),
}

/// The first whole frame of `buf` and its length, or `None` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_CONTROL_LINE {
            return Err(format!("a control line longer than {MAX_CONTROL_LINE} bytes"));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| "a control line that is not UTF-8".to_owned())?;
    let after_line = end + 2;
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    let frame = if is("MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let mut words = rest.split_ascii_whitespace();
        let words: [Option<&str>; 5] = std::array::from_fn(|_| words.next());
        let (sid, reply, size) = match words {
            [Some(_), Some(sid), Some(size), None, None] => (sid, 0..0, size),
            [Some(_), Some(sid), Some(reply), Some(size), None] => {
                let start = reply.as_ptr() as usize - buf.as_ptr() as usize;
                (sid, start..start + reply.len(), size)
            }
            _ => return Err(format!("a malformed MSG line: {line:?}")),
        };
        let sid: u64 = sid.parse().map_err(|_| format!("a MSG with a bad subscription id: {line:?}"))?;
        let size: usize = size.parse().map_err(|_| format!("a MSG with a bad size: {line:?}"))?;
        if size > MAX_PAYLOAD {
            return Err(format!("a MSG of {size} bytes, over {MAX_PAYLOAD}"));
        }
        let total = after_line + size + 2;
        if buf.len() < total {
            return Ok(None);
        }
        if &buf[after_line + size..total] != b"\r\n" {
            return Err("a MSG whose payload does not end where its size says".into());
        }
        return Ok(Some((Frame::Msg { sid, reply, payload: after_line..after_line + size }, total)));
    } else if is("PING") {
        Frame::Ping
    } else if is("PONG") {
        Frame::Pong
    } else if is("+OK") {
        Frame::Ok
    } else if is("-ERR") {
        Frame::Err(rest.trim().trim_matches('\'').to_owned())
    } else if is("INFO") {
        Frame::Info(rest.to_owned())
    } else {
        return Err(format!("an unknown frame: {line:?}"));
    };
    Ok(Some((frame, after_line)))
}

/// One live connection: its halves and what has been read but not yet parsed.
struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to `addr` and introduces this node, waiting for the server to accept it.
    async fn open(addr: &ServerAddr, credentials: &Credentials) -> Result<Self, String> {
        if addr.scheme() != "nats" {
            return Err(format!("the bus listens over nats:// only, not {}://", addr.scheme()));
        }
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect((addr.host(), addr.port())))
            .await
            .map_err(|_| format!("no connection within {HANDSHAKE_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (reader, writer) = stream.into_split();
        let mut conn = Self { reader, writer, buf: Vec::with_capacity(16 * 1024) };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.handshake(credentials))
            .await
            .map_err(|_| format!("no INFO, or no answer to CONNECT, within {HANDSHAKE_TIMEOUT:?}"))?
            .map(|()| conn)
    }

    async fn handshake(&mut self, credentials: &Credentials) -> Result<(), String> {
        let info = loop {
            match self.next_frame().await? {
                Frame::Info(json) => break json,
                Frame::Ping => self.send("PONG\r\n").await?,
                other => return Err(format!("the server began with {other:?}, not INFO")),
            }
        };
        let info: serde_json::Value = serde_json::from_str(&info).map_err(|e| format!("an unreadable INFO: {e}"))?;
        if info["tls_required"] == true {
            return Err("the NATS server requires TLS, which the bus's listener does not speak".into());
        }
        let mut connect = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "tls_required": false,
            "name": "peyvand-listener",
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
            "echo": false,
            "headers": false,
        });
        match credentials {
            Credentials::UserPassword(user, pass) => {
                connect["user"] = user.as_str().into();
                connect["pass"] = pass.as_str().into();
            }
            Credentials::Token(token) => connect["auth_token"] = token.as_str().into(),
            Credentials::None => {}
        }
        self.send(&format!("CONNECT {connect}\r\nPING\r\n")).await?;
        loop {
            match self.next_frame().await? {
                Frame::Pong => return Ok(()),
                Frame::Err(why) => return Err(format!("the server refused this node: {why}")),
                Frame::Ping => self.send("PONG\r\n").await?,
                Frame::Ok | Frame::Info(_) => {}
                Frame::Msg { .. } => return Err("a MSG before any SUB".into()),
            }
        }
    }

    /// Reads until a whole frame is buffered, and takes it (for the handshake, where frames
    /// come one at a time and carry no message).
    async fn next_frame(&mut self) -> Result<Frame, String> {
        loop {
            if let Some((frame, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    /// Reads what the server sent next into the buffer (cancel-safe: nothing read is lost
    /// when the read is dropped unfinished).
    async fn read_more(&mut self) -> Result<(), String> {
        match self.reader.read_buf(&mut self.buf).await {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes `text` whole. A server that takes none of it for two ping intervals is taken
    /// as gone: a half-open connection would otherwise hold the listener until the kernel
    /// gives up on it.
    async fn send(&mut self, text: &str) -> Result<(), String> {
        match tokio::time::timeout(2 * PING_EVERY, self.writer.write_all(text.as_bytes())).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("the server took nothing for {:?}", 2 * PING_EVERY)),
        }
    }
}

/// Who this node listens for, by person and by subscription id; kept across reconnections.
#[derive(Default)]
struct Interest {
    by_person: HashMap<i64, u64>,
    by_sid: HashMap<u64, i64>,
    last_sid: u64,
}

impl Interest {
    /// Listens for the person (again, if already): their subscription id.
    fn add(&mut self, user_id: i64) -> u64 {
        if let Some(&sid) = self.by_person.get(&user_id) {
            return sid;
        }
        self.last_sid += 1;
        self.by_person.insert(user_id, self.last_sid);
        self.by_sid.insert(self.last_sid, user_id);
        self.last_sid
    }

    /// Stops listening for the person: the subscription id they had.
    fn remove(&mut self, user_id: i64) -> Option<u64> {
        let sid = self.by_person.remove(&user_id)?;
        self.by_sid.remove(&sid);
        Some(sid)
    }
}

/// Appends the `SUB` of a person's subject.
fn sub_line(out: &mut String, prefix: &str, user_id: i64, sid: u64) {
    use std::fmt::Write;
    let _ = write!(out, "SUB {} {sid}\r\n", subject(prefix, user_id));
}

/// `wait`, give or take a quarter, so that the nodes of a cluster do not all come back to
/// NATS in the same instant after an outage.
fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    // 0.75 to 1.25 of `wait`, from the clock's nanoseconds (good enough to spread nodes).
    wait.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

/// How people's NATS connections prove who they are, from the bus URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    None,
    UserPassword(String, String),
    Token(String),
}

/// Why a session ended.
enum End {
    /// The connection was lost (the reason is logged).
    Lost(String),
    /// The bus was dropped: nothing more to listen for.
    Shutdown,
}

/// The listener's side of the bus: the link's state, for health reports.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) connected: Arc<AtomicBool>,
}

/// What a node's listener works with.
pub(crate) struct Setup {
    pub(crate) addrs: Vec<ServerAddr>,
    pub(crate) credentials: Credentials,
    pub(crate) prefix: String,
    /// The reply subject this node's publications carry, to know them when they come back.
    pub(crate) node_tag: String,
    pub(crate) fanout: Arc<LocalFanout>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) listen: mpsc::Receiver<Listen>,
    /// People whose last local subscriber left (the fanout's idle hook).
    pub(crate) idle: mpsc::UnboundedReceiver<i64>,
}

impl Listener {
    /// Connects to the first of the addresses that answers, and listens from then on. Fails
    /// when none does now: a node does not start without its bus.
    pub(crate) async fn start(setup: Setup) -> Result<Self, String> {
        let mut failures = Vec::new();
        let mut first = None;
        for addr in &setup.addrs {
            match Connection::open(addr, &setup.credentials).await {
                Ok(conn) => {
                    first = Some(conn);
                    break;
                }
                Err(why) => failures.push(format!("{}:{}: {why}", addr.host(), addr.port())),
            }
        }
        let conn = first.ok_or_else(|| failures.join("; "))?;
        let connected = Arc::new(AtomicBool::new(true));
        let mut run = Run { setup, interest: Interest::default(), connected: connected.clone() };
        tokio::spawn(async move { run.forever(conn).await });
        Ok(Self { connected })
    }
}

struct Run {
    setup: Setup,
    interest: Interest,
    connected: Arc<AtomicBool>,
}

impl Run {
    async fn forever(&mut self, first: Connection) {
        let mut conn = first;
        let mut next_addr = 0;
        let mut backoff = BACKOFF_FIRST;
        loop {
            let began = Instant::now();
            match self.session(&mut conn).await {
                End::Shutdown => return,
                End::Lost(why) => {
                    self.connected.store(false, Ordering::SeqCst);
                    tracing::warn!(reason = %why, "NATS listener link lost; reconnecting");
                }
            }
            // A link that held a while starts its reconnection afresh; one that keeps dropping
            // at once backs off further.
            if began.elapsed() >= STEADY {
                backoff = BACKOFF_FIRST;
            }
            let mut last_warning: Option<Instant> = None;
            conn = loop {
                let addr = &self.setup.addrs[next_addr % self.setup.addrs.len()];
                next_addr += 1;
                match Connection::open(addr, &self.setup.credentials).await {
                    Ok(conn) => break conn,
                    // The first failure of an outage, then one a minute: an outage, a refused
                    // password or a server turned TLS-only all show in the log.
                    Err(why) if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) => {
                        last_warning = Some(Instant::now());
                        tracing::warn!(reason = %why, "NATS listener cannot reconnect yet");
                    }
                    Err(why) => tracing::debug!(reason = %why, "NATS listener cannot reconnect yet"),
                }
                if !self.wait_offline(jittered(backoff)).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_LAST);
            };
            self.setup.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            self.connected.store(true, Ordering::SeqCst);
            tracing::info!("NATS listener link is back; streams re-read the store once it listens again");
        }
    }

    /// Waits `wait` while the link is down, keeping track of who to listen for: a person
    /// who comes is subscribed with everyone on the next connection (whose resync covers
    /// what they miss until then), so they are answered at once; a person who leaves is
    /// forgotten. False when the bus was dropped.
    async fn wait_offline(&mut self, wait: Duration) -> bool {
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return true,
                request = self.setup.listen.recv() => {
                    let Some((user_id, done)) = request else { return false };
                    if self.setup.fanout.has_subscribers(user_id) {
                        self.interest.add(user_id);
                    }
                    let _ = done.send(());
                }
                Some(user_id) = self.setup.idle.recv() => {
                    if !self.setup.fanout.has_subscribers(user_id) {
                        self.interest.remove(user_id);
                    }
                }
            }
        }
    }

    /// Serves one connection until it is lost or the bus is dropped. Subscribes everyone
    /// known first (nobody, on the first connection).
    async fn session(&mut self, conn: &mut Connection) -> End {
        let mut pending = Pings::new();
        let result = self.serve(conn, &mut pending).await;
        // What waited for a PONG that will not come: the subscriptions are kept, and made again
        // on the next connection, whose resync covers what they miss.
        for waiting in pending {
            if let (_, Pending::Subscribed(batch)) = waiting {
                for (_, done) in batch {
                    let _ = done.send(());
                }
            }
        }
        result
    }

    async fn serve(&mut self, conn: &mut Connection, pending: &mut Pings) -> End {
        if !self.interest.by_person.is_empty() {
            let mut subs = String::new();
            for (user_id, sid) in &self.interest.by_person {
                sub_line(&mut subs, &self.setup.prefix, *user_id, *sid);
            }
            subs.push_str("PING\r\n");
            if let Err(e) = conn.send(&subs).await {
                return End::Lost(e);
            }
            pending.push_back((Instant::now(), Pending::Resubscribed));
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            let step = tokio::select! {
                read = conn.read_more() => match read {
                    Ok(()) => self.take_frames(conn, pending).await,
                    Err(e) => Err(e),
                },
                first = self.setup.listen.recv() => match first {
                    Some(first) => self.listen(conn, pending, first).await,
                    None => return End::Shutdown,
                },
                Some(user_id) = self.setup.idle.recv() => self.forget(conn, user_id).await,
                _ = ping.tick() => {
                    if pending.front().is_some_and(|(sent, _)| sent.elapsed() >= 2 * PING_EVERY) {
                        Err(format!("a PING unanswered for {:?}", 2 * PING_EVERY))
                    } else {
                        pending.push_back((Instant::now(), Pending::Alive));
                        conn.send("PING\r\n").await
                    }
                }
            };
            if let Err(why) = step {
                return End::Lost(why);
            }
        }
    }

    /// Handles every whole frame in the buffer.
    async fn take_frames(&mut self, conn: &mut Connection, pending: &mut Pings) -> Result<(), String> {
        let mut used = 0;
        let mut pong_due = false;
        while let Some((frame, len)) = parse(&conn.buf[used..])? {
            match frame {
                Frame::Msg { sid, reply, payload } => {
                    // This node's own publications come back here (the publisher is another
                    // connection, so NATS's no-echo cannot hold them back); they were
                    // delivered locally already.
                    let from = &conn.buf[used + reply.start..used + reply.end];
                    if from != self.setup.node_tag.as_bytes() {
                        self.deliver(sid, &conn.buf[used + payload.start..used + payload.end]);
                    }
                }
                // One PONG answers however many PINGs came together: the server only wants to
                // hear from a live client within its ping interval.
                Frame::Ping => pong_due = true,
                Frame::Pong => match pending.pop_front().map(|(_, what)| what) {
                    Some(Pending::Subscribed(batch)) => {
                        for (user_id, done) in batch {
                            // A caller that stopped waiting (SUBSCRIBE_CONFIRM) went on without
                            // the subscription: what was published before it took effect is
                            // in the store.
                            if done.send(()).is_err() {
                                self.setup.fanout.resync(user_id);
                            }
                        }
                    }
                    Some(Pending::Resubscribed) => {
                        tracing::info!("NATS listener listens again; streams re-read the store");
                        self.setup.fanout.resync_all();
                    }
                    Some(Pending::Alive) | None => {}
                },
                Frame::Ok | Frame::Info(_) => {}
                Frame::Err(why) => {
                    // NATS closes the connection after the errors that end it; the others
                    // (such as a refused subject) are worth a log line.
                    tracing::warn!(error = %why, "NATS listener");
                }
            }
            used += len;
        }
        conn.buf.drain(..used);
        if pong_due { conn.send("PONG\r\n").await } else { Ok(()) }
    }

    fn deliver(&self, sid: u64, payload: &[u8]) {
        // A message for a subscription just dropped may still arrive: nobody to give it to.
        let Some(&user_id) = self.interest.by_sid.get(&sid) else { return };
        match serde_json::from_slice::<Update>(payload) {
            Ok(update) => self.setup.fanout.deliver(user_id, Arc::new(update)),
            Err(e) => {
                self.setup.counters.invalid_messages.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user_id, error = %e, "ignored an invalid update from NATS");
            }
        }
    }

    /// Subscribes the people of `first` and whatever else is queued (up to a batch), with one
    /// `PING` to confirm them all.
    async fn listen(&mut self, conn: &mut Connection, pending: &mut Pings, first: Listen) -> Result<(), String> {
        let mut batch = vec![first];
        while batch.len() < SUBSCRIBE_BATCH
            && let Ok(next) = self.setup.listen.try_recv()
        {
            batch.push(next);
        }
        let mut subs = String::new();
        for (user_id, _) in &batch {
            // Already listened for, or gone before this was handled (its idle report may have
            // come first): nothing to do.
            if self.interest.by_person.contains_key(user_id) || !self.setup.fanout.has_subscribers(*user_id) {
                continue;
            }
            let sid = self.interest.add(*user_id);
            sub_line(&mut subs, &self.setup.prefix, *user_id, sid);
        }
        subs.push_str("PING\r\n");
        pending.push_back((Instant::now(), Pending::Subscribed(batch)));
        conn.send(&subs).await
    }

    /// Stops listening for a person nobody here listens for any more.
    async fn forget(&mut self, conn: &mut Connection, user_id: i64) -> Result<(), String> {
        if self.setup.fanout.has_subscribers(user_id) {
            return Ok(());
        }
        let Some(sid) = self.interest.remove(user_id) else { return Ok(()) };
        conn.send(&format!("UNSUB {sid}\r\n")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(buf: &[u8]) -> Option<(Frame, usize)> {
        parse(buf).expect("valid")
    }

    #[test]
    fn frames_are_parsed_whole_or_not_at_all() {
        assert_eq!(parsed(b"PING\r\n"), Some((Frame::Ping, 6)));
        assert_eq!(parsed(b"PONG\r\nPING\r\n"), Some((Frame::Pong, 6)));
        assert_eq!(parsed(b"+OK\r\n"), Some((Frame::Ok, 5)));
        assert_eq!(
            parsed(b"-ERR 'Unknown Protocol Operation'\r\n").map(|f| f.0),
            Some(Frame::Err("Unknown Protocol Operation".into()))
        );
        assert_eq!(parsed(b"INFO {\"a\":1}\r\n").map(|f| f.0), Some(Frame::Info("{\"a\":1}".into())));
        assert_eq!(parsed(b"PIN"), None);
        assert_eq!(parsed(b""), None);

        let msg = b"MSG p.u.7 12 5\r\nhello\r\nPING\r\n";
        let (frame, used) = parsed(msg).expect("whole");
        assert_eq!(frame, Frame::Msg { sid: 12, reply: 0..0, payload: 16..21 });
        assert_eq!(&msg[16..21], b"hello");
        assert_eq!(parsed(&msg[used..]), Some((Frame::Ping, 6)));
        // With a reply subject, and split anywhere: incomplete until the last byte.
        let msg = b"MSG p.u.7 3 reply.to 2\r\nhi\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parsed(&msg[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parsed(msg), Some((Frame::Msg { sid: 3, reply: 12..20, payload: 24..26 }, msg.len())));
        assert_eq!(&msg[12..20], b"reply.to");
        // A payload holding CRLF is taken by its size, not by its line breaks.
        let msg = b"MSG s 1 4\r\n\r\n\r\n\r\n";
        assert_eq!(parsed(msg), Some((Frame::Msg { sid: 1, reply: 0..0, payload: 11..15 }, msg.len())));
    }

    #[test]
    fn broken_frames_are_errors() {
        for bad in [
            &b"MSG p.u.7 x 5\r\nhello\r\n"[..],
            b"MSG p.u.7 1 five\r\nhello\r\n",
            b"MSG p.u.7\r\n",
            b"MSG p.u.7 1 reply 3 more\r\nabc\r\n",
            b"MSG p.u.7 1 3\r\nhello\r\n",
            b"HMSG p.u.7 1 3 5\r\n",
            b"WHAT\r\n",
            b"MSG p 1 99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&vec![b'a'; MAX_CONTROL_LINE + 1]).is_err(), "an endless line");
    }

    /// A NATS server played by the test, one connection at a time.
    struct FakeNats {
        lines: tokio::io::Lines<tokio::io::BufReader<OwnedReadHalf>>,
        writer: OwnedWriteHalf,
    }

    const STEP: Duration = Duration::from_secs(10);

    impl FakeNats {
        /// Accepts the listener's next connection and answers its handshake.
        async fn accept(server: &tokio::net::TcpListener) -> Self {
            use tokio::io::AsyncBufReadExt;
            let (socket, _) =
                tokio::time::timeout(STEP, server.accept()).await.expect("a connection").expect("accepted");
            let (reader, writer) = socket.into_split();
            let mut fake = Self { lines: tokio::io::BufReader::new(reader).lines(), writer };
            fake.write("INFO {\"server_id\":\"fake\",\"max_payload\":1048576}\r\n").await;
            let connect = fake.line().await;
            assert!(connect.starts_with("CONNECT "), "{connect}");
            let connect: serde_json::Value = serde_json::from_str(&connect["CONNECT ".len()..]).expect("JSON");
            assert_eq!((connect["user"].as_str(), connect["pass"].as_str()), (Some("peyvand"), Some("p@ss")));
            assert_eq!(connect["echo"], false);
            assert_eq!(fake.line().await, "PING");
            fake.write("PONG\r\n").await;
            fake
        }

        async fn line(&mut self) -> String {
            tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .expect("a line in time")
                .expect("read")
                .expect("open")
        }

        async fn write(&mut self, text: &str) {
            self.writer.write_all(text.as_bytes()).await.expect("write");
        }

        async fn msg(&mut self, sid: u64, reply: &str, cursor: i64) {
            let update = Update {
                cursor: Some(cursor),
                at: cursor,
                event: peyvand_api::Event::Typing { chat_id: 1, user_id: 2 },
            };
            let payload = serde_json::to_string(&update).expect("JSON");
            self.write(&format!("MSG t.u.7 {sid} {reply} {}\r\n{payload}\r\n", payload.len())).await;
        }
    }

    async fn received(sub: &mut crate::Subscription) -> crate::Received {
        tokio::time::timeout(STEP, sub.recv()).await.expect("something in time").expect("open")
    }

    #[tokio::test]
    async fn subscribes_confirms_delivers_drops_its_own_and_resubscribes_after_a_loss() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: ServerAddr = format!("nats://{}", server.local_addr().expect("address")).parse().expect("address");
        let (idle_tx, idle) = mpsc::unbounded_channel();
        let fanout = Arc::new(LocalFanout::with_idle_hook(Some(idle_tx)));
        let counters = Arc::new(Counters::default());
        let (listen_tx, listen) = mpsc::channel(64);
        let setup = Setup {
            addrs: vec![addr],
            credentials: Credentials::UserPassword("peyvand".into(), "p@ss".into()),
            prefix: "t".into(),
            node_tag: "_INBOX.me".into(),
            fanout: fanout.clone(),
            counters: counters.clone(),
            listen,
            idle,
        };
        let starting = tokio::spawn(Listener::start(setup));
        let mut nats = FakeNats::accept(&server).await;
        let listener = starting.await.expect("joined").expect("started");
        assert!(listener.connected.load(Ordering::SeqCst));

        // A person comes: SUB, confirmed only by the PONG.
        let mut sub = fanout.subscribe(7);
        let (done, mut confirmed) = oneshot::channel();
        listen_tx.send((7, done)).await.expect("listening");
        assert_eq!(nats.line().await, "SUB t.u.7 1");
        assert_eq!(nats.line().await, "PING");
        assert!(confirmed.try_recv().is_err(), "not before the PONG");
        nats.write("PONG\r\n").await;
        tokio::time::timeout(STEP, confirmed).await.expect("in time").expect("confirmed");

        // Other nodes' updates are delivered; this node's own, marked by its inbox, are not.
        nats.msg(1, "_INBOX.other", 1).await;
        nats.msg(1, "_INBOX.me", 2).await;
        nats.msg(1, "_INBOX.other", 3).await;
        for cursor in [1, 3] {
            assert!(matches!(received(&mut sub).await, crate::Received::Update(u) if u.cursor == Some(cursor)));
        }

        // The server goes away; the listener comes back, subscribes again, and once that is
        // confirmed, every local subscriber reads the store.
        drop(nats);
        let mut nats = FakeNats::accept(&server).await;
        assert_eq!(nats.line().await, "SUB t.u.7 1");
        assert_eq!(nats.line().await, "PING");
        nats.write("PONG\r\n").await;
        assert!(matches!(received(&mut sub).await, crate::Received::Lagged));
        assert_eq!(counters.reconnects.load(Ordering::Relaxed), 1);
        assert!(listener.connected.load(Ordering::SeqCst));

        // The server's PINGs are answered; the last subscriber's leaving unsubscribes.
        nats.write("PING\r\n").await;
        assert_eq!(nats.line().await, "PONG");
        drop(sub);
        assert_eq!(nats.line().await, "UNSUB 1");
    }
}
