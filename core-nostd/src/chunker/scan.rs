//! The chunker's fast path: find the first boundary in a stretch of bytes.
//!
//! A single rolling fingerprint is one long dependency chain (shift, table
//! load, XOR) of several cycles per byte. The fingerprint at a position depends
//! only on the 48 bytes ending there, so a block is split into `LANES` lanes,
//! each warmed up on the 48 bytes before its start and rolled in lock-step with
//! the others. The chains are independent, so the CPU runs them side by side.
//! The first boundary is the earliest hit of the lowest lane that has one;
//! lanes past it did wasted work, which is why blocks are kept small.

use super::{is_boundary, roll, State, FRESH};
use crate::chunker::rabin::WINDOW;

/// Independent fingerprint chains interleaved per block.
const LANES: usize = 6;
/// Positions each lane checks per block. Trades the warm-up cost
/// (`WINDOW / LANE_LEN`) against the work done past a boundary (half a block).
const LANE_LEN: usize = 512;
const BLOCK: usize = LANES * LANE_LEN;
/// No hit recorded.
const NONE: usize = usize::MAX;

/// Finds the first position `p` in `start..end` whose fingerprint marks a
/// boundary, given the state `g` at position `start - 1`.
///
/// Requires `start >= WINDOW`, so every window is inside `data`. Returns
/// `Ok(p)` for a boundary at `p`, or `Err(state)` with the state at `end - 1`.
pub(super) fn first_boundary(data: &[u8], start: usize, end: usize, mut g: State) -> Result<usize, State> {
    debug_assert!(start >= WINDOW && start <= end && end <= data.len());
    let mut pos = start;
    while end - pos >= BLOCK {
        // The block with its 48-byte lead-in; lane k's position t is
        // `block[WINDOW + k * LANE_LEN + t]`, its outgoing byte `block[k * LANE_LEN + t]`.
        let block: &[u8; WINDOW + BLOCK] = data[pos - WINDOW..pos + BLOCK].try_into().expect("block in range");
        // Lanes 1.. start fresh on the 48 bytes before their first position,
        // all warmed up together so their chains overlap too.
        let mut gs: [State; LANES] = [FRESH; LANES];
        for j in 0..WINDOW {
            for k in 1..LANES {
                gs[k] = roll(gs[k], block[k * LANE_LEN + j], 0);
            }
        }
        gs[0] = g;
        let mut hits = [NONE; LANES];
        for t in 0..LANE_LEN {
            for k in 0..LANES {
                let at = k * LANE_LEN + t;
                gs[k] = roll(gs[k], block[at + WINDOW], block[at]);
                if is_boundary(gs[k]) {
                    // About one position in 16,384: a well-predicted branch
                    // is cheaper than keeping every lane's hit in a register.
                    core::hint::cold_path();
                    if hits[k] == NONE {
                        hits[k] = t;
                    }
                }
            }
        }
        if let Some((k, &t)) = hits.iter().enumerate().find(|(_, &t)| t != NONE) {
            return Ok(pos + k * LANE_LEN + t);
        }
        g = gs[LANES - 1];
        pos += BLOCK;
    }
    for p in pos..end {
        g = roll(g, data[p], data[p - WINDOW]);
        if is_boundary(g) {
            return Ok(p);
        }
    }
    Err(g)
}
