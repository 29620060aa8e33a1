//! The cluster bus on NATS: every node publishes each update on the person's subject,
//! `<prefix>.u.<user id>`, and listens on the subjects of the people connected to it, so
//! NATS routes an update only to the nodes that have someone to give it to. Publishing goes
//! through async-nats; listening through a connection of the node's own (`listener`), on
//! which a person's subscription costs a map entry rather than a channel.
//!
//! Core NATS delivers at most once and drops what is published while a link is down. That is
//! what the bus promises (the store is the record): when this node's link comes back, every
//! local subscriber is told it may have missed updates and reads the store from its cursor.
//! Both connections reconnect by themselves, with backoff, for ever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use async_trait::async_trait;
use futures_util::StreamExt;
use peyvand_api::Update;
use tokio::sync::{mpsc, oneshot};

use peyvand_core::url::redact_credentials;

use crate::listener::{Credentials, Listen, Listener, Setup};
use crate::{Bus, BusHealth, LocalFanout, Subscription};

/// How long a new subscription waits for NATS to confirm that it listens; past that the
/// subscription works anyway, and the reconnect's resync covers what it could miss.
const SUBSCRIBE_CONFIRM: Duration = Duration::from_secs(2);
/// Requests to listen for a person waiting for the listener, at most.
const LISTEN_QUEUE: usize = 4096;

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct NatsConnectError {
    url: String,
    reason: String,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Set once the first connection is made: a Connected event before that is not a return.
    started: AtomicBool,
    /// Whether the publishing connection is up (the listener keeps its own state).
    publisher_connected: AtomicBool,
    /// Returns of either connection (one NATS restart counts twice).
    pub(crate) reconnects: AtomicU64,
    publish_errors: AtomicU64,
    pub(crate) invalid_messages: AtomicU64,
    /// Publications dropped since the last resync notice: other nodes may have missed them.
    dropped: AtomicBool,
}

/// Updates waiting to be handed to NATS. Requests never wait for NATS: when this is full (NATS
/// is unreachable and async-nats has stopped taking commands) updates are dropped, and once
/// the link is back every node is told to re-read the store.
const PUBLISH_QUEUE: usize = 16_384;

/// Where every node hears that updates may have been dropped.
fn resync_subject(prefix: &str) -> String {
    format!("{prefix}.resync")
}

/// A node's bus in a cluster. Cheap to share; one per node.
#[derive(Debug)]
pub struct NatsBus {
    client: Client,
    fanout: Arc<LocalFanout>,
    prefix: String,
    listen: mpsc::Sender<Listen>,
    listener: Listener,
    publish: mpsc::Sender<(String, Vec<u8>)>,
    counters: Arc<Counters>,
}

impl NatsBus {
    /// Connects to NATS at `url` (`nats://[user:password@]host:port`, several separated by
    /// commas) and uses subjects under `prefix`, so several deployments can share a NATS.
    /// Fails when NATS cannot be reached now; once connected, it rides out outages.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, NatsConnectError> {
        let fail = |reason: String| NatsConnectError { url: redact_credentials(url), reason };
        if prefix.is_empty()
            || !prefix
                .split('.')
                .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(fail(format!("the subject prefix {prefix:?} must be dot-separated letters, digits, - or _")));
        }
        let counters = Arc::new(Counters::default());
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let fanout = Arc::new(LocalFanout::with_idle_hook(Some(idle_tx)));
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let events = {
            let (counters, fanout, reconnected) = (counters.clone(), fanout.clone(), reconnected.clone());
            move |event: async_nats::Event| {
                let (counters, fanout, reconnected) = (counters.clone(), fanout.clone(), reconnected.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            let returned = counters.started.load(Ordering::SeqCst);
                            if !counters.publisher_connected.swap(true, Ordering::SeqCst) && returned {
                                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                                // Local streams got this node's updates directly, and the
                                // listener has them re-read the store after its own outage;
                                // other nodes may have missed what could not be published.
                                tracing::info!("NATS publishing link is back");
                                reconnected.notify_one();
                            }
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            // NATS dropped messages for this node: whatever they were, the
                            // store has them.
                            tracing::warn!("NATS dropped messages for this node; streams re-read the store");
                            fanout.resync_all();
                        }
                        async_nats::Event::Disconnected => {
                            counters.publisher_connected.store(false, Ordering::SeqCst);
                            tracing::warn!("NATS publishing link lost; reconnecting");
                        }
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            }
        };
        let addrs: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|one| one.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("invalid address: {e}")))?;
        let credentials = credentials(&addrs).map_err(fail)?;
        let options = match &credentials {
            Credentials::None => ConnectOptions::new(),
            Credentials::UserPassword(user, pass) => ConnectOptions::with_user_and_password(user.clone(), pass.clone()),
            Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
        };
        let client = options
            .name("peyvand")
            .no_echo()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(events)
            .connect(addrs.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        counters.publisher_connected.store(true, Ordering::SeqCst);
        counters.started.store(true, Ordering::SeqCst);
        let (listen, listen_rx) = mpsc::channel(LISTEN_QUEUE);
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        // The reply subject of every publication names this node, whose listener then knows
        // its own publications when NATS brings them back.
        let node_tag = client.new_inbox();
        tokio::spawn(publisher(
            client.clone(),
            prefix.to_owned(),
            node_tag.clone().into(),
            counters.clone(),
            publish_rx,
            reconnected,
        ));
        let resync = client
            .subscribe(resync_subject(prefix))
            .await
            .map_err(|e| fail(format!("cannot subscribe to the resync subject: {e}")))?;
        tokio::spawn(hear_resync(resync, fanout.clone()));
        let setup = Setup {
            addrs,
            credentials,
            prefix: prefix.to_owned(),
            node_tag,
            fanout: fanout.clone(),
            counters: counters.clone(),
            listen: listen_rx,
            idle: idle_rx,
        };
        let listener = Listener::start(setup).await.map_err(|e| fail(format!("cannot listen: {e}")))?;
        Ok(Self { client, fanout, prefix: prefix.to_owned(), listen, listener, publish, counters })
    }
}

