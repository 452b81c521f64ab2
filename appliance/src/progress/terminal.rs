//! The terminal display of [`Mode::Terminal`](super::Mode::Terminal): one
//! indicatif progress bar on stderr, redrawn in place, never wider than the
//! terminal, with messages printed above it.
//!
//! ```text
//! [0:12] 33.33% [======>             ] 1.00 GiB / 3.00 GiB  12 / 30 files  85.33 MiB/s  ETA 0:24  docs/a.txt
//! ```

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::status::Status;
use super::units::{human_bytes, human_duration};

/// Steps of the bar's position (the bar shows a fraction, of bytes or files).
const STEPS: u64 = 10_000;

/// Columns of the bar between its brackets.
const BAR_WIDTH: usize = 20;
/// The bar is shown only if this much room is left for the counters.
const MIN_MESSAGE: usize = 40;

/// Asks for the terminal's width now (it may be resized while we draw).
type Width = Box<dyn Fn() -> usize + Send + Sync>;

/// The bar on screen.
pub(super) struct Terminal {
    bar: ProgressBar,
    width: Width,
    with_bar: ProgressStyle,
    text_only: ProgressStyle,
}

impl Terminal {
    /// A display on stderr.
    pub(super) fn stderr() -> Terminal {
        let width =
            || terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(terminal_size::Width(w), _)| w.into());
        Terminal::on(ProgressDrawTarget::stderr(), Box::new(width))
    }

    /// A display on `target`, whose width `width` tells.
    pub(super) fn on(target: ProgressDrawTarget, width: Width) -> Terminal {
        let style = |t: &str| ProgressStyle::with_template(t).expect("a valid template").progress_chars("=> ");
        Terminal {
            bar: ProgressBar::with_draw_target(Some(STEPS), target),
            width,
            with_bar: style(&format!("{{prefix}} [{{bar:{BAR_WIDTH}}}] {{wide_msg}}")),
            text_only: style("{wide_msg}"),
        }
    }

    /// Shows `s`: the bar while a total is known and the terminal is wide
    /// enough, the counters always (cut at the terminal's edge, so the line
    /// never wraps).
    pub(super) fn draw(&self, s: &Status) {
        let (prefix, message) = (prefix(s), message(s));
        let bar_fits = (self.width)() >= prefix.chars().count() + BAR_WIDTH + 4 + MIN_MESSAGE;
        match s.fraction_done() {
            Some(f) if bar_fits => {
                self.bar.set_style(self.with_bar.clone());
                self.bar.set_prefix(prefix);
                self.bar.set_position((f * STEPS as f64) as u64);
                self.bar.set_message(message);
            }
            _ => {
                self.bar.set_style(self.text_only.clone());
                self.bar.set_message(format!("{prefix} {message}"));
            }
        }
        self.bar.force_draw();
    }

    /// Runs `f` (which prints) with the bar off the screen, then redraws it.
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Takes the bar off the screen for good.
    pub(super) fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// `[0:12] 33.33%`: elapsed time, and the share done when known.
pub(super) fn prefix(s: &Status) -> String {
    let mut p = format!("[{}]", human_duration(s.elapsed));
    if let Some(f) = s.fraction_done() {
        p.push_str(&format!(" {:.2}%", f * 100.0));
    }
    p
}

/// The counters, rate, ETA, errors and current file.
pub(super) fn message(s: &Status) -> String {
    let mut m = if s.total_bytes > 0 {
        format!("{} / {}", human_bytes(s.bytes_done), human_bytes(s.total_bytes))
    } else {
        human_bytes(s.bytes_done)
    };
    if s.total_files > 0 {
        m.push_str(&format!("  {} / {} files", s.files_done, s.total_files));
    } else {
        m.push_str(&format!("  {} files", s.files_done));
    }
    if let Some(r) = s.bytes_per_second() {
        // Whole bytes per second are plenty of precision for a display.
        m.push_str(&format!("  {}/s", human_bytes(r as u64)));
    }
    if let Some(left) = s.eta() {
        m.push_str(&format!("  ETA {}", human_duration(left)));
    }
    if s.error_count > 0 {
        let plural = if s.error_count == 1 { "" } else { "s" };
        m.push_str(&format!("  {} error{plural}", s.error_count));
    }
    if let Some(file) = &s.current_file {
        m.push_str("  ");
        m.push_str(file);
    }
    m
}

