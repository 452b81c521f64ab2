//! Bridges a persistent TAP device and a QEMU `-netdev socket,udp=...`
//! link (raw Ethernet frames, one per UDP datagram), dropping a percentage
//! of the frames in each direction: packet loss in user space, for kernels
//! without the `netem` qdisc.
//!
//! ```text
//! netbridge --tap TAP --local ADDR:PORT --peer ADDR:PORT --loss PCT [--seed N] [--stats FILE]
//! ```
//!
//! `--local` is the UDP address the bridge listens on (QEMU's `udp=`),
//! `--peer` is QEMU's `localaddr=`. The TAP device must exist already
//! (`ip tuntap add dev TAP mode tap`). The seed (random if not given) is
//! printed; with `--stats`, the counts are rewritten to FILE
//! every 100 ms as `tap_to_udp=N tap_to_udp_dropped=N udp_to_tap=N udp_to_tap_dropped=N`.

#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tun_tap::{Iface, Mode};

/// Attaches to the existing TAP device `name` (raw Ethernet frames, no
/// packet-information header).
fn open_tap(name: &str) -> Result<Arc<Iface>> {
    if name.is_empty() || name.len() >= 16 {
        bail!("bad TAP name {name:?}");
    }
    let iface = Iface::without_packet_info(name, Mode::Tap).with_context(|| format!("attach to TAP {name}"))?;
    Ok(Arc::new(iface))
}

/// xorshift64*: a seeded, reproducible coin for each direction.
struct Rng(u64);

impl Rng {
    fn below_percent(&mut self, pct: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (r as f64 / (1u64 << 53) as f64) * 100.0 < pct
    }
}

#[derive(Default)]
struct Counts {
    tap_to_udp: AtomicU64,
    tap_to_udp_dropped: AtomicU64,
    udp_to_tap: AtomicU64,
    udp_to_tap_dropped: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "tap_to_udp={} tap_to_udp_dropped={} udp_to_tap={} udp_to_tap_dropped={}",
            self.tap_to_udp.load(Relaxed),
            self.tap_to_udp_dropped.load(Relaxed),
            self.udp_to_tap.load(Relaxed),
            self.udp_to_tap_dropped.load(Relaxed),
        )
    }
}

struct Args {
    tap: String,
    local: SocketAddr,
    peer: SocketAddr,
    loss: f64,
    seed: u64,
    stats: Option<String>,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: netbridge --tap TAP --local ADDR:PORT --peer ADDR:PORT --loss PCT [--seed N] [--stats FILE]";
    let (mut tap, mut local, mut peer, mut loss, mut seed, mut stats) = (None, None, None, 0.0, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--tap" => tap = Some(v),
            "--local" => local = Some(v.parse().context("--local")?),
            "--peer" => peer = Some(v.parse().context("--peer")?),
            "--loss" => loss = v.parse().context("--loss")?,
            "--seed" => seed = Some(v.parse().context("--seed")?),
            "--stats" => stats = Some(v),
            _ => bail!("unknown flag {flag}; {usage}"),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    Ok(Args { tap: tap.context(usage)?, local: local.context(usage)?, peer: peer.context(usage)?, loss, seed, stats })
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let tap = open_tap(&a.tap)?;
    let udp = UdpSocket::bind(a.local).with_context(|| format!("bind {}", a.local))?;
    udp.connect(a.peer).with_context(|| format!("connect {}", a.peer))?;
    println!("netbridge: tap={} local={} peer={} loss={}% seed={}", a.tap, a.local, a.peer, a.loss, a.seed);
    let counts = Arc::new(Counts::default());

    let (tap_r, udp_w, c, loss) = (tap.clone(), udp.try_clone()?, counts.clone(), a.loss);
    let mut rng = Rng(a.seed | 1);
    std::thread::spawn(move || -> Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = tap_r.recv(&mut buf).context("read TAP")?;
            c.tap_to_udp.fetch_add(1, Relaxed);
            if rng.below_percent(loss) {
                c.tap_to_udp_dropped.fetch_add(1, Relaxed);
                continue;
            }
            // QEMU may not be listening yet: a lost frame, like any other.
            let _ = udp_w.send(&buf[..n]);
        }
    });

    let (tap_w, c) = (tap, counts.clone());
    let mut rng = Rng((a.seed ^ 0x9e37_79b9_7f4a_7c15) | 1);
    std::thread::spawn(move || -> Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match udp.recv(&mut buf) {
                Ok(n) => n,
                // ECONNREFUSED from an earlier send to a port not yet bound.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e).context("recv UDP"),
            };
            c.udp_to_tap.fetch_add(1, Relaxed);
            if rng.below_percent(loss) {
                c.udp_to_tap_dropped.fetch_add(1, Relaxed);
                continue;
            }
            let _ = tap_w.send(&buf[..n]);
        }
    });

    let mut last = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let line = counts.line();
        if line != last {
            if let Some(path) = &a.stats {
                let tmp = format!("{path}.tmp");
                std::fs::write(&tmp, format!("{line}\n")).and_then(|()| std::fs::rename(&tmp, path))?;
            }
            last = line;
        }
    }
}
