//! `peyvand registry`: the regulator's registry (`serve`) and the commands that manage it
//! through its admin API (`licence ...`, `certificate`, `audit`, `directory`), and `enrol`,
//! which a provider runs to get its certificate.

mod admin;
mod args;
mod enrol;
mod format;
mod serve;

use anyhow::Result;
use clap::ValueEnum as _;

pub(crate) use admin::admin_token;
pub use args::{Connection, RegistryCommand};

use crate::cli::GlobalArgs;

/// Runs one `peyvand registry` command.
pub async fn run(global: GlobalArgs, command: RegistryCommand) -> Result<()> {
    // The client commands' `--output` applies here too.
    let json = global.output.to_possible_value().is_some_and(|v| v.get_name() == "json");
    match command {
        RegistryCommand::Serve(args) => serve::run(args).await,
        RegistryCommand::Licence { connection, command } => admin::licence(&connection, json, command).await,
        RegistryCommand::Certificate { connection, command } => admin::certificate(&connection, json, command).await,
        RegistryCommand::Enrol(args) => enrol::run(args, json).await,
        RegistryCommand::Audit { connection, query } => admin::audit(&connection, json, query).await,
        RegistryCommand::Directory { registry, key } => admin::directory(&registry, key.as_deref(), json).await,
    }
}

/// A diagnostic on standard error. A failure to write it is not worth failing the command for.
fn note(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
