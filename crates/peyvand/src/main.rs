//! TEMPORARY main (server side only) until the CLI lands: helper-1 replaces this file and must keep `mod config; mod serve;`.
mod config;
mod serve;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "peyvand")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
    }
}
