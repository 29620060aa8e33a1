//! `peyvand-bench idle`: many people, each with one open update stream and nothing to say,
//! to see how many connections the server holds and what each costs it in memory. With several
//! nodes the streams are spread over them and the memory is the nodes' sum.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt;
use serde_json::json;

use crate::connect::connect_all;
use crate::metrics::Scrape;
use crate::procfs::{self, CpuSnapshot};
use crate::progress::say;
use crate::server::Servers;
use crate::setup_client;
use crate::signup::sign_up;

/// File descriptors each process needs besides the connections (logs, database, pools).
const SPARE_FILES: u64 = 200;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Update streams to open, one per person.
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    /// Concurrent sign-ups in the first phase.
    #[arg(long, default_value_t = 64)]
    pub signup_concurrency: usize,
    /// Concurrent WebSocket handshakes.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds to hold the streams open before measuring again.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
}

/// Counts the streams the server has closed while they were meant to stay open.
async fn hold_open(mut socket: crate::ws::Socket, closed: Arc<AtomicU64>) {
    // Reading also answers the server's pings.
    while let Some(Ok(_)) = socket.next().await {}
    closed.fetch_add(1, Ordering::Relaxed);
}

/// The servers' own count of open streams, from their metrics; none unless every node answers.
async fn server_open_streams(http: &reqwest::Client, base_urls: &[String]) -> Option<u64> {
    let scrapes = Scrape::take_all(http, base_urls).await;
    let open: Option<f64> = scrapes.iter().map(|s| s.get("peyvand_websockets_open")).sum();
    open.map(|n| n as u64)
}

pub async fn run(servers: &mut Servers, args: &IdleArgs) -> anyhow::Result<serde_json::Value> {
    let needed = args.connections as u64 + SPARE_FILES;
    if let Some(limit) = procfs::open_files_limit().filter(|limit| *limit < needed) {
        bail!(
            "{} connections need at least {needed} open files in this process and in the server, but the limit is {limit}: \
             raise it with `ulimit -n` (the hard limit is the ceiling without CAP_SYS_RESOURCE), or ask for at most {} connections",
            args.connections,
            limit.saturating_sub(SPARE_FILES)
        );
    }
    let cluster = servers.setup();
    let pids = servers.pids();
    let base_urls = servers.base_urls();
    let addresses = servers.addresses();
    let setup = setup_client()?;

    say(&format!("signing up {} people ({} at a time)", args.connections, args.signup_concurrency));
    let (people, sign_ups) = sign_up(&setup, servers, args.connections, args.signup_concurrency).await?;
    say(&format!("  {:.0} sign-ups/s", sign_ups.per_second));

    // Connected in two halves: the memory the second half adds is the marginal cost of a
    // connection, free of one-off costs (thread stacks, connection pools) that the first
    // connections bring.
    let half = people.len() / 2;
    let before = procfs::memory_sum(&pids)?;
    let bench_before = procfs::memory(std::process::id())?;
    let cpu_start = CpuSnapshot::take(&pids);
    say(&format!("connecting {} update streams ({} at a time)", people.len(), args.connect_concurrency));
    let (mut sockets, first_half) = connect_all(&addresses, &people[..half], 0, args.connect_concurrency).await;
    let middle = procfs::memory_sum(&pids)?;
    let (rest, second_half) = connect_all(&addresses, &people[half..], half, args.connect_concurrency).await;
    let cpu_connect = CpuSnapshot::take(&pids).since(&cpu_start);
    let connected_first = sockets.iter().flatten().count() as u64;
    sockets.extend(rest);
    let closed = Arc::new(AtomicU64::new(0));
    let holders: Vec<_> = sockets.into_iter().flatten().map(|s| tokio::spawn(hold_open(s, closed.clone()))).collect();
    let connected = holders.len() as u64;
    let after = procfs::memory_sum(&pids)?;
    let bench_after = procfs::memory(std::process::id())?;
    let server_counted = server_open_streams(&setup, &base_urls).await;

    say(&format!("holding them for {} s", args.hold));
    let cpu_hold_start = CpuSnapshot::take(&pids);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let cpu_hold = CpuSnapshot::take(&pids).since(&cpu_hold_start);
    let held = procfs::memory_sum(&pids)?;
    let still_open = connected - closed.load(Ordering::Relaxed);
    let server_counted_after_hold = server_open_streams(&setup, &base_urls).await;
    servers.check_alive()?;
    for holder in &holders {
        holder.abort();
    }

    let seconds = first_half.seconds + second_half.seconds;
    let connects_per_second = connected as f64 / seconds.max(1e-9);
    let mut failures = first_half.failures.clone();
    for (why, n) in &second_half.failures {
        *failures.entry(why.clone()).or_insert(0) += n;
    }
    let per_connection = |from: u64, to: u64, count: u64| to.saturating_sub(from) as f64 / count.max(1) as f64;
    let average = per_connection(before.rss, after.rss, connected);
    let average_held = per_connection(before.rss, held.rss, connected);
    let marginal = per_connection(middle.rss, after.rss, connected - connected_first);
    let bench_per_connection = per_connection(bench_before.rss, bench_after.rss, connected);
    say("");
    say(&format!(
        "idle: {} streams asked for, {connected} connected, {still_open} still open after {} s",
        args.connections, args.hold
    ));
    say(&format!("  servers       {}", cluster.line()));
    say(&format!("  sign-ups      {:.0}/s ({} in {:.1} s)", sign_ups.per_second, sign_ups.count, sign_ups.seconds));
    say(&format!("  connects      {connects_per_second:.0}/s ({seconds:.1} s), failures {failures:?}"));
    say(&format!(
        "  server memory {:.1} MiB before, {:.1} MiB at half, {:.1} MiB after connecting, {:.1} MiB after holding",
        procfs::mib(before.rss),
        procfs::mib(middle.rss),
        procfs::mib(after.rss),
        procfs::mib(held.rss)
    ));
    say(&format!(
        "  per stream    {average:.0} bytes on average ({average_held:.0} after holding), {marginal:.0} bytes for the second half"
    ));
    say(&format!("  bench memory  {bench_per_connection:.0} bytes per stream"));
    say(&format!("  cpu (connect) {}", cpu_connect.line()));
    say(&format!("  cpu (idle)    {}", cpu_hold.line()));

    Ok(json!({
        "mode": "idle",
        "storage": cluster.storage,
        "bus": cluster.bus,
        "nodes": cluster.nodes,
        "connections_requested": args.connections,
        "connected": connected,
        "still_open_after_hold": still_open,
        "server_reports_open": server_counted,
        "server_reports_open_after_hold": server_counted_after_hold,
        "hold_s": args.hold,
        "sign_up": sign_ups,
        "connect": { "seconds": seconds, "per_second": connects_per_second, "failures": failures,
                     "first_half": first_half, "second_half": second_half },
        "server_memory": { "before": before, "half": middle, "after_connect": after, "after_hold": held },
        "server_bytes_per_connection": average,
        "server_bytes_per_connection_after_hold": average_held,
        "server_bytes_per_connection_marginal": marginal,
        "bench_bytes_per_connection": bench_per_connection,
        "cpu_while_connecting": cpu_connect,
        "cpu_while_idle": cpu_hold,
    }))
}
