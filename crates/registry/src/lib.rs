//! The regulator's registry (`peyvand registry`): licences for providers, an append-only
//! audit log of every change to them, and the signed, versioned, expiring directory of
//! providers that every provider fetches and verifies.
//!
//! - [`Registry`] is the service; each change is one SQLite transaction that stores the
//!   licence, appends its audit entry and signs the directory that follows ([`store`] is
//!   private to it).
//! - [`ca`] is the certificate authority for mutual TLS between providers: its key and
//!   certificate in the data directory, CSR checks and issuance; [`Registry`] keeps one-time
//!   enrolment tokens and the certificates it issued and revoked, and lists them in the directory.
//! - [`http::router`] is the HTTP API: the public directory, the CA certificate and enrolment,
//!   and the admin API.
//! - [`verify_directory`] is what providers use to check a directory; [`RegistryClient`]
//!   talks to the API.

pub mod ca;
pub mod client;
pub mod directory;
pub mod error;
pub mod http;
pub mod keys;
pub mod model;
mod registry;
mod store;
pub mod time;
pub mod validate;

pub use client::{ClientError, RegistryClient, SignedDirectory};
pub use directory::{Directory, DirectoryProvider, VerifyError, verify_directory, verify_directory_at};
pub use error::{ApiError, ErrorCode, RegistryError, RegistryResult};
pub use registry::{
    DEFAULT_ENROLMENT_TOKEN_TTL, FIRST_ADMIN_LABEL, MIN_CERTIFICATE_VALIDITY, MIN_DIRECTORY_TTL, Opened, Published,
    Registry, RegistryConfig, renewal_message,
};
pub use store::DATABASE_FILE;
