//! `--exclude PATTERN`: shell-style globs (`*`, `?`, `[...]`, `{a,b}`, and
//! `**` for any number of path components), compiled once by `globset`
//! into one automaton (no backtracking) and matched on the raw bytes of
//! paths (names need not be UTF-8).
//!
//! A pattern without `/` matches an entry's name anywhere in the tree (like
//! `*.tmp` or `node_modules`); a pattern with `/` matches the whole absolute
//! path (like `/home/*/.cache`). `*` and `?` never match a `/`.

use std::ffi::OsStr;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A set of exclude patterns.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    count: usize,
}

/// A pattern that is not a valid glob.
#[derive(Debug, thiserror::Error)]
#[error("bad exclude pattern {pattern:?}: {reason}")]
pub struct BadPattern {
    /// The pattern.
    pub pattern: String,
    /// What globset said.
    pub reason: String,
}

impl Excludes {
    /// Compiles the patterns.
    pub fn new(patterns: &[String]) -> Result<Excludes, BadPattern> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in patterns {
            let trimmed = p.trim_end_matches('/');
            let bad = |e: globset::Error| BadPattern { pattern: p.clone(), reason: e.kind().to_string() };
            let glob = GlobBuilder::new(trimmed).literal_separator(true).backslash_escape(true).build().map_err(bad)?;
            if trimmed.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| BadPattern { pattern: patterns.join(" "), reason: e.kind().to_string() })
        };
        Ok(Excludes { names: build(names)?, paths: build(paths)?, count: patterns.len() })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when the entry at `path` (absolute) named `name` is excluded.
    pub fn excludes(&self, path: &Path, name: &OsStr) -> bool {
        self.names.is_match(name) || self.paths.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn hit(e: &Excludes, path: &str) -> bool {
        let p = Path::new(path);
        e.excludes(p, p.file_name().unwrap())
    }

    #[test]
    fn names_and_paths() {
        let e = ex(&["*.tmp", "node_modules", "/home/*/.cache", "/srv/**/log?"]);
        assert!(hit(&e, "/a/b/x.tmp"));
        assert!(!hit(&e, "/a/b/x.tmpl"));
        assert!(hit(&e, "/p/node_modules"));
        assert!(hit(&e, "/home/ann/.cache"));
        assert!(!hit(&e, "/home/ann/x/.cache"));
        assert!(hit(&e, "/srv/a/b/c/logs"));
        assert!(hit(&e, "/srv/log1"));
    }

    #[test]
    fn classes() {
        let e = ex(&["f[0-9].txt", "g[!0-9].txt", "/a*"]);
        assert!(hit(&e, "/x/f7.txt"));
        assert!(!hit(&e, "/x/g7.txt"));
        assert!(hit(&e, "/x/gx.txt"));
        assert!(!hit(&e, "/a/b"), "* does not cross /");
    }

    #[test]
    fn names_that_are_not_utf8_match_exactly() {
        let e = ex(&["caf?.txt"]);
        let name = OsStr::from_bytes(b"caf\xe9.txt");
        assert!(e.excludes(&Path::new("/x").join(name), name));
        // A lossy conversion would have turned the byte into U+FFFD and matched this too.
        let e = ex(&["caf\u{fffd}.txt"]);
        assert!(!e.excludes(&Path::new("/x").join(name), name));
    }

    #[test]
    fn pathological_patterns_take_no_time() {
        // Backtracking matchers take exponential time on this.
        let e = ex(&["*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"]);
        let name = "a".repeat(200);
        let t = std::time::Instant::now();
        assert!(!hit(&e, &format!("/x/{name}")));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn bad_patterns_are_refused() {
        let err = Excludes::new(&["[unclosed".to_string()]).unwrap_err();
        assert!(err.to_string().contains("[unclosed"), "{err}");
    }
}
