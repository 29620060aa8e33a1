//! Who is online on this node, and telling chat partners when that changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use peyvand_api::{Event, Presence, Update};
use peyvand_store::UserRecord;

use crate::{Service, now_millis};

/// Open update streams per person on this node.
#[derive(Debug, Default)]
pub struct Presences {
    connections: Mutex<HashMap<i64, usize>>,
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

    pub fn is_online(&self, user_id: i64) -> bool {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&user_id)
    }

    /// How many people have at least one open stream.
    pub fn online_count(&self) -> usize {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn forget(&self, user_id: i64) {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&user_id);
    }

    pub(crate) fn presence_of(&self, user: &UserRecord) -> Presence {
        Presence { online: self.is_online(user.id), last_seen: user.last_seen }
    }
}

impl Service {
    pub fn presences(&self) -> &Presences {
        &self.presences
    }

    /// Called when a device opens its update stream.
    pub async fn stream_opened(&self, user_id: i64) {
        if self.presences.change(user_id, 1).0 == 0 {
            self.announce_presence(user_id, Presence { online: true, last_seen: None }).await;
        }
    }

    /// Called when a device's update stream closes.
    pub async fn stream_closed(&self, user_id: i64) {
        // From 0 nothing changes: the person was forgotten (account deleted) meanwhile.
        let (before, after) = self.presences.change(user_id, -1);
        if before > 0 && after == 0 {
            let now = now_millis();
            if let Err(e) = self.store.set_last_seen(user_id, now).await {
                tracing::warn!(user_id, error = %e, "could not record last seen");
            }
            self.announce_presence(user_id, Presence { online: false, last_seen: Some(now) }).await;
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
