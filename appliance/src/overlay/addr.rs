//! Socket addresses as the overlay's wire carries them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use pastiche_core::wire::overlay::PeerAddr;

/// A socket address as a [`PeerAddr`] (IPv4 as IPv4-mapped IPv6).
pub fn to_peer(a: SocketAddr) -> PeerAddr {
    match a.ip() {
        IpAddr::V4(v4) => PeerAddr::v4(v4.octets(), a.port()),
        IpAddr::V6(v6) => PeerAddr { ip: v6.octets(), port: a.port() },
    }
}

/// A [`PeerAddr`] as a socket address (IPv4-mapped back to IPv4).
pub fn to_socket(p: &PeerAddr) -> SocketAddr {
    let v6 = Ipv6Addr::from(p.ip);
    match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(IpAddr::V4(v4), p.port),
        None => SocketAddr::new(IpAddr::V6(v6), p.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["10.0.0.1:7468", "[fe80::1]:9", "[::1]:1"] {
            let s: SocketAddr = a.parse().unwrap();
            assert_eq!(to_socket(&to_peer(s)), s);
        }
    }
}
