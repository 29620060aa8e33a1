//! The bus: how an update for a person reaches the node(s) where that person's devices are
//! connected. The in-process backend serves a single node; a cluster backend carries the same
//! traffic between nodes and hands it to the same [`LocalFanout`] on each node.
//!
//! The bus is a fast path, not the record: durable updates are in the store, and a subscriber
//! that misses some (a lagging receiver, a node restart) reads them back from the store by
//! cursor. Ephemeral updates (typing, presence) may be dropped.

mod fanout;

use std::sync::Arc;

use async_trait::async_trait;
use peyvand_api::Update;

pub use fanout::{LocalFanout, Received, Subscription};

/// Delivers updates to every node that has subscribers for the person.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Sends `update` to every current subscriber of `user_id`, on every node.
    async fn publish(&self, user_id: i64, update: Arc<Update>);
    /// Receives what is published for `user_id` from now on, until the subscription drops.
    fn subscribe(&self, user_id: i64) -> Subscription;
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

    fn subscribe(&self, user_id: i64) -> Subscription {
        self.fanout.subscribe(user_id)
    }
}
