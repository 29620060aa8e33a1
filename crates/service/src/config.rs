//! Settings of the messenger's behaviour, with the defaults an operator gets.

use serde::{Deserialize, Serialize};

/// How the service behaves; every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Digits in a sign-in code.
    pub code_length: u32,
    /// Seconds a sign-in code stays valid.
    pub code_ttl_secs: u64,
    /// Guesses allowed per code, from all addresses together, before it is burnt (a new code
    /// can be asked for at once). One address has `limits.code_attempts_per_address` of them.
    pub code_max_attempts: u32,
    /// Seconds a session may go unused before it ends (its device must sign in again);
    /// 0 keeps sessions until they are signed out. Default: 180 days.
    pub session_idle_secs: u64,
    /// Seconds the update stream keeps an update at least ...
    pub update_retention_secs: u64,
    /// ... and how many of each person's newest updates are always kept.
    pub update_retention_min: i64,
    /// Seconds between a node's presence heartbeats; a node silent for three is taken as
    /// gone and its people as offline.
    pub presence_heartbeat_secs: u64,
    /// Store reads this node's live update streams may make at once to catch up (after a gap
    /// or a lost cluster link); the others wait their turn, first come first served. When the
    /// link to the other nodes comes back, every stream of the node must catch up at once:
    /// this keeps that burst from taking every store connection from the requests. The
    /// default is the number of CPU cores: half the PostgreSQL pool (twice the cores), and
    /// half of the embedded store's readers on a 2-core machine.
    pub catch_up_reads: u32,
    pub limits: Limits,
    pub media: MediaConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            code_length: 5,
            code_ttl_secs: 300,
            code_max_attempts: 10,
            session_idle_secs: 180 * 24 * 3600,
            update_retention_secs: 7 * 24 * 3600,
            update_retention_min: 1000,
            presence_heartbeat_secs: 10,
            catch_up_reads: std::thread::available_parallelism().map_or(2, |n| n.get().min(1024) as u32),
            limits: Limits::default(),
            media: MediaConfig::default(),
        }
    }
}

/// Rate limits. Counts are per window; windows are fixed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Codes sent to one phone number per hour, whoever asks: a ceiling on the SMS one number
    /// can cost, above what one address may use up (`codes_per_number_from_address_per_hour`),
    /// so that a stranger asking for someone's codes leaves them their own.
    pub codes_per_number_per_hour: u32,
    /// Codes for one phone number requested from one client address per hour.
    pub codes_per_number_from_address_per_hour: u32,
    /// Codes sent to one operator block (the number without its last four digits) per hour:
    /// SMS-pumping fraud walks through consecutive numbers.
    pub codes_per_block_per_hour: u32,
    /// Codes requested from one client address per hour.
    pub codes_per_address_per_hour: u32,
    /// Sign-in attempts (right or wrong) from one client address per hour.
    pub sign_ins_per_address_per_hour: u32,
    /// Wrong codes typed for one phone number from one client address per hour: a stranger's
    /// guesses run out here without burning the code the person is about to type.
    pub code_attempts_per_address: u32,
    /// PIN attempts (right or wrong) per account per hour.
    pub pin_attempts_per_hour: u32,
    /// Phone numbers one account may look up (contact import, resolve) per day.
    pub contact_lookups_per_day: u32,
    /// New chats with people who are not in one's contacts, per account per day.
    pub new_chats_with_strangers_per_day: u32,
    /// Messages one account may send per minute.
    pub messages_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            codes_per_number_per_hour: 20,
            codes_per_number_from_address_per_hour: 5,
            codes_per_block_per_hour: 200,
            codes_per_address_per_hour: 30,
            sign_ins_per_address_per_hour: 100,
            code_attempts_per_address: 5,
            pin_attempts_per_hour: 5,
            contact_lookups_per_day: 2000,
            new_chats_with_strangers_per_day: 50,
            messages_per_minute: 600,
        }
    }
}

/// Uploads, media items and their bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The largest upload, in bytes. Default: 2 GB.
    pub max_upload_bytes: u64,
    /// The largest photo, in bytes (photos are inspected in memory). Default: 20 MiB.
    pub max_photo_bytes: u64,
    /// A photo's largest width or height, in pixels, and its largest pixel count: checked
    /// from the file's header before any decoding.
    pub max_photo_side: u32,
    pub max_photo_pixels: u64,
    /// Seconds an unfinished upload is kept; its bytes are removed then. Default: 24 h.
    pub upload_expiry_secs: u64,
    /// Seconds a finished upload (a media item) may wait to be sent. Default: 24 h.
    pub item_ttl_secs: u64,
    /// Uploads one account may start per hour.
    pub uploads_per_hour: u32,
    /// Bytes one account may upload per day (counted when an upload starts, by its length).
    /// Default: 20 GB.
    pub upload_bytes_per_day: u64,
    /// Seconds a blob nothing refers to any more is kept before it is removed. Default: 1 h.
    pub blob_grace_secs: u64,
    /// Seconds a media link (for `<img>`, `<audio>`, `<video>`) stays good. Default: 1 h.
    pub link_ttl_secs: u64,
    /// The largest run of an upload's bytes held in memory before it is stored: a request's
    /// bytes are stored in pieces of this size. Default: 8 MiB.
    pub piece_bytes: u64,
    /// Seconds between sweeps of expired uploads, media items and unreferenced blobs.
    pub sweep_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 2_000_000_000,
            max_photo_bytes: 20 << 20,
            max_photo_side: 10_000,
            max_photo_pixels: 40_000_000,
            upload_expiry_secs: 24 * 3600,
            item_ttl_secs: 24 * 3600,
            uploads_per_hour: 300,
            upload_bytes_per_day: 20_000_000_000,
            blob_grace_secs: 3600,
            link_ttl_secs: 3600,
            piece_bytes: 8 << 20,
            sweep_secs: 300,
        }
    }
}
