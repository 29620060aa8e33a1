//! `peyvand-bench media-across`: a photo from one messenger to another. The bench starts
//! `peyvand demo` (a registry and three providers in one process, talking over mutual TLS),
//! signs a person in on alborz and one on damavand, opts both in to the interconnect, and
//! opens the room from alborz. Then, one photo after the other: the alborz person uploads a
//! photo (a JPEG drawn afresh each time, so that nothing is deduplicated) and sends it; the
//! damavand person polls the history until the message is there and downloads the photo,
//! which damavand first fetches from alborz over the interconnect; then downloads it again,
//! now from damavand's own copy. Each download is checked against the message's SHA-256.
//!
//! Timed from the start of the send: until the damavand person has the photo (the whole
//! path), until the message is visible on damavand, and, from then, the first download (the
//! fetch across providers); and the second download on its own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peyvand_api::{Audience, Content, HistoryQuery, MediaKind, SendMessage, SettingsUpdate, SignInRequest};
use peyvand_client::{Client, NewUpload};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::latency::Recorder;
use crate::progress::{Progress, say};
use crate::server::{CONNECTION_CAPS, Codes, GENEROUS, LIMITS, fresh_dir};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one step (a sign-in code, a message crossing, a room opening) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the damavand person asks for the history while waiting for the message.
const POLL: Duration = Duration::from_millis(5);
const SENDER: &str = "+989122100001";
const RECEIVER: &str = "+989122100002";

#[derive(Debug, Clone, clap::Args)]
pub struct MediaAcrossArgs {
    /// Photos sent from alborz and downloaded on damavand, one after the other.
    #[arg(long, default_value_t = 50)]
    pub photos: usize,
    /// The photos' width in pixels.
    #[arg(long, default_value_t = 1600)]
    pub width: u32,
    /// The photos' height in pixels.
    #[arg(long, default_value_t = 1200)]
    pub height: u32,
    /// A short run: 10 photos.
    #[arg(long)]
    pub quick: bool,
}

impl MediaAcrossArgs {
    fn photos(&self) -> usize {
        if self.quick { 10 } else { self.photos }
    }
}

/// A line of the demo's standard output.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Registry(&'a str),
    Provider { id: &'a str, url: &'a str },
    Otp { phone: &'a str, code: &'a str },
    Other,
}

fn parse_line(line: &str) -> Line<'_> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["READY", "registry", url] => Line::Registry(url),
        ["READY", "provider", id, url] => Line::Provider { id, url },
        ["OTP", phone, code, ..] => Line::Otp { phone, code },
        _ => Line::Other,
    }
}

/// A running `peyvand demo --base-port 0`, killed when dropped; its data directory is then
/// removed unless kept.
#[derive(Debug)]
struct Demo {
    child: Child,
    data: PathBuf,
    remove_data: bool,
    providers: HashMap<String, String>,
    codes: Arc<Codes>,
}

