//! Command implementations, one module per command family.

pub mod auditcmd;
pub mod boxcmd;
pub mod buddycmd;
pub mod chunk;
pub mod clientscmd;
pub mod common;
pub mod config;
pub mod debug;
pub mod demo;
pub mod lancmd;
pub mod recovercmd;
pub mod repaircmd;
pub mod request;

use std::sync::Arc;

use anyhow::Result;

/// Runs a box command: on the daemon if one holds the box (over its
/// control socket), else in this process with the lock the command needs.
pub fn run_request(g: &common::Global, req: request::Request) -> Result<u8> {
    match on_daemon(g, req)? {
        Ok(code) => Ok(code),
        Err(req) => {
            let repo = g.open(req.lock_mode())?;
            let shared = crate::repo::SharedBox::new(Arc::new(repo));
            request::execute(g, &shared, None, req)
        }
    }
}

/// Runs `req` on the daemon holding the box, if one does, and gives its
/// exit code; `Err(req)` hands the request back when no daemon runs.
pub fn on_daemon(g: &common::Global, req: request::Request) -> Result<Result<u8, request::Request>> {
    let Some(stream) = crate::daemon::client::connect(&g.data)? else { return Ok(Err(req)) };
    let msg = crate::daemon::protocol::ClientMessage::Run {
        request: req,
        json: g.json,
        quiet: g.quiet,
        threads: Some(g.threads),
    };
    crate::daemon::client::run(g, stream, &msg).map(Ok)
}
