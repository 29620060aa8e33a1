//! Where results and diagnostics go: results on stdout (text or the API's JSON), everything
//! else on stderr.

use std::fmt::Display;
use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use super::args::OutputFormat;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    format: OutputFormat,
}

impl Output {
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    pub fn is_json(self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints an API object: as pretty JSON, or as the text `text` makes of it.
    pub fn show<T: Serialize>(self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        let rendered = if self.is_json() { serde_json::to_string_pretty(value)? } else { text(value) };
        write_stdout(&rendered)
    }

    /// Prints one object per line (compact JSON, or text), flushed at once for programs that
    /// read the output as it comes.
    pub fn stream_line<T: Serialize>(self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        let rendered = if self.is_json() { serde_json::to_string(value)? } else { text(value) };
        write_stdout(&rendered)
    }

    /// A confirmation for people, for commands whose answer has no body: JSON output stays
    /// empty, and the exit status says it worked.
    pub fn done(self, text: impl Display) -> Result<()> {
        if self.is_json() { Ok(()) } else { write_stdout(&text.to_string()) }
    }
}

fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    if !text.is_empty() {
        writeln!(stdout, "{text}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// A diagnostic on stderr. A failure to write it is not worth failing the command for.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
