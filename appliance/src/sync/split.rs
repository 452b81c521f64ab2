//! Metadata objects larger than one protocol message are shipped in parts.
//!
//! The object stored under its own name on the buddy starts with a header
//! `01 || total length (4 bytes, big-endian) || part count (2 bytes,
//! big-endian)` followed by the first segment; part `k` (1-based after the
//! first) is stored under `SHA1("pastiche/v1/part" || name || k as 4 bytes
//! big-endian)`. Only the owner, who knows the name, can find the parts.

use anyhow::{bail, Result};
use pastiche_core::wire::MAX_OBJECT_DATA;
use sha1::{Digest, Sha1};

const HEADER: usize = 1 + 4 + 2;
const SEGMENT: usize = MAX_OBJECT_DATA - HEADER;

/// The name of part `k` (k >= 1) of the object `name`.
pub fn part_name(name: &[u8; 20], k: u32) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(b"pastiche/v1/part");
    h.update(name);
    h.update(k.to_be_bytes());
    h.finalize().into()
}

/// How many parts an object of `len` bytes is shipped in.
pub fn part_count(len: usize) -> usize {
    1 + len.saturating_sub(SEGMENT).div_ceil(SEGMENT)
}

/// Every name an object shipped in `parts` parts is stored under there.
pub fn names_of(name: &[u8; 20], parts: u16) -> impl Iterator<Item = [u8; 20]> + '_ {
    std::iter::once(*name).chain((1..u32::from(parts.max(1))).map(move |k| part_name(name, k)))
}

/// The (name, bytes) pairs to stage for one object.
pub fn split(name: &[u8; 20], data: &[u8]) -> Result<Vec<([u8; 20], Vec<u8>)>> {
    let first_len = data.len().min(SEGMENT);
    let rest = &data[first_len..];
    let parts = part_count(data.len());
    if parts > u16::MAX as usize || data.len() > u32::MAX as usize {
        bail!("metadata object of {} bytes is too large to ship", data.len());
    }
    let mut first = Vec::with_capacity(HEADER + first_len);
    first.push(1);
    first.extend_from_slice(&(data.len() as u32).to_be_bytes());
    first.extend_from_slice(&(parts as u16).to_be_bytes());
    first.extend_from_slice(&data[..first_len]);
    let mut out = vec![(*name, first)];
    for (k, seg) in rest.chunks(SEGMENT).enumerate() {
        out.push((part_name(name, k as u32 + 1), seg.to_vec()));
    }
    Ok(out)
}

/// Reads the header of a first part: (total length, part count, first segment).
pub fn parse_first(bytes: &[u8]) -> Result<(usize, u32, &[u8])> {
    if bytes.len() < HEADER || bytes[0] != 1 {
        bail!("malformed object header from the buddy");
    }
    let total = u32::from_be_bytes(bytes[1..5].try_into().expect("4")) as usize;
    let parts = u16::from_be_bytes(bytes[5..7].try_into().expect("2")) as u32;
    let seg = &bytes[HEADER..];
    if parts == 0 || seg.len() > total || (parts == 1 && seg.len() != total) {
        bail!("inconsistent object header from the buddy");
    }
    Ok((total, parts, seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble() {
        for len in [0usize, 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let parts = split(&[3; 20], &data).unwrap();
            assert!(parts.iter().all(|(_, p)| p.len() <= MAX_OBJECT_DATA));
            let (total, count, first) = parse_first(&parts[0].1).unwrap();
            assert_eq!((total, count as usize), (len, parts.len()));
            assert_eq!(part_count(len), parts.len());
            let names: Vec<[u8; 20]> = names_of(&[3; 20], count as u16).collect();
            assert_eq!(names, parts.iter().map(|(n, _)| *n).collect::<Vec<_>>());
            let mut joined = first.to_vec();
            for (k, (name, p)) in parts.iter().enumerate().skip(1) {
                assert_eq!(*name, part_name(&[3; 20], k as u32));
                joined.extend_from_slice(p);
            }
            assert_eq!(joined, data);
        }
    }
}
