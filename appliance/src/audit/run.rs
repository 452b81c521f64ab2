//! One audit: a uniform sample of the chunks shipped to a buddy, challenged
//! under a fresh nonce (`docs/PROTOCOL.md` §4.8), each proof checked against
//! the box's own sealed copy; a few chunks fetched whole and compared (or,
//! with no local copy, opened with their handle).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use pastiche_core::audit::{AuditNonce, AuditPlan, Finding, ProofDigest, Sampler, Verdict, MAX_AUDIT_IDS};
use pastiche_core::{ChunkId, Handle, MAX_CHUNK};
use rand::RngCore;
use serde::Serialize;

use crate::progress::Progress;
use crate::repo::Repo;
use crate::sealing::open_into;
use crate::sync::conn::{BuddyConn, BuddyRefused};
use crate::sync::{self, load_buddies, save_buddies, state, BuddyEntry};

/// How an audit is run.
#[derive(Clone, Copy, Debug)]
pub struct AuditOptions {
    /// Chunks challenged for a proof.
    pub samples: u32,
    /// Chunks fetched whole and checked, besides the proofs.
    pub fetches: u32,
    /// After a failure, find everything the buddy lost and ship it again.
    pub repair: bool,
}

impl AuditOptions {
    /// A run-now audit per `plan`: a whole period's worth of challenges (the
    /// number that catches the plan's loss with its confidence), a few
    /// whole-chunk fetches, and repair.
    pub fn now(plan: &AuditPlan) -> AuditOptions {
        let samples = pastiche_core::audit::samples_needed(plan.lost, plan.confidence);
        AuditOptions { samples, fetches: 2, repair: true }
    }
}

/// How the audit of one buddy went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BuddyAudit {
    /// The buddy's address.
    pub addr: String,
    /// Chunks recorded as shipped there.
    pub shipped: u64,
    /// Challenged chunks proven held.
    pub proven: u32,
    /// Challenged chunks the buddy does not hold.
    pub missing: u32,
    /// Challenged chunks whose proof or bytes were wrong.
    pub corrupt: u32,
    /// Chunks fetched whole (counted in the three above too).
    pub fetched: u32,
    /// Chunks that could not be judged: no local copy and no handle.
    pub unjudged: u32,
    /// Whether every challenge passed.
    pub passed: bool,
    /// After a failure: chunks the full re-check found lost or damaged.
    pub lost: Option<u64>,
    /// After a failure: chunks shipped again.
    pub reshipped: Option<u64>,
    /// The buddy could not be audited (unreachable, refused, repair failed).
    pub error: Option<String>,
    /// Wall-clock time.
    pub seconds: f64,
}

impl BuddyAudit {
    /// Whether the buddy failed (lost data, or could not be audited).
    pub fn failed(&self) -> bool {
        !self.passed || self.error.is_some()
    }
}

/// The audits of every buddy asked for.
#[derive(Debug, Default, Serialize)]
pub struct AuditReport {
    /// One per buddy, in the buddy list's order.
    pub buddies: Vec<BuddyAudit>,
}

impl AuditReport {
    /// Whether every buddy passed.
    pub fn all_passed(&self) -> bool {
        self.buddies.iter().all(|b| !b.failed())
    }
}

/// Fresh randomness for nonces and samples.
pub(crate) fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// The box's own sealed copy of a chunk, if it still has one.
pub(crate) fn local_copy(repo: &Repo, id: &ChunkId) -> Option<Vec<u8>> {
    let mut sealed = Vec::new();
    repo.store.get_into(id, &mut sealed).ok().map(|()| sealed)
}

/// Challenges `ids` in requests of at most [`MAX_AUDIT_IDS`]; returns each
/// id's finding (`None`: no local copy to judge the proof by).
pub(crate) fn challenge(repo: &Repo, conn: &mut BuddyConn, ids: &[ChunkId]) -> Result<Vec<Option<Finding>>> {
    let mut findings = Vec::with_capacity(ids.len());
    for batch in ids.chunks(MAX_AUDIT_IDS) {
        let nonce = AuditNonce(random32());
        let answers = conn.audit(nonce, batch)?;
        for (id, answer) in batch.iter().zip(&answers) {
            findings.push(local_copy(repo, id).map(|sealed| {
                let expected = ProofDigest::of(&nonce, id, &sealed);
                Verdict::default().check(answer.as_ref(), &expected)
            }));
        }
    }
    Ok(findings)
}

/// Handles of the chunks of every retained snapshot, by chunkId (to open
/// fetched chunks when the box has no sealed copy, after a disaster).
fn handles(repo: &Repo) -> Result<HashMap<ChunkId, Handle>> {
    let root = repo.load_root()?;
    let reached = crate::meta::walk::reach(repo, &root.snapshots)?;
    Ok(reached.handles.into_iter().map(|h| (Handle(h).chunk_id(), Handle(h))).collect())
}

