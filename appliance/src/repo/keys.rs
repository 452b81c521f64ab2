//! Keys derived from the passphrase (SPEC §3).
//!
//! The root key comes from the passphrase and the machine's fully-qualified
//! name through Argon2id. Its salt depends on the name alone and the default
//! parameters are fixed, so passphrase plus name is all a disaster recovery
//! needs. Every other secret derives from it with HMAC-SHA1 under a label.

use anyhow::{anyhow, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use pastiche_core::Identity;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// The subkey label of the box's Ed25519 seed.
pub const IDENTITY_LABEL: &str = "identity";
/// The subkey label of the root record kept on the buddies.
pub const ROOT_RECORD_LABEL: &str = "root-record";

/// Argon2id cost parameters, recorded in the box's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter of a second here, and
    /// expensive to guess at scale.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

/// A 32-byte secret from which labelled subkeys are derived.
#[derive(Clone)]
pub struct RootKey([u8; 32]);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

/// The Argon2id salt for a machine: `SHA1("pastiche/v1/root-salt" || name)`,
/// first 16 bytes.
pub fn salt_for(name: &str) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(b"pastiche/v1/root-salt");
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&d[..16]);
    salt
}

impl RootKey {
    /// Runs Argon2id on the passphrase with the machine name's salt.
    pub fn derive(passphrase: &[u8], name: &str, params: KdfParams) -> Result<RootKey> {
        let p = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
            .map_err(|e| anyhow!("bad key-derivation parameters: {e}"))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
            .hash_password_into(passphrase, &salt_for(name), &mut out)
            .map_err(|e| anyhow!("key derivation failed: {e}"))?;
        Ok(RootKey(out))
    }

    /// A subkey for `label`: `HMAC-SHA1(root, "pastiche/v1/" || label)`,
    /// stretched to 32 bytes by a second block.
    pub fn subkey(&self, label: &str) -> [u8; 32] {
        let block = |n: u8| {
            let mut mac = Hmac::<Sha1>::new_from_slice(&self.0).expect("any key length");
            mac.update(b"pastiche/v1/");
            mac.update(label.as_bytes());
            mac.update(&[n]);
            mac.finalize().into_bytes()
        };
        let mut out = [0u8; 32];
        out[..20].copy_from_slice(&block(1));
        out[20..].copy_from_slice(&block(2)[..12]);
        out
    }

    /// The box's signing identity: its Ed25519 seed is `subkey("identity")`,
    /// so passphrase and name give a rebuilt box its identity back before
    /// it has fetched anything, and it can prove it to its buddies.
    pub fn identity(&self) -> Result<Identity> {
        Identity::from_seed(self.subkey(IDENTITY_LABEL)).map_err(|e| anyhow!("cannot derive the identity: {e}"))
    }

    /// A public value that tells whether a passphrase is right without
    /// revealing anything about the key.
    pub fn check_value(&self) -> String {
        hex::encode(&self.subkey("key-check")[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn same_inputs_same_key_and_names_separate() {
        let a = RootKey::derive(b"pw", "nas.example", cheap()).unwrap();
        let b = RootKey::derive(b"pw", "nas.example", cheap()).unwrap();
        let c = RootKey::derive(b"pw", "other.example", cheap()).unwrap();
        let d = RootKey::derive(b"pw2", "nas.example", cheap()).unwrap();
        assert_eq!(a.check_value(), b.check_value());
        assert_ne!(a.check_value(), c.check_value());
        assert_ne!(a.check_value(), d.check_value());
        assert_ne!(a.subkey("x"), a.subkey("y"));
    }
}
