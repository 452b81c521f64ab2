//! Field types with a fixed or checked length: [`Fixed`] arrays (encoded raw,
//! with no length prefix) and packed [`IdList`]s of 20-byte names.

use core::fmt;
use core::marker::PhantomData;
use core::slice::ChunksExact;

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use super::{WireError, ID_LEN, MAX_IDS_PER_MESSAGE};
use crate::audit::AuditNonce;
use crate::identity::{NodeId, PublicKey, Signature};
use crate::seal::ChunkId;

/// `N` raw bytes, encoded by postcard as a tuple of `N` `u8`: the bytes
/// themselves, with no length prefix. Serde's own arrays stop at 32
/// elements; this works for 64-byte signatures too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fixed<const N: usize>(pub [u8; N]);

impl<const N: usize> Serialize for Fixed<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for b in &self.0 {
            tuple.serialize_element(b)?;
        }
        tuple.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for Fixed<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
            type Value = Fixed<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fixed<N>, A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(Fixed(out))
            }
        }
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}

/// A type that is exactly `N` bytes on the wire, for `#[serde(with = "as_fixed")]`.
pub(crate) trait FixedBytes<const N: usize>: Sized {
    /// The bytes.
    fn fixed(&self) -> &[u8; N];
    /// The value from its bytes.
    fn from_fixed(bytes: [u8; N]) -> Self;
}

impl<const N: usize> FixedBytes<N> for [u8; N] {
    fn fixed(&self) -> &[u8; N] {
        self
    }
    fn from_fixed(bytes: [u8; N]) -> Self {
        bytes
    }
}

macro_rules! fixed_newtype {
    ($($name:ident),*) => {$(
        impl FixedBytes<{ $name::LEN }> for $name {
            fn fixed(&self) -> &[u8; $name::LEN] {
                &self.0
            }
            fn from_fixed(bytes: [u8; $name::LEN]) -> Self {
                $name(bytes)
            }
        }
    )*};
}
fixed_newtype!(PublicKey, Signature, NodeId, ChunkId, AuditNonce);

/// Serde adapter: encodes any [`FixedBytes`] field as a [`Fixed`] array.
pub(crate) mod as_fixed {
    use super::{Fixed, FixedBytes};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: FixedBytes<N>, const N: usize>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        Fixed(*v.fixed()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: FixedBytes<N>, const N: usize>(d: D) -> Result<T, D::Error> {
        Fixed::<N>::deserialize(d).map(|f| T::from_fixed(f.0))
    }
}

/// Serde for borrowed byte strings as one bytes value. postcard writes it
/// as a varint length and the raw bytes, exactly the encoding of a sequence
/// of `u8`, but in one copy instead of one call per byte (which made the
/// canonical-encoding check of a 64 KiB chunk cost more than hashing it).
pub mod byte_str {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the bytes as one value.
    pub fn serialize<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Borrows the bytes from the input.
    pub fn deserialize<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<&'a [u8], D::Error> {
        <&'a [u8]>::deserialize(d)
    }
}

/// A packed list of 20-byte names (chunkIds): their concatenation, encoded
/// as one byte string. A list taken from a decoded [`Message`](super::Message)
/// or built with [`IdList::new`] holds a whole number of ids, at most
/// [`MAX_IDS_PER_MESSAGE`].
#[derive(Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdList<'a>(#[serde(with = "byte_str", borrow)] &'a [u8]);

impl<'a> IdList<'a> {
    /// The list packed in `bytes`, checked: its length must be a multiple of
    /// 20 and at most `20 * MAX_IDS_PER_MESSAGE`.
    pub fn new(bytes: &'a [u8]) -> Result<IdList<'a>, WireError> {
        let list = IdList(bytes);
        list.check()?;
        Ok(list)
    }

    pub(crate) fn check(&self) -> Result<(), WireError> {
        let len = self.0.len();
        if !len.is_multiple_of(ID_LEN) || len / ID_LEN > MAX_IDS_PER_MESSAGE {
            return Err(WireError::BadLength { field: "ids", len });
        }
        Ok(())
    }

    /// Packs `ids` into `out` and returns the list over it;
    /// [`WireError::BufferTooSmall`] if `out` is short, `BadLength` if there
    /// are too many ids.
    pub fn pack<'o>(ids: impl IntoIterator<Item = [u8; ID_LEN]>, out: &'o mut [u8]) -> Result<IdList<'o>, WireError> {
        let mut len = 0;
        for id in ids {
            let slot = out.get_mut(len..len + ID_LEN).ok_or(WireError::BufferTooSmall)?;
            slot.copy_from_slice(&id);
            len += ID_LEN;
        }
        IdList::new(&out[..len])
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.len() / ID_LEN
    }

    /// True when the list has no id.
    pub fn is_empty(&self) -> bool {
        self.0.len() < ID_LEN
    }

    /// The packed bytes, as they are signed and sent.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The `i`-th id.
    pub fn get(&self, i: usize) -> Option<[u8; ID_LEN]> {
        let bytes = self.0.get(i.checked_mul(ID_LEN)?..i.checked_add(1)?.checked_mul(ID_LEN)?)?;
        bytes.try_into().ok()
    }

    /// The ids in order.
    pub fn iter(&self) -> Ids<'a> {
        Ids { chunks: self.0.chunks_exact(ID_LEN), _list: PhantomData }
    }
}

impl fmt::Debug for IdList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(ChunkId)).finish()
    }
}

impl<'a> IntoIterator for IdList<'a> {
    type Item = [u8; ID_LEN];
    type IntoIter = Ids<'a>;
    fn into_iter(self) -> Ids<'a> {
        self.iter()
    }
}

/// Iterator over the ids of an [`IdList`].
#[derive(Clone, Debug)]
pub struct Ids<'a> {
    chunks: ChunksExact<'a, u8>,
    _list: PhantomData<IdList<'a>>,
}

impl Iterator for Ids<'_> {
    type Item = [u8; ID_LEN];
    fn next(&mut self) -> Option<[u8; ID_LEN]> {
        self.chunks.next().and_then(|c| c.try_into().ok())
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Ids<'_> {}
