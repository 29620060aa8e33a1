//! `peyvand-bench idle`: many people, each with one open update stream and nothing to say,
//! to see how many connections the server holds and what each costs it in memory. With several
//! nodes the streams are spread over them and the memory is the nodes' sum. The streams are
//! held by child processes of the bench (see `hold`), as many as the open-file limit needs.

use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use crate::hold::Holders;
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
    /// Concurrent WebSocket handshakes, shared among the holders.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds to hold the streams open before measuring again.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
    /// Child processes that hold the streams [default: as few as the open-file limit allows].
    #[arg(long)]
    pub holders: Option<usize>,
}

/// The servers' own count of open streams, from their metrics; none unless every node answers.
async fn server_open_streams(http: &reqwest::Client, base_urls: &[String]) -> Option<u64> {
    let scrapes = Scrape::take_all(http, base_urls).await;
    let open: Option<f64> = scrapes.iter().map(|s| s.get("peyvand_websockets_open")).sum();
    open.map(|n| n as u64)
}

/// How many holders to start, refusing a run whose streams cannot fit the nodes' or the
/// holders' open-file limit (each a process of its own, with the limit this one has).
fn holders_for(args: &IdleArgs, nodes: usize, open_files: u64) -> anyhow::Result<usize> {
    let room = open_files.saturating_sub(SPARE_FILES);
    let per_node = args.connections.div_ceil(nodes.max(1)) as u64;
    if per_node > room {
        bail!(
            "{} connections over {nodes} node(s) put {per_node} on a node, but a process may open {open_files} files: \
             raise the limit with `ulimit -n` (the hard limit is the ceiling without CAP_SYS_RESOURCE), ask for at most \
             {} connections, or start more nodes (`--nodes`, on PostgreSQL and NATS)",
            args.connections,
            room * nodes as u64
        );
    }
    match args.holders {
        None => Holders::needed(args.connections, open_files, SPARE_FILES),
        Some(0) => bail!("--holders must be at least 1"),
        Some(holders) => {
            let per_holder = args.connections.div_ceil(holders) as u64;
            if per_holder > room {
                bail!(
                    "{} connections over {holders} holder(s) put {per_holder} in one process, but a process may open \
                     {open_files} files: leave out --holders, or ask for at least {}",
                    args.connections,
                    Holders::needed(args.connections, open_files, SPARE_FILES)?
                );
            }
            Ok(holders)
        }
    }
}

pub async fn run(servers: &mut Servers, args: &IdleArgs) -> anyhow::Result<serde_json::Value> {
    let cluster = servers.setup();
    let open_files = procfs::open_files_limit().unwrap_or(u64::MAX);
    let mut holders = Holders::spawn(holders_for(args, cluster.nodes, open_files)?)?;
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
    let bench_before = holders.memory()?;
    let cpu_start = CpuSnapshot::take_with(&pids, &holders.pids());
    say(&format!(
        "connecting {} update streams ({} at a time, held by {} processes)",
        people.len(),
        args.connect_concurrency,
        holders.len()
    ));
    let first_half = holders.connect(&addresses, &people[..half], 0, args.connect_concurrency).await?;
    let middle = procfs::memory_sum(&pids)?;
    let second_half = holders.connect(&addresses, &people[half..], half, args.connect_concurrency).await?;
    let cpu_connect = CpuSnapshot::take_with(&pids, &holders.pids()).since(&cpu_start);
    let connected_first = first_half.connected as u64;
    let connected = connected_first + second_half.connected as u64;
    let after = procfs::memory_sum(&pids)?;
    let bench_after = holders.memory()?;
    let server_counted = server_open_streams(&setup, &base_urls).await;

    say(&format!("holding them for {} s", args.hold));
    let cpu_hold_start = CpuSnapshot::take_with(&pids, &holders.pids());
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let cpu_hold = CpuSnapshot::take_with(&pids, &holders.pids()).since(&cpu_hold_start);
    let held = procfs::memory_sum(&pids)?;
    let still_open = holders.open_streams().await?;
    let server_counted_after_hold = server_open_streams(&setup, &base_urls).await;
    servers.check_alive()?;
    let holder_count = holders.len();
    drop(holders);

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
    say(&format!("  bench memory  {bench_per_connection:.0} bytes per stream, in {holder_count} holder processes"));
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
        "holders": holder_count,
        "cpu_while_connecting": cpu_connect,
        "cpu_while_idle": cpu_hold,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(connections: usize, holders: Option<usize>) -> IdleArgs {
        IdleArgs { connections, signup_concurrency: 1, connect_concurrency: 1, hold: 0, holders }
    }

    #[test]
    fn holders_and_nodes_must_fit_the_open_file_limit() {
        // As many holders as needed by default, or as asked when they fit.
        assert_eq!(holders_for(&args(100_000, None), 6, 20_000).expect("fits"), 6);
        assert_eq!(holders_for(&args(19_000, None), 1, 20_000).expect("fits"), 1);
        assert_eq!(holders_for(&args(19_000, Some(4)), 1, 20_000).expect("fits"), 4);
        // A node cannot hold more than its own limit allows.
        let error = holders_for(&args(100_000, None), 5, 20_000).expect_err("20,000 a node").to_string();
        assert!(error.contains("put 20000 on a node") && error.contains("at most 99000"), "{error}");
        // Nor can a holder.
        let error = holders_for(&args(100_000, Some(5)), 6, 20_000).expect_err("20,000 a holder").to_string();
        assert!(error.contains("at least 6"), "{error}");
        assert!(holders_for(&args(10, Some(0)), 1, 20_000).is_err());
    }
}
