//! Command implementations.
