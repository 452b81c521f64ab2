use super::*;
use crate::seal::ChunkId;

#[test]
fn proof_matches_an_independent_sha256_and_is_the_same_in_pieces() {
    // Python: sha256(b"pastiche/v1/audit\0" + b"\x11"*32 + b"\x22"*20 + bytes(range(256))*3)
    let nonce = AuditNonce([0x11; 32]);
    let id = ChunkId([0x22; 20]);
    let mut sealed = [0u8; 768];
    for (i, b) in sealed.iter_mut().enumerate() {
        *b = i as u8;
    }
    let whole = ProofDigest::of(&nonce, &id, &sealed);
    let expected: ProofDigest = "1257f67f57176cf7fff6d760ae2c4243ac1fc2011be984deeb375382202a17cd".parse().unwrap();
    assert_eq!(whole, expected);
    let mut h = ProofHasher::new(&nonce, &id);
    for part in sealed.chunks(100) {
        h.update(part);
    }
    assert_eq!(h.finish(), whole);
}

#[test]
fn proof_depends_on_nonce_id_and_every_byte() {
    let (nonce, id, sealed) = (AuditNonce([1; 32]), ChunkId([2; 20]), [3u8; 64]);
    let base = ProofDigest::of(&nonce, &id, &sealed);
    assert_ne!(base, ProofDigest::of(&AuditNonce([9; 32]), &id, &sealed));
    assert_ne!(base, ProofDigest::of(&nonce, &ChunkId([9; 20]), &sealed));
    for i in 0..sealed.len() {
        let mut flipped = sealed;
        flipped[i] ^= 1;
        assert_ne!(base, ProofDigest::of(&nonce, &id, &flipped), "byte {i}");
    }
    assert_ne!(base, ProofDigest::of(&nonce, &id, &sealed[..63]));
}

#[test]
fn sampler_is_reproducible_distinct_sorted_and_in_range() {
    for n in [0u64, 1, 2, 5, 17, 1000, 1 << 40] {
        let mut out = [0u64; 64];
        let k = Sampler::new([7; 32]).distinct(n, &mut out);
        assert_eq!(k as u64, n.min(64));
        let picked = &out[..k];
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "sorted and distinct for n={n}");
        assert!(picked.iter().all(|&x| x < n));
        let mut again = [0u64; 64];
        Sampler::new([7; 32]).distinct(n, &mut again);
        assert_eq!(out, again);
    }
}

#[test]
fn sampler_is_uniform() {
    // 20 buckets, 40,000 draws of 5 distinct values: each bucket expects
    // 10,000 picks; 5 standard deviations is about 430. Deterministic seeds,
    // so this cannot flake; it fails for a biased sampler.
    let mut counts = [0u32; 20];
    let mut out = [0u64; 5];
    for round in 0u32..40_000 {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&round.to_le_bytes());
        let k = Sampler::new(seed).distinct(20, &mut out);
        for &x in &out[..k] {
            counts[x as usize] += 1;
        }
    }
    for (i, &c) in counts.iter().enumerate() {
        assert!((9_570..=10_430).contains(&c), "bucket {i}: {c}");
    }
}

#[test]
fn default_plan_catches_five_percent_loss_with_99_percent_a_day() {
    assert_eq!(samples_needed(0.05, 0.99), 90);
    assert!(detection_probability(90, 0.05) >= 0.99);
    assert!(detection_probability(89, 0.05) < 0.99);
    let plan = AuditPlan::default();
    assert_eq!(plan.interval_secs(), 3600);
    let per_audit = plan.challenges_per_audit(1_000_000);
    assert!(per_audit * plan.audits_per_period >= 90);
    assert!(detection_probability(per_audit * plan.audits_per_period, 0.05) >= 0.99);
    // A buddy holding 3 chunks cannot be asked about more.
    assert_eq!(plan.challenges_per_audit(3), 3);
    assert_eq!(samples_needed(1.0, 0.99), 1);
    assert_eq!(samples_needed(0.0, 0.99), 100_000);
}