/// Fetches `id` whole and checks it: equal to the local copy, or opening
/// with its handle. `None` when it cannot be judged.
fn fetch_and_check(
    conn: &mut BuddyConn,
    id: &ChunkId,
    local: Option<&[u8]>,
    handle: Option<&Handle>,
) -> Result<Option<Finding>> {
    let mut sealed = Vec::new();
    match conn.get_chunk(*id, &mut sealed) {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<BuddyRefused>().is_some_and(|r| r.code.is_fatal()) => return Err(e),
        Err(e) if e.downcast_ref::<BuddyRefused>().is_some() => return Ok(Some(Finding::Missing)),
        Err(e) => return Err(e),
    }
    Ok(match (local, handle) {
        (Some(mine), _) => Some(if mine == sealed.as_slice() { Finding::Proven } else { Finding::Corrupt }),
        (None, Some(h)) => {
            let mut plain = vec![0u8; MAX_CHUNK];
            Some(if open_into(&sealed, h, &mut plain).is_ok() { Finding::Proven } else { Finding::Corrupt })
        }
        (None, None) => None,
    })
}

/// Keeps the worse of two findings for one chunk (corrupt over missing
/// over proven).
fn note_finding(findings: &mut HashMap<ChunkId, Finding>, id: ChunkId, finding: Finding) {
    let rank = |f: &Finding| match f {
        Finding::Proven => 0,
        Finding::Missing => 1,
        Finding::Corrupt => 2,
    };
    let slot = findings.entry(id).or_insert(finding);
    if rank(&finding) > rank(slot) {
        *slot = finding;
    }
}

/// Audits one buddy: `opts.samples` challenged chunks and `opts.fetches`
/// fetched whole, drawn uniformly from what was shipped there. Chunks
/// without a local copy are fetched and opened instead of challenged.
pub fn audit_buddy(repo: &Repo, entry: &mut BuddyEntry, opts: &AuditOptions) -> Result<BuddyAudit> {
    let started = Instant::now();
    let mut conn = sync::connect(repo, entry)?;
    let db = repo.meta.database()?;
    let mut shipped: Vec<ChunkId> = state::shipped_chunks(db, &conn.buddy_key)?.into_iter().collect();
    shipped.sort();
    let mut report = BuddyAudit { addr: entry.addr.clone(), shipped: shipped.len() as u64, ..BuddyAudit::default() };
    let mut sampler = Sampler::new(random32());
    let mut picks = vec![0u64; (opts.samples as usize).min(shipped.len())];
    let k = sampler.distinct(shipped.len() as u64, &mut picks);
    let sample: Vec<ChunkId> = picks[..k].iter().map(|&i| shipped[i as usize]).collect();
    // One finding per chunk, the worst seen: a chunk both challenged and
    // fetched whole counts once.
    let mut findings: HashMap<ChunkId, Finding> = HashMap::with_capacity(sample.len());
    let mut to_open = Vec::new();
    for (id, finding) in sample.iter().zip(challenge(repo, &mut conn, &sample)?) {
        match finding {
            Some(f) => note_finding(&mut findings, *id, f),
            None => to_open.push(*id),
        }
    }
    // A few whole chunks: proofs show the bytes are there; a fetch shows
    // the buddy also serves them (and, opened, that they are ours).
    let mut fetch_picks = vec![0u64; (opts.fetches as usize).min(shipped.len())];
    let f = sampler.distinct(shipped.len() as u64, &mut fetch_picks);
    to_open.extend(fetch_picks[..f].iter().map(|&i| shipped[i as usize]));
    if !to_open.is_empty() {
        let handles = handles(repo)?;
        for id in &to_open {
            let local = local_copy(repo, id);
            report.fetched += 1;
            match fetch_and_check(&mut conn, id, local.as_deref(), handles.get(id))? {
                Some(f) => note_finding(&mut findings, *id, f),
                None => report.unjudged += 1,
            }
        }
    }
    let mut verdict = Verdict::default();
    findings.into_values().for_each(|f| verdict.record(f));
    report.proven = verdict.proven;
    report.missing = verdict.missing;
    report.corrupt = verdict.corrupt;
    report.passed = verdict.passed();
    drop(conn);
    if !report.passed && opts.repair {
        match super::repair::repair(repo, entry, &Progress::start(crate::progress::Mode::Quiet, "repair")) {
            Ok((lost, reshipped)) => {
                report.lost = Some(lost);
                report.reshipped = Some(reshipped);
            }
            Err(e) => report.error = Some(format!("repair failed: {e:#}")),
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Audits every buddy (or only `only`), records the results and keeps the
/// buddy list (pinned keys, epochs after a repair) up to date. The caller
/// holds the box for writing when `opts.repair` is set.
pub fn audit_all(repo: &Repo, only: Option<&str>, opts: &AuditOptions) -> Result<AuditReport> {
    let mut buddies = load_buddies(&repo.dir)?;
    if let Some(addr) = only {
        if !buddies.iter().any(|b| b.addr == addr) {
            anyhow::bail!("{addr} is not one of this box's buddies (pastiche buddy list)");
        }
    }
    let mut report = AuditReport::default();
    for i in 0..buddies.len() {
        if only.is_some_and(|a| a != buddies[i].addr) {
            continue;
        }
        let outcome = audit_buddy(repo, &mut buddies[i], opts).unwrap_or_else(|e| BuddyAudit {
            addr: buddies[i].addr.clone(),
            error: Some(format!("{e:#}")),
            ..BuddyAudit::default()
        });
        super::record::record(&repo.dir, &outcome)?;
        report.buddies.push(outcome);
        save_buddies(&repo.dir, &buddies)?;
    }
    Ok(report)
}
