//! Replay protection: the nonce of every signed request is recorded in the store (the
//! `seen_nonces` table) until its request is stale, and a nonce seen before is refused. The
//! record is durable and shared by a cluster's nodes, so a request captured and sent again,
//! to another node or after a restart, is refused as well (`docs/protocol/transport.md`,
//! TRANSPORT-10).

use peyvand_api::ApiError;
use peyvand_service::Service;

use crate::signing::MAX_SKEW_MS;

/// Records the nonce of `provider` for a request signed at `timestamp` (already checked to be
/// within the skew of `now`); `Ok(false)` if it was seen before (a replay). It is remembered
/// until the request would be refused as stale anyway: `timestamp` + the skew.
pub async fn first_use(
    service: &Service,
    provider: &str,
    nonce: &str,
    timestamp: i64,
    now: i64,
) -> Result<bool, ApiError> {
    service.first_use_of_nonce(provider, nonce, timestamp + MAX_SKEW_MS, now).await
}

/// Forgets the nonces of requests that are stale by `now`.
pub async fn prune(service: &Service, now: i64) -> Result<u64, ApiError> {
    service.prune_nonces(now).await
}
