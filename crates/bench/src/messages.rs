//! `peyvand-bench messages`: people in pairs, each pair with a direct chat, every person's
//! update stream open, and messages sent at a fixed rate (open loop) round-robin over the
//! senders. Each message is timed from its due time to its arrival on the partner's stream.
//! With several nodes, each person uses node i mod N, so a pair's two people are on different
//! nodes and every message crosses the bus.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use peyvand_api::{Chat, OpenDirect};
use serde::Serialize;
use serde_json::json;

use crate::connect::connect_all;
use crate::metrics::{Scrape, ServerSide};
use crate::procfs::{self, CpuSnapshot, Memory};
use crate::progress::say;
use crate::schedule::Schedule;
use crate::sender::{REQUEST_TIMEOUT, fire, http_dispatch, pool, routes, warm_pool};
use crate::server::Servers;
use crate::signup::{Person, sign_up};
use crate::tracker::Tracker;
use crate::ws::Socket;
use crate::ws_sender::{self, read_frames};
use crate::{perf, setup_client};

/// Lets the readers start before the first message is due.
const LEAD: Duration = Duration::from_millis(200);
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
    /// Open no update streams: measures the durable send path alone (send→ack), to tell its
    /// cost from the cost of delivery. Needs `--sends http`.
    #[arg(long)]
    pub no_streams: bool,
    /// How people send: `websocket` (a `send` frame on their own update stream) or `http`
    /// (`POST /v1/chats/{id}/messages` over a pool of keep-alive connections).
    #[arg(long, value_enum, default_value_t = Sends::Websocket)]
    pub sends: Sends,
}

/// The two ways the client API takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sends {
    Websocket,
    Http,
}

