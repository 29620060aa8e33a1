//! `peyvand`: one binary for the messenger server (`serve`), its command-line client
//! (`login`, `send`, `listen`, ...), and the regulator's registry (`registry`).

mod cli;
mod config;
mod conformance;
mod demo;
mod registry;
mod serve;

use std::process::ExitCode;

use clap::{ArgMatches, Args as _, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the messenger server.
    #[command(
        after_help = "Examples:\n  peyvand serve\n  peyvand serve --config /etc/peyvand/peyvand.toml\n  peyvand serve --storage postgres://peyvand@db/peyvand --bus nats://nats:4222"
    )]
    Serve(serve::ServeArgs),
    /// Runs a registry and three licensed messengers connected to each other, on one machine.
    #[command(after_help = "Examples:\n  peyvand demo\n  peyvand demo --data ./demo-data --base-port 9090")]
    Demo(demo::DemoArgs),
    /// Checks a provider's interconnect against the protocol's requirements (needs the
    /// registry's admin token: the kit licenses a temporary provider of its own).
    #[command(
        after_help = "Example:\n  peyvand conformance --target damavand --token-file ./registry-data/admin-token"
    )]
    Conformance(conformance::ConformanceArgs),
    /// Brings the storage's schema up to date and exits.
    #[command(after_help = "Example:\n  peyvand migrate --storage postgres://peyvand@db/peyvand")]
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

/// The command line as clap sees it: the derived commands, with the client options
/// (`--server`, `--output`) added to the commands they mean something to: every client
/// command, the conformance kit, and the registry's admin commands (`--output` only). `serve`,
/// `demo`, `migrate` and `registry serve` do not take them.
fn command_line() -> clap::Command {
    // The arguments alone: `augment_args` would also give the command the struct's about.
    let client_args: Vec<clap::Arg> =
        cli::GlobalArgs::augment_args(clap::Command::new("client")).get_arguments().cloned().collect();
    let output_args: Vec<clap::Arg> =
        cli::OutputArgs::augment_args(clap::Command::new("output")).get_arguments().cloned().collect();
    // Accepted before the command too (`peyvand --server URL send ...`), but not shown there.
    let mut command = Cli::command().args(client_args.iter().map(|arg| arg.clone().global(false).hide(true)));
    let client = cli::ClientCommand::augment_subcommands(clap::Command::new("client"));
    for name in client.get_subcommands().map(|c| c.get_name().to_owned()) {
        command = command.mut_subcommand(name, |c| c.args(client_args.clone()));
    }
    command = command.mut_subcommand("conformance", |c| c.args(output_args.clone()));
    command.mut_subcommand("registry", |mut registry| {
        let names: Vec<String> = registry.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        for name in names.into_iter().filter(|name| name != "serve") {
            registry = registry.mut_subcommand(name, |c| c.args(output_args.clone()));
        }
        registry
    })
}

/// The value of a client option: the one typed on the command line, after the command
/// (deepest first) or before it, else the environment's or the default, where the command
/// takes the option at all.
fn client_option<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Option<T> {
    let mut levels = vec![matches];
    while let Some((_, sub)) = levels.last().and_then(|m| m.subcommand()) {
        levels.push(sub);
    }
    let defined: Vec<&ArgMatches> = levels.into_iter().filter(|m| m.try_contains_id(id).is_ok()).collect();
    let typed = defined.iter().rev().find(|m| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine));
    let chosen = typed.or(defined.last())?;
    chosen.try_get_one::<T>(id).ok().flatten().cloned()
}

async fn run() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = command_line().try_get_matches_from(&raw).and_then(|matches| {
        let cli = Cli::from_arg_matches(&matches)?;
        let output = client_option::<cli::OutputFormat>(&matches, "output");
        let server = client_option::<String>(&matches, "server");
        Ok((cli, output, server))
    });
    let (args, output, server) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return cli::command_line_failure(error, &raw),
    };
    let output = output.unwrap_or(cli::OutputFormat::Text);
    let json = output == cli::OutputFormat::Json;
    let result = match (args.command, server) {
        (Command::Serve(serve_args), _) => serve::run(serve_args).await,
        (Command::Demo(demo_args), _) => demo::run(demo_args).await,
        (Command::Conformance(conformance_args), _) => conformance::run(output, conformance_args).await,
        (Command::Migrate(storage), _) => serve::migrate(storage).await,
        (Command::Registry(command), _) => registry::run(json, command).await,
        (Command::Client(command), Some(server)) => {
            cli::run(cli::GlobalArgs { server, output: cli::OutputArgs { output } }, command).await
        }
        (Command::Client(_), None) => Err(anyhow::anyhow!("the client command took no --server option")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`peyvand listen | head`) is not a failure.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => cli::report(&error, json),
    }
}

