//! The `peyvand` command-line client, run as a subprocess against the real server: login
//! through piped standard input, messaging by phone number in Persian digits, JSON output,
//! `listen` with delivery receipts and resumption, errors, and the session file's mode.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{DEADLINE, Server, finish, temp_dir};

/// One person's CLI: a `PEYVAND_HOME` of their own, pointed at one server.
struct Cli {
    home: PathBuf,
    server: String,
}

impl Cli {
    fn new(server: &Server, label: &str) -> Self {
        Self { home: temp_dir(label), server: server.url.clone() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_peyvand"));
        command
            .args(args)
            .env("PEYVAND_HOME", &self.home)
            .env("PEYVAND_SERVER", &self.server)
            .env_remove("PEYVAND_OUTPUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs a command to its end (within the deadline).
    fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).spawn().expect("start peyvand");
        finish(child, args)
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "peyvand {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs a command with `--output json` that must succeed; returns what it printed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("peyvand {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// Runs a command that must fail; returns its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(!output.status.success(), "peyvand {args:?} should have failed");
        String::from_utf8(output.stderr).expect("UTF-8 errors")
    }

    /// `login` with the code (and then `lines_after`) typed on standard input once the server
    /// has sent it.
    fn login(&self, server: &Server, typed_phone: &str, e164: &str, lines_after: &[&str]) -> Value {
        let mut answers = vec!["{code}"];
        answers.extend_from_slice(lines_after);
        let output = self.login_answering(server, typed_phone, e164, &[], &answers);
        assert!(output.status.success(), "login failed: {}", String::from_utf8_lossy(&output.stderr));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("code sent to {e164}")), "the prompt names the number: {stderr}");
        serde_json::from_slice(&output.stdout).expect("the account as JSON")
    }

    /// `login` (with `extra` arguments) answered with `answers` once the server has sent the
    /// code; `{code}` in an answer is the code it sent.
    fn login_answering(
        &self,
        server: &Server,
        typed_phone: &str,
        e164: &str,
        extra: &[&str],
        answers: &[&str],
    ) -> Output {
        let before = server.codes_sent(e164);
        let mut args = vec!["--output", "json", "login", typed_phone, "--device-name", "cli test"];
        args.extend_from_slice(extra);
        let mut child = self.command(&args).stdin(Stdio::piped()).spawn().expect("start peyvand login");
        let code = server.code_after(e164, before);
        let mut stdin = child.stdin.take().expect("stdin");
        let input: String = answers.iter().map(|a| format!("{}\n", a.replace("{code}", &code))).collect();
        stdin.write_all(input.as_bytes()).expect("type the answers");
        drop(stdin);
        finish(child, &["login", typed_phone])
    }

