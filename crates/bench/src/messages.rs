//! `peyvand-bench messages`: people in pairs, each pair with a direct chat, every person's
//! update stream open, and messages sent at a fixed rate (open loop) round-robin over the
//! senders. Each message is timed from its due time to its arrival on the partner's stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use peyvand_api::{Chat, Content, OpenDirect, SendMessage};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::connect_all;
use crate::metrics::{Scrape, ServerSide};
use crate::procfs::{self, CpuSnapshot};
use crate::progress::say;
use crate::schedule::Schedule;
use crate::server::Server;
use crate::signup::{Person, sign_up};
use crate::tracker::{Tracker, client_id};
use crate::ws::{Seen, Socket, classify};
use crate::{perf, setup_client};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lets the readers start before the first message is due.
const LEAD: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_millis(1);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, clap::Args)]
pub struct MessagesArgs {
    /// People taking part (an even number: they are paired into direct chats).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Messages per second, offered whatever the server does.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Sends in flight at most, which is also the number of HTTP/1.1 connections. A send that
    /// waits for a free slot still counts its latency from its due time.
    #[arg(long, default_value_t = 512)]
    pub senders_concurrency: usize,
    /// Seconds at the start left out of the latency figures (still counted as sent/delivered).
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Seconds to wait after the last send for deliveries still on their way.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Concurrent sign-ups in the first phase.
    #[arg(long, default_value_t = 64)]
    pub signup_concurrency: usize,
    /// Concurrent WebSocket handshakes.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Count the server's CPU time, context switches and fsync calls with `perf stat` while
    /// sending.
    #[arg(long)]
    pub perf_stat: bool,
    /// Sample the server's stacks with `perf record` while sending, into this file.
    #[arg(long)]
    pub perf_record: Option<PathBuf>,
}

/// Where each person's sends go: the chat with their partner, under their own session.
struct Route {
    url: String,
    auth: HeaderValue,
}

async fn open_chats(http: &reqwest::Client, server: &Server, people: &[Person]) -> anyhow::Result<Vec<i64>> {
    let mut results = futures_util::stream::iter(people.chunks_exact(2).enumerate())
        .map(|(k, pair)| async move {
            let response = http
                .post(format!("{}/v1/chats/direct", server.base_url))
                .bearer_auth(&pair[0].token)
                .json(&OpenDirect { user_id: pair[1].id })
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                bail!("POST /v1/chats/direct answered {status}: {}", response.text().await.unwrap_or_default());
            }
            let chat: Chat = response.json().await?;
            anyhow::Ok((k, chat.id))
        })
        .buffer_unordered(64);
    let mut chats = vec![0; people.len() / 2];
    while let Some(result) = results.next().await {
        let (k, chat_id) = result?;
        chats[k] = chat_id;
    }
    Ok(chats)
}

/// Reads one person's stream until it closes, reporting messages from others as delivered.
async fn read_deliveries(mut socket: Socket, me: i64, tracker: Arc<Tracker>) {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message
            && let Seen::Message { sender_id, client_id } = classify(&text)
            && sender_id != me
        {
            tracker.delivered(&client_id, Instant::now());
        }
    }
}

async fn send_one(http: reqwest::Client, route: Arc<Route>, i: u64, tracker: Arc<Tracker>, slots: Arc<Semaphore>) {
    let Ok(_slot) = slots.acquire_owned().await else { return };
    let request = SendMessage {
        client_id: client_id(i),
        content: Some(Content::Text { text: format!("bench message {i}") }),
        reply_to: None,
        forward: None,
    };
    let body = match serde_json::to_vec(&request) {
        Ok(body) => body,
        Err(e) => return tracker.failed(format!("encode: {e}")),
    };
    let sent = http
        .post(&route.url)
        .header(AUTHORIZATION, route.auth.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return tracker.failed("timeout".into()),
        Err(e) if e.is_connect() => return tracker.failed("connect".into()),
        Err(_) => return tracker.failed("transport".into()),
    };
    let status = response.status();
    // Reading the body to its end lets the connection go back to the pool.
    let read = response.bytes().await;
    match (status.as_u16(), read) {
        (201, Ok(_)) => tracker.acked(i, Instant::now()),
        (_, Err(_)) => tracker.failed("transport".into()),
        (code, Ok(_)) => tracker.failed(code.to_string()),
    }
}

