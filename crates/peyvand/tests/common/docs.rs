//! The shell commands that the documents show, as a test reads them: every line of a ```sh
//! block, continuations (`\`) joined, comments dropped, split into words as a POSIX shell
//! would for the quoting the documents use ('...' and "..."). Shared by the binary's unit test
//! (every documented `peyvand` command line parses) and the integration test that runs the
//! README's walkthrough against the demo.

use std::path::{Path, PathBuf};

/// One command of a document.
#[derive(Debug, Clone)]
pub struct DocCommand {
    /// `README.md:38`, for messages.
    pub place: String,
    /// Leading `NAME=value` assignments.
    pub env: Vec<(String, String)>,
    /// The command's words, the program first (a trailing `&` dropped).
    pub words: Vec<String>,
}

/// The project's documents that show commands: the README and everything under docs/.
pub fn documents(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir).expect("docs/").flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out
}

/// Every command in the ```sh blocks of `path`.
pub fn commands(root: &Path, path: &Path) -> Vec<DocCommand> {
    let text = std::fs::read_to_string(path).expect("a document");
    let name = path.strip_prefix(root).unwrap_or(path).display().to_string();
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            in_block = !in_block && matches!(line.trim(), "```sh" | "```bash" | "```shell");
            continue;
        }
        if !in_block {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        let code = strip_comment(line);
        if let Some(continued) = code.trim_end().strip_suffix('\\') {
            joined.push_str(continued);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(&code);
        if let Some(command) = parse(&joined, format!("{name}:{start}")) {
            out.push(command);
        }
    }
    out
}

/// The line without a comment: a `#` that starts a word outside quotes.
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return line[..at].to_owned(),
            _ => {}
        }
        previous = c;
    }
    line.to_owned()
}

fn parse(line: &str, place: String) -> Option<DocCommand> {
    let mut words = split(line);
    if words.last().is_some_and(|w| w == "&") {
        words.pop();
    }
    let mut env = Vec::new();
    while let Some((name, value)) = words.first().and_then(|w| w.split_once('=')) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            break;
        }
        env.push((name.to_owned(), value.to_owned()));
        words.remove(0);
    }
    (!words.is_empty()).then_some(DocCommand { place, env, words })
}

/// Shell words: blanks separate them, quotes group, quotes themselves are removed.
pub fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), _) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A documented command line as a program would take it: `[...]` (optional parts) dropped
/// and each `<...>` placeholder made one word.
pub fn without_placeholders(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut optional = 0usize;
    let mut placeholder: Option<String> = None;
    for word in words {
        if optional > 0 || word.starts_with('[') {
            optional += word.matches('[').count();
            optional = optional.saturating_sub(word.matches(']').count());
            continue;
        }
        match placeholder.take() {
            Some(mut open) => {
                open.push('_');
                open.push_str(word);
                if word.ends_with('>') { out.push(open) } else { placeholder = Some(open) }
            }
            None if word.starts_with('<') && !word.ends_with('>') => placeholder = Some(word.clone()),
            None => out.push(word.clone()),
        }
    }
    out
}
