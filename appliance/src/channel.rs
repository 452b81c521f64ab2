//! The secure channel as the appliance runs it: core's Noise handshake and
//! records (`pastiche_core::channel`) with ChaCha20-Poly1305 from `ring`.
//!
//! The protocol fixes the cipher, not its implementation. Core's default
//! (RustCrypto) is portable and runs on the firmware; `ring`'s assembly uses
//! the CPU's vector units and seals about 1.6 times as fast here
//! (`docs/BENCHMARKS.md`, "Channel cipher"). A restore moves every byte
//! through the cipher twice on the same two cores (the buddy seals, the
//! client opens), so this is most of what the channel costs. The bytes on
//! the wire are identical: the tests below run a `ring` end against a core
//! end, both ways.

use clatter::bytearray::SensitiveByteArray;
use clatter::error::{CipherError, CipherResult};
use clatter::traits::{Cipher, CryptoComponent};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

/// The handshake the appliance runs (client and buddy).
pub type Handshake = pastiche_core::channel::Handshake<RingChaChaPoly>;
/// The established channel the appliance runs.
pub type Channel = pastiche_core::channel::Channel<RingChaChaPoly>;

/// ChaCha20-Poly1305 as Noise uses it (RFC 8439, nonce = four zero bytes
/// then the 64-bit counter little-endian), computed by `ring`.
#[derive(Clone)]
pub struct RingChaChaPoly;

const TAG_LEN: usize = 16;

impl CryptoComponent for RingChaChaPoly {
    /// The Noise name of the cipher, not of the implementation: it is hashed
    /// into the handshake and must match the peer's.
    fn name() -> &'static str {
        "ChaChaPoly"
    }
}

fn key(k: &SensitiveByteArray<[u8; 32]>) -> CipherResult<LessSafeKey> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, &k[..]).map_err(|_| CipherError::Encrypt)?;
    Ok(LessSafeKey::new(key))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Cipher for RingChaChaPoly {
    type Key = SensitiveByteArray<[u8; 32]>;

    fn tag_len() -> usize {
        TAG_LEN
    }

    fn encrypt(k: &Self::Key, nonce: u64, ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> CipherResult<()> {
        let out = out.get_mut(..plaintext.len() + TAG_LEN).ok_or(CipherError::Encrypt)?;
        out[..plaintext.len()].copy_from_slice(plaintext);
        Self::encrypt_in_place(k, nonce, ad, out, plaintext.len()).map(|_| ())
    }

    fn encrypt_in_place(
        k: &Self::Key,
        counter: u64,
        ad: &[u8],
        in_out: &mut [u8],
        plaintext_len: usize,
    ) -> CipherResult<usize> {
        let len = plaintext_len + TAG_LEN;
        let buf = in_out.get_mut(..len).ok_or(CipherError::Encrypt)?;
        let (text, tag_out) = buf.split_at_mut(plaintext_len);
        let tag = key(k)?
            .seal_in_place_separate_tag(nonce(counter), Aad::from(ad), text)
            .map_err(|_| CipherError::Encrypt)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(len)
    }

    fn decrypt(k: &Self::Key, nonce: u64, ad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> CipherResult<()> {
        let text_len = ciphertext.len().checked_sub(TAG_LEN).ok_or(CipherError::Decrypt)?;
        let out = out.get_mut(..text_len).ok_or(CipherError::Decrypt)?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&ciphertext[text_len..]);
        out.copy_from_slice(&ciphertext[..text_len]);
        open(k, nonce, ad, out, tag)
    }

    fn decrypt_in_place(
        k: &Self::Key,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        ciphertext_len: usize,
    ) -> CipherResult<usize> {
        let text_len = ciphertext_len.checked_sub(TAG_LEN).ok_or(CipherError::Decrypt)?;
        let buf = in_out.get_mut(..ciphertext_len).ok_or(CipherError::Decrypt)?;
        let (text, tag_in) = buf.split_at_mut(text_len);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag_in);
        open(k, nonce, ad, text, tag)?;
        Ok(text_len)
    }
}

/// Authenticates and decrypts `text` in place under its separate tag.
fn open(
    k: &SensitiveByteArray<[u8; 32]>,
    counter: u64,
    ad: &[u8],
    text: &mut [u8],
    tag: [u8; TAG_LEN],
) -> CipherResult<()> {
    key(k)
        .map_err(|_| CipherError::Decrypt)?
        .open_in_place_separate_tag(nonce(counter), Aad::from(ad), Tag::from(tag), text, 0..)
        .map(|_| ())
        .map_err(|_| CipherError::Decrypt)
}

#[cfg(test)]
mod tests;
