//! Saved sessions: one small JSON file per server under `PEYVAND_HOME`, readable only by its
//! owner because it holds a bearer token.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What `login` saves for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The server's base URL, as the key was made from.
    pub server: String,
    pub token: String,
    pub device_id: i64,
    pub user_id: i64,
    pub phone: String,
    /// The last update cursor `listen` printed, so that the next `listen` resumes after it.
    #[serde(default)]
    pub cursor: i64,
}

/// Where one server's session lives.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
    path: PathBuf,
}

impl SessionStore {
    /// The store for a server, identified by its normalised base URL.
    pub fn for_server(server: &str) -> Result<Self> {
        let dir = home_dir()?.join("sessions");
        let path = dir.join(format!("{}.json", file_key(server)));
        Ok(Self { dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Option<Session>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let session = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a session file: remove it and log in again", self.path.display()))?;
        Ok(Some(session))
    }

    /// Writes the session atomically: a crash leaves the old file or the new one, never half.
    pub fn save(&self, session: &Session) -> Result<()> {
        create_private_dir(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let temp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut file = private_file(&temp)?;
            file.write_all(serde_json::to_string_pretty(session)?.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)
        };
        write().with_context(|| format!("writing {}", self.path.display())).inspect_err(|_| {
            let _ = fs::remove_file(&temp);
        })
    }

    /// Records how far `listen` got, unless the session was replaced or removed meanwhile
    /// (by `login` or `logout` in another terminal).
    pub fn save_cursor(&self, token: &str, cursor: i64) -> Result<()> {
        match self.load()? {
            Some(mut session) if session.token == token && session.cursor != cursor => {
                session.cursor = cursor;
                self.save(&session)
            }
            _ => Ok(()),
        }
    }

    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// `PEYVAND_HOME`, else `$XDG_CONFIG_HOME/peyvand`, else `~/.config/peyvand`.
pub(super) fn home_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = var("PEYVAND_HOME") {
        return Ok(home);
    }
    if let Some(config) = var("XDG_CONFIG_HOME") {
        return Ok(config.join("peyvand"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".config").join("peyvand")),
        None => bail!("cannot tell where to keep the session: set PEYVAND_HOME"),
    }
}

/// A file name that a person can recognise (`127.0.0.1_8080`) and that no two servers share
/// (a hash of the whole URL, since the readable part drops characters).
pub(super) fn file_key(server: &str) -> String {
    let readable: String = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    format!("{readable}-{:016x}", fnv1a(server.as_bytes()))
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`, and enough to tell URLs apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(unix)]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_and_distinct() {
        let a = file_key("http://127.0.0.1:8080/");
        assert!(a.starts_with("127.0.0.1_8080-"), "{a}");
        assert_ne!(a, file_key("http://127.0.0.1:8081/"));
        assert_ne!(file_key("http://a_b/"), file_key("http://a:b/"));
    }
}