    /// Runs a command with `input` on its standard input.
    fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().expect("start peyvand");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write standard input");
        drop(stdin);
        finish(child, args)
    }

    fn session_file(&self) -> PathBuf {
        let dir = self.home.join("sessions");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("a sessions directory")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(files.len(), 1, "one session for one server: {files:?}");
        files.remove(0)
    }

    fn saved_cursor(&self) -> i64 {
        let text = std::fs::read_to_string(self.session_file()).expect("session file");
        let session: Value = serde_json::from_str(&text).expect("session JSON");
        session["cursor"].as_i64().expect("a cursor")
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A running `peyvand --output json listen`, its standard output read line by line.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it said on standard error (its notes), line by line.
    notes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Listener {
    fn start(cli: &Cli) -> Self {
        let mut child = cli.command(&["--output", "json", "listen"]).stderr(Stdio::piped()).spawn().expect("listen");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notes.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lock").push(line);
            }
        });
        Self { child, lines, notes }
    }

    /// The notes so far that contain `text`.
    fn notes_with(&self, text: &str) -> Vec<String> {
        self.notes.lock().expect("lock").iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// The first update printed that matches `pred`, within the deadline; every update seen
    /// on the way is handed to `seen`.
    fn wait_for(&self, what: &str, mut seen: impl FnMut(&Value), pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("listen printed no {what} in time"));
            let update: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            seen(&update);
            if pred(&update) {
                return update;
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an update is a new message with this text.
fn is_new_message(update: &Value, text: &str) -> bool {
    update["event"]["type"] == "message_new" && update["event"]["message"]["content"]["text"] == text
}

/// Checks a condition again and again until it holds or the deadline passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn two_people_chat_through_the_cli() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-ali");
    let sara = Cli::new(&server, "cli-sara");

    let account = ali.login(&server, "۰۹۱۲۱۱۱۰۱۰۱", "+989121110101", &[]);
    assert_eq!(account["phone"], "+989121110101");
    let ali_id = account["id"].as_i64().expect("an id");
    sara.login(&server, "+98 912 111 0102", "+989121110102", &[]);

    #[cfg(unix)]
    {
        assert_eq!(mode(&ali.session_file()), 0o600, "the token is readable only by its owner");
        assert_eq!(mode(&ali.home.join("sessions")), 0o700);
    }

    let me = ali.json(&["profile", "set", "--name", "علی رضایی", "--username", "@ali_cli", "--bio", "سلام"]);
    assert_eq!((me["display_name"].as_str(), me["username"].as_str()), (Some("علی رضایی"), Some("ali_cli")));
    assert!(ali.ok(&["whoami"]).contains("علی رضایی"), "text output prints Persian as it is");
    // Ali lets anybody find him by his number, so Sara can write to it.
    assert_eq!(ali.json(&["settings", "set", "phone-discovery", "everybody"])["phone_discovery"], "everybody");
    // One vocabulary for every audience, the one the API and the docs use.
    assert_eq!(ali.json(&["settings", "interconnect", "contacts"])["interconnect"], "contacts");
    assert!(ali.ok(&["settings"]).lines().any(|l| l.split_whitespace().eq(["interconnect", "contacts"])));
    assert_eq!(ali.run(&["settings", "interconnect", "on"]).status.code(), Some(2), "on/off are not audiences");
    assert_eq!(ali.json(&["settings", "interconnect", "nobody"])["interconnect"], "nobody");

    // By phone number in Persian digits, then by username: the same chat.
    let first = sara.json(&["send", "۰۹۱۲۱۱۱۰۱۰۱", "سلام", "علی!"]);
    assert_eq!(first["content"]["text"], "سلام علی!");
    let chat_id = first["chat_id"].as_i64().expect("a chat id");
    let second = sara.json(&["send", "@ali_cli", "چطوری؟", "--id", "retry-me"]);
    assert_eq!(second["chat_id"].as_i64(), Some(chat_id));
    let retry = sara.run(&["--output", "json", "send", "@ali_cli", "چطوری؟", "--id", "retry-me"]);
    assert!(retry.status.success());
    let retried: Value = serde_json::from_slice(&retry.stdout).expect("JSON");
    assert_eq!(retried["seq"], second["seq"], "a retry with the same id stores nothing new");
    assert!(String::from_utf8_lossy(&retry.stderr).contains("already had this message"));

    let chat = format!("chat:{chat_id}");
    let history = ali.json(&["history", &chat]);
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["سلام علی!", "چطوری؟"]);

    let reply = ali.json(&["send", &chat, "خوبم", "--reply-to", "۲"]);
    assert_eq!(reply["reply_to"], 2);
    let edited = sara.json(&["edit", &chat, "2", "چطوری", "علی؟"]);
    assert_eq!(edited["content"]["text"], "چطوری علی؟");
    assert!(edited["edited_at"].is_i64());
    let reacted = ali.json(&["react", &chat, "2", "❤️"]);
    assert_eq!(reacted["reactions"][0]["emoji"], "❤️");
    assert_eq!(reacted["reactions"][0]["user_id"].as_i64(), Some(ali_id));
    let unreacted = ali.json(&["react", &chat, "2", "--remove"]);
    assert_eq!(unreacted["reactions"].as_array().map(Vec::len), Some(0));
    sara.ok(&["delete", &chat, "1", "--for-everyone"]);
    assert_eq!(ali.json(&["history", &chat])["messages"][0]["content"]["type"], "deleted");

    // Sara reads everything: Ali's chat shows it.
    sara.ok(&["read", &chat]);
    let ali_chat = ali.json(&["chats"])["chats"][0].clone();
    assert_eq!(ali_chat["peer_read_up_to"], reply["seq"]);

    let found = sara.json(&["search", "خوبم"]);
    assert_eq!(found["messages"][0]["message"]["seq"], reply["seq"]);
}

