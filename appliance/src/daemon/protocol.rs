//! The control socket's protocol: JSON Lines over `DATA/control.sock`.
//!
//! The client sends one [`ClientMessage`]; the daemon answers with
//! [`DaemonMessage`]s: the command's output lines (with `--json`, exactly
//! the JSON Lines the command prints when it runs in-process), then `done`
//! with the exit code.
//!
//! ```text
//! > {"op":"run","request":{"command":"snapshots"},"json":true,"quiet":false,"threads":null}
//! < {"stdout":"{\"id\":\"3f2a...\",...}"}
//! < {"done":{"exit":0,"error":null}}
//! > {"op":"status"}
//! < {"status":{"name":"nas1.lan",...}}
//! > {"op":"trigger","job":"backup"}
//! < {"done":{"exit":0,"error":null}}
//! > {"op":"reload"}
//! < {"stdout":"backup schedule every 1h (was daily 02:30)"}
//! < {"done":{"exit":0,"error":null}}
//! ```

use serde::{Deserialize, Serialize};

use super::status::{JobKind, StatusReport};
use crate::cli::request::Request;

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "control.sock";
/// The longest message line accepted from a client.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Run a box command as the command line would.
    Run {
        /// The command.
        request: Request,
        /// `--json`.
        json: bool,
        /// `--quiet`.
        quiet: bool,
        /// `--threads`, if given.
        threads: Option<usize>,
    },
    /// What the daemon is doing.
    Status,
    /// Run a scheduled job now.
    Trigger {
        /// Which.
        job: JobKind,
    },
    /// Read the configuration file again and apply it.
    Reload,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonMessage {
    /// A line of the command's standard output.
    Stdout(String),
    /// A line of the command's standard error.
    Stderr(String),
    /// The answer to [`ClientMessage::Status`].
    Status(Box<StatusReport>),
    /// The end: the exit code, and the error message if it failed.
    Done {
        /// Exit code, as the command would have exited.
        exit: u8,
        /// What went wrong.
        error: Option<String>,
    },
}