/// Opens the sending pool's connections before the clock starts, so that the first second
/// does not measure TCP handshakes.
async fn warm_pool(http: &reqwest::Client, base_url: &str, connections: usize) {
    let url = format!("{base_url}/healthz");
    futures_util::stream::iter(0..connections)
        .for_each_concurrent(connections, |_| async {
            if let Ok(r) = http.get(&url).send().await {
                let _ = r.bytes().await;
            }
        })
        .await;
}

async fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(server: &mut Server, args: &MessagesArgs) -> anyhow::Result<serde_json::Value> {
    if args.users < 2 || !args.users.is_multiple_of(2) {
        bail!("--users must be an even number of at least 2");
    }
    let schedule = Schedule::new(args.rate, Duration::from_secs(args.duration));
    let pid = server.pid();
    let setup = setup_client()?;

    say(&format!("signing up {} people ({} at a time)", args.users, args.signup_concurrency));
    let (people, sign_ups) = sign_up(&setup, server, args.users, args.signup_concurrency).await?;
    say(&format!("  {:.0} sign-ups/s", sign_ups.per_second));

    let opened = Instant::now();
    let chats = open_chats(&setup, server, &people).await?;
    let chats_seconds = opened.elapsed().as_secs_f64();
    say(&format!("opened {} direct chats in {chats_seconds:.1} s", chats.len()));

    let before_connect = procfs::memory(pid)?;
    say(&format!("connecting {} update streams", people.len()));
    let (sockets, connect) = connect_all(server.address, &people, args.connect_concurrency).await;
    if connect.connected != people.len() {
        bail!("only {} of {} streams connected: {:?}", connect.connected, people.len(), connect.failures);
    }
    let after_connect = procfs::memory(pid)?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.senders_concurrency)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    warm_pool(&http, &server.base_url, args.senders_concurrency).await;
    let routes: Vec<Arc<Route>> = people
        .iter()
        .enumerate()
        .map(|(u, person)| {
            let auth = HeaderValue::from_str(&format!("Bearer {}", person.token))?;
            anyhow::Ok(Arc::new(Route { url: format!("{}/v1/chats/{}/messages", server.base_url, chats[u / 2]), auth }))
        })
        .collect::<anyhow::Result<_>>()?;

    let start = Instant::now() + LEAD;
    let track_seconds = args.duration + args.drain + REQUEST_TIMEOUT.as_secs() + 5;
    let tracker = Arc::new(Tracker::new(schedule, start, Duration::from_secs(args.warmup), track_seconds)?);
    let readers: Vec<_> = sockets
        .into_iter()
        .zip(&people)
        .filter_map(|(socket, person)| Some(tokio::spawn(read_deliveries(socket?, person.id, tracker.clone()))))
        .collect();

    say(&format!(
        "sending {} messages at {}/s for {} s ({} in flight at most)",
        schedule.total(),
        schedule.rate(),
        args.duration,
        args.senders_concurrency
    ));
    tokio::time::sleep_until(start.into()).await;
    let scrape_start = Scrape::take(&setup, &server.base_url).await;
    let cpu_start = CpuSnapshot::take(pid);
    let span = Duration::from_secs(args.duration);
    let perf_dir = server.data_dir().to_path_buf();
    let stat = if args.perf_stat { Some(perf::stat(pid, span, perf_dir.join("perf-stat.csv"))?) } else { None };
    let record = match &args.perf_record {
        Some(path) => Some(perf::record(pid, span, path.clone())?),
        None => None,
    };

    let slots = Arc::new(Semaphore::new(args.senders_concurrency.max(1)));
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0u64;
    let mut late_ticks = 0u64;
    while next < schedule.total() {
        ticks.tick().await;
        let due = schedule.due_by(start.elapsed());
        if due - next > schedule.rate().div_ceil(1000) * 5 {
            // The generator itself fell more than 5 ms behind: worth knowing when reading p99.
            late_ticks += 1;
        }
        while next < due {
            let route = routes[(next % routes.len() as u64) as usize].clone();
            tokio::spawn(send_one(http.clone(), route, next, tracker.clone(), slots.clone()));
            next += 1;
        }
    }
    let sending_seconds = start.elapsed().as_secs_f64();
    let cpu_sending = CpuSnapshot::take(pid).since(&cpu_start);
    let server_sending = ServerSide::between(&scrape_start, &Scrape::take(&setup, &server.base_url).await);

    let total = schedule.total();
    let all_answered = wait_until(Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(2), || {
        tracker.completed.load(Ordering::Relaxed) >= total
    })
    .await;
    let all_delivered = wait_until(Instant::now() + Duration::from_secs(args.drain), || {
        tracker.delivered_count.load(Ordering::Relaxed) >= tracker.acked_count.load(Ordering::Relaxed)
    })
    .await;
    let cpu_total = CpuSnapshot::take(pid).since(&cpu_start);
    let server_total = ServerSide::between(&scrape_start, &Scrape::take(&setup, &server.base_url).await);
    let end_memory = procfs::memory(pid)?;
    for reader in &readers {
        reader.abort();
    }
    server.check_alive()?;

    let perf_stat = match stat {
        Some(run) => Some(perf::read_stat(&run.finish().await?).context("perf stat output")?),
        None => None,
    };
    if let Some(run) = record {
        let path = run.finish().await?;
        say(&format!("perf profile in {} (perf report -i {} --no-children)", path.display(), path.display()));
    }

    let outcome = tracker.outcome();
    // perf counted over the sending span, as did `server_sending`.
    let disk = perf_stat.as_ref().map(|s| {
        let count = |event: &str| s.get(event).copied().unwrap_or(0.0);
        let syncs = count("syscalls:sys_enter_fdatasync") + count("syscalls:sys_enter_fsync");
        let stored = server_sending.messages_stored.max(1.0);
        json!({
            "syncs": syncs,
            "syncs_per_second": syncs / span.as_secs_f64(),
            "messages_per_sync": stored / syncs.max(1.0),
            "pwrites_per_message": count("syscalls:sys_enter_pwrite64") / stored,
            "preads_per_message": count("syscalls:sys_enter_pread64") / stored,
        })
    });

    say("");
    say(&format!("messages: {} people, offered {}/s for {} s", args.users, args.rate, args.duration));
    say(&format!("  sign-ups      {:.0}/s ({} in {:.1} s)", sign_ups.per_second, sign_ups.count, sign_ups.seconds));
    say(&format!("  streams       {:.0} connects/s", connect.per_second));
    say(&format!(
        "  acked         {} of {} ({:.0}/s), errors {:?}, unanswered {}",
        outcome.acked, outcome.scheduled, outcome.acked_per_second, outcome.errors, outcome.unanswered
    ));
    say(&format!(
        "  delivered     {} ({:.0}/s), missing {}, duplicates {}",
        outcome.delivered, outcome.delivered_per_second, outcome.missing, outcome.duplicates
    ));
    say(&format!("  send→deliver  {}", outcome.delivery_latency.line()));
    say(&format!("  send→ack      {}", outcome.ack_latency.line()));
    say(&format!("  cpu (sending) {}", cpu_sending.line()));
    say(&format!(
        "  server memory {:.1} MiB before streams, {:.1} MiB after, {:.1} MiB at the end (peak {:.1} MiB)",
        mib(before_connect.rss),
        mib(after_connect.rss),
        mib(end_memory.rss),
        mib(end_memory.peak)
    ));
    say(&format!(
        "  server side   {:.0} requests, mean {:.1} ms in the server, {:.0} messages stored, {:.0} frames sent",
        server_sending.requests,
        server_sending.mean_request_ms,
        server_sending.messages_stored,
        server_sending.frames_sent
    ));
    if let Some(disk) = &disk {
        say(&format!("  disk          {disk}"));
    }
    if late_ticks > 0 {
        say(&format!("  note: the generator fell >5 ms behind its schedule on {late_ticks} ticks"));
    }

    Ok(json!({
        "mode": "messages",
        "users": args.users,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "senders_concurrency": args.senders_concurrency,
        "sign_up": sign_ups,
        "chats": { "count": chats.len(), "seconds": chats_seconds },
        "connect": connect,
        "messages": outcome,
        "all_answered": all_answered,
        "all_delivered_within_drain": all_delivered,
        "sending_seconds": sending_seconds,
        "generator_late_ticks": late_ticks,
        "cpu_while_sending": cpu_sending,
        "cpu_until_drained": cpu_total,
        "server_memory": { "before_streams": before_connect, "after_streams": after_connect, "end": end_memory },
        "perf_stat": perf_stat,
        "disk": disk,
        "server_counters_while_sending": server_sending,
        "server_counters_until_drained": server_total,
    }))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