// Shared with tests/docs.rs, which uses the rest of it.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/docs.rs"]
mod docs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_a_shell_splits_them() {
        assert_eq!(docs::split("a 'b c' \"d\"e  f"), ["a", "b c", "de", "f"]);
        let words = docs::split("p show [--a X] [--b] <ADMIN-TOKEN path> z");
        assert_eq!(docs::without_placeholders(&words), ["p", "show", "<ADMIN-TOKEN_path>", "z"]);
    }

    /// The command line of a documented `peyvand ...`, or why it was refused.
    fn parses(words: &[String]) -> Result<(), String> {
        command_line().try_get_matches_from(words).map(drop).map_err(|e| e.render().to_string())
    }

    #[test]
    fn every_documented_command_line_is_one_peyvand_takes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut refused = Vec::new();
        let mut checked = 0;
        for document in docs::documents(&root) {
            for command in docs::commands(&root, &document) {
                if command.words[0] != "peyvand" {
                    continue;
                }
                checked += 1;
                if let Err(error) = parses(&docs::without_placeholders(&command.words)) {
                    refused.push(format!("{}: {}\n{error}", command.place, command.words.join(" ")));
                }
            }
        }
        assert!(checked >= 30, "only {checked} documented commands found");
        assert!(refused.is_empty(), "{}", refused.join("\n"));
    }

    #[test]
    fn every_example_in_the_help_is_one_peyvand_takes() {
        let mut refused = Vec::new();
        for (path, command) in all() {
            let help = command.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            let joined = help.replace("\\\n", " ");
            for line in joined.lines().map(str::trim).filter(|l| l.starts_with("peyvand ")) {
                if let Err(error) = parses(&docs::split(line)) {
                    refused.push(format!("{path}: {line}\n{error}"));
                }
            }
        }
        assert!(refused.is_empty(), "{}", refused.join("\n"));
    }

    /// Every command below `peyvand`, with its path (`registry licence issue`).
    fn commands(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_owned();
            out.push((path.clone(), sub.clone()));
            commands(sub, &path, out);
        }
    }

    fn all() -> Vec<(String, clap::Command)> {
        let mut command = command_line();
        command.build();
        let mut out = Vec::new();
        commands(&command, "", &mut out);
        out
    }

    #[test]
    fn the_command_line_is_consistent() {
        command_line().debug_assert();
    }

    #[test]
    fn every_argument_has_help_and_every_command_an_example() {
        let mut missing = Vec::new();
        for (path, command) in all() {
            if path.split(' ').any(|word| word == "help") {
                continue;
            }
            let about = command.get_about().map(|a| a.to_string()).unwrap_or_default();
            if about.is_empty() || about.contains("Options every") || about.contains("How a command prints") {
                missing.push(format!("{path}: no description of its own: {about:?}"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !["help", "version"].contains(&id) && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: <{id}> has no help"));
                }
            }
            let leaf = command.get_subcommands().all(|s| s.get_name() == "help");
            let example = command.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            if leaf && !example.contains("Example") {
                missing.push(format!("{path}: no example"));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn client_options_show_only_where_they_apply() {
        for (path, command) in all() {
            let has = |id: &str| command.get_arguments().any(|a| a.get_id() == id);
            let server_side = ["serve", "demo", "migrate", "registry serve"].contains(&path.as_str());
            if server_side {
                assert!(!has("server") && !has("output"), "{path} shows client options");
            }
            if path == "send" || path == "profile show" {
                assert!(has("server") && has("output"), "{path} lacks --server/--output");
            }
            if path == "registry licence list" || path == "conformance" {
                assert!(!has("server") && has("output"), "{path}: only --output applies");
            }
        }
    }
}
