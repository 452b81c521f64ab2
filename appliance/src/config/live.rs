//! The configuration a running daemon uses now: read by every part at the
//! moment it needs it, replaced whole by a reload (SIGHUP or `pastiche
//! config reload`), so a part never sees half of an old file and half of a
//! new one.

use std::sync::{Arc, RwLock};

use super::Config;

/// The current configuration, shared by the daemon's parts.
#[derive(Debug)]
pub struct LiveConfig {
    current: RwLock<Arc<Config>>,
}

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig { current: RwLock::new(Arc::new(config)) }
    }

    /// The configuration now.
    pub fn get(&self) -> Arc<Config> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces it.
    pub fn set(&self, config: Config) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}
