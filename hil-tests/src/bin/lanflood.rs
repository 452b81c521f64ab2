//! Floods a LAN with forged Pastiche datagrams, for the LAN test: beacons
//! with made-up keys, overlay messages of every kind with random bodies,
//! and well-formed pairing requests from made-up boxes, sent from many
//! source ports to each target (a broadcast address works too).
//!
//! ```text
//! lanflood --seconds S --sockets N ADDR:PORT...
//! ```
//!
//! Prints the number of datagrams sent.

#![forbid(unsafe_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seconds = 5u64;
    let mut sockets = 32usize;
    let mut targets: Vec<SocketAddr> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().ok_or_else(|| anyhow::anyhow!("--seconds N"))?.parse()?,
            "--sockets" => sockets = it.next().ok_or_else(|| anyhow::anyhow!("--sockets N"))?.parse()?,
            t => targets.push(t.parse()?),
        }
    }
    anyhow::ensure!(!targets.is_empty(), "usage: lanflood --seconds S --sockets N ADDR:PORT...");
    let socks: Vec<UdpSocket> = (0..sockets)
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_broadcast(true)?;
            Ok(s)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut rand = move || rng.next_u64();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut round = 0usize;
    while Instant::now() < end {
        round += 1;
        let sock = &socks[round % socks.len()];
        let mut key = [0u8; 32];
        key.iter_mut().for_each(|b| *b = rand() as u8);
        let datagram: Vec<u8> = match round % 4 {
            // A beacon of a box that does not exist.
            0 => [&b"PSTB\x01\x02\x1d\x2b"[..], &key].concat(),
            // An overlay message of any kind, random body.
            1 => {
                let mut d = vec![96 + (rand() % 9) as u8, (rand() % 2) as u8];
                d.extend((0..16 + rand() % 200).map(|_| rand() as u8));
                d
            }
            // A well-formed pairing request from a made-up box.
            2 => {
                let mut d = vec![105, 0x01];
                d.extend(key);
                d.extend([0u8; 32]);
                d.extend((0..32).map(|_| rand() as u8));
                d.extend([0xab, 0x3a, 0x05]);
                d.extend(b"forge");
                d.push(0);
                d
            }
            // Pure noise, any length.
            _ => (0..rand() % 1500).map(|_| rand() as u8).collect(),
        };
        for t in &targets {
            if sock.send_to(&datagram, t).is_ok() {
                sent += 1;
            }
        }
        if round.is_multiple_of(64) {
            // Keep the kernel's queues from only dropping: a burst, then a breath.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    println!("{sent}");
    Ok(())
}
