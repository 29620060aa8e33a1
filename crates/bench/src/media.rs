//! `peyvand-bench media`: files through one server, as the client library sends and fetches
//! them (tus in checked chunks of 4 MiB, downloads by message). Two people share a direct
//! chat: one uploads and sends, the other downloads. In order:
//!
//! 1. one large upload (2 GB by default), sampling the server's resident memory throughout:
//!    the body is stored in pieces as it arrives, so memory should stay near idle;
//! 2. many files uploaded one after the other, then downloaded one after the other:
//!    throughput and the server's CPU time per GB each way;
//! 3. one video downloaded by many people at once: total throughput and the time of each
//!    download;
//! 4. 12-megapixel photos uploaded (each checked, stripped, thumbnailed and previewed by the
//!    server): photos per second.
//!
//! The files are made up: pseudo-random bytes for files, the repository's small MP4 padded
//! with a `free` box for the video, and a JPEG drawn with the `image` crate for the photo.

use std::io::Cursor;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use peyvand_api::MediaKind;
use peyvand_client::{Client, NewUpload};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use crate::procfs::{self, CpuSnapshot, CpuUse};
use crate::progress::say;
use crate::server::Servers;
use crate::setup_client;
use crate::signup::sign_up;

const MB: f64 = 1_000_000.0;
/// The repository's smallest MP4 (H.264, 64×48), padded to the video's size.
const VIDEO_MP4: &[u8] = include_bytes!("../../media/tests/fixtures/video.mp4");

#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// The size of the one large upload, in MB (10^6 bytes); at most the server's 2,000.
    #[arg(long, default_value_t = 2000)]
    pub large_mb: u64,
    /// Files uploaded, then downloaded, one after the other.
    #[arg(long, default_value_t = 20)]
    pub files: usize,
    /// The size of each of them, in MB.
    #[arg(long, default_value_t = 50)]
    pub file_mb: u64,
    /// Downloads of one video at the same time.
    #[arg(long, default_value_t = 100)]
    pub downloads: usize,
    /// The video's size, in MB.
    #[arg(long, default_value_t = 20)]
    pub video_mb: u64,
    /// 12-megapixel photos uploaded.
    #[arg(long, default_value_t = 20)]
    pub photos: usize,
    /// Photo uploads at the same time.
    #[arg(long, default_value_t = 2)]
    pub photo_concurrency: usize,
    /// A short run: a 200 MB large upload, 4 files of 20 MB, 20 downloads of a 10 MB video and
    /// 4 photos.
    #[arg(long)]
    pub quick: bool,
}

impl MediaArgs {
    fn effective(&self) -> Self {
        if !self.quick {
            return self.clone();
        }
        Self {
            large_mb: 200,
            files: 4,
            file_mb: 20,
            downloads: 20,
            video_mb: 10,
            photos: 4,
            photo_concurrency: self.photo_concurrency,
            quick: true,
        }
    }
}

/// A file of pseudo-random bytes made as it is read: a 1 MiB random block read from an
/// offset of its own per file, so that no two files have the same hash, and nothing of the
/// file is held in memory.
#[derive(Debug)]
struct MadeUp {
    block: Arc<Vec<u8>>,
    shift: u64,
    len: u64,
    pos: u64,
}

impl MadeUp {
    fn new(block: Arc<Vec<u8>>, seed: u64, len: u64) -> Self {
        Self { shift: seed.wrapping_mul(7919) % block.len() as u64, block, len, pos: 0 }
    }
}

