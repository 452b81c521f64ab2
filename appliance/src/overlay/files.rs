//! What the overlay thread shows to the command line and the status page,
//! as JSON files in `DATA/lan/` (written atomically by the daemon, read by
//! anyone): pairing requests received and sent, and how each buddy was
//! found. The owner's answers to requests come back as files in
//! `DATA/lan/decisions/`, written by `pastiche buddy accept|refuse`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::repo::write_atomically;

/// The folder in the data directory.
pub const LAN_DIR: &str = "lan";

/// A request another box sent to this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingView {
    /// What `buddy accept` takes: 8 hex digits of the code's digest.
    pub id: String,
    /// The name the asking box gave.
    pub name: String,
    /// Its public key (hex).
    pub client_key: String,
    /// Where the request came from (its overlay socket).
    pub from: String,
    /// The six-digit confirmation code, shown on both boxes.
    pub confirm: String,
    /// Whether it proved the same pairing secret.
    pub secret_ok: bool,
    /// `pending`, `accepted` or `refused`.
    pub status: String,
    /// The code's digest (hex): the name its invitation is filed under.
    pub digest: String,
    /// Unix seconds it was first received.
    pub received: u64,
}

/// A request this box sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingView {
    /// The asked box's overlay socket.
    pub to: String,
    /// Its key, once known (hex).
    pub buddy_key: Option<String>,
    /// The confirmation code, once the key is known.
    pub confirm: Option<String>,
    /// `asking`, `accepted`, `paired`, `refused` or `gave up`.
    pub status: String,
    /// How the box was found: `lan`, `overlay` or `seed`.
    pub found: String,
    /// Unix seconds it was first sent.
    pub sent: u64,
}

/// How a buddy paired by the daemon was found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoundBuddy {
    /// `lan`, `overlay` or `seed`.
    pub found: String,
    /// Share of this box's fingerprint it held when chosen (0 to 1).
    pub coverage: f64,
    /// Round-trip time in milliseconds, when measured.
    pub rtt_ms: Option<f64>,
    /// Its key (hex).
    pub key: String,
    /// Unix seconds it was paired.
    pub paired: u64,
}

/// A buddy's coverage and round-trip time as the daemon last measured them
/// (it probes every buddy now and then, `service::measuring`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Share of this box's fingerprint it held (0 to 1).
    pub coverage: f64,
    /// Round-trip time in milliseconds, when known.
    pub rtt_ms: Option<f64>,
    /// Unix seconds of the measurement.
    pub at: u64,
}

/// The folder of `data`'s LAN files.
pub fn dir(data: &Path) -> PathBuf {
    data.join(LAN_DIR)
}

fn read<T: DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is damaged", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write<T: Serialize>(data: &Path, name: &str, value: &T) -> Result<()> {
    std::fs::create_dir_all(dir(data))?;
    write_atomically(&dir(data).join(name), &serde_json::to_vec_pretty(value)?)
}

/// Reads `DATA/lan/NAME` (the default value when it does not exist).
pub fn read_file<T: DeserializeOwned + Default>(data: &Path, name: &str) -> Result<T> {
    read(&dir(data).join(name))
}

/// Writes `DATA/lan/NAME` atomically.
pub fn write_file<T: Serialize>(data: &Path, name: &str, value: &T) -> Result<()> {
    write(data, name, value)
}

/// Requests received.
pub fn incoming(data: &Path) -> Result<Vec<IncomingView>> {
    read(&dir(data).join("requests.json"))
}

/// Saves the requests received.
pub fn save_incoming(data: &Path, list: &[IncomingView]) -> Result<()> {
    write(data, "requests.json", &list)
}

/// Requests sent.
pub fn outgoing(data: &Path) -> Result<Vec<OutgoingView>> {
    read(&dir(data).join("outgoing.json"))
}

/// Saves the requests sent.
pub fn save_outgoing(data: &Path, list: &[OutgoingView]) -> Result<()> {
    write(data, "outgoing.json", &list)
}

