//! `peyvand registry`: the regulator's registry (`serve`) and the commands that manage it
//! through its admin API (`licence ...`, `certificate`, `audit`, `directory`), and `enrol`,
//! which a provider runs to get its certificate.

mod admin;
mod args;
mod enrol;
mod format;
mod serve;

use anyhow::Result;
use peyvand_registry::RegistryClient;

pub(crate) use admin::admin_token;
pub use args::{Connection, RegistryCommand};

/// Runs one `peyvand registry` command.
/// `json`: the admin commands' `--output json`.
pub async fn run(json: bool, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve::run(args).await,
        RegistryCommand::Licence { connection, command } => admin::licence(&connection, json, command).await,
        RegistryCommand::Certificate { connection, command } => admin::certificate(&connection, json, command).await,
        RegistryCommand::Enrol(args) => enrol::run(args, json).await,
        RegistryCommand::Audit { connection, query } => admin::audit(&connection, json, query).await,
        RegistryCommand::Directory { registry, key, registry_ca } => {
            admin::directory(&client(&registry, None, registry_ca.as_deref())?, key.as_deref(), json).await
        }
    }
}

/// A client of the registry at `url`, trusting the CA certificate in `ca` (a PEM file) for its
/// HTTPS too when given.
pub(crate) fn client(url: &str, token: Option<String>, ca: Option<&std::path::Path>) -> Result<RegistryClient> {
    let client = RegistryClient::new(url, token)?;
    Ok(match ca {
        Some(path) => client.trusting_file(path)?,
        None => client,
    })
}

/// A diagnostic on standard error. A failure to write it is not worth failing the command for.
fn note(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
