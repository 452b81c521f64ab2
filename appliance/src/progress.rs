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

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often the terminal status line is redrawn.
pub const TERMINAL_INTERVAL: Duration = Duration::from_millis(100);
/// How often a JSON status line is printed.
pub const JSON_INTERVAL: Duration = Duration::from_secs(1);

/// Erases the current terminal line and returns the cursor to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";
/// Width of the terminal if it cannot be asked.
const DEFAULT_WIDTH: usize = 80;
/// Inner width of the progress bar (between the brackets).
const BAR_WIDTH: usize = 20;

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

/// A snapshot of a command's progress at one moment.
///
/// A total of 0 means "not known (yet)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What the command is doing, e.g. `"backup"`.
    pub action: &'static str,
    /// Time since [`Progress::start`].
    pub elapsed: Duration,
    /// Files to process in all, or 0 if unknown.
    pub total_files: u64,
    /// Files processed so far.
    pub files_done: u64,
    /// Bytes to process in all, or 0 if unknown.
    pub total_bytes: u64,
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Errors so far.
    pub error_count: u64,
    /// The file being processed, if the engine said.
    pub current_file: Option<String>,
}

impl Status {
    /// `(done, total)` of whatever progress is measured in: bytes if their
    /// total is known, else files if theirs is, else `None`.
    fn work(&self) -> Option<(u64, u64)> {
        if self.total_bytes > 0 {
            Some((self.bytes_done, self.total_bytes))
        } else if self.total_files > 0 {
            Some((self.files_done, self.total_files))
        } else {
            None
        }
    }

    /// The fraction done, 0.0 to 1.0, or `None` while no total is known.
    pub fn fraction_done(&self) -> Option<f64> {
        self.work().and_then(|(done, total)| fraction_done(done, total))
    }

    /// The estimated time left, or `None` while it cannot be estimated.
    pub fn eta(&self) -> Option<Duration> {
        self.work().and_then(|(done, total)| eta(self.elapsed, done, total))
    }

    /// The average throughput since the start, in bytes per second.
    pub fn bytes_per_second(&self) -> Option<f64> {
        rate(self.bytes_done, self.elapsed)
    }

    /// The status as one line of JSON (without the newline); see the
    /// [module docs](self) for its fields.
    pub fn to_json_line(&self) -> String {
        let line = StatusJson {
            message_type: "status",
            action: self.action,
            seconds_elapsed: self.elapsed.as_secs(),
            seconds_remaining: self.eta().map(|d| d.as_secs()),
            percent_done: self.fraction_done().unwrap_or(0.0),
            total_files: self.total_files,
            files_done: self.files_done,
            total_bytes: self.total_bytes,
            bytes_done: self.bytes_done,
            error_count: self.error_count,
            current_files: self.current_file.iter().map(String::as_str).collect(),
        };
        serde_json::to_string(&line).expect("a status always serializes")
    }