impl AsyncRead for MadeUp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let block_len = this.block.len() as u64;
        while buf.remaining() > 0 && this.pos < this.len {
            let at = ((this.pos + this.shift) % block_len) as usize;
            let n = (this.block.len() - at).min(buf.remaining()).min((this.len - this.pos) as usize);
            buf.put_slice(&this.block[at..at + n]);
            this.pos += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for MadeUp {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        let to = match position {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(n) => self.len.checked_add_signed(n),
            std::io::SeekFrom::Current(n) => self.pos.checked_add_signed(n),
        };
        self.pos = to.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

/// 1 MiB of pseudo-random bytes (xorshift), which no compressor or type detector recognises.
fn random_block() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < 1 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

/// The small MP4 with a `free` box after it, `len` bytes in all.
fn padded_video(len: u64) -> anyhow::Result<Vec<u8>> {
    let pad = len.saturating_sub(VIDEO_MP4.len() as u64).max(8);
    let size = u32::try_from(pad).context("a video of at most 4 GB")?;
    let mut out = Vec::with_capacity(VIDEO_MP4.len() + pad as usize);
    out.extend_from_slice(VIDEO_MP4);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(b"free");
    out.resize(VIDEO_MP4.len() + pad as usize, 0);
    Ok(out)
}

/// A 4000×3000 JPEG (12 megapixels) of smooth gradients with some noise, as a camera's photo
/// compresses (a few MB at quality 90).
fn twelve_megapixels() -> anyhow::Result<Vec<u8>> {
    let (width, height) = (4000u32, 3000u32);
    let mut state: u32 = 0x1234_5678;
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state & 15) as u8;
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(noise),
            ((y * 255 / height) as u8).wrapping_add(noise),
            (((x + y) / 28) as u8).wrapping_add(noise),
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&image)?;
    Ok(out.into_inner())
}

