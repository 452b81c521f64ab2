//! Who may see the status page and act on it.
//!
//! - A connection over loopback from a process of the box's own user (its
//!   socket's owner in `/proc/net/tcp`, the same check `ss -e` shows) is
//!   let in, provided the `Host` it asked for is a loopback name (a web
//!   page that rebinds its DNS name to 127.0.0.1 is not).
//! - Anyone else needs a session: log in at `/login` with the token that
//!   `pastiche status --token` prints (kept in `DATA/http.token`, mode
//!   0600) or with the box's passphrase; a session lasts `[http]
//!   session_minutes`. Scripts send the token as `Authorization: Bearer`.
//! - Wrong secrets are rate-limited per address: after [`MAX_FAILURES`] in
//!   [`FAILURE_WINDOW`], every login from that address is refused until the
//!   window ends (the right secret too).
//! - Every action (a POST) carries a CSRF token, per session (or one per
//!   daemon for loopback users), in a form field or the `X-Csrf-Token`
//!   header, and a cross-origin `Origin` is refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::RngCore;

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "http.token";
/// Wrong secrets from one address before it is locked out.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered (and a lockout lasts at most).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Addresses whose failures are remembered at once (bounds memory).
const MAX_TRACKED: usize = 4096;
/// Sessions alive at once (bounds memory; the oldest goes first).
const MAX_SESSIONS: usize = 1024;
/// The session cookie's name.
pub const COOKIE: &str = "pastiche_session";

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn token_path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

/// The box's login token, made (readable by its owner only) on first use.
pub fn load_or_create_token(dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = token_path(dir);
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.trim().len() == 64 {
            return Ok(t.trim().to_string());
        }
    }
    let token = random_hex();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// The client of one connection, found once when it is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// The uid owning its socket, for loopback connections.
    pub uid: Option<u32>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        let addr = *stream.remote_addr();
        // Looked up while the connection is open, so the answer is this
        // connection's owner (a port is not reused while it is in use).
        let uid = match stream.io().local_addr() {
            Ok(local) if addr.ip().is_loopback() => peer_uid(addr, local.port()),
            _ => None,
        };
        Peer { addr, uid }
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The uid owning the client end of a TCP connection from `peer` to our
/// `local_port`, from `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn peer_uid(peer: SocketAddr, local_port: u16) -> Option<u32> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        if let Some(uid) = uid_in_table(&text, peer.port(), local_port) {
            return Some(uid);
        }
    }
    None
}

/// The uid of the socket whose local port is `port` and remote port
/// `remote_port` in one `/proc/net/tcp*` table.
fn uid_in_table(text: &str, port: u16, remote_port: u16) -> Option<u32> {
    let port_of = |field: &str| field.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || port_of(f[1])? != port || port_of(f[2])? != remote_port {
            return None;
        }
        f[7].parse().ok()
    })
}

/// Whether a `Host` header names this machine's loopback (so a page from
/// another site cannot reach the open loopback access by DNS rebinding).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, p)| if p.parse::<u16>().is_ok() { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

struct Session {
    csrf: String,
    expires: Instant,
    created: Instant,
}

struct Failures {
    count: u32,
    since: Instant,
}

/// Sessions and failed logins.
pub struct Gate {
    token: String,
    loopback_csrf: String,
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    own_uid: u32,
}

/// What a login attempt gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// A new session: its id and CSRF token.
    Session {
        /// The cookie value.
        id: String,
        /// The CSRF token of its forms.
        csrf: String,
    },
    /// The secret is wrong.
    Wrong,
    /// Too many wrong secrets from this address: wait.
    LockedOut,
}

/// Too many wrong secrets came from this address lately.
#[derive(Debug, PartialEq, Eq)]
pub struct LockedOut;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The box's own user over loopback.
    Loopback,
    /// A logged-in session (its id).
    Session(String),
    /// A script with the bearer token.
    Bearer,
}

impl Gate {
    /// A gate for the box whose token is `token`; sessions last `lifetime`.
    pub fn new(token: String, lifetime: Duration) -> Gate {
        Gate {
            token,
            loopback_csrf: random_hex(),
            lifetime,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            own_uid: rustix::process::geteuid().as_raw(),
        }
    }

    /// Whether a connection whose client socket belongs to `uid` comes from
    /// this process's user.
    pub fn is_own_user(&self, uid: Option<u32>) -> bool {
        uid == Some(self.own_uid)
    }

    /// Whether the bearer token is right (a wrong one counts as a failure);
    /// `Err` while `ip` is locked out.
    pub fn check_bearer(&self, ip: IpAddr, token: &str) -> Result<bool, LockedOut> {
        if self.locked_out(ip) {
            return Err(LockedOut);
        }
        let right = same_secret(token, &self.token);
        if !right {
            self.failed(ip);
        }
        Ok(right)
    }