#[test]
fn files_are_sent_listed_and_downloaded_through_the_cli() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-file-ali");
    let sara = Cli::new(&server, "cli-file-sara");
    ali.login(&server, "09121110301", "+989121110301", &[]);
    sara.login(&server, "09121110302", "+989121110302", &[]);
    ali.ok(&["settings", "set", "phone-discovery", "everybody"]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures");
    let voice = fixtures.join("voice.ogg");
    let voice = voice.to_str().expect("a UTF-8 path");

    // A voice message with a caption; the kind is given, as a voice message is never guessed.
    let sent = sara.json(&["send", "09121110301", "--file", voice, "--as", "voice", "--caption", "پیام صوتی"]);
    assert_eq!(sent["content"]["type"], "media");
    assert_eq!(sent["content"]["media"]["kind"], "voice");
    assert_eq!(sent["content"]["caption"], "پیام صوتی");
    let chat = format!("chat:{}", sent["chat_id"]);
    // A photo, its kind guessed from its extension.
    let photo =
        sara.json(&["send", &chat, "--file", fixtures.join("exif-orientation6-gps.jpg").to_str().expect("path")]);
    assert_eq!(photo["content"]["media"]["kind"], "photo");
    // A file the server refuses for its kind: a clean error with its code.
    let readme = fixtures.join("README.md");
    let refused =
        sara.run(&["--output", "json", "send", &chat, "--file", readme.to_str().expect("path"), "--as", "photo"]);
    assert!(!refused.status.success());
    assert_eq!(json_error(&refused)["error"]["code"], "media_type_mismatch");
    // Text and a file do not go together.
    assert_eq!(sara.run(&["send", &chat, "hello", "--file", voice]).status.code(), Some(2));

    // History shows what each file is.
    let history = ali.ok(&["history", &chat]);
    assert!(history.contains("[voice, ") && history.contains("0:01") && history.contains("پیام صوتی"), "{history}");
    assert!(history.contains("[photo, ") && history.contains("32×64"), "{history}");

    // Ali downloads the voice message: byte for byte, under its own name in the directory given.
    let out = temp_dir("cli-downloads");
    std::fs::create_dir_all(&out).expect("out dir");
    let seq = sent["seq"].to_string();
    let saved = ali.json(&["download", &chat, &seq, "--out", out.to_str().expect("path")]);
    let path = PathBuf::from(saved["path"].as_str().expect("a path"));
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("voice.ogg"));
    assert_eq!(std::fs::read(&path).expect("saved"), std::fs::read(fixtures.join("voice.ogg")).expect("fixture"));
    // Not over a file that exists.
    assert!(ali.fails(&["download", &chat, &seq, "--out", out.to_str().expect("path")]).contains("exists"));
    // A half-downloaded file is continued, not started again.
    let whole = std::fs::read(&path).expect("saved");
    let again = out.join("again.ogg");
    std::fs::write(out.join("again.ogg.part"), &whole[..1000]).expect("a part");
    ali.ok(&["download", &chat, &seq, "--out", again.to_str().expect("path")]);
    assert_eq!(std::fs::read(&again).expect("continued"), whole);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn listen_prints_updates_confirms_delivery_and_resumes() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-listen-ali");
    let sara = Cli::new(&server, "cli-listen-sara");
    ali.login(&server, "09121110201", "+989121110201", &[]);
    sara.login(&server, "09121110202", "+989121110202", &[]);
    ali.ok(&["profile", "set", "--username", "ali_listens"]);

    let listener = Listener::start(&ali);
    let sent = sara.json(&["send", "@ali_listens", "پیام", "زنده"]);
    let update = listener.wait_for("the new message", |_| {}, |u| is_new_message(u, "پیام زنده"));
    assert!(update["cursor"].is_i64(), "a message is a durable update");
    assert_eq!(update["event"]["message"]["seq"], sent["seq"]);

    // `listen` told the server the message reached Ali's device.
    eventually("Sara sees the message delivered", || {
        sara.json(&["chats"])["chats"][0]["peer_delivered_up_to"] == sent["seq"]
    });
    let cursor = update["cursor"].as_i64().expect("cursor");
    eventually("listen saves its cursor", || ali.saved_cursor() >= cursor);
    drop(listener);

    // A new `listen` resumes after the saved cursor: the old message is not printed again.
    sara.ok(&["send", "@ali_listens", "بعدی"]);
    let listener = Listener::start(&ali);
    listener.wait_for(
        "the next message",
        |seen| assert!(!is_new_message(seen, "پیام زنده"), "printed twice: {seen}"),
        |u| is_new_message(u, "بعدی"),
    );
}