#[test]
fn whole_fetches_stay_within_one_percent_a_month() {
    let plan = AuditPlan::default();
    // 10 GiB stored in 16 KiB chunks: 1% is 6,553 chunks a month.
    let rate = plan.fetches_per_audit(10 << 30, 16 << 10);
    assert_eq!(rate.per_month, 6553);
    let month: u64 = (0..rate.audits_per_month).map(|n| rate.for_audit(n)).sum();
    assert_eq!(month, rate.per_month);
    // A small box (50 MiB) still fetches a few whole chunks a month, spread out.
    let small = plan.fetches_per_audit(50 << 20, 16 << 10);
    assert_eq!(small.per_month, 32);
    let month: u64 = (0..small.audits_per_month).map(|n| small.for_audit(n)).sum();
    assert_eq!(month, 32);
    assert!((0..small.audits_per_month).all(|n| small.for_audit(n) <= 1));
}

/// A buddy that silently lost some chunks and corrupted others; it answers
/// proofs over what it still has.
struct LossyBuddy {
    lost: [bool; 10_000],
}

impl LossyBuddy {
    fn new(share: f64, seed: u8) -> LossyBuddy {
        let mut lost = [false; 10_000];
        let n = (share * 10_000.0) as usize;
        let mut picks = [0u64; 2_000];
        let k = Sampler::new([seed; 32]).distinct(10_000, &mut picks[..n]);
        for &i in &picks[..k] {
            lost[i as usize] = true;
        }
        LossyBuddy { lost }
    }
}

fn chunk(i: u64) -> (ChunkId, [u8; 32]) {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&i.to_be_bytes());
    let mut sealed = [0u8; 32];
    sealed[..8].copy_from_slice(&(i * 7).to_be_bytes());
    (ChunkId(id), sealed)
}

/// Runs `audits` audits of `k` challenges each against `buddy` and returns
/// how many failed.
fn failures(buddy: &LossyBuddy, k: usize, audits: u32) -> u32 {
    let mut failed = 0;
    for a in 0..audits {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&a.to_be_bytes());
        seed[31] = 0xa5;
        let mut picks = [0u64; 128];
        let n = Sampler::new(seed).distinct(10_000, &mut picks[..k]);
        let nonce = AuditNonce(seed);
        let mut verdict = Verdict::default();
        for &i in &picks[..n] {
            let (id, sealed) = chunk(i);
            let expected = ProofDigest::of(&nonce, &id, &sealed);
            let answer = (!buddy.lost[i as usize]).then(|| ProofDigest::of(&nonce, &id, &sealed));
            verdict.check(answer.as_ref(), &expected);
        }
        if !verdict.passed() {
            failed += 1;
        }
    }
    failed
}

#[test]
fn lossy_buddies_are_caught_at_the_predicted_rate() {
    // For each share f and k challenges, the observed catch rate over 2,000
    // audits is within 4 binomial standard deviations of 1 - (1 - f)^k
    // (sampling without replacement catches slightly more: the margin
    // allows it). Deterministic seeds: a sampler or tally bug fails this.
    let audits = 2_000u32;
    for (f, k) in [(0.01, 20usize), (0.05, 10), (0.20, 3), (0.05, 90)] {
        let buddy = LossyBuddy::new(f, (f * 100.0) as u8);
        let observed = f64::from(failures(&buddy, k, audits)) / f64::from(audits);
        let p = detection_probability(k as u32, f);
        // (observed - p)^2 <= (4 sigma)^2 + slack^2, without sqrt (not in core).
        let four_sigma_sq = 16.0 * p * (1.0 - p) / f64::from(audits);
        let d = observed - p;
        assert!(d * d <= four_sigma_sq + 0.005 * 0.005, "f={f} k={k}: observed {observed}, predicted {p}");
    }
    // An honest buddy never fails.
    assert_eq!(failures(&LossyBuddy::new(0.0, 1), 50, 200), 0);
}

#[test]
fn a_buddy_that_corrupts_bytes_is_caught() {
    let nonce = AuditNonce([4; 32]);
    let (id, sealed) = chunk(42);
    let mut rotten = sealed;
    rotten[3] ^= 0x10;
    let mut verdict = Verdict::default();
    let expected = ProofDigest::of(&nonce, &id, &sealed);
    assert_eq!(verdict.check(Some(&ProofDigest::of(&nonce, &id, &rotten)), &expected), Finding::Corrupt);
    // A proof replayed from an earlier audit's nonce does not pass either.
    let stale = ProofDigest::of(&AuditNonce([3; 32]), &id, &sealed);
    assert_eq!(verdict.check(Some(&stale), &expected), Finding::Corrupt);
    assert_eq!(verdict.check(Some(&expected), &expected), Finding::Proven);
    assert_eq!(verdict, Verdict { proven: 1, missing: 0, corrupt: 2 });
    assert!(!verdict.passed());
}
