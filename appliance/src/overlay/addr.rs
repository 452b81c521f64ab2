//! Socket addresses as the overlay's wire carries them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};

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

/// The address other boxes reach this one at, for the overlay nodes to
/// name themselves by: `local` when the socket is bound to an address;
/// when it is bound to all of them (`0.0.0.0`, the default), the address
/// of the interface that datagrams to the first of `toward` (the beacon's
/// destinations) leave by. A node naming itself `0.0.0.0` would have every
/// answer to its routed messages (a probe's coverage reports) sent to the
/// answering box itself. A UDP connect only picks the route: nothing is
/// sent. `local` as it is when no route is found.
pub fn reachable(local: SocketAddr, toward: &[SocketAddr]) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let via = |to: &SocketAddr| -> Option<IpAddr> {
        let any: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let s = UdpSocket::bind(any).ok()?;
        s.set_broadcast(true).ok()?;
        s.connect(to).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    };
    toward.iter().find_map(via).map_or(local, |ip| SocketAddr::new(ip, local.port()))
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

    #[test]
    fn a_box_bound_to_every_address_names_itself_by_the_one_its_datagrams_leave_by() {
        let bound: SocketAddr = "127.0.0.1:7468".parse().unwrap();
        assert_eq!(reachable(bound, &[]), bound, "an address bound is kept");
        let any: SocketAddr = "0.0.0.0:7468".parse().unwrap();
        let toward: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(reachable(any, &[toward]), "127.0.0.1:7468".parse::<SocketAddr>().unwrap());
        assert_eq!(reachable(any, &[]), any, "no route known: as it was");
    }
}
