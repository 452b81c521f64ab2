//! Pulling chunks from several buddies at once.
//!
//! A [`Puller`] keeps a few connections to every buddy, each driven by a
//! worker thread that keeps up to [`MAX_PIPELINED_GETS`] requests in flight,
//! topping its pipeline up from one shared queue of wanted chunks as answers
//! come in ([`BuddyConn::request_chunk`], [`BuddyConn::next_chunk`]), so it
//! never drains between batches. A connection takes more work as soon as it
//! has room, so the fastest buddy serves the most chunks, and the requests
//! of every caller (every file a restore writes) share the pipelines, so
//! small files do not cost a round trip each. A chunk that a buddy does not
//! hold, or serves damaged (its tag or handle does not check), goes back to
//! the queue for the buddies that have not tried it; the chunks of a buddy
//! that dies midway are taken up by the others. Callers ask for runs of
//! handles and get each chunk, checked and opened, in order.
//!
//! The hot path is lean: a worker opens each chunk straight into a buffer
//! of its size and copies the sealed bytes only for callers that keep them,
//! and a thread is woken only when what it waits for is there (the caller
//! waiting for that very chunk, once for all the answers read in one go; a
//! worker only when it is idle).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::{anyhow, Result};
use pastiche_core::session::MAX_PIPELINED_GETS;
use pastiche_core::{ChunkId, Handle, Identity, NodeId, PublicKey};

use super::conn::{BrokeProtocol, BuddyConn};
use super::fetch::ChunkSource;
use super::{pinned_key, BuddyEntry};
use crate::sealing::open_to_vec;

/// Connections (and worker threads) per buddy.
pub const CONNECTIONS_PER_BUDDY: usize = 2;
/// A worker tops its pipeline up once this many requests have been
/// answered (taking several jobs per lock, not one per answer).
const REFILL: usize = 16;
/// Chunks one caller has asked for ahead of what it consumed (bounds memory).
const WINDOW: usize = 64;
/// Failed connections in a row after which a worker gives up its buddy.
const MAX_FAILURES: u32 = 2;
/// At most this many buddies (their tries are a bit mask).
const MAX_BUDDIES: usize = 64;

/// A chunk pulled from a buddy, checked.
pub struct Pulled {
    /// The sealed chunk as the buddy served it (empty when the caller
    /// asked for the plaintext alone).
    pub sealed: Vec<u8>,
    /// Its plaintext (empty when it was pulled without a handle or for its
    /// sealed bytes alone).
    pub plain: Vec<u8>,
    /// The buddy that served it (index in the puller's list).
    pub from: usize,
    /// Bit `b`: buddy `b` was asked first and did not hold it or served it damaged.
    pub failed_by: u64,
}

/// What a caller keeps of each chunk it pulls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The plaintext (a restore writes it).
    Plain,
    /// The sealed bytes (to store or ship them).
    Sealed,
    /// Both.
    Both,
}

impl Keep {
    fn plain(self) -> bool {
        self != Keep::Sealed
    }

    fn sealed(self) -> bool {
        self != Keep::Plain
    }
}

/// One wanted chunk.
struct Job {
    id: ChunkId,
    /// Checked against when given; without it the sealed bytes are taken as served.
    handle: Option<Handle>,
    keep: Keep,
    /// Bit `b`: buddy `b` tried and could not serve it.
    tried: u64,
    errors: Vec<String>,
    /// The caller waiting for it: only that one thread is woken when its
    /// outcome is in (a shared condition variable woke every restore
    /// writer for every chunk, and the futex traffic cost more than the
    /// cipher).
    waiter: Arc<Condvar>,
    /// Whether that caller sleeps waiting for this very job: only then is
    /// it woken (a notify costs a system call even with no one waiting).
    awaited: bool,
}

/// A job a worker took.
#[derive(Clone, Copy)]
struct Taken {
    job: u64,
    id: ChunkId,
    handle: Option<Handle>,
    keep: Keep,
}

enum Outcome {
    Done(Pulled),
    Failed(String),
}

struct State {
    queue: VecDeque<u64>,
    jobs: HashMap<u64, Job>,
    outcomes: HashMap<u64, Outcome>,
    next_id: u64,
    /// Live workers per buddy: a buddy with none is gone.
    workers_left: Vec<usize>,
    /// Chunks served per buddy.
    served: Vec<u64>,
    /// Workers asleep waiting for jobs: new jobs wake them only if any.
    idle_workers: usize,
    closing: bool,
}