/// Opens each pair's chat, on the node of the pair's first person.
async fn open_chats(http: &reqwest::Client, servers: &Servers, people: &[Person]) -> anyhow::Result<Vec<i64>> {
    let mut results = futures_util::stream::iter(people.chunks_exact(2).enumerate())
        .map(|(k, pair)| async move {
            let response = http
                .post(format!("{}/v1/chats/direct", servers.node_for(2 * k).base_url))
                .bearer_auth(&pair[0].token)
                .json(&OpenDirect { user_id: Some(pair[1].id), address: None })
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

pub async fn run(servers: &mut Servers, args: &MessagesArgs) -> anyhow::Result<serde_json::Value> {
    if args.users < 2 || !args.users.is_multiple_of(2) {
        bail!("--users must be an even number of at least 2");
    }
    if args.no_streams && args.sends == Sends::Websocket {
        bail!("--no-streams needs --sends http: sends over WebSocket go on the update streams");
    }
    let schedule = Schedule::new(args.rate, Duration::from_secs(args.duration));
    let cluster = servers.setup();
    let pids = servers.pids();
    let base_urls = servers.base_urls();
    let setup = setup_client()?;

    say(&format!("signing up {} people ({} at a time)", args.users, args.signup_concurrency));
    let (people, sign_ups) = sign_up(&setup, servers, args.users, args.signup_concurrency).await?;
    say(&format!("  {:.0} sign-ups/s", sign_ups.per_second));

    let opened = Instant::now();
    let chats = open_chats(&setup, servers, &people).await?;
    let chats_seconds = opened.elapsed().as_secs_f64();
    say(&format!("opened {} direct chats in {chats_seconds:.1} s", chats.len()));

    let before_connect = procfs::memory_sum(&pids)?;
    let streams = if args.no_streams { &people[..0] } else { &people[..] };
    say(&format!("connecting {} update streams", streams.len()));
    let mut sockets: Vec<Option<Socket>> = (0..streams.len()).map(|_| None).collect();
    let connect =
        connect_all(&servers.addresses(), streams, 0, args.connect_concurrency, |i, s| sockets[i] = Some(s)).await;
    if connect.connected != streams.len() {
        bail!("only {} of {} streams connected: {:?}", connect.connected, streams.len(), connect.failures);
    }
    let after_connect = procfs::memory_sum(&pids)?;

    let start = Instant::now() + LEAD;
    let track_seconds = args.duration + args.drain + REQUEST_TIMEOUT.as_secs() + 5;
    let tracker = Arc::new(Tracker::new(schedule, start, Duration::from_secs(args.warmup), track_seconds)?);
    let sockets: Vec<Socket> = sockets.into_iter().flatten().collect();
    let (tasks, mut dispatch): (_, Box<dyn FnMut(u64)>) = match args.sends {
        Sends::Websocket => {
            let (tasks, queues) = ws_sender::start(sockets, &people, &chats, &tracker);
            let fail = tracker.clone();
            let dispatch = move |i: u64| {
                if queues[(i % queues.len() as u64) as usize].send(i).is_err() {
                    fail.failed("stream closed".into());
                }
            };
            say(&format!(
                "sending {} messages at {}/s for {} s, each on its sender's update stream",
                schedule.total(),
                schedule.rate(),
                args.duration
            ));
            (tasks, Box::new(dispatch))
        }
        Sends::Http => {
            let http = pool(args.senders_concurrency)?;
            warm_pool(&http, &base_urls, args.senders_concurrency).await;
            let routes = routes(&base_urls, &people, &chats)?;
            let tasks = sockets
                .into_iter()
                .zip(&people)
                .map(|(socket, person)| tokio::spawn(read_frames(socket.split().1, person.id, tracker.clone())))
                .collect();
            say(&format!(
                "sending {} messages at {}/s for {} s over HTTP ({} in flight at most)",
                schedule.total(),
                schedule.rate(),
                args.duration,
                args.senders_concurrency
            ));
            (tasks, Box::new(http_dispatch(http, routes, tracker.clone(), args.senders_concurrency)))
        }
    };
    tokio::time::sleep_until(start.into()).await;
    let scrape_start = Scrape::take_all(&setup, &base_urls).await;
    let cpu_start = CpuSnapshot::take(&pids);
    let span = Duration::from_secs(args.duration);
    let perf_dir = servers.data_dir().to_path_buf();
    let stat = if args.perf_stat { Some(perf::stat(&pids, span, perf_dir.join("perf-stat.csv"))?) } else { None };
    let record = match &args.perf_record {
        Some(path) => Some(perf::record(&pids, span, path.clone())?),
        None => None,
    };

    let late_ticks = fire(&tracker, &mut dispatch).await;
    let sending_seconds = start.elapsed().as_secs_f64();
    let cpu_sending = CpuSnapshot::take(&pids).since(&cpu_start);
    let scrape_sent = Scrape::take_all(&setup, &base_urls).await;
    let scrape_start_total = Scrape::total(&scrape_start);
    let server_sending = ServerSide::between(&scrape_start_total, &Scrape::total(&scrape_sent));
    let server_sending_by_node = ServerSide::by_node(&scrape_start, &scrape_sent);

    let total = schedule.total();
    let all_answered = wait_until(Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(2), || {
        tracker.completed.load(Ordering::Relaxed) >= total
    })
    .await;
    let all_delivered = !args.no_streams
        && wait_until(Instant::now() + Duration::from_secs(args.drain), || {
            tracker.delivered_count.load(Ordering::Relaxed) >= tracker.acked_count.load(Ordering::Relaxed)
        })
        .await;
    let cpu_total = CpuSnapshot::take(&pids).since(&cpu_start);
    let scrape_end = Scrape::total(&Scrape::take_all(&setup, &base_urls).await);
    let server_total = ServerSide::between(&scrape_start_total, &scrape_end);
    let end_memory = procfs::memory_sum(&pids)?;
    let end_memory_by_node = pids.iter().map(|&pid| procfs::memory(pid)).collect::<anyhow::Result<Vec<_>>>()?;
    drop(dispatch);
    for task in &tasks {
        task.abort();
    }
    servers.check_alive()?;

    let perf_stat = match stat {
        Some(run) => Some(perf::read_stat(&run.finish().await?).context("perf stat output")?),
        None => None,
    };
    if let Some(run) = record {
        let path = run.finish().await?;
        say(&format!("perf profile in {} (perf report -i {} --no-children)", path.display(), path.display()));
    }

    let outcome = tracker.outcome();
    // perf counted over the sending span, as did `server_sending`. These figures describe the
    // embedded storage's writes: on PostgreSQL, PostgreSQL's own processes write, and perf
    // watches only the servers.
    let disk = perf_stat.as_ref().filter(|_| servers.embedded_storage()).map(|s| {
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
    say(&format!("  servers       {}", cluster.line()));
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
        procfs::mib(before_connect.rss),
        procfs::mib(after_connect.rss),
        procfs::mib(end_memory.rss),
        procfs::mib(end_memory.peak)
    ));
    say(&format!(
        "  server side   {:.0} requests, mean {:.1} ms in the server, {:.0} messages stored, {:.0} frames sent",
        server_sending.requests,
        server_sending.mean_request_ms,
        server_sending.messages_stored,
        server_sending.frames_sent
    ));
    let by_node: Vec<NodeReport<'_>> = servers
        .nodes()
        .iter()
        .zip(&cpu_sending.server_cores_by_node)
        .zip(end_memory_by_node)
        .zip(server_sending_by_node)
        .map(|(((node, &cpu_cores_while_sending), memory_end), server_counters_while_sending)| NodeReport {
            base_url: &node.base_url,
            pid: node.pid(),
            cpu_cores_while_sending,
            memory_end,
            server_counters_while_sending,
        })
        .collect();
    if by_node.len() > 1 {
        for (i, node) in by_node.iter().enumerate() {
            say(&format!("  node {i:<8} {}", node.line()));
        }
    }
    if let Some(disk) = &disk {
        say(&format!("  disk          {disk}"));
    }
    if late_ticks > 0 {
        say(&format!("  note: the generator fell >5 ms behind its schedule on {late_ticks} ticks"));
    }

    let mut result = json!({
        "mode": "messages",
        "storage": cluster.storage,
        "bus": cluster.bus,
        "nodes": cluster.nodes,
        "users": args.users,
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "streams": !args.no_streams,
        "sends": args.sends,
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
    });
    // Each node's share, when there are several; the figures above are their sums.
    if by_node.len() > 1
        && let Some(fields) = result.as_object_mut()
    {
        fields.insert("by_node".into(), serde_json::to_value(&by_node)?);
    }
    Ok(result)
}

/// One node's share of a run on several nodes.
#[derive(Debug, Serialize)]
struct NodeReport<'a> {
    base_url: &'a str,
    pid: u32,
    cpu_cores_while_sending: f64,
    memory_end: Memory,
    server_counters_while_sending: ServerSide,
}

impl NodeReport<'_> {
    fn line(&self) -> String {
        let side = &self.server_counters_while_sending;
        format!(
            "{}: {:.2} cores, {:.1} MiB at the end, {:.0} requests (mean {:.1} ms), {:.0} messages stored, \
             {:.0} frames sent",
            self.base_url,
            self.cpu_cores_while_sending,
            procfs::mib(self.memory_end.rss),
            side.requests,
            side.mean_request_ms,
            side.messages_stored,
            side.frames_sent
        )
    }
}
