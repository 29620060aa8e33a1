//! Media items: what a file is, and where its bytes are kept.
//!
//! - [`inspect`]: the real type of a file from its bytes, whether it agrees with the declared
//!   kind, and what a client needs to show it (a photo's dimensions, thumbnail and inline
//!   preview, with its metadata removed; a voice message's, audio's or video's duration and
//!   dimensions from its container). Pure functions over bytes, with limits checked before
//!   any expensive work.
//! - [`storage`]: blobs by key on local disk or an S3-compatible object store, streamed.
//!
//! The service decides what is stored under which key and who may read it; this crate knows
//! nothing of people or chats.

pub mod inspect;
pub mod storage;
