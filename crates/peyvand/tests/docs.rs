//! The README's commands, run as written against `peyvand demo`, so that the walkthrough
//! cannot drift from the program: every `peyvand` line of its ```sh blocks runs in order and
//! must succeed, with the demo's real ports for the README's 8090-8093, a folder of the test's
//! for each `PEYVAND_HOME`, codes typed from the demo's OTP lines, the repository's root as the
//! working directory (so that `send --file` finds the files the README names), and `listen`
//! stopped once it has printed an update. The lines below that cannot run here are skipped, each for a reason;
//! the binary's unit tests check that every documented command line (docs/ too) parses.

mod common;
// Shared with the binary's unit tests, which use the rest of it.
#[allow(dead_code)]
#[path = "common/docs.rs"]
mod docs;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::demo::Demo;
use common::{DEADLINE, finish, temp_dir};

/// Documented commands this test does not run, by their first words, and why.
const SKIPPED: [(&str, &str); 7] = [
    ("peyvand demo", "the test runs the demo itself, on free ports"),
    ("peyvand serve", "it listens on fixed ports; the demo's alborz stands in for it"),
    ("peyvand migrate", "it needs the PostgreSQL host it names"),
    ("peyvand registry serve", "the demo's registry stands in for it"),
    ("peyvand registry enrol", "it needs a fresh enrolment token; tests/registry.rs enrols"),
    ("peyvand conformance", "the kit waits for directory refreshes; tests/interconnect.rs runs it"),
    ("peyvand download", "it writes into the working directory and never overwrites; tests/cli.rs downloads"),
];

fn skip_reason(words: &[String]) -> Option<&'static str> {
    let line = words.join(" ");
    SKIPPED.iter().find(|(start, _)| line == *start || line.starts_with(&format!("{start} "))).map(|(_, why)| *why)
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = Demo::start(&[]);
    let ports: Vec<(String, String)> = [("8090", demo.registry.clone())]
        .into_iter()
        .chain(["8091", "8092", "8093"].into_iter().zip(common::demo::PROVIDERS.map(|p| demo.url(p))))
        .map(|(port, url)| (format!("http://127.0.0.1:{port}"), url.trim_end_matches('/').to_owned()))
        .collect();
    let mut homes: HashMap<String, PathBuf> = HashMap::new();
    let (mut ran, mut skipped) = (0, Vec::new());
    for command in docs::commands(&root, &root.join("README.md")) {
        if command.words[0] != "peyvand" {
            continue;
        }
        if let Some(why) = skip_reason(&command.words) {
            skipped.push(format!("{}: {why}", command.place));
            continue;
        }
        let words: Vec<String> = command
            .words
            .iter()
            .map(|w| ports.iter().fold(w.clone(), |w, (from, to)| w.replace(from.as_str(), to)))
            .collect();
        let mut process = Command::new(env!("CARGO_BIN_EXE_peyvand"));
        process
            .args(&words[1..])
            .current_dir(&root)
            // The README's `peyvand serve` on 127.0.0.1:8080: alborz here.
            .env("PEYVAND_SERVER", demo.url("alborz"))
            .env("PEYVAND_REGISTRY", &demo.registry)
            .env("PEYVAND_REGISTRY_TOKEN", &demo.admin_token)
            .env_remove("PEYVAND_OUTPUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &command.env {
            let value = match value.strip_prefix("/tmp/") {
                Some(label) => {
                    homes.entry(label.to_owned()).or_insert_with(|| temp_dir(&format!("docs-{label}"))).clone()
                }
                None => PathBuf::from(value),
            };
            process.env(name, value);
        }
        let place = format!("{}: {}", command.place, command.words.join(" "));
        ran += 1;
        if let Some(at) = words.iter().position(|w| w == "login") {
            let phone = peyvand_core::phone::PhoneNumber::parse(&words[at + 1]).expect("a documented phone number");
            let before = demo.codes_sent(phone.as_str());
            let mut child = process.stdin(Stdio::piped()).spawn().expect("start peyvand login");
            let code = demo.code_after(phone.as_str(), before).unwrap_or_else(|| panic!("{place}: no code was sent"));
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(format!("{code}\n").as_bytes()).expect("type the code");
            drop(stdin);
            succeeded(&place, finish(child, &["login"]));
        } else if words.iter().any(|w| w == "listen") {
            let mut child = process.spawn().expect("start peyvand listen");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(BufReader::new(stdout).lines().next().and_then(Result::ok));
            });
            let first = rx.recv_timeout(DEADLINE).ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            let first = first.unwrap_or_else(|| panic!("{place}: printed no update in time"));
            let update: serde_json::Value = serde_json::from_str(&first).expect("listen --output json prints JSON");
            assert!(update["event"]["type"].is_string(), "{place}: {first}");
        } else {
            succeeded(&place, finish(process.spawn().expect("start peyvand"), &[]));
        }
    }
    assert!(ran >= 20, "ran only {ran} commands of the README; skipped: {skipped:?}");
    for home in homes.values() {
        let _ = std::fs::remove_dir_all(home);
    }
}

fn succeeded(place: &str, output: std::process::Output) {
    assert!(
        output.status.success(),
        "{place}\nfailed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