/// The server's resident memory, sampled every 20 ms while something runs.
#[derive(Debug)]
struct MemorySampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    fn start(pid: u32) -> Self {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let task = {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(memory) = procfs::memory(pid) {
                        peak.fetch_max(memory.rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self { peak, stop, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// Percentile `p` (0 to 100) of sorted seconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The CPU used since `before`, and the server's share of it in seconds.
fn cpu_since(pid: u32, before: &CpuSnapshot) -> (CpuUse, f64) {
    let used = CpuSnapshot::take(&[pid]).since(before);
    let server_seconds = used.server_cores * used.seconds;
    (used, server_seconds)
}

pub async fn run(servers: &mut Servers, args: &MediaArgs) -> anyhow::Result<serde_json::Value> {
    let args = args.effective();
    if servers.nodes().len() != 1 || !servers.embedded_storage() {
        bail!("the media scenario runs on one node on the embedded store");
    }
    if args.large_mb > 2000 {
        bail!("--large-mb is at most 2000: the server takes files of up to 2 GB");
    }
    let pid = servers.pids()[0];
    let base_url = servers.nodes()[0].base_url.clone();
    let setup = setup_client()?;
    let (people, _) = sign_up(&setup, servers, 2, 2).await?;
    let sender = Client::new(&base_url)?.with_token(people[0].token.clone());
    let receiver = Client::new(&base_url)?.with_token(people[1].token.clone());
    let chat = sender.open_direct(people[1].id).await?.id;
    let block = Arc::new(random_block());
    let none = NewUpload::default();

    // 1. One large upload, with the server's memory sampled throughout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procfs::memory(pid)?;
    let large_bytes = args.large_mb * 1_000_000;
    say(&format!("uploading one file of {} MB", args.large_mb));
    let sampler = MemorySampler::start(pid);
    let (started, cpu) = (Instant::now(), CpuSnapshot::take(&[pid]));
    let mut file = MadeUp::new(block.clone(), 1_000_000, large_bytes);
    sender.upload(MediaKind::File, large_bytes, &none, &mut file, &mut |_, _| {}).await?;
    let large_seconds = started.elapsed().as_secs_f64();
    let (large_use, large_cpu) = cpu_since(pid, &cpu);
    say(&format!("  cpu: {}", large_use.line()));
    let peak_sampled = sampler.finish().await;
    let after_large = procfs::memory(pid)?;
    say(&format!(
        "  {:.1} MB/s; server memory {:.1} MiB idle, at most {:.1} MiB while uploading ({:.1} MiB above idle; VmHWM {:.1} MiB)",
        large_bytes as f64 / MB / large_seconds,
        procfs::mib(idle.rss),
        procfs::mib(peak_sampled),
        procfs::mib(peak_sampled.saturating_sub(idle.rss)),
        procfs::mib(after_large.peak)
    ));

    // 2. Files up, one after the other, sent; then down, one after the other.
    let file_bytes = args.file_mb * 1_000_000;
    say(&format!("uploading {} files of {} MB one after the other", args.files, args.file_mb));
    let (started, cpu) = (Instant::now(), CpuSnapshot::take(&[pid]));
    let mut items = Vec::with_capacity(args.files);
    for i in 0..args.files {
        let mut file = MadeUp::new(block.clone(), i as u64, file_bytes);
        items.push(sender.upload(MediaKind::File, file_bytes, &none, &mut file, &mut |_, _| {}).await?);
    }
    let up_seconds = started.elapsed().as_secs_f64();
    let (up_use, up_cpu) = cpu_since(pid, &cpu);
    say(&format!("  cpu: {}", up_use.line()));
    let total = (args.files as u64 * file_bytes) as f64;
    say(&format!("  {:.1} MB/s, server {:.1} CPU s per GB", total / MB / up_seconds, up_cpu / (total / 1e9)));
    let mut seqs = Vec::with_capacity(items.len());
    for item in &items {
        seqs.push(sender.send_media(chat, &item.id, None).await?.message.seq);
    }
    say("downloading them one after the other");
    let (started, cpu) = (Instant::now(), CpuSnapshot::take(&[pid]));
    for &seq in &seqs {
        let got = receiver.download_media(chat, seq, false, None, &mut tokio::io::sink(), &mut |_, _| {}).await?;
        if got != file_bytes {
            bail!("message {seq}: {got} bytes downloaded, not {file_bytes}");
        }
    }
    let down_seconds = started.elapsed().as_secs_f64();
    let (down_use, down_cpu) = cpu_since(pid, &cpu);
    say(&format!("  cpu: {}", down_use.line()));
    say(&format!("  {:.1} MB/s, server {:.1} CPU s per GB", total / MB / down_seconds, down_cpu / (total / 1e9)));

    // 3. One video, downloaded by many at once.
    let video = padded_video(args.video_mb * 1_000_000)?;
    let video_bytes = video.len() as u64;
    let new = NewUpload { name: Some("video.mp4".into()), ..Default::default() };
    let item = sender.upload(MediaKind::Video, video_bytes, &new, &mut Cursor::new(video), &mut |_, _| {}).await?;
    let video_seq = sender.send_media(chat, &item.id, None).await?.message.seq;
    say(&format!("{} downloads at once of one {} MB video", args.downloads, args.video_mb));
    let (started, cpu) = (Instant::now(), CpuSnapshot::take(&[pid]));
    let mut times: Vec<f64> = futures_util::stream::iter(0..args.downloads)
        .map(|_| {
            let receiver = receiver.clone();
            async move {
                let started = Instant::now();
                let got = receiver
                    .download_media(chat, video_seq, false, None, &mut tokio::io::sink(), &mut |_, _| {})
                    .await?;
                if got != video_bytes {
                    bail!("{got} bytes of the video downloaded, not {video_bytes}");
                }
                anyhow::Ok(started.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(args.downloads.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let many_seconds = started.elapsed().as_secs_f64();
    let (many_use, many_cpu) = cpu_since(pid, &cpu);
    say(&format!("  cpu: {}", many_use.line()));
    times.sort_by(f64::total_cmp);
    let many_total = (args.downloads as u64 * video_bytes) as f64;
    let (p50, p99) = (percentile(&times, 50.0), percentile(&times, 99.0));
    say(&format!(
        "  {:.1} MB/s in all, each download p50 {:.2} s, p99 {:.2} s; server {:.1} CPU s per GB",
        many_total / MB / many_seconds,
        p50,
        p99,
        many_cpu / (many_total / 1e9)
    ));

    // 4. Photos: each one inspected, stripped, thumbnailed and previewed.
    let photo = Arc::new(twelve_megapixels()?);
    say(&format!(
        "uploading {} photos of 12 megapixels ({:.1} MB each), {} at a time",
        args.photos,
        photo.len() as f64 / MB,
        args.photo_concurrency
    ));
    let (started, cpu) = (Instant::now(), CpuSnapshot::take(&[pid]));
    let thumbnails: Vec<bool> = futures_util::stream::iter(0..args.photos)
        .map(|_| {
            let (sender, photo) = (sender.clone(), photo.clone());
            async move {
                let mut reader = Cursor::new(photo.as_slice());
                let item = sender
                    .upload(MediaKind::Photo, photo.len() as u64, &NewUpload::default(), &mut reader, &mut |_, _| {})
                    .await?;
                anyhow::Ok(item.media.thumbnail.is_some() && item.media.preview.is_some())
            }
        })
        .buffer_unordered(args.photo_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    if thumbnails.iter().any(|made| !made) {
        bail!("a photo came back without its thumbnail or preview");
    }
    let photo_seconds = started.elapsed().as_secs_f64();
    let (photo_use, photo_cpu) = cpu_since(pid, &cpu);
    say(&format!("  cpu: {}", photo_use.line()));
    say(&format!(
        "  {:.2} photos/s, server {:.2} CPU s per photo",
        args.photos as f64 / photo_seconds,
        photo_cpu / args.photos.max(1) as f64
    ));
    servers.check_alive()?;

    Ok(json!({
        "mode": "media",
        "quick": args.quick,
        "large_upload": {
            "bytes": large_bytes,
            "seconds": large_seconds,
            "mb_per_second": large_bytes as f64 / MB / large_seconds,
            "server_cpu_seconds": large_cpu,
            "server_rss_idle": idle.rss,
            "server_rss_peak_sampled": peak_sampled,
            "server_rss_peak_above_idle": peak_sampled.saturating_sub(idle.rss),
            "server_vm_hwm": after_large.peak,
            "cpu": large_use,
        },
        "uploads": {
            "files": args.files,
            "bytes_each": file_bytes,
            "seconds": up_seconds,
            "mb_per_second": total / MB / up_seconds,
            "server_cpu_seconds_per_gb": up_cpu / (total / 1e9),
            "cpu": up_use,
        },
        "downloads": {
            "files": args.files,
            "bytes_each": file_bytes,
            "seconds": down_seconds,
            "mb_per_second": total / MB / down_seconds,
            "server_cpu_seconds_per_gb": down_cpu / (total / 1e9),
            "cpu": down_use,
        },
        "concurrent_downloads": {
            "downloads": args.downloads,
            "bytes_each": video_bytes,
            "seconds": many_seconds,
            "mb_per_second": many_total / MB / many_seconds,
            "p50_seconds": p50,
            "p99_seconds": p99,
            "server_cpu_seconds_per_gb": many_cpu / (many_total / 1e9),
            "cpu": many_use,
        },
        "photos": {
            "photos": args.photos,
            "bytes_each": photo.len(),
            "concurrency": args.photo_concurrency,
            "seconds": photo_seconds,
            "per_second": args.photos as f64 / photo_seconds,
            "server_cpu_seconds_per_photo": photo_cpu / args.photos.max(1) as f64,
            "cpu": photo_use,
        },
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};

    use super::*;

    #[tokio::test]
    async fn made_up_files_read_and_seek_as_files_do() {
        let block = Arc::new((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let mut file = MadeUp::new(block.clone(), 0, 2500);
        let mut all = Vec::new();
        file.read_to_end(&mut all).await.expect("read");
        assert_eq!(all.len(), 2500);
        assert_eq!(&all[..1000], block.as_slice());
        assert_eq!(&all[1000..2000], block.as_slice());
        file.seek(std::io::SeekFrom::Start(1990)).await.expect("seek");
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, all[1990..]);
        let mut other = Vec::new();
        MadeUp::new(block, 1, 2500).read_to_end(&mut other).await.expect("read");
        assert_ne!(other, all);
    }

    #[test]
    fn the_padded_video_is_an_mp4_of_the_size_asked() {
        let video = padded_video(100_000).expect("video");
        assert_eq!(video.len(), 100_000);
        assert_eq!(&video[VIDEO_MP4.len() + 4..VIDEO_MP4.len() + 8], b"free");
        let size = u32::from_be_bytes(video[VIDEO_MP4.len()..VIDEO_MP4.len() + 4].try_into().expect("4 bytes"));
        assert_eq!(size as usize, 100_000 - VIDEO_MP4.len());
    }

    #[test]
    fn percentiles_of_few_values() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&sorted, 50.0), 2.0);
        assert_eq!(percentile(&sorted, 99.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
