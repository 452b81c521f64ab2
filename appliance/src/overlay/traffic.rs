//! The overlay socket with counters of what it carries (beacons, both
//! overlays, pairing), shown in `DATA/lan/overlay.json` and measured by
//! `bench/lan.sh` (`docs/BENCHMARKS.md`).

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Datagrams and bytes (UDP payloads) sent and received since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Datagrams sent.
    pub sent_datagrams: u64,
    /// Payload bytes sent.
    pub sent_bytes: u64,
    /// Datagrams received (whatever they held).
    pub received_datagrams: u64,
    /// Payload bytes received.
    pub received_bytes: u64,
}

/// A UDP socket that counts. Everything but sending and receiving goes to
/// the socket itself.
pub struct CountingSocket {
    socket: UdpSocket,
    counts: Cell<Traffic>,
}

impl CountingSocket {
    /// Wraps `socket`.
    pub fn new(socket: UdpSocket) -> CountingSocket {
        CountingSocket { socket, counts: Cell::new(Traffic::default()) }
    }

    /// Sends one datagram, counted when it left.
    pub fn send_to(&self, buf: &[u8], to: impl ToSocketAddrs) -> io::Result<usize> {
        let n = self.socket.send_to(buf, to)?;
        let mut c = self.counts.get();
        c.sent_datagrams += 1;
        c.sent_bytes += n as u64;
        self.counts.set(c);
        Ok(n)
    }

    /// Receives one datagram, counted.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf)?;
        let mut c = self.counts.get();
        c.received_datagrams += 1;
        c.received_bytes += n as u64;
        self.counts.set(c);
        Ok((n, from))
    }

    /// The counts so far.
    pub fn traffic(&self) -> Traffic {
        self.counts.get()
    }
}

impl Deref for CountingSocket {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        &self.socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_are_counted() {
        let a = CountingSocket::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let b = CountingSocket::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        a.send_to(&[1; 40], b.local_addr().unwrap()).unwrap();
        a.send_to(&[2; 10], b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        b.recv_from(&mut buf).unwrap();
        assert_eq!(a.traffic(), Traffic { sent_datagrams: 2, sent_bytes: 50, ..Traffic::default() });
        assert_eq!(b.traffic(), Traffic { received_datagrams: 1, received_bytes: 40, ..Traffic::default() });
    }
}