/// Buddies the daemon paired with, by buddy address (`IP:PORT`).
pub fn found(data: &Path) -> Result<BTreeMap<String, FoundBuddy>> {
    read(&dir(data).join("found.json"))
}

/// Saves how buddies were found.
pub fn save_found(data: &Path, map: &BTreeMap<String, FoundBuddy>) -> Result<()> {
    write(data, "found.json", map)
}

/// Each buddy's last measurement, by buddy address (`IP:PORT`).
pub fn measured(data: &Path) -> Result<BTreeMap<String, Measured>> {
    read(&dir(data).join("measured.json"))
}

/// Saves the buddies' last measurements.
pub fn save_measured(data: &Path, map: &BTreeMap<String, Measured>) -> Result<()> {
    write(data, "measured.json", map)
}

/// How long ago `at` was, for people: `40 s`, `3 min`, `2 h`, `5 days`.
pub fn ago(at: u64, now: u64) -> String {
    let s = now.saturating_sub(at);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// The owner's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `buddy accept`.
    Accept,
    /// `buddy refuse`.
    Refuse,
}

/// Records the owner's answer to request `id` (for the daemon to send).
pub fn decide(data: &Path, id: &str, decision: Decision) -> Result<()> {
    let d = dir(data).join("decisions");
    std::fs::create_dir_all(&d)?;
    let text = match decision {
        Decision::Accept => "accept",
        Decision::Refuse => "refuse",
    };
    write_atomically(&d.join(id), text.as_bytes())
}

/// The owner's answer to request `id`, if any.
pub fn decision(data: &Path, id: &str) -> Option<Decision> {
    match std::fs::read_to_string(dir(data).join("decisions").join(id)).ok()?.trim() {
        "accept" => Some(Decision::Accept),
        "refuse" => Some(Decision::Refuse),
        _ => None,
    }
}

/// Forgets the answer to request `id`.
pub fn forget_decision(data: &Path, id: &str) {
    let _ = std::fs::remove_file(dir(data).join("decisions").join(id));
}

/// A confirmation code as people read it: `123 456`.
pub fn show_confirm(code: u32) -> String {
    format!("{:03} {:03}", code / 1000, code % 1000)
}

/// What the overlay thread knows, for `pastiche buddy requests` and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayView {
    /// LAN neighbours heard (their overlay sockets).
    pub neighbours: Vec<String>,
    /// Nodes held in the network overlay's state.
    pub network_peers: usize,
    /// Nodes held in the coverage overlay's state.
    pub coverage_peers: usize,
    /// chunkIds in this box's fingerprint.
    pub fingerprint: usize,
    /// Candidates the current discovery round found.
    pub candidates: usize,
    /// What the overlay socket carried since the daemon started.
    #[serde(default)]
    pub traffic: super::traffic::Traffic,
}

/// What the overlay thread knows.
pub fn neighbours(data: &Path) -> Result<OverlayView> {
    read(&dir(data).join("overlay.json"))
}

/// Saves what the overlay thread knows.
pub fn save_neighbours(data: &Path, view: &OverlayView) -> Result<()> {
    write(data, "overlay.json", view)
}

/// The requests waiting for the owner, one line each, for the status page:
/// `ID NAME from ADDR, confirmation 123 456`.
pub fn pending_summaries(data: &Path) -> Vec<String> {
    incoming(data)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status == "pending")
        .map(|r| format!("{} {} from {}, confirmation {}", r.id, r.name, r.from, r.confirm))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(100, 100), "0 s");
        assert_eq!(ago(100, 140), "40 s");
        assert_eq!(ago(0, 600), "10 min");
        assert_eq!(ago(0, 3 * 3600), "3 h");
        assert_eq!(ago(0, 5 * 86_400), "5 days");
        assert_eq!(ago(500, 100), "0 s", "a clock that went back");
    }
}
