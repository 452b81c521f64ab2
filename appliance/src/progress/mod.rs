//! Progress reporting for long commands (backup, restore, check, prune), in
//! the manner of restic.
//!
//! The engine bumps counters on a shared [`Progress`] handle from any number
//! of threads (all atomics, no locks on the hot path); a reporter thread shows
//! them while the command runs. What is shown, and where, depends on the
//! [`Mode`]:
//!
//! | mode | status | messages ([`Progress::message`]) |
//! | --- | --- | --- |
//! | [`Mode::Quiet`] | none | plain text on stderr |
//! | [`Mode::Terminal`] | one line on stderr, redrawn every 100 ms | plain text on stderr, above the status line |
//! | [`Mode::Json`] | one JSON object per line on stdout, every second | one JSON object per line on stderr |
//!
//! In JSON mode, stdout carries only status objects (and whatever the command
//! itself prints, such as a summary), so a consumer can parse it line by line;
//! warnings and errors go to stderr as restic does with its errors:
//!
//! ```text
//! stdout: {"message_type":"status","action":"backup","seconds_elapsed":3,"seconds_remaining":5,"percent_done":0.42,"total_files":10,"files_done":4,"total_bytes":1000,"bytes_done":420,"error_count":0,"current_files":["a/b"]}
//! stderr: {"message_type":"warning","action":"backup","message":"a/c: permission denied"}
//! stderr: {"message_type":"error","action":"backup","error":{"message":"a/d: I/O error"}}
//! stderr: {"message_type":"info","action":"backup","message":"using parent snapshot 1f2e"}
//! ```
//!
//! `seconds_remaining` is left out while it is unknown, `current_files` while
//! no file is current, and `percent_done` is 0 while no total is known.
//! Messages in plain text are prefixed `warning: ` and `error: ` (info
//! messages have no prefix). [`Mode::Quiet`] only turns the status display
//! off: callers decide themselves which messages `--quiet` suppresses.
//!
//! Progress is measured in bytes when a byte total is known, else in files.
//! The ETA extrapolates the average rate since the start, like restic's.
//!
//! - this module: the [`Progress`] handle, its counters and its reporter
//!   thread;
//! - [`status`]: a [`Status`] at one moment, what follows from it, and the
//!   JSON lines;
//! - `terminal`: the terminal display, an `indicatif` bar;
//! - [`units`]: byte counts and durations for people.

pub mod status;
mod terminal;
pub mod units;

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use status::{eta, fraction_done, rate, Status};
use status::{ErrorJson, MessageJson};
use terminal::Terminal;
pub use units::{human_bytes, human_duration};

/// How often the terminal status line is redrawn.
pub const TERMINAL_INTERVAL: Duration = Duration::from_millis(100);
/// How often a JSON status line is printed.
pub const JSON_INTERVAL: Duration = Duration::from_secs(1);

/// Where and how progress is shown; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No status display; messages as plain text on stderr.
    Quiet,
    /// A status line on stderr, redrawn in place.
    Terminal,
    /// Status objects on stdout and messages as JSON on stderr, one per line.
    Json,
}

impl Mode {
    /// The mode for the command line flags: `--json` gives [`Mode::Json`]
    /// (even with `--quiet`: machine output is never silenced), `--quiet`
    /// gives [`Mode::Quiet`], and otherwise [`Mode::Terminal`] if stderr is a
    /// terminal, else [`Mode::Quiet`].
    pub fn detect(json: bool, quiet: bool) -> Mode {
        if json {
            Mode::Json
        } else if quiet || !io::stderr().is_terminal() {
            Mode::Quiet
        } else {
            Mode::Terminal
        }
    }
}

/// How serious a [`Progress::message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something the user may want to know.
    Info,
    /// Something went wrong but the command carries on unharmed.
    Warning,
    /// Something failed; counted in the error count.
    Error,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Warning => "warning: ",
            Level::Error => "error: ",
        }
    }
}

