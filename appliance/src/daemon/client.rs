//! The command line's side of the control socket: is a daemon holding the
//! box, and if so, run the command there.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::protocol::{ClientMessage, DaemonMessage, SOCKET_FILE};
use super::status::StatusReport;
use crate::cli::common::Global;
use crate::exit::{self, ExitError};

/// Connects to the daemon of the box in `data`; `None` when no daemon runs
/// (no socket, or a stale one left by a killed daemon).
pub fn connect(data: &Path) -> Result<Option<UnixStream>> {
    let path = data.join(SOCKET_FILE);
    match UnixStream::connect(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot reach the daemon at {}", path.display())),
    }
}

fn ask(stream: &mut UnixStream, msg: &ClientMessage) -> Result<BufReader<UnixStream>> {
    let mut line = serde_json::to_vec(msg).expect("client messages serialize");
    line.push(b'\n');
    stream.write_all(&line).context("cannot send to the daemon")?;
    Ok(BufReader::new(stream.try_clone()?))
}

fn read_message(reader: &mut BufReader<UnixStream>) -> Result<DaemonMessage> {
    let mut line = String::new();
    if reader.read_line(&mut line).context("cannot read from the daemon")? == 0 {
        bail!("the daemon closed the connection before the command ended (was it stopped?)");
    }
    serde_json::from_str(&line).context("the daemon sent something that is not a message")
}

/// Runs `msg` on the daemon, relaying output through `g`; returns the exit
/// code, or the daemon's error as this process's error.
pub fn run(g: &Global, mut stream: UnixStream, msg: &ClientMessage) -> Result<u8> {
    let mut reader = ask(&mut stream, msg)?;
    loop {
        match read_message(&mut reader)? {
            DaemonMessage::Stdout(line) => g.line(line)?,
            DaemonMessage::Stderr(line) => g.warn(line),
            DaemonMessage::Status(_) => bail!("the daemon answered a status to a command"),
            DaemonMessage::Done { exit, error: None } => return Ok(exit),
            DaemonMessage::Done { exit, error: Some(e) } => {
                return Err(ExitError::new(if exit == exit::OK { exit::FAILED } else { exit }, e).into())
            }
        }
    }
}

/// Asks the daemon what it is doing.
pub fn status(mut stream: UnixStream) -> Result<StatusReport> {
    let mut reader = ask(&mut stream, &ClientMessage::Status)?;
    match read_message(&mut reader)? {
        DaemonMessage::Status(r) => Ok(*r),
        DaemonMessage::Done { error: Some(e), .. } => bail!("{e}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}
