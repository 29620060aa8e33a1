//! Who is online, across every node. Each node counts its own open streams per person in
//! memory and records in the store only the transitions (first stream on this node opened,
//! last one closed); the store answers whether a person is online anywhere. Nodes send
//! heartbeats, and the presence of a node that stopped beating is reaped by the others, who
//! then announce those people offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use peyvand_api::{Event, Presence, Update};
use peyvand_store::UserRecord;

use crate::{Service, now_millis};

/// Open update streams per person on this node.
#[derive(Debug, Default)]
pub struct Presences {
    connections: Mutex<HashMap<i64, usize>>,
    /// When this node's heartbeat last reached the store (milliseconds; 0 before the first).
    last_beat: std::sync::atomic::AtomicI64,
}

impl Presences {
    fn change(&self, user_id: i64, delta: isize) -> (usize, usize) {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.get(&user_id).copied().unwrap_or(0);
        let after = before.saturating_add_signed(delta);
        if after == 0 {
            map.remove(&user_id);
        } else {
            map.insert(user_id, after);
        }
        (before, after)
    }

    /// How many people have at least one open stream on this node.
    pub fn online_count(&self) -> usize {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn count(&self, user_id: i64) -> usize {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).get(&user_id).copied().unwrap_or(0)
    }

    fn people(&self) -> Vec<i64> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect()
    }

    pub(crate) fn forget(&self, user_id: i64) {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&user_id);
    }
}

impl Service {
    pub fn presences(&self) -> &Presences {
        &self.presences
    }

    /// This node's id in the cluster's presence records; new at every start.
    pub fn node_id(&self) -> i64 {
        self.node_id
    }

    /// A person's presence as others may see it: online if they have a stream on any node.
    pub(crate) async fn presence_of(&self, user: &UserRecord) -> Result<Presence, peyvand_store::StoreError> {
        let online = !self.store.online(&[user.id]).await?.is_empty();
        Ok(Presence { online, last_seen: user.last_seen })
    }

    /// Called when a device opens its update stream.
    pub async fn stream_opened(&self, user_id: i64) {
        if self.presences.change(user_id, 1).0 == 0 {
            self.record_presence(user_id).await;
        }
    }

    /// Called when a device's update stream closes.
    pub async fn stream_closed(&self, user_id: i64) {
        // From 0 nothing changes: the person was forgotten (account deleted) meanwhile.
        let (before, after) = self.presences.change(user_id, -1);
        if before > 0 && after == 0 {
            self.record_presence(user_id).await;
        }
    }

    /// Writes the person's presence on this node as the local count now says, until the store
    /// agrees with a count that did not change meanwhile: a quick close and reopen may send the
    /// two writes out of order, and the last one written must match the streams still open.
    async fn record_presence(&self, user_id: i64) {
        let mut online = self.presences.count(user_id) > 0;
        for _ in 0..3 {
            let now = now_millis();
            match self.store.set_node_presence(user_id, self.node_id, online, now).await {
                Ok(true) if online => self.announce_presence(user_id, Presence { online: true, last_seen: None }).await,
                Ok(true) => self.went_offline(user_id, now).await,
                Ok(false) => {}
                Err(e) => {
                    // The next heartbeat after an outage writes every present person again.
                    tracing::warn!(user_id, error = %e, "could not record presence");
                    return;
                }
            }
            let now_online = self.presences.count(user_id) > 0;
            if now_online == online {
                return;
            }
            online = now_online;
        }
    }

    async fn went_offline(&self, user_id: i64, now: i64) {
        if let Err(e) = self.store.set_last_seen(user_id, now).await {
            tracing::warn!(user_id, error = %e, "could not record last seen");
        }
        self.announce_presence(user_id, Presence { online: false, last_seen: Some(now) }).await;
    }

    /// Proves this node alive and reaps the presence of nodes that stopped beating (killed,
    /// or cut off), announcing their people offline. Run every `presence_heartbeat_secs`.
    pub async fn presence_tick(&self) {
        let now = now_millis();
        let interval_ms = self.config.presence_heartbeat_secs as i64 * 1000;
        let registered = match self.store.node_heartbeat(self.node_id, now).await {
            Ok(registered) => registered,
            Err(e) => {
                tracing::warn!(error = %e, "could not record this node's heartbeat");
                return;
            }
        };
        let last = self.presences.last_beat.swap(now, std::sync::atomic::Ordering::SeqCst);
        // Reaped by the others (or maybe, if beats failed for long): write this node's people
        // again, so they do not stay offline while their streams are open.
        if registered || (last > 0 && now - last > 2 * interval_ms) {
            let service = self.clone();
            tokio::spawn(async move {
                for user_id in service.presences.people() {
                    service.record_presence(user_id).await;
                }
            });
        }
        match self.store.reap_nodes(now - 3 * interval_ms).await {
            Ok(offline) if !offline.is_empty() => {
                // Off the heartbeat's task: announcing many people must not delay the next beat.
                let service = self.clone();
                tokio::spawn(async move {
                    for user_id in offline {
                        service.went_offline(user_id, now).await;
                    }
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not reap the presence of stopped nodes"),
        }
    }

    /// Takes this node's presence away at shutdown, so its people do not look online until
    /// the others reap it.
    pub async fn leave_cluster(&self) {
        let people: Vec<i64> =
            self.presences.connections.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(id, _)| id).collect();
        let now = now_millis();
        for user_id in people {
            if let Ok(true) = self.store.set_node_presence(user_id, self.node_id, false, now).await {
                self.went_offline(user_id, now).await;
            }
        }
    }

    /// Tells the person's chat partners, those their last-seen setting allows.
    async fn announce_presence(&self, user_id: i64, presence: Presence) {
        let result: Result<(), peyvand_store::StoreError> = async {
            let Some(user) = self.store.user(user_id).await?.filter(|u| !u.deleted) else { return Ok(()) };
            let update =
                Arc::new(Update { cursor: None, at: now_millis(), event: Event::Presence { user_id, presence } });
            for peer in self.store.chat_peers(user_id, 500).await? {
                let allowed = match user.privacy.last_seen {
                    peyvand_api::Audience::Everybody => true,
                    peyvand_api::Audience::Nobody => false,
                    peyvand_api::Audience::Contacts => self.store.has_contact(user_id, peer).await?,
                };
                if allowed && !self.store.is_blocked(user_id, peer).await? {
                    self.bus.publish(peer, update.clone()).await;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(user_id, error = %e, "could not announce presence");
        }
    }
}
