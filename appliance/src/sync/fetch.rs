//! Where a restore gets sealed chunks: the local store, a buddy, or the
//! local store with a buddy behind it for what the box no longer has.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use pastiche_core::{ChunkId, Handle};

use super::conn::BuddyConn;
use super::pull::Puller;
use super::{connect, BuddyEntry};
use crate::repo::Repo;
use crate::sealing::open_into;
use crate::store::{Place, Stored};

/// A source of sealed chunks, shared by the restore threads.
pub trait ChunkSource: Sync {
    /// Copies the sealed chunk `id` into `out`.
    fn fetch(&self, id: &ChunkId, out: &mut Vec<u8>) -> Result<()>;

    /// Fetches the chunk of `handle` and opens it into `plain` (tag and
    /// handle checked); returns the plaintext length.
    fn open(&self, handle: &Handle, sealed: &mut Vec<u8>, plain: &mut [u8]) -> Result<usize> {
        let id = handle.chunk_id();
        self.fetch(&id, sealed)?;
        open_into(sealed, handle, plain).map_err(|e| anyhow!("chunk {id}: {e}"))
    }

    /// Opens the chunks of `handles` in order, handing each plaintext to
    /// `each`. Sources with round trips override it to pipeline requests.
    fn open_many(&self, handles: &[Handle], plain: &mut [u8], each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut sealed = Vec::new();
        for h in handles {
            let n = self.open(h, &mut sealed, plain)?;
            each(&plain[..n])?;
        }
        Ok(())
    }

    /// Sort keys putting chunks in the order a restore should read them
    /// (where they lie in the local store), or `None` when order does not
    /// matter to this source.
    fn order(&self, _chunks: &[Handle]) -> Result<Option<Vec<Place>>> {
        Ok(None)
    }

    /// How many files a restore should write at once, given the `asked`
    /// number and the first chunk of some of the files: sources whose
    /// chunks come over the network want more, to keep their connections busy.
    fn writers(&self, asked: usize, _sample: &[Handle]) -> usize {
        asked
    }

    /// Whether a large file's chunks may be opened by several threads at
    /// once: not where each caller at once costs the buddy a connection.
    fn opens_in_parallel(&self) -> bool {
        true
    }
}

/// Chunks from the box's own store only.
pub struct Local<'a>(pub &'a Repo);

impl ChunkSource for Local<'_> {
    fn fetch(&self, id: &ChunkId, out: &mut Vec<u8>) -> Result<()> {
        Ok(self.0.store.get_into(id, out)?)
    }

    fn order(&self, chunks: &[Handle]) -> Result<Option<Vec<Place>>> {
        let ids: Vec<ChunkId> = chunks.iter().map(Handle::chunk_id).collect();
        Ok(Some(self.0.store.places(&ids)?))
    }

    /// The box's own grouped chunks come back as plaintext, which only
    /// needs checking against the handle; sealed ones are opened.
    fn open(&self, handle: &Handle, buf: &mut Vec<u8>, plain: &mut [u8]) -> Result<usize> {
        let id = handle.chunk_id();
        match self.0.store.read_chunk(&id, buf)? {
            Stored::Sealed => open_into(buf, handle, plain).map_err(|e| anyhow!("chunk {id}: {e}")),
            Stored::Plain => {
                if Handle::of(buf) != *handle || buf.len() > plain.len() {
                    return Err(anyhow!("chunk {id}: the plaintext kept for it does not match its handle"));
                }
                plain[..buf.len()].copy_from_slice(buf);
                Ok(buf.len())
            }
        }
    }
}

/// Chunks from one buddy, over a small pool of connections (one per thread).
pub struct FromBuddy<'a> {
    repo: &'a Repo,
    entry: BuddyEntry,
    pool: Mutex<Vec<BuddyConn>>,
    answered: AtomicBool,
}

impl<'a> FromBuddy<'a> {
    /// A source reading from `entry`.
    pub fn new(repo: &'a Repo, entry: BuddyEntry) -> FromBuddy<'a> {
        FromBuddy { repo, entry, pool: Mutex::new(Vec::new()), answered: AtomicBool::new(false) }
    }

    /// Whether a connection to it ever completed its hello.
    pub fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }
}

