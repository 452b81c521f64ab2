//! Helpers shared by several test files.

#![allow(dead_code)]

pub mod netns;
pub mod tap;
