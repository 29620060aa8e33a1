//! What the CLI reads from a person: answers to prompts, and secrets (a PIN) that must show
//! neither on the screen nor in `ps` or the shell's history.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

use super::failure::usage;
use super::output::note;

/// Asks on stderr and reads one line of standard input, so that a pipe can answer.
pub fn prompt_line(prompt: &str) -> Result<String> {
    ask(prompt);
    let line = read_line()?;
    // A terminal echoes the answer and its newline; a pipe does not, so end the prompt's line.
    if !io::stdin().is_terminal() {
        note("");
    }
    Ok(line)
}

/// Reads a secret: from `file` when given (`-` is standard input), else from the terminal
/// without echo, else as one line of standard input.
pub fn secret(prompt: &str, file: Option<&Path>) -> Result<String> {
    let value = match file {
        Some(path) if path == Path::new("-") => read_line()?,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            text.lines().next().unwrap_or_default().trim().to_owned()
        }
        None if io::stdin().is_terminal() => {
            ask(prompt);
            let value = without_echo(read_line)?;
            note("");
            value
        }
        None => {
            ask(prompt);
            let value = read_line()?;
            note("");
            value
        }
    };
    if value.is_empty() {
        return Err(usage("the PIN is empty"));
    }
    Ok(value)
}

/// Refuses up front when standard input can give no answer (closed, or at its end), so that
/// `login` does not have a code sent that nobody can type.
pub fn ensure_answerable() -> Result<()> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return Ok(());
    }
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let ready = match poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(ready) => ready,
        Err(_) => return Err(usage("standard input is closed: the code cannot be read")),
    };
    let events = fds[0].revents();
    if events.contains(PollFlags::NVAL) {
        return Err(usage("standard input is closed: the code cannot be read"));
    }
    // Something to read, or the end: look without consuming (std's stdin buffer keeps it).
    if ready > 0 {
        let mut lock = stdin.lock();
        if lock.fill_buf()?.is_empty() {
            return Err(usage(
                "standard input is empty: nothing would answer the code's prompt, so no code was asked for",
            ));
        }
    }
    // A pipe still open with nothing in it yet: whoever holds it may answer once the code is sent.
    Ok(())
}

fn ask(prompt: &str) {
    let mut stderr = io::stderr().lock();
    let _ = write!(stderr, "{prompt} ");
    let _ = stderr.flush();
}

fn read_line() -> Result<String> {
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(usage("no answer on standard input"));
    }
    Ok(line.trim().to_owned())
}

/// Runs `read` with the terminal's echo off, and turns it back on whatever happens.
fn without_echo<T>(read: impl FnOnce() -> Result<T>) -> Result<T> {
    let stdin = io::stdin();
    let Ok(saved) = tcgetattr(&stdin) else {
        return read();
    };
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    if tcsetattr(&stdin, OptionalActions::Now, &quiet).is_err() {
        return read();
    }
    let result = read();
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    result
}
