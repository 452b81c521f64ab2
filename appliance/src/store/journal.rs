//! The index's small tables on disk: a snapshot file and an append-only log
//! of the commits made since (docs/STORE.md, "Index state and log").
//!
//! A commit is one log record (length, CRC-32, the encoded changes of
//! [`super::state::Changes`]) appended and fsync'd: until `sync_data`
//! returns the commit did not happen, and a record torn by a crash fails its
//! checksum and is cut away at the next open, exactly like an uncommitted
//! pack tail. A new snapshot (at a merge, and at open when the log is not
//! empty) is written beside the old one and renamed over it, then a new
//! empty log is renamed over the old log; both name the snapshot's
//! sequence number, so a log left from before the newest snapshot is
//! recognised and ignored.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use super::pack::sync_dir;
use super::state::State;

/// File name of the index snapshot inside the store directory.
pub const STATE_FILE: &str = "index.state";
/// File name of the index log inside the store directory.
pub const LOG_FILE: &str = "index.log";
const STATE_MAGIC: &[u8; 8] = b"PASTIDX4";
const LOG_MAGIC: &[u8; 8] = b"PASTLOG4";
/// Snapshot header: magic, sequence, body length, body CRC, header CRC.
const STATE_HEADER_LEN: usize = 32;
/// Log header: magic, sequence, header CRC.
const LOG_HEADER_LEN: u64 = 20;
/// Record header: body length, body CRC.
const RECORD_HEADER_LEN: usize = 8;
/// The largest record a log may hold; past it a length is damage.
const MAX_RECORD: u64 = 1 << 30;

fn damaged(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::io(
        format!("chunk index file {} is damaged", path.display()),
        io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    )
}

/// Writes `bytes` to `<name>.tmp` beside `name` and fsyncs it; returns
/// its path. Nothing is replaced yet: see [`install`].
fn prepare(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = dir.join(format!("{name}.tmp"));
    let ctx = |e| StoreError::io(format!("writing chunk index {}", tmp.display()), e);
    let res = (|| {
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(ctx(e));
    }
    Ok(tmp)
}

/// Renames a prepared file over `name` and fsyncs the directory: readers
/// see the old file or the new one, never a mix.
pub(crate) fn install(dir: &Path, tmp: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    let ctx = |e| StoreError::io(format!("replacing chunk index {}", path.display()), e);
    fs::rename(tmp, &path).map_err(ctx)?;
    sync_dir(dir).map_err(ctx)
}

/// Prepares the snapshot of `state` as sequence `seq` (install it as
/// [`STATE_FILE`]).
pub(crate) fn prepare_state(dir: &Path, seq: u64, state: &State) -> Result<PathBuf> {
    let body = state.encode();
    let mut out = Vec::with_capacity(STATE_HEADER_LEN + body.len());
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let hc = crc32fast::hash(&out);
    out.extend_from_slice(&hc.to_le_bytes());
    out.extend_from_slice(&body);
    prepare(dir, STATE_FILE, &out)
}

/// Prepares an empty log for snapshot `seq` (install it as [`LOG_FILE`],
/// after the snapshot, then [`Log::attach`]).
pub(crate) fn prepare_log(dir: &Path, seq: u64) -> Result<PathBuf> {
    let mut h = Vec::with_capacity(LOG_HEADER_LEN as usize);
    h.extend_from_slice(LOG_MAGIC);
    h.extend_from_slice(&seq.to_le_bytes());
    let hc = crc32fast::hash(&h);
    h.extend_from_slice(&hc.to_le_bytes());
    prepare(dir, LOG_FILE, &h)
}

/// Writes and installs a snapshot of `state` as `seq` with an empty log.
pub(crate) fn write_snapshot(dir: &Path, seq: u64, state: &State) -> Result<Log> {
    let st = prepare_state(dir, seq, state)?;
    let log = prepare_log(dir, seq)?;
    install(dir, &st, STATE_FILE)?;
    install(dir, &log, LOG_FILE)?;
    Log::attach(dir, seq)
}

/// Reads the snapshot: its sequence and tables; `None` when there is no
/// snapshot file. Any other defect is damage.
pub(crate) fn read_state(dir: &Path) -> Result<Option<(u64, State)>> {
    let path = dir.join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("reading chunk index {}", path.display()), e)),
    };
    if bytes.len() < STATE_HEADER_LEN {
        return Err(damaged(&path, format!("{} bytes, shorter than its header", bytes.len())));
    }
    let (h, body) = bytes.split_at(STATE_HEADER_LEN);
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    if &h[..8] != STATE_MAGIC || crc32fast::hash(&h[..28]) != u32_at(28) {
        return Err(damaged(&path, "bad header"));
    }
    if u64_at(16) != body.len() as u64 || crc32fast::hash(body) != u32_at(24) {
        return Err(damaged(&path, "checksum mismatch"));
    }
    let mut state = State::default();
    state.apply_encoded(body).ok_or_else(|| damaged(&path, "malformed tables"))?;
    Ok(Some((u64_at(8), state)))
}

