//! The chunk store (see docs/STORE.md).
