//! The bus: how an update for a person reaches the node(s) where that person's devices are
//! connected. The in-process backend serves a single node; a cluster backend carries the same
//! traffic between nodes and hands it to the same [`LocalFanout`] on each node.
//!
//! The bus is a fast path, not the record: durable updates are in the store, and a subscriber
//! that misses some (a lagging receiver, a node restart) reads them back from the store by
//! cursor. Ephemeral updates (typing, presence) may be dropped.

mod fanout;
mod listener;
mod nats;

use std::sync::Arc;

use async_trait::async_trait;
use peyvand_api::Update;

pub use fanout::{LocalFanout, Received, Subscription};
pub use nats::{NatsBus, NatsConnectError};

/// The state of a node's link to the other nodes, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusHealth {
    /// `in-process` or `nats`.
    pub kind: &'static str,
    /// Whether updates from other nodes can arrive now (always true in-process).
    pub connected: bool,
    /// How many times the link came back after being lost.
    pub reconnects: u64,
    pub publish_errors: u64,
    /// Messages from other nodes that were not valid updates and were ignored.
    pub invalid_messages: u64,
    /// Updates a slow stream's channel dropped ([`LocalFanout`]): durable ones it then reads
    /// from the store; ephemeral ones (typing, presence) are lost to it.
    pub dropped_for_slow_streams: u64,
}

/// Delivers updates to every node that has subscribers for the person.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Sends `update` to every current subscriber of `user_id`, on every node.
    async fn publish(&self, user_id: i64, update: Arc<Update>);
    /// Receives what is published for `user_id` from now on, until the subscription drops.
    /// Returns once every node's publications for the person will reach it.
    async fn subscribe(&self, user_id: i64) -> Subscription;
    fn health(&self) -> BusHealth;
}

/// The bus of a single node: publishing is handing the update to local subscribers.
#[derive(Debug, Default)]
pub struct InProcessBus {
    fanout: LocalFanout,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, user_id: i64, update: Arc<Update>) {
        self.fanout.deliver(user_id, update);
    }

    async fn subscribe(&self, user_id: i64) -> Subscription {
        self.fanout.subscribe(user_id)
    }

    fn health(&self) -> BusHealth {
        BusHealth {
            kind: "in-process",
            connected: true,
            reconnects: 0,
            publish_errors: 0,
            invalid_messages: 0,
            dropped_for_slow_streams: self.fanout.dropped(),
        }
    }
}
