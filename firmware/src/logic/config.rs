//! The boot configuration: `key=value` words from the semihosting command
//! line (QEMU's `-append`), e.g.
//! `disk=/tmp/buddy.img ip=10.0.2.15/24 gw=10.0.2.2 dhcp=on quota_mib=1024`.
//! Unknown words are ignored (and logged by the caller); bad values keep the
//! default.

/// An IPv4 address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: [u8; 4],
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

/// The firmware's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    /// Host path of the disk image (semihosting); `None`: a RAM disk.
    pub disk: Option<&'a str>,
    /// Host path the defmt log is written to; `None`: semihosting stdout.
    pub log: Option<&'a str>,
    /// Try DHCP first.
    pub dhcp: bool,
    /// Milliseconds to wait for a DHCP lease before the static address.
    pub dhcp_timeout_ms: u64,
    /// The static (fallback) address.
    pub ip: Ipv4Cidr,
    /// The static (fallback) gateway.
    pub gateway: [u8; 4],
    /// The TCP port served.
    pub port: u16,
    /// Bytes each client may store.
    pub quota: u64,
    /// The pairing secret (`pair=SECRET`, 1..=32 bytes): a box presenting it
    /// (`pastiche buddy add HOST:PORT --code SECRET`) is admitted while a
    /// client slot is free. `None`: no new clients.
    pub pair: Option<&'a str>,
    /// Largest disk (log) size in bytes.
    pub disk_capacity: u64,
    /// Ethernet address.
    pub mac: [u8; 6],
    /// Compact the log when it holds much garbage (`compact=on|off`).
    pub compact: bool,
    /// KiB a compaction copies per millisecond at most (`compact_kib=`),
    /// so that it never holds sessions up for long.
    pub compact_kib: u64,
}

impl Default for Config<'_> {
    /// QEMU user networking's defaults: 10.0.2.15/24, gateway 10.0.2.2.
    fn default() -> Self {
        Config {
            disk: None,
            log: None,
            dhcp: true,
            dhcp_timeout_ms: 3_000,
            ip: Ipv4Cidr { addr: [10, 0, 2, 15], prefix: 24 },
            gateway: [10, 0, 2, 2],
            port: 7467,
            quota: 1 << 30,
            pair: None,
            disk_capacity: 2 << 30,
            mac: [0x02, 0x50, 0x53, 0x54, 0x00, 0x01],
            compact: true,
            compact_kib: 256,
        }
    }
}

impl<'a> Config<'a> {
    /// Parses a command line; returns the settings and the first word not
    /// understood, if any.
    pub fn parse(cmdline: &'a str) -> (Config<'a>, Option<&'a str>) {
        let mut c = Config::default();
        let mut bad = None;
        for word in cmdline.split_ascii_whitespace() {
            let ok = match word.split_once('=') {
                Some(("disk", v)) if !v.is_empty() => {
                    c.disk = Some(v);
                    true
                }
                Some(("log", v)) if !v.is_empty() => {
                    c.log = Some(v);
                    true
                }
                Some(("dhcp", v)) => match v {
                    "on" => {
                        c.dhcp = true;
                        true
                    }
                    "off" => {
                        c.dhcp = false;
                        true
                    }
                    _ => false,
                },
                Some(("dhcp_timeout_ms", v)) => v.parse().map(|t| c.dhcp_timeout_ms = t).is_ok(),
                Some(("ip", v)) => parse_cidr(v).map(|ip| c.ip = ip).is_some(),
                Some(("gw", v)) => parse_ipv4(v).map(|g| c.gateway = g).is_some(),
                Some(("port", v)) => v.parse().map(|p| c.port = p).is_ok(),
                Some(("pair", v)) if !v.is_empty() && v.len() <= 32 => {
                    c.pair = Some(v);
                    true
                }
                Some(("quota_mib", v)) => v.parse::<u64>().map(|q| c.quota = q << 20).is_ok(),
                Some(("disk_mib", v)) => v.parse::<u64>().map(|q| c.disk_capacity = q << 20).is_ok(),
                Some(("mac", v)) => parse_mac(v).map(|m| c.mac = m).is_some(),
                Some(("compact", v)) if v == "on" || v == "off" => {
                    c.compact = v == "on";
                    true
                }
                Some(("compact_kib", v)) => {
                    v.parse::<u64>().ok().filter(|&k| k > 0).map(|k| c.compact_kib = k).is_some()
                }
                // The first word is the image's own path (SYS_GET_CMDLINE includes it).
                _ => !word.contains('='),
            };
            if !ok && bad.is_none() {
                bad = Some(word);
            }
        }
        (c, bad)
    }
}

fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        *o = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (a, p) = s.split_once('/').unwrap_or((s, "24"));
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some(Ipv4Cidr { addr: parse_ipv4(a)?, prefix })
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for o in out.iter_mut() {
        *o = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
