//! Buddies in integration tests: a running `pastiche serve`, and pairing
//! two boxes through the CLI.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::TestBox;

/// Pairs box `a` with buddy box `b` serving at `addr`: `b` invites, `a`
/// adds it with the code (the last line of the invite's output).
pub fn pair(a: &TestBox, b: &TestBox, addr: &str) {
    let code = invite(b);
    a.run(["buddy", "add", addr, "--code", &code]).ok();
}

/// [`pair`] with a buddy `b` that is not running: `b` serves at `addr`
/// just long enough for `a` to pair with it (`buddy add` must reach it).
pub fn pair_offline(a: &TestBox, b: &TestBox, addr: &str) {
    let server = Server::start_at(b, addr);
    pair(a, b, addr);
    server.kill();
}

/// A one-time pairing code from `pastiche buddy invite` on `b`.
pub fn invite(b: &TestBox) -> String {
    let out = b.run(["buddy", "invite"]).ok();
    out.stdout.lines().last().expect("a code").trim().to_string()
}

/// A running `pastiche serve`.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: String,
}

impl Server {
    /// Starts `pastiche serve` for `b` on a free loopback port.
    pub fn start(b: &TestBox) -> Server {
        Self::start_at(b, &free_addr())
    }

    /// Starts `pastiche serve` for `b` on `addr`; returns once it listens.
    pub fn start_at(b: &TestBox, addr: &str) -> Server {
        Self::start_with(b, addr, &[])
    }

    /// [`Server::start_at`] with more `serve` options.
    pub fn start_with(b: &TestBox, addr: &str, options: &[&str]) -> Server {
        let mut cmd = b.cmd(["serve", "--listen", addr]);
        cmd.args(options);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start pastiche serve");
        let stderr = child.stderr.take().unwrap();
        // Forward the daemon's log to the test output, and wait until it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                let _ = tx.send(line);
            }
        });
        // The server owns the child from here, so it is reaped on every path.
        let mut server = Server { child, addr: addr.to_string() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log: Vec<String> = rx.try_iter().collect();
                panic!("pastiche serve exited with {status}: {}", log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pastiche serve did not listen on {addr}");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL) and waits for it: its lock on the box is gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` (peak resident set) of process `pid`, in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading the buddy's status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

/// A loopback address nobody listens on.
pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
