//! Parallel chunk-and-seal pipeline.