/// A handle on the progress of one command. Cheap to clone; every clone
/// updates the same counters, from any thread.
///
/// Dropping the last clone stops the reporter thread (and clears the status
/// line), but [`Progress::finish`] does so at once and waits for it.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
}

/// The state all clones of a [`Progress`] and its reporter share.
struct Shared {
    mode: Mode,
    action: &'static str,
    started: Instant,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    errors: AtomicU64,
    current_file: Mutex<Option<String>>,
    out: Mutex<Output>,
    control: Arc<Control>,
    reporter: Mutex<Option<JoinHandle<()>>>,
}

/// The output streams, behind one lock so that lines never interleave.
struct Output {
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    /// The bar of [`Mode::Terminal`].
    terminal: Option<Terminal>,
}

/// Tells the reporter thread to stop, waking it at once.
struct Control {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Control {
    fn stop(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Waits up to `timeout` for a stop; returns whether stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) =
            self.wake.wait_timeout_while(guard, timeout, |stopped| !*stopped).unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Locks a mutex, ignoring poisoning: progress output is never worth a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Progress {
    /// Starts reporting the progress of `action` (e.g. `"backup"`, used in
    /// JSON lines) in `mode`: a reporter thread prints the status every
    /// [`TERMINAL_INTERVAL`] or [`JSON_INTERVAL`] until [`Progress::finish`].
    /// In [`Mode::Quiet`] no thread is started.
    pub fn start(mode: Mode, action: &'static str) -> Progress {
        Self::start_with(
            mode,
            action,
            Box::new(io::stdout()),
            Box::new(io::stderr()),
            (mode == Mode::Terminal).then(Terminal::stderr),
            match mode {
                Mode::Json => JSON_INTERVAL,
                _ => TERMINAL_INTERVAL,
            },
        )
    }

    /// Starts reporting into `stdout` and `stderr` (a client of the daemon,
    /// say): [`Mode::Json`] or [`Mode::Quiet`]; a terminal display needs a
    /// terminal, so [`Mode::Terminal`] reports like [`Mode::Quiet`].
    pub fn start_on(
        mode: Mode,
        action: &'static str,
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
    ) -> Progress {
        let mode = if mode == Mode::Terminal { Mode::Quiet } else { mode };
        Self::start_with(mode, action, stdout, stderr, None, JSON_INTERVAL)
    }

    /// [`Progress::start`] with the streams, terminal display and interval
    /// given (for tests).
    fn start_with(
        mode: Mode,
        action: &'static str,
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        terminal: Option<Terminal>,
        interval: Duration,
    ) -> Progress {
        let control = Arc::new(Control { stopped: Mutex::new(false), wake: Condvar::new() });
        let shared = Arc::new(Shared {
            mode,
            action,
            started: Instant::now(),
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            current_file: Mutex::new(None),
            out: Mutex::new(Output { stdout, stderr, terminal }),
            control: Arc::clone(&control),
            reporter: Mutex::new(None),
        });
        if mode != Mode::Quiet {
            let weak = Arc::downgrade(&shared);
            let spawned = thread::Builder::new()
                .name("pastiche-progress".into())
                .spawn(move || report_until_stopped(&weak, &control, interval));
            // Without a thread the command still runs, just without a display.
            if let Ok(handle) = spawned {
                *lock(&shared.reporter) = Some(handle);
            }
        }
        Progress { shared }
    }

    /// The mode this progress reports in.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// The action name given to [`Progress::start`].
    pub fn action(&self) -> &'static str {
        self.shared.action
    }

    /// Sets the total number of files, once known.
    pub fn set_total_files(&self, files: u64) {
        self.shared.total_files.store(files, Ordering::Relaxed);
    }

