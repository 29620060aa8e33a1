//! Files: `send --file` (a resumable upload, then a media message) and `download`.
//!
//! An upload in progress is remembered under `PEYVAND_HOME/uploads`, keyed by the server, the
//! account and the file (its path, size and modification time), so that running the same
//! command again resumes it; the message's client id comes from the upload's id, so a rerun
//! after the upload finished sends the message once.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use peyvand_api::{Content, ErrorCode, MediaKind, SendMessage};
use peyvand_client::{ClientError, NewUpload};
use serde::{Deserialize, Serialize};

use super::Context;
use super::args::{DownloadArgs, SendArgs};
use super::messages::send_and_show;
use super::output::note;
use super::session::{create_private_dir, file_key, home_dir};

/// The kind a file is sent as when `--as` is not given: by its extension.
pub fn guess_kind(path: &Path) -> MediaKind {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" => MediaKind::Photo,
        "mp4" | "m4v" | "webm" => MediaKind::Video,
        "mp3" | "m4a" | "aac" | "ogg" | "oga" | "opus" | "flac" | "wav" => MediaKind::Audio,
        _ => MediaKind::File,
    }
}

/// What is remembered of an upload in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    upload_id: String,
}

/// Where the upload of this file to this account is remembered.
fn pending_path(server: &str, user_id: i64, file: &Path, kind: MediaKind, size: u64, modified: u64) -> Result<PathBuf> {
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let what = format!("{server}\n{user_id}\n{}\n{}\n{size}\n{modified}", canonical.display(), kind.as_str());
    Ok(home_dir()?.join("uploads").join(format!("{}.json", file_key(&what))))
}

/// A progress bar on standard error when it is a terminal; nothing otherwise.
fn progress_bar(length: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(length);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    Some(bar)
}

