//! Numbers for people: byte counts and durations as restic shows them.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
