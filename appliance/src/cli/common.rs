//! What every box command shares: global options, opening the box, where
//! output goes, time formats.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::meta::model::{RootObject, SnapshotInfo, Timestamp};
use crate::progress::{Mode, Progress};
use crate::repo::password::read_passphrase;
use crate::repo::{LockMode, Repo};

/// Where a command's output lines go: this process's stdout and stderr, or
/// a control-socket client of the daemon.
pub trait Output: Send + Sync {
    /// One line of standard output (without its newline). An error (a
    /// closed pipe, a client gone) ends the command.
    fn stdout(&self, line: &str) -> io::Result<()>;
    /// One line of standard error (without its newline); failures to write
    /// it are not the command's.
    fn stderr(&self, line: &str);
    /// Whether progress may be drawn here (a terminal of this process).
    fn local(&self) -> bool {
        false
    }
}

/// The output of a command run in this process.
#[derive(Debug, Default)]
pub struct Local;

impl Output for Local {
    fn stdout(&self, line: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }

    fn stderr(&self, line: &str) {
        let _ = writeln!(io::stderr().lock(), "{line}");
    }

    fn local(&self) -> bool {
        true
    }
}

/// A writer that hands each whole line to an [`Output`].
struct Lines {
    out: Arc<dyn Output>,
    to_stdout: bool,
    pending: Vec<u8>,
}

impl Lines {
    fn new(out: Arc<dyn Output>, to_stdout: bool) -> Lines {
        Lines { out, to_stdout, pending: Vec::new() }
    }
}

impl Write for Lines {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            if self.to_stdout {
                self.out.stdout(&text)?;
            } else {
                self.out.stderr(&text);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether an error is only a closed standard output (`pastiche snapshots |
/// head -1`): the reader has what it wanted, so the command exits quietly.
pub fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Options accepted by every box command.
pub struct Global {
    /// The box's data directory.
    pub data: PathBuf,
    /// JSON Lines on stdout instead of text.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
    /// Worker threads.
    pub threads: usize,
    /// Where output goes.
    pub out: Arc<dyn Output>,
}

impl Global {
    /// Opens the box, asking for the passphrase.
    pub fn open(&self, mode: LockMode) -> Result<Repo> {
        let pass = read_passphrase(false)?;
        Repo::open(&self.data, &pass, mode)
    }

    /// Starts progress reporting for `action`: a terminal display when the
    /// command runs in this process on a terminal; for a client of the
    /// daemon, its messages (and with `--json` its status lines) go to the
    /// client.
    pub fn progress(&self, action: &'static str) -> Progress {
        if self.out.local() {
            return Progress::start(Mode::detect(self.json, self.quiet), action);
        }
        let mode = if self.json { Mode::Json } else { Mode::Quiet };
        let (stdout, stderr) = (Lines::new(self.out.clone(), true), Lines::new(self.out.clone(), false));
        Progress::start_on(mode, action, Box::new(stdout), Box::new(stderr))
    }

    /// Prints one JSON line. Serializing our own report types cannot fail.
    pub fn json<T: Serialize>(&self, value: &T) -> io::Result<()> {
        self.out.stdout(&serde_json::to_string(value).expect("serializable"))
    }

    /// [`Global::json`] for commands that print little: a closed output is
    /// ignored.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        let _ = self.json(value);
    }

    /// Prints one line of text.
    pub fn line(&self, text: impl AsRef<str>) -> io::Result<()> {
        self.out.stdout(text.as_ref())
    }

    /// Prints one line on standard error.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.out.stderr(text.as_ref())
    }
}

/// Finds `latest` or the one snapshot whose id starts with `spec`.
pub fn find_snapshot<'a>(root: &'a RootObject, spec: &str) -> Result<&'a SnapshotInfo> {
    Ok(crate::engine::snapshots::find(root, spec)?)
}

/// The instant of a timestamp (clamped to jiff's range, years -9999 to 9999).
fn instant(t: Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::new(t.secs, t.nanos.min(999_999_999) as i32).unwrap_or(if t.secs < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(t: Timestamp) -> String {
    instant(t).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// ISO 8601 in UTC, for JSON.
pub fn iso_time(t: Timestamp) -> String {
    instant(t).strftime("%Y-%m-%dT%H:%M:%S.%NZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_time(Timestamp { secs: 0, nanos: 0 }), "1970-01-01 00:00:00");
        assert_eq!(format_time(Timestamp { secs: 1_795_678_516, nanos: 0 }), "2026-11-26 07:35:16");
        assert_eq!(format_time(Timestamp { secs: 951_782_400, nanos: 0 }), "2000-02-29 00:00:00");
        assert_eq!(iso_time(Timestamp { secs: 0, nanos: 5 }), "1970-01-01T00:00:00.000000005Z");
    }
}
