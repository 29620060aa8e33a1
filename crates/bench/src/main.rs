//! `peyvand-bench`: a load generator for the Peyvand server. It starts a server of its own
//! (fresh data, generous limits), signs people up, opens their update streams over
//! WebSockets, and either sends direct messages at a fixed rate (`messages`) or just holds
//! the streams open (`idle`). A summary for people goes to standard error and one JSON object
//! with every figure to standard output.

mod connect;
mod idle;
mod latency;
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

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::server::{Server, ServerOptions, default_peyvand};

#[derive(Debug, Parser)]
#[command(name = "peyvand-bench", about = "Load generator for the Peyvand server (loopback only).")]
struct Cli {
    /// The `peyvand` binary to start [default: `peyvand` beside this executable].
    #[arg(long, global = true)]
    peyvand: Option<PathBuf>,
    /// The server's data directory [default: a fresh one under the temporary directory].
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Keep the fresh data directory (database, server.log, perf output) after the run.
    #[arg(long, global = true)]
    keep_data: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Direct messages at a fixed rate between pairs of people, timed from send to delivery.
    Messages(messages::MessagesArgs),
    /// Many idle update streams: how many the server holds and at what memory cost.
    Idle(idle::IdleArgs),
}

/// The HTTP client for setting up (sign-ups, chats, metrics).
pub(crate) fn setup_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(60)).tcp_nodelay(true).build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = ServerOptions {
        peyvand: cli.peyvand.unwrap_or_else(default_peyvand),
        data: cli.data,
        keep_data: cli.keep_data,
    };
    let mut server = Server::start(&options)?;
    progress::say(&format!(
        "server {} (pid {}), data in {}",
        server.base_url,
        server.pid(),
        server.data_dir().display()
    ));
    let result = match &cli.scenario {
        Scenario::Messages(args) => messages::run(&mut server, args).await?,
        Scenario::Idle(args) => idle::run(&mut server, args).await?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