/// The open log, appended to by commits.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: File,
    /// The snapshot this log follows.
    pub seq: u64,
    /// Bytes of the log known durable: where the next record goes.
    len: u64,
    /// Set when a failed append could not be undone: the file's end is
    /// then unknown, and committing more could hide later records behind a
    /// torn one. Every later commit fails until the store is reopened.
    broken: Option<String>,
}

/// What reading a log gave.
pub(crate) struct LogReplay {
    /// The records, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of a torn tail cut away.
    pub torn: u64,
}

impl Log {
    /// Opens the freshly installed empty log of snapshot `seq`.
    pub fn attach(dir: &Path, seq: u64) -> Result<Log> {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening chunk index {}", path.display()), e))?;
        Ok(Log { path, file, seq, len: LOG_HEADER_LEN, broken: None })
    }

    /// Opens the log of snapshot `seq` and reads its records, cutting away
    /// a torn tail. `None` when there is no log, or it belongs to an older
    /// snapshot (whose commits the snapshot already holds).
    pub fn open(dir: &Path, seq: u64) -> Result<Option<(Log, LogReplay)>> {
        let path = dir.join(LOG_FILE);
        let ctx = |e| StoreError::io(format!("reading chunk index {}", path.display()), e);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx(e)),
        };
        let bytes = fs::read(&path).map_err(ctx)?;
        if bytes.len() < LOG_HEADER_LEN as usize
            || &bytes[..8] != LOG_MAGIC
            || crc32fast::hash(&bytes[..16]).to_le_bytes() != bytes[16..20]
        {
            // Logs are created whole by a rename, so this is damage.
            return Err(damaged(&path, "bad header"));
        }
        if u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) != seq {
            return Ok(None);
        }
        let mut records = Vec::new();
        let mut at = LOG_HEADER_LEN as usize;
        while bytes.len() - at >= RECORD_HEADER_LEN {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            let start = at + RECORD_HEADER_LEN;
            if len as u64 > MAX_RECORD
                || bytes.len() - start < len
                || crc32fast::hash(&bytes[start..start + len]) != crc
            {
                break;
            }
            records.push(bytes[start..start + len].to_vec());
            at = start + len;
        }
        let torn = (bytes.len() - at) as u64;
        if torn > 0 {
            file.set_len(at as u64).map_err(ctx)?;
            file.sync_all().map_err(ctx)?;
        }
        Ok(Some((Log { path, file, seq, len: at as u64, broken: None }, LogReplay { records, torn })))
    }

    /// Bytes of the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Makes every later commit fail until the store is reopened: a new
    /// snapshot may have replaced the one this log follows.
    pub fn set_broken(&mut self, why: String) {
        self.broken = Some(why);
    }

    /// Appends one record and makes it durable: the commit point.
    pub fn append(&mut self, body: &[u8]) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(StoreError::io(
                format!("chunk index {} could not be written earlier ({why}); reopen the store", self.path.display()),
                io::Error::other("index log in an unknown state"),
            ));
        }
        let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        rec.extend_from_slice(body);
        let res = self.file.write_all_at(&rec, self.len).and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Undo the partial record so the next one lands at a clean end.
            // A failed fsync leaves the page cache's state unknown: only a
            // reopen (which checks every record) is safe then.
            let undone = self.file.set_len(self.len).and_then(|()| self.file.sync_data());
            if let Err(u) = undone {
                self.broken = Some(u.to_string());
            }
            return Err(StoreError::io(format!("committing to chunk index {}", self.path.display()), e));
        }
        self.len += rec.len() as u64;
        Ok(())
    }
}

/// Deletes the temporary files an interrupted snapshot left.
pub(crate) fn remove_temporaries(dir: &Path) {
    for name in [STATE_FILE, LOG_FILE] {
        let _ = fs::remove_file(dir.join(format!("{name}.tmp")));
    }
}