#[test]
fn listen_says_once_that_the_server_is_gone_and_is_back_within_a_second_of_it() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-reconnect-ali");
    let sara = Cli::new(&server, "cli-reconnect-sara");
    ali.login(&server, "09121110251", "+989121110251", &[]);
    sara.login(&server, "09121110252", "+989121110252", &[]);
    ali.ok(&["profile", "set", "--username", "ali_reconnects"]);
    let listener = Listener::start(&ali);
    sara.ok(&["send", "@ali_reconnects", "قبل"]);
    listener.wait_for("the first message", |_| {}, |u| is_new_message(u, "قبل"));

    let start_again = server.stop_for_restart();
    eventually("listen notices the server is gone", || !listener.notes_with("disconnected").is_empty());
    // A command against the stopped server says why, once.
    let failed = ali.fails(&["chats"]);
    assert_eq!(failed.matches("connection refused").count(), 1, "{failed}");
    assert_eq!(failed.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one line: {failed}");
    // An outage of a few seconds: several attempts to reconnect fail in it.
    std::thread::sleep(Duration::from_secs(4));
    let server = start_again();
    let back = Instant::now();
    eventually("listen is connected again", || !listener.notes_with("connected again").is_empty());
    let waited = back.elapsed();
    assert!(waited < Duration::from_millis(2500), "listen took {waited:?} to come back after the server did");
    let lost = listener.notes_with("disconnected");
    assert_eq!(lost.len(), 1, "the outage is told once: {lost:?}");
    assert!(!lost[0].contains("error sending request"), "the cause, not its wrappers: {}", lost[0]);

    sara.ok(&["send", "@ali_reconnects", "بعد"]);
    listener.wait_for("the message after the restart", |_| {}, |u| is_new_message(u, "بعد"));
    drop(server);
}

#[test]
fn a_pin_is_read_from_input_never_an_argument_and_logout_forgets_the_session() {
    let server = Server::start();
    let phone = "+989121110301";
    let first = Cli::new(&server, "cli-pin-1");
    first.login(&server, phone, phone, &[]);
    let set = first.run_with_input(&["pin", "set"], "4321\n");
    assert!(set.status.success(), "pin set: {}", String::from_utf8_lossy(&set.stderr));

    let second = Cli::new(&server, "cli-pin-2");
    // A PIN is not an argument (it would show in `ps`): read as a line of input, or from a file.
    assert_eq!(second.run(&["pin", "set", "4321"]).status.code(), Some(2), "no PIN argument");
    let wrong_then_right = second.login(&server, phone, phone, &["1111", "4321"]);
    assert_eq!(wrong_then_right["has_pin"], true, "a mistyped PIN is asked for again");
    second.ok(&["logout"]);
    let pin_file = second.home.join("pin.txt");
    std::fs::write(&pin_file, "4321\n").expect("write the PIN file");
    let pin_file = pin_file.to_str().expect("path");
    let output = second.login_answering(&server, phone, phone, &["--pin-file", pin_file], &["{code}"]);
    assert!(output.status.success(), "login --pin-file: {}", String::from_utf8_lossy(&output.stderr));
    let account: Value = serde_json::from_slice(&output.stdout).expect("the account as JSON");
    assert_eq!(account["has_pin"], true);
    let devices = second.json(&["devices"]);
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(2));

    second.ok(&["logout"]);
    assert!(second.home.join("sessions").read_dir().expect("dir").next().is_none(), "the session file is gone");
    let stderr = second.fails(&["whoami"]);
    assert!(stderr.contains("not signed in"), "{stderr}");
    first.ok(&["whoami"]);
}

#[test]
fn failures_exit_non_zero_with_the_error_code() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-fail-ali");
    let sara = Cli::new(&server, "cli-fail-sara");
    ali.login(&server, "09121110401", "+989121110401", &[]);
    sara.login(&server, "09121110402", "+989121110402", &[]);
    ali.ok(&["profile", "set", "--username", "ali_blocks"]);
    sara.ok(&["profile", "set", "--username", "sara_blocked"]);

    let stderr = sara.fails(&["send", "@nobody_here", "hi"]);
    assert!(stderr.contains("error: not_found:"), "{stderr}");

    ali.ok(&["block", "@sara_blocked"]);
    let blocks = ali.json(&["blocks"]);
    assert_eq!(blocks["users"][0]["username"], "sara_blocked");
    let stderr = sara.fails(&["send", "@ali_blocks", "hi"]);
    assert!(stderr.contains("error: blocked:"), "{stderr}");
    ali.ok(&["unblock", "@sara_blocked"]);
    sara.ok(&["send", "@ali_blocks", "hi"]);

    let stderr = sara.fails(&["send", "not-a-recipient", "hi"]);
    assert!(stderr.contains("not a phone number"), "{stderr}");
    let stderr = sara.fails(&["account", "delete"]);
    assert!(stderr.contains("--yes"), "{stderr}");
    let stranger = Cli::new(&server, "cli-fail-stranger");
    let stderr = stranger.fails(&["chats"]);
    assert!(stderr.contains("peyvand login"), "{stderr}");
}