#[cfg(test)]
pub(super) mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;
    use crate::progress::status::tests::status;

    /// A terminal of a fixed width that records what is written to it.
    #[derive(Debug, Clone)]
    pub(crate) struct FakeTerm {
        pub(crate) width: u16,
        pub(crate) screen: Arc<Mutex<Vec<String>>>,
    }

    impl FakeTerm {
        pub(crate) fn new(width: u16) -> FakeTerm {
            FakeTerm { width, screen: Arc::default() }
        }

        /// A [`Terminal`] drawing on this fake.
        pub(crate) fn terminal(&self) -> Terminal {
            let width = usize::from(self.width);
            Terminal::on(ProgressDrawTarget::term_like(Box::new(self.clone())), Box::new(move || width))
        }

        fn push(&self, s: String) -> io::Result<()> {
            self.screen.lock().unwrap().push(s);
            Ok(())
        }

        /// Everything written, one entry per call.
        pub(crate) fn calls(&self) -> Vec<String> {
            self.screen.lock().unwrap().clone()
        }
    }

    impl TermLike for FakeTerm {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            if n > 0 {
                self.push(format!("<up {n}>"))?;
            }
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            if n > 0 {
                self.push(format!("<down {n}>"))?;
            }
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.push(format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.push(s.to_string())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.push("<clear>".into())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn line_contents() {
        let s = status();
        assert_eq!(prefix(&s), "[0:12] 33.33%");
        assert_eq!(message(&s), "1.00 GiB / 3.00 GiB  12 / 30 files  85.33 MiB/s  ETA 0:24  docs/a.txt");
        let unknown = Status { total_files: 0, total_bytes: 0, error_count: 2, current_file: None, ..status() };
        assert_eq!(prefix(&unknown), "[0:12]");
        assert_eq!(message(&unknown), "1.00 GiB  12 files  85.33 MiB/s  2 errors");
        let done = Status { bytes_done: 3 << 30, files_done: 30, error_count: 1, ..status() };
        assert_eq!(prefix(&done), "[0:12] 100.00%");
        assert!(message(&done).contains("ETA 0:00  1 error  "));
    }

    #[test]
    fn the_bar_is_drawn_and_never_wider_than_the_terminal() {
        let term = FakeTerm::new(100);
        let t = term.terminal();
        t.draw(&status());
        let drawn = term.calls().concat();
        assert!(drawn.contains("[0:12] 33.33% [======>"), "{drawn:?}");
        assert!(drawn.contains("12 / 30 files"), "{drawn:?}");
        for width in [10u16, 20, 40, 80, 200] {
            let term = FakeTerm::new(width);
            let t = term.terminal();
            let path = "ünïcödé/".repeat(40) + "last-part.bin";
            t.draw(&Status { current_file: Some(path), ..status() });
            for piece in term.calls() {
                assert!(piece.trim_end().chars().count() <= usize::from(width), "{width}: {piece:?}");
            }
        }
    }

    #[test]
    fn messages_go_above_the_bar() {
        let term = FakeTerm::new(100);
        let t = term.terminal();
        t.draw(&status());
        let before = term.calls().len();
        let printed = t.suspend(|| "printed while the bar was off");
        assert_eq!(printed, "printed while the bar was off");
        let after = term.calls()[before..].concat();
        assert!(after.contains("<clear>"), "the bar is taken off first: {after:?}");
        assert!(after.contains("12 / 30 files"), "and drawn again: {after:?}");
        t.clear();
        assert!(term.calls().concat().ends_with("<clear>"), "{:?}", term.calls());
    }
}
