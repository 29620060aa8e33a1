//! A Rust client for Peyvand's client API, used by the `peyvand` CLI and by the tests.
//!
//! [`Client`] has one async method per endpoint, returning the wire types of `peyvand-api`
//! and a [`ClientError`] that keeps the server's error code. Updates arrive either by long
//! poll ([`Client::poll_updates`]), by one WebSocket connection ([`Client::updates_ws`]), or
//! through an [`UpdateFollower`] that reconnects across disconnects and resumes from the last
//! cursor it saw.
//!
//! ```no_run
//! # async fn demo() -> Result<(), peyvand_client::ClientError> {
//! let client = peyvand_client::Client::new("http://127.0.0.1:8080")?.with_token("token");
//! let me = client.me().await?;
//! let mut updates = client.follow_updates(0);
//! while let Ok(event) = updates.next().await {
//!     println!("{me:?} {event:?}");
//! }
//! # Ok(()) }
//! ```

mod account;
mod auth;
mod chats;
mod client;
mod error;
mod follow;
mod media;
mod people;
mod stream;
mod updates;

pub use chats::Sent;
pub use client::{Client, new_client_id};
pub use error::ClientError;
pub use follow::{Backoff, FollowEvent, UpdateFollower};
pub use media::{NewUpload, UPLOAD_CHUNK, UploadOffset};
pub use peyvand_api as api;
pub use stream::UpdateStream;
