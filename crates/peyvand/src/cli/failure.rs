//! How a failed command ends: one message on stderr (text, or a JSON object with
//! `--output json`) and an exit status that tells the class of failure.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use peyvand_client::ClientError;
use peyvand_client::api::ErrorCode;
use serde::Serialize;

use super::output::note;

/// The exit statuses, as `peyvand --help` documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Anything else that went wrong (a file that cannot be written, a server error).
    Failure = 1,
    /// The command line or its input is wrong: nothing was asked of the server, or the server
    /// said the input is invalid.
    Usage = 2,
    /// What the command names does not exist (a chat, a person, a messenger).
    NotFound = 3,
    /// The server understood and refused: not signed in, not allowed, rate-limited, a wrong
    /// code or PIN.
    Refused = 4,
    /// The server (or the other messenger) could not be reached or is unavailable.
    Unreachable = 5,
}

impl From<ExitClass> for ExitCode {
    fn from(class: ExitClass) -> Self {
        ExitCode::from(class as u8)
    }
}

/// The exit statuses, for the end of `peyvand --help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  failure (anything not below)
  2  usage: a wrong command line or input (also invalid input refused by the server)
  3  not found: the chat, person, message or messenger does not exist
  4  refused: not signed in, not allowed, a wrong code or PIN, or rate-limited
  5  unreachable: the server or the other messenger could not be reached

With --output json a failure is one JSON object on stderr:
  {\"error\": {\"code\": \"not_found\", \"message\": \"...\", \"retry_after\": 30}}
(`retry_after`, in seconds, only when the server said when to try again.)";

/// A mistake on the command line or in the input, found before asking the server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A usage error to return from a command.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// A command that needs a session was run without one.
#[derive(Debug, thiserror::Error)]
#[error("not signed in to {server}: run `peyvand login PHONE` first")]
pub struct NotSignedIn {
    pub server: String,
}

/// What a failure is, for people and for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// A stable snake_case code: the server's error code, or one of the CLI's own (`usage`,
    /// `not_signed_in`, `unreachable`, `timeout`, `bad_answer`, `http_error`, `failed`).
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip)]
    pub class: ExitClass,
}

#[derive(Serialize)]
struct FailureBody<'a> {
    error: &'a Failure,
}

/// Classifies an error by the most specific cause in its chain.
pub fn classify(error: &anyhow::Error) -> Failure {
    let message = format!("{error:#}");
    let (code, class, retry_after) = if error.chain().any(|c| c.is::<UsageError>()) {
        ("usage".to_owned(), ExitClass::Usage, None)
    } else if error.chain().any(|c| c.is::<NotSignedIn>()) {
        ("not_signed_in".to_owned(), ExitClass::Refused, None)
    } else if let Some(client_error) = error.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
        let (code, class) = classify_client(client_error);
        (code, class, client_error.retry_after().map(|d| d.as_secs()))
    } else if error.chain().any(|c| c.is::<peyvand_core::PhoneError>()) {
        ("invalid_phone".to_owned(), ExitClass::Usage, None)
    } else {
        ("failed".to_owned(), ExitClass::Failure, None)
    };
    Failure { code, message, retry_after, class }
}

fn classify_client(error: &ClientError) -> (String, ExitClass) {
    match error {
        ClientError::Api { error, .. } => (error.code.as_str().to_owned(), class_of(error.code)),
        ClientError::Status { status, .. } => {
            let class = match status {
                404 => ExitClass::NotFound,
                401 | 403 | 429 => ExitClass::Refused,
                502..=504 => ExitClass::Unreachable,
                _ => ExitClass::Failure,
            };
            ("http_error".to_owned(), class)
        }
        ClientError::Transport(_) | ClientError::WebSocket(_) | ClientError::Closed => {
            ("unreachable".to_owned(), ExitClass::Unreachable)
        }
        ClientError::Timeout(_) => ("timeout".to_owned(), ExitClass::Unreachable),
        ClientError::Decode(_) => ("bad_answer".to_owned(), ExitClass::Failure),
        ClientError::InvalidToken => ("invalid_token".to_owned(), ExitClass::Failure),
        ClientError::InvalidUrl { .. } => ("usage".to_owned(), ExitClass::Usage),
        ClientError::LocalFile(_) => ("local_file".to_owned(), ExitClass::Usage),
    }
}

/// The class of a server's error code.
fn class_of(code: ErrorCode) -> ExitClass {
    match code {
        ErrorCode::NotFound | ErrorCode::UnknownProvider | ErrorCode::InterconnectDisabled => ExitClass::NotFound,
        ErrorCode::Unavailable | ErrorCode::PeerUnavailable => ExitClass::Unreachable,
        ErrorCode::Internal | ErrorCode::PeerProtocol | ErrorCode::ResyncRequired => ExitClass::Failure,
        code => match code.http_status() {
            400 | 405 | 413 => ExitClass::Usage,
            _ => ExitClass::Refused,
        },
    }
}

