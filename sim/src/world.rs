//! The synthetic world: regions, sites (LANs) and boxes with an install mix.
//!
//! Geography: 10 regions on a 12,000 x 6,000 km map; sites within 400 km of
//! their region's centre; about 8 boxes per site. One-way latency: 0.15 ms
//! inside a site, otherwise 1 ms plus 10 us per km (so another region is
//! 20-120 ms away round trip, a site nearby 2-10 ms).
//!
//! Data: a box holds one operating-system image (half of its data), eight
//! applications (three tenths) and its own files (one fifth). Six common
//! systems cover 92% of boxes; the other 8% run one of many rare systems,
//! each derived from a common one (40% of its image is the parent's).
//! Applications follow a Zipf popularity over 300 titles. A chunkId is the
//! component number (4 bytes) and the chunk's index in it (4 bytes).

use rand::rngs::StdRng;
use rand::Rng;

use pastiche_core::seal::ChunkId;

/// Chunks in each component (only proportions matter).
pub const COMPONENT_CHUNKS: u32 = 100_000;
/// Share of a rare system's image taken from its parent.
pub const SHARED_WITH_PARENT: f64 = 0.4;
/// Applications per box.
pub const APPS: usize = 8;
/// Common systems and their shares of boxes.
pub const COMMON_SHARES: [f64; 6] = [0.30, 0.22, 0.15, 0.10, 0.08, 0.07];
const APP_TITLES: u32 = 300;
const APP_BASE: u32 = 1_000;
const USER_BASE: u32 = 10_000_000;
const RARE_BASE: u32 = 100;

/// What one box holds.
#[derive(Clone, Debug)]
pub struct Install {
    /// Its system image's component.
    pub os: u32,
    /// For a rare system, the common one it derives from.
    pub parent: Option<u32>,
    /// Its applications' components.
    pub apps: [u32; APPS],
    /// Its own files' component.
    pub user: u32,
}

impl Install {
    /// Whether this box runs a rare system.
    pub fn is_rare(&self) -> bool {
        self.parent.is_some()
    }

    /// Whether the box holds the chunk.
    pub fn holds(&self, id: &ChunkId) -> bool {
        let component = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
        let index = u32::from_be_bytes([id.0[4], id.0[5], id.0[6], id.0[7]]);
        component == self.os
            || component == self.user
            || self.apps.contains(&component)
            || (Some(component) == self.parent && f64::from(index) < SHARED_WITH_PARENT * f64::from(COMPONENT_CHUNKS))
    }

    /// A uniformly random chunk of the box's data (system 1/2, apps 3/10,
    /// own files 1/5).
    pub fn random_chunk(&self, rng: &mut StdRng) -> ChunkId {
        let r: f64 = rng.gen();
        let mut index = rng.gen_range(0..COMPONENT_CHUNKS);
        let component = if r < 0.5 {
            match self.parent {
                Some(p) if rng.gen_bool(SHARED_WITH_PARENT) => {
                    index = rng.gen_range(0..(SHARED_WITH_PARENT * f64::from(COMPONENT_CHUNKS)) as u32);
                    p
                }
                _ => self.os,
            }
        } else if r < 0.8 {
            self.apps[rng.gen_range(0..APPS)]
        } else {
            self.user
        };
        chunk_id(component, index)
    }
}

/// The chunkId of chunk `index` of `component`.
pub fn chunk_id(component: u32, index: u32) -> ChunkId {
    let mut id = [0u8; 20];
    id[..4].copy_from_slice(&component.to_be_bytes());
    id[4..8].copy_from_slice(&index.to_be_bytes());
    id[8..12].copy_from_slice(&component.wrapping_mul(0x9e37_79b9).to_be_bytes());
    ChunkId(id)
}

/// Where a box sits.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// Its region.
    pub region: u16,
    /// Its site (LAN).
    pub site: u32,
    /// Map position in km.
    pub x: f32,
    /// Map position in km.
    pub y: f32,
}

/// One-way latency in microseconds between two places.
pub fn latency_us(a: &Place, b: &Place) -> u64 {
    if a.site == b.site {
        return 150;
    }
    let (dx, dy) = (f64::from(a.x - b.x), f64::from(a.y - b.y));
    1_000 + ((dx * dx + dy * dy).sqrt() * 10.0) as u64
}

/// Generates `n` boxes: places and installs.
pub fn generate(n: usize, rng: &mut StdRng) -> (Vec<Place>, Vec<Install>) {
    let regions: Vec<(f32, f32)> =
        (0..10).map(|_| (rng.gen_range(0.0..12_000.0), rng.gen_range(0.0..6_000.0))).collect();
    let sites = (n / 8).max(1);
    let site_at: Vec<(u16, f32, f32)> = (0..sites)
        .map(|_| {
            let r = rng.gen_range(0..regions.len());
            let (angle, dist): (f32, f32) = (rng.gen_range(0.0..std::f32::consts::TAU), rng.gen_range(0.0..400.0));
            (r as u16, regions[r].0 + dist * angle.cos(), regions[r].1 + dist * angle.sin())
        })
        .collect();
    let places = (0..n)
        .map(|_| {
            let s = rng.gen_range(0..sites);
            let (region, x, y) = site_at[s];
            Place { region, site: s as u32, x, y }
        })
        .collect();
    // Rare systems: about one per 1,000 boxes (at least 8), about 80 boxes each at 100,000.
    let rare_systems = (n / 1000).max(8) as u32;
    let zipf: Vec<f64> = (1..=APP_TITLES).map(|r| 1.0 / f64::from(r)).collect();
    let zipf_total: f64 = zipf.iter().sum();
    let installs = (0..n)
        .map(|i| {
            let r: f64 = rng.gen();
            let mut acc = 0.0;
            let mut os = None;
            for (k, share) in COMMON_SHARES.iter().enumerate() {
                acc += share;
                if r < acc {
                    os = Some(k as u32);
                    break;
                }
            }
            let (os, parent) = match os {
                Some(k) => (k, None),
                None => {
                    let rare = rng.gen_range(0..rare_systems);
                    (RARE_BASE + rare, Some(rare % COMMON_SHARES.len() as u32))
                }
            };
            let mut apps = [0u32; APPS];
            for slot in apps.iter_mut() {
                let mut pick: f64 = rng.gen::<f64>() * zipf_total;
                let mut title = 0;
                for (t, w) in zipf.iter().enumerate() {
                    if pick < *w {
                        title = t as u32;
                        break;
                    }
                    pick -= w;
                }
                *slot = APP_BASE + title;
            }
            Install { os, parent, apps, user: USER_BASE + i as u32 }
        })
        .collect();
    (places, installs)
}