    /// The terminal status line, at most `width - 1` characters so that it
    /// never wraps (which would break redrawing it in place), e.g.
    /// `[0:12] 42.00% [========>           ] 1.20 GiB / 3.00 GiB  12 / 30 files  102.40 MiB/s  ETA 0:17  docs/a.txt`.
    ///
    /// The counters come first; the bar and then the current file are
    /// dropped or shortened (from the left) when space runs out.
    pub fn render_line(&self, width: usize) -> String {
        let room = width.saturating_sub(1);
        let fraction = self.fraction_done();

        let mut head = format!("[{}]", human_duration(self.elapsed));
        if let Some(f) = fraction {
            head.push_str(&format!(" {:.2}%", f * 100.0));
        }
        let mut stats = String::new();
        if self.total_bytes > 0 {
            stats.push_str(&format!("{} / {}", human_bytes(self.bytes_done), human_bytes(self.total_bytes)));
        } else {
            stats.push_str(&human_bytes(self.bytes_done));
        }
        if self.total_files > 0 {
            stats.push_str(&format!("  {} / {} files", self.files_done, self.total_files));
        } else {
            stats.push_str(&format!("  {} files", self.files_done));
        }
        if let Some(r) = self.bytes_per_second() {
            // Whole bytes per second are plenty of precision for a display.
            stats.push_str(&format!("  {}/s", human_bytes(r as u64)));
        }
        if let Some(left) = self.eta() {
            stats.push_str(&format!("  ETA {}", human_duration(left)));
        }
        if self.error_count > 0 {
            let s = if self.error_count == 1 { "" } else { "s" };
            stats.push_str(&format!("  {} error{s}", self.error_count));
        }

        let mut line = head;
        let used = line.len() + 1 + stats.len();
        if let Some(f) = fraction {
            if used + BAR_WIDTH + 3 <= room {
                line.push(' ');
                line.push_str(&bar(f, BAR_WIDTH));
            }
        }
        line.push(' ');
        line.push_str(&stats);
        if let Some(file) = &self.current_file {
            let left = room.saturating_sub(line.chars().count() + 2);
            if left >= 8 {
                line.push_str("  ");
                line.push_str(&shorten_left(file, left));
            }
        }
        truncate_chars(&line, room)
    }
}

/// A JSON status line; field order is restic's.
#[derive(Serialize)]
struct StatusJson<'a> {
    message_type: &'static str,
    action: &'static str,
    seconds_elapsed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_remaining: Option<u64>,
    percent_done: f64,
    total_files: u64,
    files_done: u64,
    total_bytes: u64,
    bytes_done: u64,
    error_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    current_files: Vec<&'a str>,
}

/// A JSON message line.
#[derive(Serialize)]
struct MessageJson<'a> {
    message_type: &'static str,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson<'a>>,
}

/// The `error` object of a JSON error line, as restic nests it.
#[derive(Serialize)]
struct ErrorJson<'a> {
    message: &'a str,
}

/// `done / total` as a fraction clamped to 0.0..=1.0, or `None` if `total`
/// is 0 (unknown).
pub fn fraction_done(done: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| (done as f64 / total as f64).min(1.0))
}

/// Time left to finish `total` units when `done` took `elapsed`, assuming
/// the average rate so far holds: `elapsed × (total − done) / done`. Zero
/// once `done >= total`; `None` if `total` is 0 (unknown), or nothing is done
/// yet, or no time has passed.
pub fn eta(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    if total == 0 {
        return None;
    }
    if done >= total {
        return Some(Duration::ZERO);
    }
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    // At most ~1.8e19 × 1.8e19 ≈ 3.4e38 only if elapsed is centuries long;
    // saturate rather than overflow.
    let nanos = elapsed.as_nanos().checked_mul(u128::from(total - done)).map_or(u128::MAX, |n| n / u128::from(done));
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// `amount` per second over `elapsed`, or `None` if no time has passed.
pub fn rate(amount: u64, elapsed: Duration) -> Option<f64> {
    (!elapsed.is_zero()).then(|| amount as f64 / elapsed.as_secs_f64())
}

/// A byte count in binary units with two decimals: `512 B`, `1.50 KiB`,
/// `3.00 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up a unit when the value would print as 1024.00 or more.
    while unit + 1 < UNITS.len() && value >= 1024.0 - 0.005 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// A duration as restic shows it, to the whole second: `m:ss` under an hour,
/// else `h:mm:ss` (hours may exceed 24).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `[=====>    ]` with `inner` characters between the brackets.
fn bar(fraction: f64, inner: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * inner as f64) as usize).min(inner);
    let mut s = String::with_capacity(inner + 2);
    s.push('[');
    s.extend(std::iter::repeat_n('=', filled));
    if filled < inner {
        s.push('>');
        s.extend(std::iter::repeat_n(' ', inner - filled - 1));
    }
    s.push(']');
    s
}

