//! The delivery to peers' bookkeeping: where sent messages stand, the outbound queue, and
//! the nonces and leases of the interconnect.

use peyvand_api::{ApiError, ErrorCode};
use peyvand_store::{DeliveryChange, MemberRecord};

use super::remote_providers;
use crate::{Service, err, now_millis, store_error};

impl Service {
    /// Why a message to the remote members of a room hosted here would wait now, if it would
    /// (see [`Federation::delivery_problem`](super::Federation::delivery_problem)).
    pub(crate) fn delivery_problem(&self, members: &[MemberRecord]) -> Option<ApiError> {
        let Some(federation) = self.federation.get() else {
            return Some(err(ErrorCode::InterconnectDisabled, "this server is not connected to other messengers"));
        };
        remote_providers(members).iter().find_map(|peer| federation.delivery_problem(peer))
    }

    /// Records where messages sent to other messengers stand (from the delivery to peers) and
    /// tells their senders' devices of each change.
    pub async fn delivery_changed(&self, changes: Vec<DeliveryChange>) -> Result<(), ApiError> {
        let updates = self.store.set_delivery(changes, now_millis()).await.map_err(store_error)?;
        self.publish(updates).await;
        Ok(())
    }

    /// The oldest `limit` events waiting for `peer`.
    pub async fn outbound(&self, peer: &str, limit: u32) -> Result<Vec<peyvand_store::OutboundRecord>, ApiError> {
        self.store.outbound(peer, limit).await.map_err(store_error)
    }

    /// Forgets events `peer` has received.
    pub async fn outbound_delivered(&self, peer: &str, ids: &[i64]) -> Result<(), ApiError> {
        self.store.remove_outbound(peer, ids).await.map_err(store_error)
    }

    /// Drops queued events older than `max_age_ms` (per peer, how many) and forgets received
    /// transactions and submissions older than that too.
    pub async fn expire_outbound(&self, max_age_ms: i64) -> Result<Vec<(String, u64)>, ApiError> {
        let before = now_millis() - max_age_ms;
        self.store.prune_inbound(before).await.map_err(store_error)?;
        self.store.prune_submissions(before).await.map_err(store_error)?;
        self.store.expire_outbound(before).await.map_err(store_error)
    }

    /// Records the nonce of a signed request from `peer`, good for replay until `stale_after`;
    /// whether this is its first use (see `FederationStore::first_use_of_nonce`).
    pub async fn first_use_of_nonce(
        &self,
        peer: &str,
        nonce: &str,
        stale_after: i64,
        now: i64,
    ) -> Result<bool, ApiError> {
        self.store.first_use_of_nonce(peer, nonce, stale_after, now).await.map_err(store_error)
    }

    /// Forgets the nonces of requests that went stale before `before`.
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, ApiError> {
        self.store.prune_nonces(before).await.map_err(store_error)
    }

    /// The events waiting for each peer.
    pub async fn queue_depths(&self) -> Result<Vec<peyvand_store::QueueDepth>, ApiError> {
        self.store.queue_depths().await.map_err(store_error)
    }

    /// Takes or renews this process's lease to deliver to `peer` until `until` (giving it up
    /// with `until` = `now`); whether it holds it (see `FederationStore::lease_delivery`).
    pub async fn lease_delivery(&self, peer: &str, holder: &str, now: i64, until: i64) -> Result<bool, ApiError> {
        self.store.lease_delivery(peer, holder, now, until).await.map_err(store_error)
    }
}
