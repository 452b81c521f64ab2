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
const LANES: usize = 8;
/// Positions each lane checks per block. Trades the warm-up cost
/// (`WINDOW / LANE_LEN`) against the work done past a boundary (half a block).
const LANE_LEN: usize = 384;
const BLOCK: usize = LANES * LANE_LEN;

/// The state after rolling the 48 bytes before `at` into a fresh window:
/// exactly the fingerprint state at position `at - 1`.
#[inline(always)]
fn warm_up(window: &[u8; WINDOW]) -> State {
    let mut g = FRESH;
    for &b in window {
        g = roll(g, b, 0);
    }
    g
}

/// Finds the first position `p` in `start..end` whose fingerprint marks a
/// boundary, given the state `g` at position `start - 1`.
///
/// Requires `start >= WINDOW`, so every window is inside `data`. Returns
/// `Ok(p)` for a boundary at `p`, or `Err(state)` with the state at `end - 1`.
pub(super) fn first_boundary(data: &[u8], start: usize, end: usize, mut g: State) -> Result<usize, State> {
    debug_assert!(start >= WINDOW && start <= end && end <= data.len());
    let mut pos = start;
    while end - pos >= BLOCK {
        // Each lane sees its own 48-byte lead-in followed by its positions.
        let lanes: [&[u8; LANE_LEN + WINDOW]; LANES] = core::array::from_fn(|k| {
            let from = pos + k * LANE_LEN - WINDOW;
            data[from..from + LANE_LEN + WINDOW].try_into().expect("lane inside block")
        });
        let mut gs: [State; LANES] = core::array::from_fn(|k| {
            if k == 0 {
                g
            } else {
                warm_up(lanes[k][..WINDOW].try_into().expect("window"))
            }
        });
        let mut hits = [usize::MAX; LANES];
        for t in 0..LANE_LEN {
            for k in 0..LANES {
                gs[k] = roll(gs[k], lanes[k][t + WINDOW], lanes[k][t]);
                if is_boundary(gs[k]) && hits[k] == usize::MAX {
                    hits[k] = t;
                }
            }
        }
        for (k, &t) in hits.iter().enumerate() {
            if t != usize::MAX {
                return Ok(pos + k * LANE_LEN + t);
            }
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