impl Demo {
    fn start(peyvand: &Path, data: Option<PathBuf>, keep_data: bool) -> anyhow::Result<Self> {
        let remove_data = data.is_none() && !keep_data;
        let data = data.unwrap_or_else(fresh_dir);
        // The demo keeps its CA's key and the admin token here: for its owner only.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let log_path = data.join("demo.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(peyvand);
        command
            .args(["demo", "--base-port", "0", "--directory-refresh-secs", "1", "--data"])
            .arg(data.join("demo"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // The demo's providers read `PEYVAND_*` as `serve` does.
        for limit in LIMITS {
            command.env(format!("PEYVAND_SERVICE__LIMITS__{limit}"), GENEROUS);
        }
        for cap in CONNECTION_CAPS {
            command.env(format!("PEYVAND_CONNECTIONS__{cap}"), GENEROUS);
        }
        if std::env::var_os("PEYVAND_LOG").is_none() {
            command.env("PEYVAND_LOG", "warn");
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", peyvand.display()))?;
        let codes = Arc::new(Codes::default());
        // Built before waiting, so that a failure below still stops the demo and removes
        // its folder.
        let mut demo = Self { child, data, remove_data, providers: HashMap::new(), codes: codes.clone() };
        let stdout = demo.child.stdout.take().context("the demo's standard output is not piped")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new().name("demo-stdout".into()).spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match parse_line(&line) {
                    Line::Registry(_) => {}
                    Line::Provider { id, url } => {
                        let _ = ready_tx.send((id.to_owned(), url.to_owned()));
                    }
                    Line::Otp { phone, code } => codes.arrived(phone, code),
                    Line::Other => {}
                }
            }
        })?;
        let deadline = Instant::now() + START_TIMEOUT;
        while demo.providers.len() < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok((id, url)) => {
                    demo.providers.insert(id, url);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the demo's providers were not ready within {START_TIMEOUT:?}; see {}", log_path.display())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the demo stopped before it was ready; see {}", log_path.display())
                }
            }
        }
        Ok(demo)
    }

    fn url(&self, provider: &str) -> anyhow::Result<&str> {
        self.providers.get(provider).map(String::as_str).with_context(|| format!("the demo has no {provider}"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Signs `phone` in on `provider` through the code flow.
    async fn sign_in(&self, provider: &str, phone: &str) -> anyhow::Result<Client> {
        let client = Client::new(self.url(provider)?)?;
        client.request_code(phone).await.with_context(|| format!("{provider}: code for {phone}"))?;
        let code = self.codes.take(phone, STEP_TIMEOUT).await?;
        let request =
            SignInRequest { phone: phone.to_owned(), code, device_name: Some("peyvand-bench".into()), pin: None };
        let signed = client.sign_in(&request).await.with_context(|| format!("{provider}: sign-in of {phone}"))?;
        Ok(client.with_token(signed.token))
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("the demo exited ({status}); see {}", self.data.join("demo.log").display()),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_data {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// A `width`×`height` JPEG of gradients with noise, different for every `seed`.
fn photo(width: u32, height: u32, seed: u32) -> anyhow::Result<Vec<u8>> {
    let mut state: u32 = 0x1234_5678 ^ seed.wrapping_mul(0x9E37_79B9);
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state & 15) as u8;
        let shift = seed as u8;
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(noise).wrapping_add(shift),
            ((y * 255 / height) as u8).wrapping_add(noise),
            (((x + y) / 28) as u8).wrapping_add(noise).wrapping_sub(shift),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&image)?;
    Ok(out.into_inner())
}

/// Waits until `until` gives something, asking every `POLL`, for at most `STEP_TIMEOUT`.
async fn poll<T, F, Fut>(what: &str, mut until: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(found) = until().await? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {STEP_TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Downloads the media of message `seq`, checked against the message's SHA-256.
async fn download(client: &Client, chat_id: i64, seq: i64, sha256: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    client.download_media(chat_id, seq, false, None, &mut out, &mut |_, _| {}).await?;
    let got = hex::encode(Sha256::digest(&out));
    if got != sha256 {
        bail!("message {seq}: the download's SHA-256 is {got}, the message says {sha256}");
    }
    Ok(out)
}

pub async fn run(
    peyvand: &Path,
    data: Option<PathBuf>,
    keep_data: bool,
    args: &MediaAcrossArgs,
) -> anyhow::Result<serde_json::Value> {
    let photos = args.photos();
    if photos == 0 || args.width == 0 || args.height == 0 {
        bail!("--photos, --width and --height must be at least 1");
    }
    let mut demo = Demo::start(peyvand, data, keep_data)?;
    say(&format!(
        "peyvand demo (pid {}): alborz {}, damavand {}; data in {}",
        demo.pid(),
        demo.url("alborz")?,
        demo.url("damavand")?,
        demo.data.display()
    ));
    let sender = demo.sign_in("alborz", SENDER).await?;
    let receiver = demo.sign_in("damavand", RECEIVER).await?;
    let consent = SettingsUpdate { interconnect: Some(Audience::Everybody), ..SettingsUpdate::default() };
    sender.update_settings(&consent).await?;
    receiver.update_settings(&consent).await?;
    let address = format!("{RECEIVER}@damavand");
    // The providers may not have each other in their directory yet: asked again until then.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let hub_chat = loop {
        match sender.open_address(&address).await {
            Ok(chat) => break chat.id,
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow::Error::new(e).context(format!("alborz cannot open a room with {address}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    // A text first, so that the room is on damavand before the first photo is timed.
    let hello = SendMessage {
        client_id: "bench-hello".into(),
        content: Some(Content::Text { text: "salam".into() }),
        reply_to: None,
        forward: None,
        media: None,
    };
    let hello_seq = sender.send(hub_chat, &hello).await?.message.seq;
    let copy_chat = poll("the room to reach damavand", || async {
        let chats = receiver.chats().await?.chats;
        Ok(chats
            .into_iter()
            .find(|c| c.peer.as_ref().and_then(|p| p.messenger.as_ref()).is_some_and(|m| m.provider_id == "alborz"))
            .map(|c| c.id))
    })
    .await?;
    let visible_at = |seq: i64| {
        let receiver = &receiver;
        async move {
            let query = HistoryQuery { before: None, after: Some(seq - 1), limit: Some(1) };
            let page = receiver.history(copy_chat, &query).await?.messages;
            anyhow::Ok(page.into_iter().find(|m| m.seq == seq))
        }
    };
    poll("the text on damavand", || visible_at(hello_seq)).await?;

    let total = Recorder::new()?;
    let visible = Recorder::new()?;
    let first = Recorder::new()?;
    let second = Recorder::new()?;
    let upload = Recorder::new()?;
    let mut bytes = 0u64;
    say(&format!(
        "{photos} photos of {}×{} from alborz, each downloaded twice on damavand, one after the other",
        args.width, args.height
    ));
    let mut progress = Progress::new("photos", photos);
    for i in 0..photos {
        let jpeg = photo(args.width, args.height, i as u32)?;
        let started = Instant::now();
        let new = NewUpload { name: Some(format!("photo-{i}.jpg")), ..Default::default() };
        let item =
            sender.upload(MediaKind::Photo, jpeg.len() as u64, &new, &mut Cursor::new(&jpeg), &mut |_, _| {}).await?;
        upload.record(started.elapsed());
        let started = Instant::now();
        let seq = sender.send_media(hub_chat, &item.id, None).await?.message.seq;
        let message = poll("the photo on damavand", || visible_at(seq)).await?;
        let seen = Instant::now();
        visible.record(seen - started);
        if message.content.media().map(|m| m.sha256.as_str()) != Some(item.media.sha256.as_str()) {
            bail!("message {seq} on damavand does not describe the photo alborz sent");
        }
        let got = download(&receiver, copy_chat, seq, &item.media.sha256).await?;
        let done = Instant::now();
        first.record(done - seen);
        total.record(done - started);
        let again_started = Instant::now();
        let again = download(&receiver, copy_chat, seq, &item.media.sha256).await?;
        second.record(again_started.elapsed());
        if again != got {
            bail!("message {seq}: the second download differs from the first");
        }
        bytes += got.len() as u64;
        progress.step();
    }
    demo.check_alive()?;
    let (total, visible, first, second, upload) =
        (total.summary(), visible.summary(), first.summary(), second.summary(), upload.summary());
    say(&format!("  send → downloaded on damavand: {}", total.line()));
    say(&format!("  send → visible on damavand:    {}", visible.line()));
    say(&format!("  first download (from alborz):  {}", first.line()));
    say(&format!("  second download (own copy):    {}", second.line()));
    say(&format!("  upload on alborz (not timed above): {}", upload.line()));
    say(&format!("  {:.0} KB per photo on average", bytes as f64 / photos as f64 / 1000.0));
    Ok(json!({
        "mode": "media-across",
        "quick": args.quick,
        "photos": photos,
        "width": args.width,
        "height": args.height,
        "bytes_mean": bytes as f64 / photos as f64,
        "poll_interval_ms": POLL.as_millis() as u64,
        "send_to_downloaded": total,
        "send_to_visible": visible,
        "first_download": first,
        "second_download": second,
        "upload": upload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_stdout_lines() {
        assert_eq!(parse_line("READY registry http://127.0.0.1:4000"), Line::Registry("http://127.0.0.1:4000"));
        assert_eq!(
            parse_line("READY provider alborz http://127.0.0.1:4001"),
            Line::Provider { id: "alborz", url: "http://127.0.0.1:4001" }
        );
        assert_eq!(parse_line("OTP +989122100001 04213 alborz"), Line::Otp { phone: "+989122100001", code: "04213" });
        assert_eq!(parse_line("ADMIN-TOKEN /tmp/x/registry/admin-token"), Line::Other);
    }

    #[test]
    fn every_photo_is_a_different_jpeg() {
        let (a, b) = (photo(64, 48, 0).expect("photo"), photo(64, 48, 1).expect("photo"));
        assert_eq!(&a[..2], &[0xFF, 0xD8]);
        assert_ne!(a, b);
    }
}