/// The first `max` characters of `s`.
fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `s` if it fits in `max` characters, else `…` and its last `max - 1`.
fn shorten_left(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - max.saturating_sub(1)).collect();
    format!("…{tail}")
}

/// The width of the terminal on stderr: asked of the kernel, else `$COLUMNS`,
/// else 80.
fn terminal_width() -> usize {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(io::stderr()) {
        if w > 0 {
            return usize::from(w);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(DEFAULT_WIDTH)
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
    /// Whether a terminal status line is on screen.
    line_drawn: bool,
    /// A fixed terminal width (tests), or `None` to ask the terminal.
    width: Option<usize>,
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
            None,
            match mode {
                Mode::Json => JSON_INTERVAL,
                _ => TERMINAL_INTERVAL,
            },
        )
    }

    /// [`Progress::start`] with the streams, terminal width and interval
    /// given (for tests).
    fn start_with(
        mode: Mode,
        action: &'static str,
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        width: Option<usize>,
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
            out: Mutex::new(Output { stdout, stderr, line_drawn: false, width }),
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
        // Output errors (a closed pipe, say) are not the command's failure.
        let _ = match shared.mode {
            Mode::Quiet => writeln!(out.stderr, "{}{text}", level.prefix()),
            Mode::Terminal => {
                let cleared = if out.line_drawn { CLEAR_LINE } else { "" };
                out.line_drawn = false;
                let r = writeln!(out.stderr, "{cleared}{}{text}", level.prefix());
                if !shared.control.is_stopped() {
                    shared.draw_terminal(&mut out, &shared.status());
                }
                r
            }
            Mode::Json => {
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
            Mode::Terminal => self.draw_terminal(&mut out, &status),
            Mode::Json => {
                let _ = writeln!(out.stdout, "{}", status.to_json_line());
                let _ = out.stdout.flush();
            }
        }
    }

    /// Draws the terminal status line over the previous one.
    fn draw_terminal(&self, out: &mut Output, status: &Status) {
        let width = out.width.unwrap_or_else(terminal_width);
        let line = status.render_line(width);
        let _ = write!(out.stderr, "{CLEAR_LINE}{line}");
        let _ = out.stderr.flush();
        out.line_drawn = true;
    }

    fn clear_terminal_line(&self) {
        let mut out = lock(&self.out);
        if out.line_drawn {
            let _ = write!(out.stderr, "{CLEAR_LINE}");
            let _ = out.stderr.flush();
            out.line_drawn = false;
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

    /// A progress writing into buffers, with a reporter that never ticks on
    /// its own during a test (so output comes only from explicit calls).
    fn captured(mode: Mode) -> (Progress, Buf, Buf) {
        let (stdout, stderr) = (Buf::default(), Buf::default());
        let p = Progress::start_with(
            mode,
            "backup",
            Box::new(stdout.clone()),
            Box::new(stderr.clone()),
            Some(100),
            Duration::from_secs(3600),
        );
        (p, stdout, stderr)
    }

    fn status() -> Status {
        Status {
            action: "backup",
            elapsed: Duration::from_secs(12),
            total_files: 30,
            files_done: 12,
            total_bytes: 3 << 30,
            bytes_done: 1 << 30,
            error_count: 0,
            current_file: Some("docs/a.txt".into()),
        }
    }

    #[test]
    fn human_bytes_units() {
        let cases = [
            (0, "0 B"),
            (1, "1 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (10 * 1024 + 100, "10.10 KiB"),
            ((1 << 20) - 1, "1.00 MiB"),
            (1 << 20, "1.00 MiB"),
            ((1 << 20) - 6 * 1024, "1018.00 KiB"),
            (5 << 30, "5.00 GiB"),
            (3 << 40, "3.00 TiB"),
            (1 << 50, "1.00 PiB"),
            (u64::MAX, "16.00 EiB"),
        ];
        for (n, want) in cases {
            assert_eq!(human_bytes(n), want, "{n}");
        }
    }

    #[test]
    fn human_duration_forms() {
        let cases = [
            (0, "0:00"),
            (5, "0:05"),
            (65, "1:05"),
            (3599, "59:59"),
            (3600, "1:00:00"),
            (3600 + 62, "1:01:02"),
            (26 * 3600 + 3 * 60 + 4, "26:03:04"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(s)), want, "{s}");
        }
        assert_eq!(human_duration(Duration::from_millis(59_999)), "0:59");
    }

    #[test]
    fn fraction_done_edges() {
        assert_eq!(fraction_done(0, 0), None);
        assert_eq!(fraction_done(5, 0), None);
        assert_eq!(fraction_done(0, 10), Some(0.0));
        assert_eq!(fraction_done(42, 100), Some(0.42));
        assert_eq!(fraction_done(10, 10), Some(1.0));
        assert_eq!(fraction_done(11, 10), Some(1.0));
        assert_eq!(fraction_done(u64::MAX, u64::MAX), Some(1.0));
    }

    #[test]
    fn eta_extrapolates_the_average_rate() {
        let s = Duration::from_secs;
        assert_eq!(eta(s(10), 25, 100), Some(s(30)));
        assert_eq!(eta(s(10), 50, 100), Some(s(10)));
        assert_eq!(eta(s(3), 2, 3), Some(Duration::from_millis(1500)));
        assert_eq!(eta(s(10), 100, 100), Some(Duration::ZERO));
        assert_eq!(eta(s(10), 150, 100), Some(Duration::ZERO));
        assert_eq!(eta(s(10), 0, 100), None);
        assert_eq!(eta(Duration::ZERO, 5, 100), None);
        assert_eq!(eta(s(10), 5, 0), None);
        // Saturates instead of overflowing.
        let huge = eta(Duration::MAX, 1, u64::MAX).unwrap();
        assert!(huge >= Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn rate_per_second() {
        assert_eq!(rate(100, Duration::ZERO), None);
        assert_eq!(rate(100, Duration::from_secs(4)), Some(25.0));
        assert_eq!(rate(1, Duration::from_millis(500)), Some(2.0));
    }

    #[test]
    fn status_measures_bytes_then_files() {
        let mut st = status();
        assert_eq!(st.fraction_done(), Some(1.0 / 3.0));
        assert_eq!(st.eta(), Some(Duration::from_secs(24)));
        st.total_bytes = 0;
        assert_eq!(st.fraction_done(), Some(0.4));
        assert_eq!(st.eta(), Some(Duration::from_secs(18)));
        st.total_files = 0;
        assert_eq!(st.fraction_done(), None);
        assert_eq!(st.eta(), None);
        assert_eq!(st.bytes_per_second(), Some((1u64 << 30) as f64 / 12.0), "rate is of bytes even without totals");
    }

    #[test]
    fn json_status_line() {
        let line = status().to_json_line();
        assert!(line.starts_with(r#"{"message_type":"status","action":"backup","#));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seconds_elapsed"], 12);
        assert_eq!(v["seconds_remaining"], 24); // 12 s × 2 GiB left / 1 GiB done
        assert_eq!(v["percent_done"].as_f64(), Some(1.0 / 3.0));
        assert_eq!(v["total_files"], 30);
        assert_eq!(v["files_done"], 12);
        assert_eq!(v["total_bytes"], 3u64 << 30);
        assert_eq!(v["bytes_done"], 1u64 << 30);
        assert_eq!(v["error_count"], 0);
        assert_eq!(v["current_files"], serde_json::json!(["docs/a.txt"]));

        let unknown = Status { total_files: 0, total_bytes: 0, current_file: None, ..status() };
        let v: serde_json::Value = serde_json::from_str(&unknown.to_json_line()).unwrap();
        assert_eq!(v["percent_done"], 0.0);
        assert!(v.get("seconds_remaining").is_none());
        assert!(v.get("current_files").is_none());
    }

    #[test]
    fn terminal_line_contents() {
        let line = status().render_line(140);
        assert_eq!(
            line,
            "[0:12] 33.33% [======>             ] 1.00 GiB / 3.00 GiB  12 / 30 files  \
             85.33 MiB/s  ETA 0:24  docs/a.txt"
        );
        let unknown = Status { total_files: 0, total_bytes: 0, error_count: 2, current_file: None, ..status() };
        assert_eq!(unknown.render_line(140), "[0:12] 1.00 GiB  12 files  85.33 MiB/s  2 errors");
        let done = Status { bytes_done: 3 << 30, files_done: 30, error_count: 1, ..status() };
        assert!(done.render_line(140).starts_with("[0:12] 100.00% [====================] 3.00 GiB"));
        assert!(done.render_line(140).contains("ETA 0:00  1 error  "));
    }

    #[test]
    fn terminal_line_never_wraps() {
        let path = "ünïcödé/".repeat(40) + "last-part.bin";
        let long = Status { current_file: Some(path.clone()), ..status() };
        for width in 0..200 {
            let line = long.render_line(width);
            assert!(line.chars().count() < width.max(1), "{width}: {line}");
            if width > 60 {
                assert!(line.contains("12 / 30 files"), "{width}: {line}");
            }
            if let Some((_, tail)) = line.split_once('…') {
                // Shortened from the left: the end of the name stays.
                assert!(tail.len() >= 7 && path.ends_with(tail), "{width}: {line}");
            }
        }
        // Narrow: the bar goes before the counters do.
        let narrow = status().render_line(80);
        assert!(!narrow.contains("=>"), "{narrow}");
        assert!(narrow.ends_with("ETA 0:24"), "{narrow}");
    }

    #[test]
    fn bar_shapes() {
        assert_eq!(bar(0.0, 5), "[>    ]");
        assert_eq!(bar(0.5, 4), "[==> ]");
        assert_eq!(bar(0.99, 4), "[===>]");
        assert_eq!(bar(1.0, 4), "[====]");
        assert_eq!(bar(7.0, 4), "[====]");
        assert_eq!(bar(f64::NAN, 3), "[>  ]");
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
    fn terminal_messages_clear_and_redraw_the_line() {
        let (p, stdout, stderr) = captured(Mode::Terminal);
        p.set_current_file("x/y");
        p.report();
        let drawn = stderr.text();
        assert!(drawn.starts_with(CLEAR_LINE), "{drawn:?}");
        assert!(drawn.ends_with("x/y"), "{drawn:?}");
        assert!(!drawn.contains('\n'));

        p.message(Level::Warning, "cannot read x/z");
        let after = stderr.text();
        let msg = &after[drawn.len()..];
        assert!(msg.starts_with(&format!("{CLEAR_LINE}warning: cannot read x/z\n{CLEAR_LINE}[")), "{msg:?}");
        p.clear_current_file();
        p.message(Level::Error, "boom");
        assert_eq!(p.status().error_count, 1);

        let st = p.finish();
        assert_eq!(st.error_count, 1);
        assert!(stderr.text().ends_with(CLEAR_LINE), "line cleared on finish");
        // After finish: plain, and no status line comes back.
        p.message(Level::Info, "done");
        assert!(stderr.text().ends_with(&format!("{CLEAR_LINE}done\n")));
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
        let (p, _, stderr) = captured(Mode::Terminal);
        let control = Arc::clone(&p.shared.control);
        let handle = lock(&p.shared.reporter).take().unwrap();
        p.report();
        let clone = p.clone();
        drop(p);
        assert!(!control.is_stopped());
        drop(clone);
        assert!(control.is_stopped());
        handle.join().unwrap();
        assert!(stderr.text().ends_with(CLEAR_LINE));
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