#[test]
fn login_asks_again_for_a_mistyped_code_and_sends_none_when_nothing_can_answer() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-code-ali");
    let phone = "+989121110501";

    // Standard input is closed or empty: no code is sent that nobody could type in.
    let output = ali.run(&["login", phone]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no code was asked for"));
    let empty = ali.run_with_input(&["login", phone], "");
    assert_eq!(empty.status.code(), Some(2));
    assert_eq!(server.codes_sent(phone), 0, "no code was sent");

    // A wrong code is asked for again, without a new code being sent.
    let before = server.codes_sent(phone);
    let output = ali.login_answering(&server, phone, phone, &[], &["000000", "۱", "{code}"]);
    assert!(output.status.success(), "login: {}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("enter the code sent to").count(), 2, "asked again twice: {stderr}");
    assert_eq!(server.codes_sent(phone), before + 1, "one code for the whole sign-in");

    // Three wrong codes end it, saying how to have a new one sent.
    let bob = Cli::new(&server, "cli-code-bob");
    let output = bob.login_answering(&server, "+989121110502", "+989121110502", &[], &["1", "2", "3"]);
    assert_eq!(output.status.code(), Some(4), "refused");
    let failure = json_error(&output);
    assert_eq!(failure["error"]["code"], "invalid_code");
    assert!(failure["error"]["message"].as_str().is_some_and(|m| m.contains("peyvand login +989121110502")));
}

/// The last line of standard error, as JSON.
fn json_error(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON error on stderr ({e}): {stderr}"))
}

#[test]
fn errors_are_json_with_json_output_and_the_exit_status_tells_their_class() {
    let server = Server::start();
    let ali = Cli::new(&server, "cli-exit-ali");
    let sara = Cli::new(&server, "cli-exit-sara");
    ali.login(&server, "09121110601", "+989121110601", &[]);
    sara.login(&server, "09121110602", "+989121110602", &[]);
    ali.ok(&["profile", "set", "--username", "ali_exits"]);
    sara.ok(&["profile", "set", "--username", "sara_exits"]);
    let chat_id = sara.json(&["send", "@ali_exits", "سلام"])["chat_id"].as_i64().expect("chat id");

    let json = |cli: &Cli, args: &[&str]| {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        cli.run(&all)
    };

    // Not found: 3.
    let output = json(&sara, &["send", "@nobody_here", "hi"]);
    assert_eq!(output.status.code(), Some(3));
    let error = json_error(&output);
    assert_eq!(error["error"]["code"], "not_found");
    assert!(error["error"]["message"].is_string());
    assert!(output.stdout.is_empty(), "nothing on stdout");

    // Refused: 4.
    ali.ok(&["block", "@sara_exits"]);
    let output = json(&sara, &["send", "@ali_exits", "hi"]);
    assert_eq!((output.status.code(), json_error(&output)["error"]["code"].clone()), (Some(4), "blocked".into()));
    ali.ok(&["unblock", "@sara_exits"]);
    let stranger = Cli::new(&server, "cli-exit-stranger");
    let output = json(&stranger, &["chats"]);
    assert_eq!((output.status.code(), json_error(&output)["error"]["code"].clone()), (Some(4), "not_signed_in".into()));

    // Usage: 2, also for what clap refuses, and as text without --output json.
    let output = json(&sara, &["send", &chat_id.to_string(), "hi"]);
    assert_eq!(output.status.code(), Some(2), "a bare number is not a chat id");
    let message = json_error(&output)["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(&format!("chat:{chat_id}")), "the error says how to name the chat: {message}");
    let output = json(&sara, &["send"]);
    assert_eq!((output.status.code(), json_error(&output)["error"]["code"].clone()), (Some(2), "usage".into()));
    let output = sara.run(&["send", "1234", "hi"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "), "text errors without --output json");

    // Unreachable: 5. (`login` needs no session; its standard input stays open, unanswered.)
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let mut child = sara
        .command(&["--output", "json", "--server", &dead, "login", "09121110603"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start peyvand login");
    let _open_stdin = child.stdin.take();
    let output = finish(child, &["login"]);
    assert_eq!((output.status.code(), json_error(&output)["error"]["code"].clone()), (Some(5), "unreachable".into()));
}