impl State {
    /// Whether some live buddy has not tried `job`.
    fn can_serve(&self, job: &Job) -> bool {
        self.workers_left.iter().enumerate().any(|(b, &left)| left > 0 && job.tried & (1 << b) == 0)
    }

    /// Fails `id` (its errors say why) if no live buddy is left to try it.
    fn fail_if_stranded(&mut self, id: u64) -> bool {
        let stranded = self.jobs.get(&id).is_some_and(|j| !self.can_serve(j));
        if stranded {
            let job = self.jobs.remove(&id).expect("checked");
            let why = if job.errors.is_empty() { "no buddy is reachable".to_string() } else { job.errors.join("; ") };
            self.outcomes.insert(id, Outcome::Failed(format!("chunk {}: no buddy could serve it: {why}", job.id)));
            job.wake();
        }
        stranded
    }

    /// Up to `max` queued jobs that `buddy` has not tried, oldest first;
    /// the jobs it skips keep their places.
    fn take_untried(&mut self, buddy: usize, max: usize) -> VecDeque<Taken> {
        let mut batch = VecDeque::new();
        let mut skipped = Vec::new();
        while batch.len() < max {
            let Some(id) = self.queue.pop_front() else { break };
            match self.jobs.get(&id) {
                Some(j) if j.tried & (1 << buddy) == 0 => {
                    batch.push_back(Taken { job: id, id: j.id, handle: j.handle, keep: j.keep })
                }
                Some(_) => skipped.push(id),
                None => {}
            }
        }
        for id in skipped.into_iter().rev() {
            self.queue.push_front(id);
        }
        batch
    }
}

/// Callers a worker wakes together: one wake-up per caller for all the
/// answers read in one go (a caller restoring a large file gets many of
/// them), not one per chunk.
#[derive(Default)]
struct Wakes(Vec<Arc<Condvar>>);

impl Wakes {
    /// At most this many callers wait for a batch of wakes.
    const MAX: usize = 16;

    fn add(&mut self, waiter: Arc<Condvar>) {
        if !self.0.iter().any(|w| Arc::ptr_eq(w, &waiter)) {
            self.0.push(waiter);
        }
    }

    fn is_full(&self) -> bool {
        self.0.len() >= Wakes::MAX
    }

    fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.notify_one();
        }
    }
}