/// Prints a failed command's error on stderr and returns its exit status.
pub fn report(error: &anyhow::Error, json: bool) -> ExitCode {
    let failure = classify(error);
    if json {
        let body = serde_json::to_string(&FailureBody { error: &failure }).unwrap_or_default();
        let _ = writeln!(io::stderr().lock(), "{body}");
    } else {
        note(format_args!("error: {}", failure.message));
        if let Some(wait) = failure.retry_after {
            note(format_args!("try again in {}", human_wait(Duration::from_secs(wait))));
        }
        if failure.code == ErrorCode::Unauthorized.as_str() {
            note("the saved session is no longer valid: run `peyvand login PHONE` again");
        }
    }
    failure.class.into()
}

/// Reports a command line clap refused: as JSON when `--output json` was asked for, however
/// the rest of the line went. `--help` and `--version` print as usual and succeed.
pub fn command_line_failure(error: clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if !wants_json(args) {
        let _ = error.print();
        return ExitClass::Usage.into();
    }
    // clap's own rendering, on one line, without its "error: " prefix and the usage footer.
    let rendered = error.render().to_string();
    let body = rendered.split("\nUsage:").next().unwrap_or_default();
    let body = body.trim().strip_prefix("error:").unwrap_or(body);
    let message = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = if message.is_empty() { "invalid command line".to_owned() } else { message };
    let failure = Failure { code: "usage".into(), message, retry_after: None, class: ExitClass::Usage };
    let body = serde_json::to_string(&FailureBody { error: &failure }).unwrap_or_default();
    let _ = writeln!(io::stderr().lock(), "{body}");
    ExitClass::Usage.into()
}

/// Whether the raw command line (or `PEYVAND_OUTPUT`) asks for JSON output.
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let mut args = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--output=json" || (arg == "--output" && args.next().is_some_and(|v| v == "json")) {
            return true;
        }
    }
    std::env::var("PEYVAND_OUTPUT").is_ok_and(|v| v == "json")
}

/// A wait as people say it: "45 s", "3 min", "1 h 20 min".
pub fn human_wait(wait: Duration) -> String {
    let secs = wait.as_secs().max(1);
    match secs {
        0..=99 => format!("{secs} s"),
        100..=3599 => format!("{} min", secs.div_ceil(60)),
        _ => {
            let minutes = secs.div_ceil(60);
            match minutes % 60 {
                0 => format!("{} h", minutes / 60),
                rest => format!("{} h {rest} min", minutes / 60),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peyvand_client::api::ApiError;

    fn api(code: ErrorCode, retry_after: Option<u64>) -> anyhow::Error {
        let error = ApiError { code, message: "nope".into(), retry_after };
        anyhow::Error::new(ClientError::Api { status: code.http_status(), error }).context("sending")
    }

    #[test]
    fn classes_follow_the_cause() {
        assert_eq!(classify(&usage("bad")).class, ExitClass::Usage);
        assert_eq!(classify(&anyhow::Error::new(NotSignedIn { server: "x".into() })).code, "not_signed_in");
        assert_eq!(classify(&api(ErrorCode::NotFound, None)).class, ExitClass::NotFound);
        assert_eq!(classify(&api(ErrorCode::UnknownProvider, None)).class, ExitClass::NotFound);
        assert_eq!(classify(&api(ErrorCode::InvalidPhone, None)).class, ExitClass::Usage);
        assert_eq!(classify(&api(ErrorCode::Forbidden, None)).class, ExitClass::Refused);
        assert_eq!(classify(&api(ErrorCode::PeerUnavailable, None)).class, ExitClass::Unreachable);
        assert_eq!(classify(&anyhow::anyhow!("disk full")).class, ExitClass::Failure);
        let limited = classify(&api(ErrorCode::RateLimited, Some(90)));
        assert_eq!(
            (limited.class, limited.code.as_str(), limited.retry_after),
            (ExitClass::Refused, "rate_limited", Some(90))
        );
        assert_eq!(limited.message, "sending: rate_limited: nope");
    }

    #[test]
    fn json_body_has_code_and_message() {
        let failure = classify(&api(ErrorCode::RateLimited, Some(5)));
        let body = serde_json::to_value(FailureBody { error: &failure }).expect("json");
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(body["error"]["retry_after"], 5);
        let failure = classify(&usage("bad"));
        let body = serde_json::to_value(FailureBody { error: &failure }).expect("json");
        assert!(body["error"].get("retry_after").is_none());
    }

    #[test]
    fn waits_read_like_people_say_them() {
        assert_eq!(human_wait(Duration::from_secs(0)), "1 s");
        assert_eq!(human_wait(Duration::from_secs(45)), "45 s");
        assert_eq!(human_wait(Duration::from_secs(1080)), "18 min");
        assert_eq!(human_wait(Duration::from_secs(3600)), "1 h");
        assert_eq!(human_wait(Duration::from_secs(4800)), "1 h 20 min");
    }

    #[test]
    fn json_is_seen_in_the_raw_command_line() {
        let line = |s: &str| s.split(' ').map(Into::into).collect::<Vec<std::ffi::OsString>>();
        assert!(wants_json(&line("peyvand --output json send")));
        assert!(wants_json(&line("peyvand send --output=json")));
        assert!(!wants_json(&line("peyvand send --output text")));
    }
}