    /// Sets the total number of bytes, once known.
    pub fn set_total_bytes(&self, bytes: u64) {
        self.shared.total_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Adds to the totals, for a scanner that finds work as it goes.
    pub fn add_total(&self, files: u64, bytes: u64) {
        self.shared.total_files.fetch_add(files, Ordering::Relaxed);
        self.shared.total_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `files` more files as done.
    pub fn add_files_done(&self, files: u64) {
        self.shared.files_done.fetch_add(files, Ordering::Relaxed);
    }

    /// Counts `bytes` more bytes as done.
    pub fn add_bytes_done(&self, bytes: u64) {
        self.shared.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `errors` more errors that were not reported with
    /// [`Progress::message`].
    pub fn add_errors(&self, errors: u64) {
        self.shared.errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Sets both totals at once, once known.
    pub fn set_totals(&self, files: u64, bytes: u64) {
        self.set_total_files(files);
        self.set_total_bytes(bytes);
    }

    /// Counts one more file as done.
    pub fn file_done(&self) {
        self.add_files_done(1);
    }

    /// Counts `bytes` more bytes as done (same as
    /// [`Progress::add_bytes_done`]).
    pub fn bytes_done(&self, bytes: u64) {
        self.add_bytes_done(bytes);
    }

    /// Prints a warning: [`Progress::message`] at [`Level::Warning`], which
    /// does not count an error.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.message(Level::Warning, text.as_ref());
    }

    /// Prints an error and counts it: [`Progress::message`] at
    /// [`Level::Error`].
    pub fn error(&self, text: impl AsRef<str>) {
        self.message(Level::Error, text.as_ref());
    }

    /// Sets the file being processed, shown on the status line.
    pub fn set_current_file(&self, name: impl Into<String>) {
        *lock(&self.shared.current_file) = Some(name.into());
    }

    /// Clears the file being processed.
    pub fn clear_current_file(&self) {
        *lock(&self.shared.current_file) = None;
    }

    /// The counters now.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Prints a message without garbling the status line (see the
    /// [module docs](self) for the formats). [`Level::Error`] also counts an
    /// error.
    pub fn message(&self, level: Level, text: &str) {
        let shared = &self.shared;
        if level == Level::Error {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut out = lock(&shared.out);
        let Output { stderr, terminal, .. } = &mut *out;
        // Output errors (a closed pipe, say) are not the command's failure.
        let _ = match (shared.mode, terminal) {
            (Mode::Terminal, Some(t)) if !shared.control.is_stopped() => {
                // Above the bar: it is taken off the screen and drawn again.
                t.suspend(|| writeln!(stderr, "{}{text}", level.prefix()))
            }
            (Mode::Quiet | Mode::Terminal, _) => writeln!(stderr, "{}{text}", level.prefix()),
            (Mode::Json, _) => {
                let line = MessageJson {
                    message_type: match level {
                        Level::Info => "info",
                        Level::Warning => "warning",
                        Level::Error => "error",
                    },
                    action: shared.action,
                    message: (level != Level::Error).then_some(text),
                    error: (level == Level::Error).then_some(ErrorJson { message: text }),
                };
                let json = serde_json::to_string(&line).expect("a message always serializes");
                writeln!(out.stderr, "{json}")
            }
        };
        let _ = out.stderr.flush();
    }

    /// Stops the reporter, waits for it, clears the terminal status line and
    /// returns the final counters (no final status line is printed, in any
    /// mode: the command prints its own summary). Calling it again is
    /// harmless; messages still print afterwards, without a status line.
    pub fn finish(&self) -> Status {
        let shared = &self.shared;
        shared.control.stop();
        let handle = lock(&shared.reporter).take();
        if let Some(handle) = handle {
            // A panicked reporter has nothing left to clean up.
            let _ = handle.join();
        }
        shared.clear_terminal_line();
        shared.status()
    }

    /// Prints the status once now, as the reporter thread does.
    #[cfg(test)]
    fn report(&self) {
        self.shared.report();
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress").field("mode", &self.shared.mode).field("status", &self.status()).finish()
    }
}

impl Shared {
    fn status(&self) -> Status {
        Status {
            action: self.action,
            elapsed: self.started.elapsed(),
            total_files: self.total_files.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            error_count: self.errors.load(Ordering::Relaxed),
            current_file: lock(&self.current_file).clone(),
        }
    }

    /// Prints the status once.
    fn report(&self) {
        let status = self.status();
        let mut out = lock(&self.out);
        match self.mode {
            Mode::Quiet => {}
            Mode::Terminal => {
                if let Some(t) = &out.terminal {
                    t.draw(&status);
                }
            }
            Mode::Json => {
                let _ = writeln!(out.stdout, "{}", status.to_json_line());
                let _ = out.stdout.flush();
            }
        }
    }

    fn clear_terminal_line(&self) {
        if let Some(t) = &lock(&self.out).terminal {
            t.clear();
        }
    }
}

impl Drop for Shared {
    /// The last handle is gone: stop the reporter (it holds only a weak
    /// reference) and take the status line off the screen.
    fn drop(&mut self) {
        self.control.stop();
        self.clear_terminal_line();
    }
}

/// The reporter thread: prints the status every `interval` until stopped or
/// until every [`Progress`] handle is gone.
fn report_until_stopped(shared: &Weak<Shared>, control: &Control, interval: Duration) {
    while !control.wait(interval) {
        match shared.upgrade() {
            Some(shared) => shared.report(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::terminal::tests::FakeTerm;
    use super::*;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    /// A progress writing into buffers (and a fake terminal, in terminal
    /// mode), with a reporter that never ticks on its own during a test (so
    /// output comes only from explicit calls).
    fn captured(mode: Mode) -> (Progress, Buf, Buf) {
        captured_on(mode, FakeTerm::new(100))
    }

    fn captured_on(mode: Mode, term: FakeTerm) -> (Progress, Buf, Buf) {
        let (stdout, stderr) = (Buf::default(), Buf::default());
        let terminal = (mode == Mode::Terminal).then(|| term.terminal());
        let p = Progress::start_with(
            mode,
            "backup",
            Box::new(stdout.clone()),
            Box::new(stderr.clone()),
            terminal,
            Duration::from_secs(3600),
        );
        (p, stdout, stderr)
    }

    #[test]
    fn counters_from_many_threads() {
        let (p, _, _) = captured(Mode::Quiet);
        p.set_totals(8000, 0);
        p.add_total(0, 8000 * 10);
        thread::scope(|s| {
            for _ in 0..8 {
                let p = p.clone();
                s.spawn(move || {
                    for i in 0..1000 {
                        if i % 2 == 0 {
                            p.add_files_done(1);
                            p.add_bytes_done(10);
                        } else {
                            p.file_done();
                            p.bytes_done(10);
                        }
                    }
                    p.add_errors(1);
                });
            }
        });
        let st = p.finish();
        assert_eq!((st.files_done, st.bytes_done, st.error_count), (8000, 80_000, 8));
        assert_eq!((st.total_files, st.total_bytes), (8000, 80_000));
        assert_eq!(st.fraction_done(), Some(1.0));
        assert_eq!(st.action, "backup");
    }

    #[test]
    fn terminal_messages_go_above_the_bar() {
        let term = FakeTerm::new(100);
        let (p, stdout, stderr) = captured_on(Mode::Terminal, term.clone());
        p.set_current_file("x/y");
        p.report();
        let drawn = term.calls().concat();
        assert!(drawn.contains("x/y"), "{drawn:?}");
        let before = term.calls().len();

        p.message(Level::Warning, "cannot read x/z");
        assert_eq!(stderr.text(), "warning: cannot read x/z\n");
        let redraw = term.calls()[before..].concat();
        assert!(redraw.contains("<clear>") && redraw.contains("x/y"), "off, then drawn again: {redraw:?}");
        p.clear_current_file();
        p.message(Level::Error, "boom");
        assert_eq!(p.status().error_count, 1);

        let st = p.finish();
        assert_eq!(st.error_count, 1);
        assert!(term.calls().concat().ends_with("<clear>"), "bar cleared on finish: {:?}", term.calls());
        // After finish: plain, and no status line comes back.
        let calls = term.calls().len();
        p.message(Level::Info, "done");
        assert!(stderr.text().ends_with("error: boom\ndone\n"), "{:?}", stderr.text());
        assert_eq!(term.calls().len(), calls);
        p.finish();
        assert!(stdout.text().is_empty());
    }

    #[test]
    fn json_lines() {
        let (p, stdout, stderr) = captured(Mode::Json);
        p.set_total_files(2);
        p.add_files_done(1);
        p.report();
        p.report();
        let out = stdout.text();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["message_type"], "status");
            assert_eq!(v["percent_done"], 0.5);
        }

        p.message(Level::Warning, "skipped \"a\"");
        p.message(Level::Error, "failed b");
        p.message(Level::Info, "note");
        let err = stderr.text();
        let lines: Vec<serde_json::Value> = err.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"message_type":"warning","action":"backup","message":"skipped \"a\""}),
                serde_json::json!({"message_type":"error","action":"backup","error":{"message":"failed b"}}),
                serde_json::json!({"message_type":"info","action":"backup","message":"note"}),
            ]
        );
        assert_eq!(p.finish().error_count, 1);
    }

    #[test]
    fn quiet_shows_no_status() {
        let (p, stdout, stderr) = captured(Mode::Quiet);
        p.add_bytes_done(5);
        p.report();
        p.warn("w");
        p.error(String::from("e"));
        assert_eq!(p.status().error_count, 1);
        p.finish();
        assert!(stdout.text().is_empty());
        assert_eq!(stderr.text(), "warning: w\nerror: e\n");
    }

    #[test]
    fn reporter_thread_stops_on_finish() {
        // A fast reporter; only complete lines may come out, however many.
        let (stdout, stderr) = (Buf::default(), Buf::default());
        let p = Progress::start_with(
            Mode::Json,
            "check",
            Box::new(stdout.clone()),
            Box::new(stderr.clone()),
            None,
            Duration::from_millis(1),
        );
        for _ in 0..1000 {
            p.add_bytes_done(1);
        }
        let st = p.finish();
        assert_eq!(st.bytes_done, 1000);
        assert!(lock(&p.shared.reporter).is_none());
        let before = stdout.text();
        for l in before.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["action"], "check");
        }
        p.add_bytes_done(1);
        assert_eq!(stdout.text(), before, "the reporter is gone");
    }