pub async fn send_file(cx: &Context, args: SendArgs) -> Result<()> {
    let Some(path) = args.file.clone() else { bail!("give --file") };
    let client = cx.client()?;
    let user_id = cx.session()?.user_id;
    let chat = cx.chat_for(&args.recipient).await?;
    let metadata = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a file", path.display());
    }
    let size = metadata.len();
    let modified =
        metadata.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let kind = args.kind.unwrap_or_else(|| guess_kind(&path));
    let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let remembered = pending_path(cx.server(), user_id, &path, kind, size, modified)?;

    // An upload of this file begun before: resume it, or use it if it finished.
    let previous: Option<Pending> =
        std::fs::read_to_string(&remembered).ok().and_then(|text| serde_json::from_str(&text).ok());
    let mut upload_id = None;
    let mut finished = None;
    if let Some(previous) = previous {
        match client.upload_offset(&previous.upload_id).await {
            Ok(_) => upload_id = Some(previous.upload_id),
            Err(e) if e.code() == Some(ErrorCode::UploadGone) => {
                if let Ok(item) = client.media_item(&previous.upload_id).await {
                    finished = Some(item);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let item = match finished {
        Some(item) => item,
        None => {
            let id = match upload_id {
                Some(id) => {
                    note(format!("resuming the upload of {}", path.display()));
                    id
                }
                None => {
                    let id = client.create_upload(kind, size, &NewUpload { name, ..Default::default() }).await?;
                    if let Some(dir) = remembered.parent() {
                        create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
                    }
                    std::fs::write(&remembered, serde_json::to_string(&Pending { upload_id: id.clone() })?)
                        .with_context(|| format!("writing {}", remembered.display()))?;
                    id
                }
            };
            let bar = progress_bar(size, kind.as_str());
            let mut file =
                tokio::fs::File::open(&path).await.with_context(|| format!("cannot open {}", path.display()))?;
            let mut report = |sent: u64, _total: u64| {
                if let Some(bar) = &bar {
                    bar.set_position(sent);
                }
            };
            let uploaded = client.upload_rest(&id, &mut file, &mut report).await;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            match uploaded {
                Ok(item) => item,
                Err(e) => {
                    // A refused file will not be taken on a rerun either: forget the upload.
                    if e.status().is_some_and(|s| (400..500).contains(&s) && s != 429) {
                        let _ = std::fs::remove_file(&remembered);
                    }
                    return Err(e.into());
                }
            }
        }
    };
    let message = SendMessage {
        client_id: args.id.unwrap_or_else(|| format!("media-{}", item.id)),
        content: args.caption.map(|text| Content::Text { text }),
        reply_to: args.reply_to,
        forward: None,
        media: Some(item.id.clone()),
    };
    let sent = send_and_show(cx, &chat, &message).await;
    if sent.is_ok() {
        let _ = std::fs::remove_file(&remembered);
    }
    sent
}

/// A file name from a message, safe to create in a directory: no path separators, no
/// leading dots, no control characters.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    (!clean.is_empty()).then_some(clean)
}

pub async fn download(cx: &Context, args: DownloadArgs) -> Result<()> {
    let client = cx.client()?;
    let chat = cx.chat_for(&args.recipient).await?;
    let message = client.message(chat.id, args.seq).await?;
    let Some(media) = message.content.media() else {
        bail!("message {} of chat:{} has no file", args.seq, chat.id);
    };
    let name = if args.thumbnail {
        format!("thumbnail-{}-{}.jpg", chat.id, args.seq)
    } else {
        media.name.as_deref().and_then(safe_name).unwrap_or_else(|| {
            let ext = peyvand_media::inspect::extension(&media.mime).unwrap_or("bin");
            format!("{}-{}-{}.{ext}", media.kind.as_str(), chat.id, args.seq)
        })
    };
    let out = match args.out {
        Some(out) if out.is_dir() => out.join(&name),
        // `DIR/`: a directory, made if it is not there yet.
        Some(out) if out.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) => {
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            out.join(&name)
        }
        Some(out) => out,
        None => PathBuf::from(&name),
    };
    if out.exists() {
        bail!("{} exists already: give another --out", out.display());
    }
    // Bytes go to OUT.part and it becomes OUT when whole; a .part left by an interrupted
    // download is continued from where it stopped.
    let part = PathBuf::from(format!("{}.part", out.display()));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let total = if args.thumbnail { media.thumbnail.as_ref().map_or(0, |t| t.size) } else { media.size };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    let bar = progress_bar(total, media.kind.as_str());
    let mut report = |received: u64, _of: u64| {
        if let Some(bar) = &bar {
            bar.set_position(have + received);
        }
    };
    let range = (have > 0 && have < total).then_some(have..total);
    let fetched = if have >= total && total > 0 {
        Ok(0)
    } else {
        client.download_media(chat.id, args.seq, args.thumbnail, range, &mut file, &mut report).await
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match fetched {
        Ok(_) => {}
        Err(ClientError::Timeout(_)) => {
            bail!("the download stalled; run the command again to continue it (kept in {})", part.display())
        }
        Err(e) => return Err(e.into()),
    }
    drop(file);
    std::fs::rename(&part, &out).with_context(|| format!("cannot move {} to {}", part.display(), out.display()))?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    cx.out.show(&serde_json::json!({ "path": out.display().to_string(), "size": size, "media": media }), |_| {
        format!("saved {} ({})", out.display(), super::format::size(size))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_guessed_from_extensions() {
        assert_eq!(guess_kind(Path::new("a/عکس.JPG")), MediaKind::Photo);
        assert_eq!(guess_kind(Path::new("clip.webm")), MediaKind::Video);
        assert_eq!(guess_kind(Path::new("song.mp3")), MediaKind::Audio);
        assert_eq!(guess_kind(Path::new("note.ogg")), MediaKind::Audio);
        assert_eq!(guess_kind(Path::new("report.pdf")), MediaKind::File);
        assert_eq!(guess_kind(Path::new("README")), MediaKind::File);
    }

    #[test]
    fn names_from_messages_stay_in_their_directory() {
        assert_eq!(safe_name("../../.bashrc").as_deref(), Some("bashrc"));
        assert_eq!(safe_name("گزارش.pdf").as_deref(), Some("گزارش.pdf"));
        assert_eq!(safe_name("a\\b\u{7}.txt").as_deref(), Some("b.txt"));
        assert_eq!(safe_name("..").as_deref(), None);
    }
}
