//! The client API's wire types: what the server sends and accepts as JSON, shared by the
//! server (which also derives its OpenAPI document from these types) and the client library.
//!
//! Identifiers are integers: a user id, a chat id, and a message's `seq`, its position in its
//! chat's log (message ids are per chat, as in Telegram). A user's update stream has its own
//! `cursor`.

pub mod error;
pub mod model;
pub mod requests;
pub mod updates;

pub use error::{ApiError, ErrorBody, ErrorCode};
pub use model::*;
pub use requests::*;
pub use updates::*;
