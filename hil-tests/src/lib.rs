//! Hardware-in-the-loop and multi-process tests.