    #[test]
    fn dropping_the_last_handle_stops_the_reporter() {
        let term = FakeTerm::new(100);
        let (p, _, _) = captured_on(Mode::Terminal, term.clone());
        let control = Arc::clone(&p.shared.control);
        let handle = lock(&p.shared.reporter).take().unwrap();
        p.report();
        let clone = p.clone();
        drop(p);
        assert!(!control.is_stopped());
        drop(clone);
        assert!(control.is_stopped());
        handle.join().unwrap();
        assert!(term.calls().concat().ends_with("<clear>"), "{:?}", term.calls());
    }

    #[test]
    fn detect_modes() {
        assert_eq!(Mode::detect(true, false), Mode::Json);
        assert_eq!(Mode::detect(true, true), Mode::Json);
        assert_eq!(Mode::detect(false, true), Mode::Quiet);
        let expected = if io::stderr().is_terminal() { Mode::Terminal } else { Mode::Quiet };
        assert_eq!(Mode::detect(false, false), expected);
    }

    #[test]
    fn start_in_quiet_mode_starts_no_thread() {
        let p = Progress::start(Mode::Quiet, "prune");
        assert!(lock(&p.shared.reporter).is_none());
        assert_eq!(p.mode(), Mode::Quiet);
        assert_eq!(p.action(), "prune");
        assert!(format!("{p:?}").contains("prune"));
        p.finish();
    }
}