    /// Whether `ip` is locked out now.
    pub fn locked_out(&self, ip: IpAddr) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(&ip).is_some_and(|f| f.count >= MAX_FAILURES && f.since.elapsed() < FAILURE_WINDOW)
    }

    fn failed(&self, ip: IpAddr) {
        let mut all = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_TRACKED {
            all.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
            if all.len() >= MAX_TRACKED {
                // Under a flood from many addresses, forget the oldest half.
                let mut by_age: Vec<(IpAddr, Instant)> = all.iter().map(|(ip, f)| (*ip, f.since)).collect();
                by_age.sort_by_key(|(_, t)| *t);
                for (ip, _) in by_age.iter().take(MAX_TRACKED / 2) {
                    all.remove(ip);
                }
            }
        }
        let f = all.entry(ip).or_insert(Failures { count: 0, since: Instant::now() });
        if f.since.elapsed() >= FAILURE_WINDOW {
            *f = Failures { count: 0, since: Instant::now() };
        }
        f.count += 1;
    }

    /// Tries a login with `secret`: the token, or (if `passphrase_ok` says
    /// so) the box's passphrase.
    pub fn login(&self, ip: IpAddr, secret: &str, passphrase_ok: impl FnOnce(&str) -> bool) -> Login {
        if self.locked_out(ip) {
            return Login::LockedOut;
        }
        if !(same_secret(secret, &self.token) || (!secret.is_empty() && passphrase_ok(secret))) {
            self.failed(ip);
            return Login::Wrong;
        }
        let (id, csrf) = (random_hex(), random_hex());
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.retain(|_, s| s.expires > Instant::now());
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| k.clone()) {
                s.remove(&oldest);
            }
        }
        let now = Instant::now();
        s.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + self.lifetime, created: now });
        Login::Session { id, csrf }
    }

    /// The live session with this cookie value, if any.
    pub fn session(&self, id: &str) -> Option<String> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.get(id).filter(|s| s.expires > Instant::now()).map(|_| id.to_string())
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The CSRF token forms must carry for `access`.
    pub fn csrf_for(&self, access: &Access) -> String {
        match access {
            Access::Loopback | Access::Bearer => self.loopback_csrf.clone(),
            Access::Session(id) => {
                let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                s.get(id).map(|s| s.csrf.clone()).unwrap_or_default()
            }
        }
    }

    /// Whether `given` is the right CSRF token for `access` (a bearer
    /// script cannot be a forged browser request: browsers do not send
    /// that header across sites).
    pub fn csrf_ok(&self, access: &Access, given: &str) -> bool {
        *access == Access::Bearer || (!given.is_empty() && same_secret(given, &self.csrf_for(access)))
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let t = load_or_create_token(tmp.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(load_or_create_token(tmp.path()).unwrap(), t);
        let mode = std::fs::metadata(tmp.path().join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is readable by others: {mode:o}");
    }

    #[test]
    fn wrong_secrets_lock_the_address_out_even_for_the_right_one() {
        let gate = Gate::new("a".repeat(64), Duration::from_secs(60));
        for _ in 0..MAX_FAILURES {
            assert_eq!(gate.login(ip(1), "guess", |_| false), Login::Wrong);
        }
        assert_eq!(gate.login(ip(1), &"a".repeat(64), |_| false), Login::LockedOut);
        assert_eq!(gate.check_bearer(ip(1), &"a".repeat(64)), Err(LockedOut));
        assert_eq!(gate.check_bearer(ip(2), "b"), Ok(false));
        assert_eq!(gate.check_bearer(ip(2), &"a".repeat(64)), Ok(true));
        // Another address is not affected.
        assert!(matches!(gate.login(ip(2), &"a".repeat(64), |_| false), Login::Session { .. }));
    }

    #[test]
    fn sessions_expire_and_carry_their_own_csrf_token() {
        let gate = Gate::new("t".repeat(64), Duration::from_millis(50));
        let Login::Session { id, csrf } = gate.login(ip(3), "the passphrase", |p| p == "the passphrase") else {
            panic!("the passphrase opens a session")
        };
        let access = Access::Session(gate.session(&id).expect("a live session"));
        assert!(gate.csrf_ok(&access, &csrf));
        assert!(!gate.csrf_ok(&access, ""));
        assert!(!gate.csrf_ok(&Access::Loopback, &csrf), "a session's token is not the loopback one");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(gate.session(&id), None, "the session expired");
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let gate = Gate::new("t".repeat(64), Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let _ = gate.login(IpAddr::from(i.to_be_bytes()), "x", |_| false);
        }
        assert!(gate.failures.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1:8484", "localhost:8484", "[::1]:8484", "localhost", "127.0.0.1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example:8484", "192.168.1.2:8484", "nas.lan", "[fe80::1]:80"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn the_owner_of_a_real_loopback_connection_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert_eq!(peer_uid(peer, port), Some(rustix::process::geteuid().as_raw()));
    }

    #[test]
    fn proc_net_tcp_lines() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     0: 0100007F:D431 0100007F:2124 01 00000000:00000000 00:00000000 00000000  1000        0 1\n";
        assert_eq!(uid_in_table(table, 0xD431, 0x2124), Some(1000));
        assert_eq!(uid_in_table(table, 0xD432, 0x2124), None);
    }
}
