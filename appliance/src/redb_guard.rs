//! Opening a redb database without letting a damaged file crash the process.
//!
//! redb 2.x asserts (panics) on some damaged headers, for instance a file cut
//! shorter than its header says. A damaged box must give a clear error, never
//! a panic, so opens run under `catch_unwind` with the panic message kept
//! off the terminal.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;

/// Serializes hook swaps between threads opening databases at once.
static HOOK: Mutex<()> = Mutex::new(());

/// Runs `open`; a panic inside becomes `Err` with a message naming `path`.
pub fn open_guarded<T, E>(path: &Path, open: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, String> {
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(open));
    panic::set_hook(previous);
    result.map_err(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unreadable header".to_string());
        format!("{} is damaged ({why})", path.display())
    })
}
