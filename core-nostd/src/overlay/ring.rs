//! NodeIds as points on Pastry's circular 128-bit id space, read as base-16
//! digits (b = 4), most significant first.

use crate::identity::NodeId;

/// Digits of a nodeId: 128 bits in base 16.
pub const DIGITS: usize = 32;

/// The nodeId as a number.
pub fn value(id: &NodeId) -> u128 {
    u128::from_be_bytes(id.0)
}

/// The nodeId of a number.
pub fn from_value(v: u128) -> NodeId {
    NodeId(v.to_be_bytes())
}

/// How many leading base-16 digits `a` and `b` share (32 when equal).
pub fn shared_prefix(a: &NodeId, b: &NodeId) -> usize {
    ((value(a) ^ value(b)).leading_zeros() / 4) as usize
}

/// Distance going clockwise (upwards, wrapping) from `from` to `to`.
pub fn clockwise(from: &NodeId, to: &NodeId) -> u128 {
    value(to).wrapping_sub(value(from))
}

/// Numerical distance on the ring: the shorter way round.
pub fn distance(a: &NodeId, b: &NodeId) -> u128 {
    let d = clockwise(a, b);
    d.min(d.wrapping_neg())
}

/// Whether `a` is strictly closer to `key` than `b`. Ties (two ids at the
/// same distance either side of the key) go to the numerically smaller id,
/// so every node agrees on one closest node.
pub fn closer(key: &NodeId, a: &NodeId, b: &NodeId) -> bool {
    (distance(a, key), value(a)) < (distance(b, key), value(b))
}

/// `id` with its digit `i` replaced by `digit` (0..=15).
pub fn with_digit(id: &NodeId, i: usize, digit: u8) -> NodeId {
    let mut out = *id;
    let byte = &mut out.0[i / 2];
    if i.is_multiple_of(2) {
        *byte = (*byte & 0x0f) | (digit << 4);
    } else {
        *byte = (*byte & 0xf0) | (digit & 15);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_distance_and_digits() {
        let a = from_value(0x1234 << 112);
        let b = from_value(0x1239 << 112);
        assert_eq!(shared_prefix(&a, &b), 3);
        assert_eq!(shared_prefix(&a, &a), DIGITS);
        assert_eq!(distance(&from_value(1), &from_value(u128::MAX)), 2);
        assert_eq!(clockwise(&from_value(u128::MAX), &from_value(1)), 2);
        assert!(closer(&from_value(10), &from_value(9), &from_value(11)), "a tie goes to the smaller id");
        assert!(!closer(&from_value(10), &from_value(11), &from_value(9)));
        let c = with_digit(&a, 3, 0xf);
        assert_eq!(value(&c), 0x123f << 112);
        assert_eq!(with_digit(&c, 0, 0xa).digit(0), 0xa);
    }
}
