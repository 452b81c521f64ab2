//! The client's tally of one audit: which challenged chunks the buddy
//! proved, which it said it lacks, and which it answered wrongly.

use super::proof::ProofDigest;

/// What one challenged chunk showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The proof matched the client's own sealed copy.
    Proven,
    /// The buddy said it does not hold the chunk.
    Missing,
    /// The proof did not match: the stored bytes are not the ones shipped.
    Corrupt,
}

/// Counts of one audit's findings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Chunks proven held.
    pub proven: u32,
    /// Chunks the buddy lacks.
    pub missing: u32,
    /// Chunks whose proof or fetched bytes were wrong.
    pub corrupt: u32,
}

impl Verdict {
    /// Compares the buddy's answer for one chunk (`None`: it says it lacks
    /// it) with the proof the client computed, and records the finding.
    pub fn check(&mut self, answered: Option<&ProofDigest>, expected: &ProofDigest) -> Finding {
        let finding = match answered {
            None => Finding::Missing,
            Some(p) if p == expected => Finding::Proven,
            Some(_) => Finding::Corrupt,
        };
        self.record(finding);
        finding
    }

    /// Records a finding made another way (a chunk fetched whole and opened).
    pub fn record(&mut self, finding: Finding) {
        match finding {
            Finding::Proven => self.proven += 1,
            Finding::Missing => self.missing += 1,
            Finding::Corrupt => self.corrupt += 1,
        }
    }

    /// Whether the buddy passed: everything challenged was proven.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.corrupt == 0
    }

    /// Chunks challenged in all.
    pub fn total(&self) -> u32 {
        self.proven + self.missing + self.corrupt
    }
}
