//! `peyvand-bench`: a load generator for the Peyvand server. It starts a server of its own
//! (fresh data, generous limits), or several nodes sharing a PostgreSQL and a NATS, signs
//! people up, opens their update streams over WebSockets, and either sends direct messages at
//! a fixed rate (`messages`) or just holds the streams open (`idle`), or sends and fetches
//! files (`media`), or photos from one messenger to another on `peyvand demo`
//! (`media-across`). A summary for people goes
//! to standard error and one JSON object with every figure to standard output.

/// The generator's CPU is taken from the cores the server is measured on, so it allocates with
/// the same allocator as the server (see `peyvand`'s `main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backends;
mod connect;
mod hold;
mod idle;
mod latency;
mod media;
mod media_across;
mod messages;
mod metrics;
mod perf;
mod procfs;
mod progress;
mod schedule;
mod sender;
mod server;
mod signup;
mod tracker;
mod ws;
mod ws_sender;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::backends::{Bus, Storage};
use crate::server::{ServerOptions, Servers, default_peyvand};

#[derive(Debug, Parser)]
#[command(name = "peyvand-bench", about = "Load generator for the Peyvand server (loopback only).")]
struct Cli {
    /// The `peyvand` binary to start [default: `peyvand` beside this executable].
    #[arg(long, global = true)]
    peyvand: Option<PathBuf>,
    /// The server's data directory, or with several nodes the directory of their `node-<i>`
    /// directories [default: a fresh one under the temporary directory].
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Keep the fresh data directory (database, server.log, perf output) and the PostgreSQL
    /// schema after the run.
    #[arg(long, global = true)]
    keep_data: bool,
    /// `embedded` (SQLite in the data directory) or `postgres://user@host:port/database`; on
    /// PostgreSQL the run gets a schema of its own, `peyvand_bench_<pid>_<time>`.
    #[arg(long, global = true, default_value = "embedded")]
    storage: Storage,
    /// `in-process` or `nats://host:port` (several separated by commas), which carries updates
    /// between nodes; on NATS the run gets a subject prefix of its own.
    #[arg(long, global = true, default_value = "in-process")]
    bus: Bus,
    /// Servers to start; more than one needs `--storage postgres://...` and `--bus nats://...`.
    /// Person i signs in, listens and sends through node i mod N, so the two people of a pair
    /// are on different nodes.
    #[arg(long, global = true, default_value_t = 1)]
    nodes: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Direct messages at a fixed rate between pairs of people, timed from send to delivery.
    Messages(messages::MessagesArgs),
    /// Many idle update streams: how many the server holds and at what memory cost.
    Idle(idle::IdleArgs),
    /// Files through one node on the embedded store: upload and download throughput, many
    /// downloads of one video, a large upload's memory, photos per second.
    Media(media::MediaArgs),
    /// Photos from one messenger to another on `peyvand demo` (which it starts): the time from
    /// the send on alborz until the person on damavand has downloaded the photo.
    MediaAcross(media_across::MediaAcrossArgs),
    /// Holds update streams for an `idle` run that started this process (not for people).
    #[command(hide = true)]
    Hold,
}

/// The HTTP client for setting up (sign-ups, chats, metrics).
pub(crate) fn setup_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(60)).tcp_nodelay(true).build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Hold = cli.scenario {
        return hold::serve().await;
    }
    let peyvand = cli.peyvand.unwrap_or_else(default_peyvand);
    if let Scenario::MediaAcross(args) = &cli.scenario {
        if cli.nodes != 1 || !matches!(cli.storage, Storage::Embedded) || !matches!(cli.bus, Bus::InProcess) {
            anyhow::bail!("media-across runs on `peyvand demo`, which has no --nodes, --storage or --bus");
        }
        let result = media_across::run(&peyvand, cli.data, cli.keep_data, args).await?;
        writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&result)?)?;
        return Ok(());
    }
    let options = ServerOptions {
        peyvand,
        data: cli.data,
        keep_data: cli.keep_data,
        storage: cli.storage,
        bus: cli.bus,
        nodes: cli.nodes,
    };
    let mut servers = Servers::start(&options)?;
    for node in servers.nodes() {
        progress::say(&format!("server {} (pid {}), data in {}", node.base_url, node.pid(), node.data_dir().display()));
    }
    if let Some(schema) = servers.schema() {
        let kept = if options.keep_data { ", kept after the run" } else { "" };
        progress::say(&format!("storage: PostgreSQL schema {schema}{kept}"));
    }
    if let Some(prefix) = servers.bus_prefix() {
        progress::say(&format!("bus: NATS subjects under {prefix}"));
    }
    let result = match &cli.scenario {
        Scenario::Messages(args) => messages::run(&mut servers, args).await?,
        Scenario::Idle(args) => idle::run(&mut servers, args).await?,
        Scenario::Media(args) => media::run(&mut servers, args).await?,
        Scenario::Hold | Scenario::MediaAcross(_) => unreachable!("handled before the servers start"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
