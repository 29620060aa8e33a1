//! The update stream by HTTP: `/v1/state` and the long poll.

use std::time::Duration;

use peyvand_api::{SyncState, UpdatesPage};
use reqwest::Method;

use crate::client::REQUEST_TIMEOUT;
use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/state`: the latest cursor and the server's clock.
    pub async fn state(&self) -> Result<SyncState, ClientError> {
        Self::json(self.request(Method::GET, "v1/state")?).await
    }

    /// `GET /v1/updates?after=&timeout=`: the updates after `after`, waiting up to `timeout`
    /// (whole seconds, at most 60) when there are none. A cursor that is too old fails with
    /// `resync_required`.
    pub async fn poll_updates(&self, after: i64, timeout: Duration) -> Result<UpdatesPage, ClientError> {
        let seconds = timeout.as_secs();
        let builder = self
            .request(Method::GET, "v1/updates")?
            .query(&[("after", after), ("timeout", i64::try_from(seconds).unwrap_or(i64::MAX))])
            // The server holds the request open for `timeout`: the answer may take that long.
            .timeout(REQUEST_TIMEOUT + timeout);
        Self::json(builder).await
    }
}
