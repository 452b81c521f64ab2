//! Pairing: one-time invitation codes.
//!
//! `pastiche buddy invite` writes one file per code in `DATA/invites/`,
//! named by a SHA-256 of the normalised code (the code itself is never
//! stored), holding the quota, the expiry and a name for the client. It
//! needs no lock on the box, so the owner can invite while `pastiche serve`
//! runs. Redeeming renames the file away first (so two sessions presenting
//! the same code cannot both win), then reads and deletes it.
//!
//! A code is 10 characters of Crockford's base32 (50 random bits), shown as
//! `XXXXX-XXXXX`; case, dashes and spaces are ignored when typed, and the
//! letters O, I and L read as 0, 1 and 1. Guessing one over the network
//! costs a connection and a signed handshake per guess against 2^50.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{BuddyError, Result};

/// The directory of pending invitations in the box's data directory.
pub const INVITES_DIR: &str = "invites";
/// Characters of a code (without the dash).
const CODE_LEN: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// What a code grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The client's quota in bytes (`None`: the daemon's default).
    pub quota: Option<u64>,
    /// Unix seconds after which the code is refused.
    pub expires: u64,
    /// A name for the client, shown by `pastiche clients list`.
    pub name: String,
}

/// For tests only: seconds added to the buddy's clock ([`unix_now`]), so a
/// test can make clients look silent for months without waiting
/// (documented in `docs/CONFIG.md`; never set it in production).
pub const TEST_CLOCK_OFFSET_ENV: &str = "PASTICHE_TEST_CLOCK_OFFSET";

/// Seconds since the Unix epoch, on the buddy's clock (the real one, moved
/// on by [`TEST_CLOCK_OFFSET_ENV`] when a test sets it).
pub fn unix_now() -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let offset = std::env::var(TEST_CLOCK_OFFSET_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    real.saturating_add(offset)
}

/// A code as typed, reduced to its canonical characters (upper case, no
/// dashes or spaces, O, I and L read as 0, 1 and 1): `None` if it has no
/// letters or digits, or anything else.
pub fn normalize(code: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii_alphanumeric() => c,
            _ => return None,
        };
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

fn invite_path(dir: &Path, normalized: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(b"pastiche/v1/invite\0");
    h.update(normalized.as_bytes());
    dir.join(INVITES_DIR).join(hex::encode(h.finalize()))
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> BuddyError {
    move |source| BuddyError::Invites { context, source }
}

/// Creates a one-time code for `invite` in the box at `dir`; returns it as
/// shown to people (`XXXXX-XXXXX`).
pub fn create(dir: &Path, invite: &Invite) -> Result<String> {
    let mut rng = rand::rngs::OsRng;
    let raw: String = (0..CODE_LEN).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    create_code(dir, &raw, invite)?;
    Ok(format!("{}-{}", &raw[..CODE_LEN / 2], &raw[CODE_LEN / 2..]))
}

/// Makes `code` (as typed) a valid one-time code for `invite`: for tests,
/// which need codes they choose.
pub fn create_code(dir: &Path, code: &str, invite: &Invite) -> Result<()> {
    let normalized = normalize(code).ok_or_else(|| BuddyError::Invites {
        context: "creating",
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "a code has letters and digits only"),
    })?;
    let path = invite_path(dir, &normalized);
    std::fs::create_dir_all(dir.join(INVITES_DIR)).map_err(io("creating the directory"))?;
    let body = serde_json::to_vec(invite).expect("serializable");
    crate::repo::write_atomically(&path, &body)
        .map_err(|e| BuddyError::Invites { context: "writing", source: std::io::Error::other(e.to_string()) })
}

/// Files an invitation under the digest of a code this box never sees
/// (`pastiche_core::wire::pairing::code_digest` of its canonical
/// characters): how an accepted LAN pairing request admits the box that
/// drew the code, which then presents it like a typed one.
pub fn create_for_digest(dir: &Path, digest: &[u8; 32], invite: &Invite) -> Result<()> {
    let path = dir.join(INVITES_DIR).join(hex::encode(digest));
    std::fs::create_dir_all(dir.join(INVITES_DIR)).map_err(io("creating the directory"))?;
    let body = serde_json::to_vec(invite).expect("serializable");
    crate::repo::write_atomically(&path, &body)
        .map_err(|e| BuddyError::Invites { context: "writing", source: std::io::Error::other(e.to_string()) })
}

/// A fresh code as [`create`] draws them, canonical (no dash), and not
/// filed anywhere: the asking side of a LAN pairing keeps it to itself.
pub fn draw_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Spends `code` if it is a valid, unexpired invitation of the box at
/// `dir`, at `now` (Unix seconds). `None`: unknown, already used or expired.
pub fn redeem(dir: &Path, code: &str, now: u64) -> Result<Option<Invite>> {
    let Some(normalized) = normalize(code) else { return Ok(None) };
    let path = invite_path(dir, &normalized);
    // Claim it first: a rename succeeds for one claimant only.
    let claimed = path.with_extension(format!("redeeming-{}", rand::random::<u64>()));
    match std::fs::rename(&path, &claimed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("claiming")(e)),
    }
    let body = std::fs::read(&claimed).map_err(io("reading"))?;
    std::fs::remove_file(&claimed).map_err(io("removing"))?;
    let Ok(invite) = serde_json::from_slice::<Invite>(&body) else { return Ok(None) };
    Ok((now <= invite.expires).then_some(invite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_filed_admits_its_code_once() {
        let dir = tempfile::tempdir().unwrap();
        let code = draw_code();
        let invite = Invite { quota: None, expires: 1000, name: "lan".into() };
        let digest = pastiche_core::wire::pairing::code_digest(&normalize(&code).unwrap());
        create_for_digest(dir.path(), &digest, &invite).unwrap();
        assert_eq!(redeem(dir.path(), &code, 999).unwrap(), Some(invite));
        assert_eq!(redeem(dir.path(), &code, 999).unwrap(), None, "used twice");
    }

    #[test]
    fn codes_are_one_time_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let invite = Invite { quota: Some(7), expires: 1000, name: "n".into() };
        let code = create(dir.path(), &invite).unwrap();
        assert_eq!(code.len(), 11);
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(redeem(dir.path(), &typed, 999).unwrap(), Some(invite.clone()));
        assert_eq!(redeem(dir.path(), &code, 999).unwrap(), None, "used twice");
        let late = create(dir.path(), &invite).unwrap();
        assert_eq!(redeem(dir.path(), &late, 1001).unwrap(), None, "expired");
        assert_eq!(redeem(dir.path(), &late, 999).unwrap(), None, "an expired code is spent");
        assert_eq!(redeem(dir.path(), "not a code!", 0).unwrap(), None);
        assert_eq!(redeem(dir.path(), "NOTACODE", 0).unwrap(), None);
        assert_eq!(std::fs::read_dir(dir.path().join(INVITES_DIR)).unwrap().count(), 0);
    }
}
