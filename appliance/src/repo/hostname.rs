//! The machine's fully-qualified name, which fixes its nodeId (SPEC §3).

/// The fully-qualified host name: the canonical name of the host name when
/// the resolver knows one, else the plain host name.
pub fn local_fqdn() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    canonical_name(&host).unwrap_or(host)
}

fn canonical_name(host: &str) -> Option<String> {
    let hints = dns_lookup::AddrInfoHints { flags: libc::AI_CANONNAME, address: 0, socktype: 0, protocol: 0 };
    let mut infos = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).ok()?;
    infos.find_map(|i| i.ok().and_then(|i| i.canonname)).filter(|n| !n.is_empty())
}