/// The credentials in the bus URL (the first address that has any), percent-decoded as URLs
/// encode them. async-nats does not read them from the URL itself.
fn credentials(addrs: &[async_nats::ServerAddr]) -> Result<Credentials, String> {
    let Some(addr) = addrs.iter().find(|a| a.username().is_some_and(|u| !u.is_empty())) else {
        return Ok(Credentials::None);
    };
    let user = percent_decode(addr.username().unwrap_or_default())?;
    Ok(match addr.password() {
        Some(pass) => Credentials::UserPassword(user, percent_decode(pass)?),
        None => Credentials::Token(user),
    })
}

/// `%XX` escapes back to their bytes, which must make UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).filter(|h| h.len() == 2);
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = byte else { return Err("a bad %-escape in the credentials".into()) };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials that are not UTF-8".into())
}

pub(crate) fn subject(prefix: &str, user_id: i64) -> String {
    format!("{prefix}.u.{user_id}")
}

/// Hands queued updates to NATS in order. After the link returns, if updates had to be dropped
/// meanwhile, tells every node to re-read the store.
async fn publisher(
    client: Client,
    prefix: String,
    node_tag: async_nats::Subject,
    counters: Arc<Counters>,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
    reconnected: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            next = queue.recv() => {
                let Some((subject, payload)) = next else { return };
                if let Err(e) = client.publish_with_reply(subject, node_tag.clone(), payload.into()).await {
                    counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                    counters.dropped.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot publish on NATS");
                }
            }
            () = reconnected.notified() => {
                if counters.dropped.swap(false, Ordering::SeqCst)
                    && let Err(e) = client.publish(resync_subject(&prefix), Vec::new().into()).await
                {
                    counters.dropped.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot tell the other nodes to resync");
                }
            }
        }
    }
}

/// Another node dropped updates during an outage: every stream here re-reads the store.
async fn hear_resync(mut notices: async_nats::Subscriber, fanout: Arc<LocalFanout>) {
    while notices.next().await.is_some() {
        tracing::info!("another node dropped updates; streams re-read the store");
        fanout.resync_all();
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, user_id: i64, update: Arc<Update>) {
        // This node's own subscribers get it directly; the listener drops it when NATS brings
        // it back.
        self.fanout.deliver(user_id, update.clone());
        let payload = match serde_json::to_vec(update.as_ref()) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(user_id, error = %e, "cannot serialise an update");
                return;
            }
        };
        if self.publish.try_send((subject(&self.prefix, user_id), payload)).is_err() {
            self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
            self.counters.dropped.store(true, Ordering::SeqCst);
        }
    }

    async fn subscribe(&self, user_id: i64) -> Subscription {
        let subscription = self.fanout.subscribe(user_id);
        let (done, confirmed) = oneshot::channel();
        // The wait for NATS is bounded, so that a NATS outage cannot hold up opening a stream:
        // the reconnect's resync covers what an unconfirmed subscription misses. The queue is
        // bounded too; the listener takes requests in every state of the link, so a full one
        // only slows the streams opening (back-pressure), and none is dropped.
        if self.listen.send((user_id, done)).await.is_ok() {
            let _ = tokio::time::timeout(SUBSCRIBE_CONFIRM, confirmed).await;
        }
        subscription
    }

    fn health(&self) -> BusHealth {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected
            && self.listener.connected.load(Ordering::SeqCst);
        BusHealth {
            kind: "nats",
            connected,
            reconnects: self.counters.reconnects.load(Ordering::Relaxed),
            publish_errors: self.counters.publish_errors.load(Ordering::Relaxed),
            invalid_messages: self.counters.invalid_messages.load(Ordering::Relaxed),
            dropped_for_slow_streams: self.fanout.dropped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(url: &str) -> Vec<async_nats::ServerAddr> {
        url.split(',').map(|one| one.parse().expect("address")).collect()
    }

    #[test]
    fn credentials_come_from_the_url_decoded() {
        assert_eq!(credentials(&addrs("nats://127.0.0.1:4222")), Ok(Credentials::None));
        assert_eq!(
            credentials(&addrs("nats://a:4222,nats://peyvand:p%40ss%3Aw%C3%B6rd@b:4222")),
            Ok(Credentials::UserPassword("peyvand".into(), "p@ss:wörd".into()))
        );
        assert_eq!(credentials(&addrs("nats://s3cret@a:4222")), Ok(Credentials::Token("s3cret".into())));
        assert!(credentials(&addrs("nats://u:bad%zz@a:4222")).is_err());
        assert!(credentials(&addrs("nats://u:%ff@a:4222")).is_err(), "not UTF-8");
    }
}