impl Job {
    /// Wakes the caller if it sleeps waiting for this job.
    fn wake(&self) {
        if self.awaited {
            self.waiter.notify_one();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for jobs.
    work: Condvar,
    addrs: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Chunks from several buddies at once (see the module's documentation).
pub struct Puller {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Puller {
    /// Starts [`CONNECTIONS_PER_BUDDY`] workers per buddy of `entries`
    /// (at most 64), connecting as `identity` when there is work; pinned
    /// keys are checked at every connection.
    pub fn new(identity: &Identity, node: NodeId, entries: &[BuddyEntry]) -> Puller {
        let entries = &entries[..entries.len().min(MAX_BUDDIES)];
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                jobs: HashMap::new(),
                outcomes: HashMap::new(),
                next_id: 0,
                workers_left: vec![CONNECTIONS_PER_BUDDY; entries.len()],
                served: vec![0; entries.len()],
                idle_workers: 0,
                closing: false,
            }),
            work: Condvar::new(),
            addrs: entries.iter().map(|e| e.addr.clone()).collect(),
        });
        let mut workers = Vec::new();
        for (b, entry) in entries.iter().enumerate() {
            for _ in 0..CONNECTIONS_PER_BUDDY {
                let worker = Worker {
                    shared: shared.clone(),
                    buddy: b,
                    addr: entry.addr.clone(),
                    pinned: pinned_key(entry),
                    identity: identity.clone(),
                    node,
                };
                workers.push(std::thread::spawn(move || worker.run()));
            }
        }
        Puller { shared, workers }
    }

    /// The buddies' addresses with the chunks each served so far.
    pub fn served(&self) -> Vec<(String, u64)> {
        let state = self.shared.lock();
        self.shared.addrs.iter().cloned().zip(state.served.iter().copied()).collect()
    }

    /// Pulls the chunks of `handles` (checked against them, opened) and
    /// hands each to `each` in order, plaintext and sealed bytes.
    pub fn pull(&self, handles: &[Handle], each: impl FnMut(usize, Pulled) -> Result<()>) -> Result<()> {
        self.pull_jobs(&with_handles(handles), Keep::Both, each)
    }

    /// [`Puller::pull`] keeping only the plaintext (`sealed` is empty):
    /// what a restore needs, without copying the sealed bytes.
    pub fn pull_plain(&self, handles: &[Handle], each: impl FnMut(usize, Pulled) -> Result<()>) -> Result<()> {
        self.pull_jobs(&with_handles(handles), Keep::Plain, each)
    }

    /// Pulls sealed chunks by id alone (nothing to check them against).
    pub fn pull_sealed(&self, ids: &[ChunkId], each: impl FnMut(usize, Pulled) -> Result<()>) -> Result<()> {
        let wanted: Vec<(ChunkId, Option<Handle>)> = ids.iter().map(|id| (*id, None)).collect();
        self.pull_jobs(&wanted, Keep::Sealed, each)
    }

    /// Like [`Puller::pull`], but a chunk no buddy could serve does not stop
    /// the others: `each` gets every chunk's outcome, in order.
    pub fn pull_each(&self, handles: &[Handle], mut each: impl FnMut(usize, Result<Pulled>)) {
        let all = self.pull_outcomes(&with_handles(handles), Keep::Both, |i, outcome| {
            each(i, outcome);
            Ok(())
        });
        debug_assert!(all.is_ok(), "only `each` can stop a pull, and it never does");
    }

    fn pull_jobs(
        &self,
        wanted: &[(ChunkId, Option<Handle>)],
        keep: Keep,
        mut each: impl FnMut(usize, Pulled) -> Result<()>,
    ) -> Result<()> {
        self.pull_outcomes(wanted, keep, |i, outcome| each(i, outcome?))
    }

    fn pull_outcomes(
        &self,
        wanted: &[(ChunkId, Option<Handle>)],
        keep: Keep,
        mut each: impl FnMut(usize, Result<Pulled>) -> Result<()>,
    ) -> Result<()> {
        let mut ids: VecDeque<u64> = VecDeque::new();
        let waiter = Arc::new(Condvar::new());
        let mut submitted = 0;
        let mut consumed = 0;
        let result = (|| -> Result<()> {
            while consumed < wanted.len() {
                // Refill the window by halves: one lock and one wake-up per
                // half window, not per chunk.
                if submitted < wanted.len() && submitted - consumed <= WINDOW / 2 {
                    let end = wanted.len().min(consumed + WINDOW);
                    ids.extend(self.submit(&wanted[submitted..end], keep, &waiter));
                    submitted = end;
                }
                let id = *ids.front().expect("submitted ahead");
                let pulled = self.wait(id, &waiter);
                ids.pop_front();
                each(consumed, pulled)?;
                consumed += 1;
            }
            Ok(())
        })();
        if result.is_err() {
            self.cancel(&ids);
        }
        result
    }

    /// Queues `wanted` for a caller waiting on `waiter`; returns their job ids.
    fn submit(&self, wanted: &[(ChunkId, Option<Handle>)], keep: Keep, waiter: &Arc<Condvar>) -> Vec<u64> {
        let mut state = self.shared.lock();
        let mut ids = Vec::with_capacity(wanted.len());
        for &(id, handle) in wanted {
            let job_id = state.next_id;
            state.next_id += 1;
            let job = Job { id, handle, keep, tried: 0, errors: Vec::new(), waiter: waiter.clone(), awaited: false };
            state.jobs.insert(job_id, job);
            if !state.fail_if_stranded(job_id) {
                state.queue.push_back(job_id);
            }
            ids.push(job_id);
        }
        let idle = state.idle_workers > 0;
        drop(state);
        if idle {
            self.shared.work.notify_all();
        }
        ids
    }

    /// Waits on `waiter` for the outcome of job `id`.
    fn wait(&self, id: u64, waiter: &Condvar) -> Result<Pulled> {
        let mut state = self.shared.lock();
        loop {
            match state.outcomes.remove(&id) {
                Some(Outcome::Done(p)) => return Ok(p),
                Some(Outcome::Failed(why)) => return Err(anyhow!(why)),
                None => {
                    let Some(job) = state.jobs.get_mut(&id) else {
                        return Err(anyhow!("chunk job {id} was cancelled"));
                    };
                    job.awaited = true;
                    state = waiter.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// Forgets jobs no longer wanted (a worker holding one drops its answer).
    fn cancel(&self, ids: &VecDeque<u64>) {
        let mut state = self.shared.lock();
        for id in ids {
            state.jobs.remove(id);
            state.outcomes.remove(id);
        }
        let State { queue, jobs, .. } = &mut *state;
        queue.retain(|id| jobs.contains_key(id));
    }
}

impl Drop for Puller {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl ChunkSource for Puller {
    fn fetch(&self, id: &ChunkId, out: &mut Vec<u8>) -> Result<()> {
        self.pull_sealed(std::slice::from_ref(id), |_, p| {
            *out = p.sealed;
            Ok(())
        })
    }

    fn open(&self, handle: &Handle, sealed: &mut Vec<u8>, plain: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        self.pull(std::slice::from_ref(handle), |_, p| {
            plain[..p.plain.len()].copy_from_slice(&p.plain);
            n = p.plain.len();
            *sealed = p.sealed;
            Ok(())
        })?;
        Ok(n)
    }

    fn open_many(
        &self,
        handles: &[Handle],
        _plain: &mut [u8],
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.pull_plain(handles, |_, p| each(&p.plain))
    }

    fn writers(&self, asked: usize, _sample: &[Handle]) -> usize {
        asked.max(PULL_WRITERS)
    }
}

/// Files written at once when chunks come from buddies: enough callers
/// that the connections' pipelines stay full of small files.
pub const PULL_WRITERS: usize = 16;

/// `handles` as jobs checked against them.
fn with_handles(handles: &[Handle]) -> Vec<(ChunkId, Option<Handle>)> {
    handles.iter().map(|h| (h.chunk_id(), Some(*h))).collect()
}

/// One connection to one buddy.
struct Worker {
    shared: Arc<Shared>,
    buddy: usize,
    addr: String,
    pinned: Option<PublicKey>,
    identity: Identity,
    node: NodeId,
}

impl Worker {
    fn run(self) {
        let mut conn: Option<BuddyConn> = None;
        // Requests sent on `conn` and not yet answered, oldest first.
        let mut in_flight: VecDeque<Taken> = VecDeque::new();
        // Callers to wake once the answers already read are handled.
        let mut wakes = Wakes::default();
        let mut failures = 0;
        loop {
            // Top the pipeline up; wait for work only when nothing is in flight.
            let room = MAX_PIPELINED_GETS - in_flight.len();
            let mut fresh = VecDeque::new();
            if in_flight.is_empty() || room >= REFILL {
                match self.take(room, in_flight.is_empty()) {
                    Some(jobs) => fresh = jobs,
                    None => return,
                }
            }
            let stepped = self.step(&mut conn, &mut in_flight, &mut fresh, &mut wakes);
            // Wake the callers before this worker may block: on a read
            // (the next answer is not whole in hand), for work (nothing in
            // flight, whatever a buddy sent unasked), or at a failure. A
            // buddy that stalls mid-answer delays no one.
            let may_block = in_flight.is_empty() || !conn.as_ref().is_some_and(BuddyConn::answer_ready);
            if may_block || wakes.is_full() || stepped.is_err() {
                wakes.wake_all();
            }
            match stepped {
                Ok(()) => failures = 0,
                Err(e) => {
                    conn = None;
                    failures += 1;
                    self.put_back(in_flight.drain(..).chain(fresh));
                    // A buddy that broke the protocol is given up at once:
                    // one that answered a request right, then once more,
                    // was reconnected after every chunk, and silently.
                    if failures >= MAX_FAILURES || e.downcast_ref::<BrokeProtocol>().is_some() {
                        return self.give_up(&e);
                    }
                }
            }
        }
    }

    /// Sends the requests for `fresh` (connecting first if need be), then
    /// reads and records the answer to the oldest request in flight. On an
    /// error, what is left in `in_flight` and `fresh` was not answered.
    fn step(
        &self,
        conn: &mut Option<BuddyConn>,
        in_flight: &mut VecDeque<Taken>,
        fresh: &mut VecDeque<Taken>,
        wakes: &mut Wakes,
    ) -> Result<()> {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(BuddyConn::connect_pinned(&self.addr, &self.identity, self.node, self.pinned, None)?),
        };
        while let Some(t) = fresh.front().copied() {
            c.request_chunk(t.id)?;
            fresh.pop_front();
            in_flight.push_back(t);
        }
        if in_flight.is_empty() {
            return Ok(());
        }
        let sealed = c.next_chunk()?;
        let t = in_flight.pop_front().expect("a request in flight");
        self.answer(t, sealed, wakes);
        Ok(())
    }

    /// Up to `max` jobs this buddy has not tried; when `block`, waits until
    /// there is at least one. `None` when closing.
    fn take(&self, max: usize, block: bool) -> Option<VecDeque<Taken>> {
        let mut state = self.shared.lock();
        loop {
            if state.closing {
                return None;
            }
            let batch = state.take_untried(self.buddy, max);
            if !batch.is_empty() || !block {
                return Some(batch);
            }
            state.idle_workers += 1;
            state = self.shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle_workers -= 1;
        }
    }

    /// Checks and records one answer: a miss or a damaged chunk goes back
    /// to the queue for the other buddies. The chunk is opened straight
    /// into a buffer of its size; the sealed bytes are copied only if the
    /// caller keeps them. A caller waiting for it is added to `wakes`.
    fn answer(&self, t: Taken, sealed: Option<&[u8]>, wakes: &mut Wakes) {
        // Err((why, whether the buddy served it damaged)).
        let checked = match (sealed, t.handle) {
            (None, _) => Err((format!("{}: does not hold it", self.addr), false)),
            (Some(s), None) => Ok(Pulled { sealed: s.to_vec(), plain: Vec::new(), from: self.buddy, failed_by: 0 }),
            (Some(s), Some(h)) => {
                let mut plain = Vec::new();
                match open_to_vec(s, &h, &mut plain) {
                    Ok(()) => Ok(Pulled {
                        sealed: if t.keep.sealed() { s.to_vec() } else { Vec::new() },
                        plain: if t.keep.plain() { plain } else { Vec::new() },
                        from: self.buddy,
                        failed_by: 0,
                    }),
                    Err(e) => Err((format!("{}: served it damaged ({e})", self.addr), true)),
                }
            }
        };
        let mut state = self.shared.lock();
        match checked {
            Ok(mut pulled) => {
                if let Some(job) = state.jobs.remove(&t.job) {
                    pulled.failed_by = job.tried;
                    state.served[self.buddy] += 1;
                    state.outcomes.insert(t.job, Outcome::Done(pulled));
                    if job.awaited {
                        wakes.add(job.waiter);
                    }
                }
            }
            Err((why, damaged)) => {
                let Some(job) = state.jobs.get_mut(&t.job) else { return };
                if damaged {
                    eprintln!("pastiche: chunk {}: buddy {why}; taking it from another buddy", t.id);
                }
                job.tried |= 1 << self.buddy;
                job.errors.push(why);
                if !state.fail_if_stranded(t.job) {
                    state.queue.push_front(t.job);
                    let idle = state.idle_workers > 0;
                    drop(state);
                    if idle {
                        self.shared.work.notify_all();
                    }
                }
            }
        }
    }

    /// Returns unanswered jobs to the front of the queue, untried, in order.
    fn put_back(&self, jobs: impl DoubleEndedIterator<Item = Taken>) {
        let mut state = self.shared.lock();
        for t in jobs.rev() {
            if state.jobs.contains_key(&t.job) {
                state.queue.push_front(t.job);
            }
        }
        drop(state);
        self.shared.work.notify_all();
    }

    /// This connection is gone; the last one of a buddy fails the jobs no
    /// other buddy can serve.
    fn give_up(&self, e: &anyhow::Error) {
        if e.downcast_ref::<BrokeProtocol>().is_some() {
            eprintln!("pastiche: {e:#}; its chunks are taken from the others");
        } else {
            eprintln!("pastiche: buddy {} stopped answering ({e:#}); its chunks are taken from the others", self.addr);
        }
        let mut state = self.shared.lock();
        state.workers_left[self.buddy] -= 1;
        if state.workers_left[self.buddy] == 0 {
            let gone = format!("{}: unreachable ({e:#})", self.addr);
            let queued: Vec<u64> = state.queue.iter().copied().collect();
            for id in queued {
                if let Some(j) = state.jobs.get_mut(&id) {
                    if j.tried & (1 << self.buddy) == 0 {
                        j.errors.push(gone.clone());
                    }
                }
                state.fail_if_stranded(id);
            }
            let State { queue, jobs, .. } = &mut *state;
            queue.retain(|id| jobs.contains_key(id));
        }
        drop(state);
        self.shared.work.notify_all();
    }
}
