//! A moment of a command's progress: the counters, what follows from them
//! (fraction done, ETA, rate), and the JSON lines of `--json`.

use std::time::Duration;

use serde::Serialize;

/// A snapshot of a command's progress at one moment.
///
/// A total of 0 means "not known (yet)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What the command is doing, e.g. `"backup"`.
    pub action: &'static str,
    /// Time since [`Progress::start`](super::Progress::start).
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
pub(super) struct MessageJson<'a> {
    pub(super) message_type: &'static str,
    pub(super) action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<ErrorJson<'a>>,
}

/// The `error` object of a JSON error line, as restic nests it.
#[derive(Serialize)]
pub(super) struct ErrorJson<'a> {
    pub(super) message: &'a str,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A status in the middle of a backup.
    pub(crate) fn status() -> Status {
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
}
