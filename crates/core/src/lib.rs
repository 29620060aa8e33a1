//! Peyvand's types and rules with no I/O: phone numbers, Persian text, message content,
//! addresses shown without secrets.
//!
//! Everything here is pure and synchronous so it can be tested with plain unit tests and used
//! by every other layer (service, front ends, clients) without pulling in a runtime.

pub mod chars;
pub mod content;
pub mod phone;
pub mod text;
pub mod url;

pub use content::{ContentError, MAX_TEXT_CHARS};
pub use phone::{PhoneError, PhoneNumber};
