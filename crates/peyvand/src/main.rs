//! `peyvand`: one binary for the messenger server (`serve`), its command-line client
//! (`login`, `send`, `listen`, ...), and the regulator's registry (`registry`).

mod cli;
mod config;
mod conformance;
mod demo;
mod registry;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the server allocates per frame and per message on
/// every worker thread, and glibc's `malloc`/`free` (with their arena locks and chunk
/// consolidation) were ~12% of the request threads' time; with mimalloc those threads use about
/// a fifth less CPU per message (measured in commit ca9475e; docs/BENCHMARKS.md has the current
/// figures). SQLite keeps the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "peyvand",
    version,
    about = "Peyvand: an open messenger server and its command-line client",
    after_help = cli::EXIT_STATUS_HELP
)]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the messenger server.
    Serve(serve::ServeArgs),
    /// Runs a registry and three licensed messengers connected to each other, on one machine.
    Demo(demo::DemoArgs),
    /// Checks a provider's interconnect against the protocol's requirements (needs the
    /// registry's admin token: the kit licenses a temporary provider of its own).
    Conformance(conformance::ConformanceArgs),
    /// Brings the storage's schema up to date and exits.
    Migrate(serve::StorageArgs),
    /// The regulator's registry: licences, the audit log and the signed directory.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Threads for blocking work (the store's reads). Tokio's default of 512 let the pool grow to
/// hundreds of threads under load, and the hand-offs between them cost more than the reads.
const BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(BLOCKING_THREADS).build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => cli::report(&anyhow::Error::new(error).context("cannot start the async runtime"), false),
    }
}

async fn run() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match Cli::try_parse_from(&raw) {
        Ok(args) => args,
        Err(error) => return cli::command_line_failure(error, &raw),
    };
    let json = args.global.output == cli::OutputFormat::Json;
    let result = match args.command {
        Command::Serve(serve_args) => serve::run(serve_args).await,
        Command::Demo(demo_args) => demo::run(demo_args).await,
        Command::Conformance(conformance_args) => conformance::run(args.global, conformance_args).await,
        Command::Migrate(storage) => serve::migrate(storage).await,
        Command::Registry(command) => registry::run(args.global, command).await,
        Command::Client(command) => cli::run(args.global, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`peyvand listen | head`) is not a failure.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => cli::report(&error, json),
    }
}