impl FromBuddy<'_> {
    /// Runs `f` on a pooled connection (a new one if none is free); a
    /// connection that failed is dropped, not pooled.
    fn with_conn<T>(&self, f: impl FnOnce(&mut BuddyConn) -> Result<T>) -> Result<T> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(self.repo, &mut self.entry.clone())?,
        };
        self.answered.store(true, Ordering::Relaxed);
        let r = f(&mut conn)?;
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        Ok(r)
    }
}

impl ChunkSource for FromBuddy<'_> {
    fn fetch(&self, id: &ChunkId, out: &mut Vec<u8>) -> Result<()> {
        self.with_conn(|c| {
            c.get_chunk(*id, out).with_context(|| format!("fetching chunk {id} from buddy {}", self.entry.addr))
        })
    }

    /// Every caller at once takes a connection of its own, and a small
    /// buddy (the firmware) serves only a few.
    fn opens_in_parallel(&self) -> bool {
        false
    }

    fn open_many(&self, handles: &[Handle], plain: &mut [u8], each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let ids: Vec<ChunkId> = handles.iter().map(|h| h.chunk_id()).collect();
        self.with_conn(|c| {
            c.get_chunks(&ids, |i, sealed| {
                let n = open_into(sealed, &handles[i], plain).map_err(|e| anyhow!("chunk {}: {e}", ids[i]))?;
                each(&plain[..n])
            })
        })
    }
}

/// The local store first; the box's buddies, all at once
/// ([`Puller`]), for chunks the box does not have (after a disaster
/// recovery: all of them) or that are damaged here.
pub struct LocalThenBuddy<'a> {
    local: Local<'a>,
    buddy: std::sync::OnceLock<Option<Puller>>,
}

impl<'a> LocalThenBuddy<'a> {
    /// A source over `repo` and its configured buddies.
    pub fn new(repo: &'a Repo) -> LocalThenBuddy<'a> {
        LocalThenBuddy { local: Local(repo), buddy: std::sync::OnceLock::new() }
    }

    fn buddy(&self) -> Option<&Puller> {
        self.buddy
            .get_or_init(|| {
                let repo = self.local.0;
                let buddies = super::load_buddies(&repo.dir).ok()?;
                (!buddies.is_empty()).then(|| Puller::new(&repo.identity, repo.node, &buddies))
            })
            .as_ref()
    }
}

impl ChunkSource for LocalThenBuddy<'_> {
    fn fetch(&self, id: &ChunkId, out: &mut Vec<u8>) -> Result<()> {
        match self.local.fetch(id, out) {
            Ok(()) => Ok(()),
            Err(e) => match self.buddy() {
                Some(b) => b.fetch(id, out),
                None => Err(e),
            },
        }
    }

    /// A chunk missing or damaged here is taken from the buddies.
    fn open(&self, handle: &Handle, sealed: &mut Vec<u8>, plain: &mut [u8]) -> Result<usize> {
        match self.local.open(handle, sealed, plain) {
            Ok(n) => Ok(n),
            Err(e) => match self.buddy() {
                Some(b) => b.open(handle, sealed, plain).map_err(|be| be.context(format!("locally: {e:#}"))),
                None => Err(e),
            },
        }
    }

    fn order(&self, chunks: &[Handle]) -> Result<Option<Vec<Place>>> {
        self.local.order(chunks)
    }

    /// More writers when the store lacks chunks of this restore.
    fn writers(&self, asked: usize, sample: &[Handle]) -> usize {
        let ids: Vec<ChunkId> = sample.iter().map(|h| h.chunk_id()).collect();
        let lacks = self.local.0.store.contains_many(&ids).map_or(true, |here| here.contains(&false));
        match lacks.then(|| self.buddy()).flatten() {
            Some(b) => b.writers(asked, sample),
            None => asked,
        }
    }

    /// Runs of chunks the store lacks go to the buddies as pipelined requests.
    fn open_many(&self, handles: &[Handle], plain: &mut [u8], each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let ids: Vec<ChunkId> = handles.iter().map(|h| h.chunk_id()).collect();
        let here = self.local.0.store.contains_many(&ids)?;
        let mut sealed = Vec::new();
        let mut i = 0;
        while i < handles.len() {
            let run = i + here[i..].iter().take_while(|&&h| h == here[i]).count();
            match self.buddy() {
                Some(b) if !here[i] => b.open_many(&handles[i..run], plain, each)?,
                _ => {
                    for h in &handles[i..run] {
                        let n = self.open(h, &mut sealed, plain)?;
                        each(&plain[..n])?;
                    }
                }
            }
            i = run;
        }
        Ok(())
    }
}
