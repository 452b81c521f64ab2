//! Lowercase hexadecimal for fixed-size identifiers, without allocation.

use core::fmt;

/// Why a hex string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HexError {
    /// The string does not have exactly twice as many digits as bytes.
    WrongLength {
        /// Digits expected.
        expected: usize,
        /// Digits given.
        found: usize,
    },
    /// A character outside `0-9a-fA-F`.
    BadDigit,
}

impl core::error::Error for HexError {}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::WrongLength { expected, found } => {
                write!(f, "expected {expected} hex digits, found {found}")
            }
            HexError::BadDigit => f.write_str("not a hex digit"),
        }
    }
}

/// Writes `bytes` as lowercase hex.
pub fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pair = [0u8; 2];
    for &b in bytes {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 15) as usize];
        f.write_str(core::str::from_utf8(&pair).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// Parses exactly `N` bytes from `2 * N` hex digits (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return Err(HexError::WrongLength { expected: 2 * N, found: digits.len() });
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::BadDigit),
    }
}

/// Declares a fixed-size identifier newtype with hex `Display`/`Debug`/`FromStr`.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                $crate::hex::write_hex(f, &self.0)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl core::str::FromStr for $name {
            type Err = $crate::hex::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::hex::parse_hex::<$len>(s).map($name)
            }
        }
    };
}
pub(crate) use hex_id;
