//! How much to audit: enough samples to catch a lossy buddy with a stated
//! probability, and whole-chunk fetches within a bandwidth budget.
//!
//! A buddy that lost a share `f` of a client's chunks escapes one uniformly
//! sampled challenge with probability `1 - f`, and `k` independent ones with
//! `(1 - f)^k` (sampling without replacement only lowers that). So
//! `k = ceil(ln(miss) / ln(1 - f))`; the defaults (5% lost, caught with 99%
//! probability within a day) give 90 proofs a day. Floats are used only
//! with `*` and comparisons, which `core` has without `libm`.

/// Seconds in a day.
const DAY: u64 = 24 * 3600;
/// Seconds in a 30-day month, the period of the fetch budget.
const MONTH: u64 = 30 * DAY;

/// The probability that `k` uniform challenges find at least one chunk of
/// a buddy that lost a share `lost` of them: `1 - (1 - lost)^k`.
pub fn detection_probability(k: u32, lost: f64) -> f64 {
    let keep = (1.0 - lost).clamp(0.0, 1.0);
    let mut escape = 1.0;
    for _ in 0..k {
        escape *= keep;
    }
    1.0 - escape
}

/// The fewest challenges that find a buddy which lost a share `lost` of
/// the chunks with probability at least `confidence` (at most 100,000; a
/// zero or negative `lost` can never be detected and also gives that cap).
pub fn samples_needed(lost: f64, confidence: f64) -> u32 {
    const CAP: u32 = 100_000;
    if lost >= 1.0 {
        return 1;
    }
    if lost <= 0.0 {
        return CAP;
    }
    let keep = 1.0 - lost;
    let target = 1.0 - confidence;
    let (mut k, mut escape) = (0u32, 1.0f64);
    while escape > target && k < CAP {
        escape *= keep;
        k += 1;
    }
    k
}

/// A client's audit schedule for one buddy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditPlan {
    /// The share of lost chunks to catch (default 5%).
    pub lost: f64,
    /// With at least this probability (default 99%).
    pub confidence: f64,
    /// Within this many seconds (default one day).
    pub within_secs: u64,
    /// Audits per period (default 24: hourly), among which the challenges
    /// are spread.
    pub audits_per_period: u32,
    /// The most bytes fetched whole per month, as parts per million of the
    /// bytes stored on the buddy (default 10,000: 1%).
    pub fetch_budget_ppm: u64,
}

impl Default for AuditPlan {
    fn default() -> AuditPlan {
        AuditPlan { lost: 0.05, confidence: 0.99, within_secs: DAY, audits_per_period: 24, fetch_budget_ppm: 10_000 }
    }
}

impl AuditPlan {
    /// Seconds between two audits.
    pub fn interval_secs(&self) -> u64 {
        (self.within_secs / u64::from(self.audits_per_period.max(1))).max(1)
    }

    /// Challenges in each audit, so the period's total reaches
    /// [`samples_needed`] (rounded up), at most `chunks` (a buddy holding
    /// `chunks` of the client's chunks) and at most [`super::MAX_AUDIT_IDS`].
    pub fn challenges_per_audit(&self, chunks: u64) -> u32 {
        let total = samples_needed(self.lost, self.confidence);
        let per = total.div_ceil(self.audits_per_period.max(1));
        let per = u64::from(per).min(chunks).min(super::MAX_AUDIT_IDS as u64);
        per as u32
    }

    /// Chunks fetched whole and opened in each audit so that a month's
    /// fetches stay within the budget: `stored_bytes` on the buddy, chunks of
    /// `mean_chunk_bytes` on average. A budget smaller than one chunk a
    /// month fetches none.
    pub fn fetches_per_audit(&self, stored_bytes: u64, mean_chunk_bytes: u64) -> FetchRate {
        let budget = (u128::from(stored_bytes) * u128::from(self.fetch_budget_ppm) / 1_000_000) as u64;
        let per_month = budget / mean_chunk_bytes.max(1);
        let audits_per_month = (MONTH / self.interval_secs()).max(1);
        FetchRate { per_month, audits_per_month }
    }
}

/// Whole-chunk fetches spread over a month's audits: `per_month` fetches
/// over `audits_per_month` audits, as a fraction, so a small budget still
/// fetches now and then rather than never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRate {
    /// Whole chunks a month.
    pub per_month: u64,
    /// Audits a month.
    pub audits_per_month: u64,
}

impl FetchRate {
    /// How many chunks audit number `n` (counting from 0) fetches whole:
    /// the integer steps of `per_month * n / audits_per_month`, so the
    /// month's total is exactly `per_month`.
    pub fn for_audit(&self, n: u64) -> u64 {
        let slot = n % self.audits_per_month;
        let upto = |m: u64| u128::from(self.per_month) * u128::from(m) / u128::from(self.audits_per_month);
        (upto(slot + 1) - upto(slot)) as u64
    }
}
