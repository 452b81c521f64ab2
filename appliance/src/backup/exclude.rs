//! `--exclude PATTERN`: shell-style globs (`*`, `?`, `[...]`, and `**` for
//! any number of path components).
//!
//! A pattern without `/` matches an entry's name anywhere in the tree (like
//! `*.tmp` or `node_modules`); a pattern with `/` matches the whole absolute
//! path (like `/home/*/.cache`).

/// A set of exclude patterns.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    patterns: Vec<String>,
}

impl Excludes {
    /// Compiles the patterns (nothing can fail: every string is a pattern).
    pub fn new(patterns: &[String]) -> Excludes {
        Excludes { patterns: patterns.iter().map(|p| p.trim_end_matches('/').to_string()).collect() }
    }

    /// True when there are no patterns (so callers can skip building the
    /// strings to match).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when the entry at `path` (absolute) named `name` is excluded.
    pub fn excludes(&self, path: &str, name: &str) -> bool {
        self.patterns.iter().any(|p| {
            if p.contains('/') {
                glob(p.as_bytes(), path.as_bytes())
            } else {
                glob(p.as_bytes(), name.as_bytes())
            }
        })
    }
}

/// Matches `text` against `pat`; `*` and `?` do not cross `/`, `**` does.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match pat.first() {
        None => text.is_empty(),
        Some(b'*') if pat.get(1) == Some(&b'*') => {
            let rest = pat[2..].strip_prefix(b"/").unwrap_or(&pat[2..]);
            (0..=text.len()).any(|i| (i == 0 || text[i - 1] == b'/') && glob(rest, &text[i..])) || glob(rest, text)
        }
        Some(b'*') => {
            (0..=text.len()).take_while(|&i| i == 0 || text[i - 1] != b'/').any(|i| glob(&pat[1..], &text[i..]))
        }
        Some(b'?') => !text.is_empty() && text[0] != b'/' && glob(&pat[1..], &text[1..]),
        Some(b'[') => match (pat.iter().position(|&c| c == b']'), text.first()) {
            (Some(end), Some(&c)) if end > 1 => {
                let (negate, set) = match pat[1] {
                    b'!' | b'^' => (true, &pat[2..end]),
                    _ => (false, &pat[1..end]),
                };
                in_set(set, c) != negate && glob(&pat[end + 1..], &text[1..])
            }
            _ => false,
        },
        Some(&c) => text.first() == Some(&c) && glob(&pat[1..], &text[1..]),
    }
}

fn in_set(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let ex =
            Excludes::new(&["*.tmp".into(), "node_modules".into(), "/home/*/.cache".into(), "/srv/**/log?".into()]);
        assert!(ex.excludes("/a/b/x.tmp", "x.tmp"));
        assert!(!ex.excludes("/a/b/x.tmpl", "x.tmpl"));
        assert!(ex.excludes("/p/node_modules", "node_modules"));
        assert!(ex.excludes("/home/ann/.cache", ".cache"));
        assert!(!ex.excludes("/home/ann/x/.cache", ".cache"));
        assert!(ex.excludes("/srv/a/b/c/logs", "logs"));
        assert!(ex.excludes("/srv/log1", "log1"));
    }

    #[test]
    fn classes() {
        assert!(glob(b"f[0-9].txt", b"f7.txt"));
        assert!(!glob(b"f[!0-9].txt", b"f7.txt"));
        assert!(glob(b"f[!0-9].txt", b"fx.txt"));
        assert!(!glob(b"a*", b"a/b"));
    }
}
