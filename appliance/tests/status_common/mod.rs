//! Helpers of the status page tests: a real `pastiche daemon` in a child
//! process, waiting on conditions, and plain HTTP requests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, TestBox};

/// A free loopback address (bound, then released).
pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Polls `f` until it is true; fails the test with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A running `pastiche daemon`; killed on drop.
pub struct Daemon {
    child: Child,
    /// Its log lines so far.
    pub log: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Daemon {
    /// Starts `daemon ARGS` on box `b` and waits until it answers `status`.
    pub fn start(b: &TestBox, name: &str, args: &[&str]) -> Daemon {
        let mut cmd = b.cmd(["daemon"]);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start pastiche daemon");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let (log, name) = (log.clone(), name.to_string());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[{name}] {line}");
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut d = Daemon { child, log, name: name.to_string() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("daemon {} exited with {status}:\n{}", d.name, d.log.lock().unwrap().join("\n"));
            }
            if b.data.join("control.sock").exists() && status_json(b).is_some() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("daemon {} did not answer status", d.name);
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM and waits.
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `status --json` of box `b` (`None` if no daemon answers).
pub fn status_json(b: &TestBox) -> Option<Value> {
    let r = b.run(["--json", "status"]);
    serde_json::from_str(r.stdout.lines().next()?).ok()
}

/// `status` of box `b`: its exit code and its text.
pub fn status_text(b: &TestBox) -> (Option<i32>, String) {
    let r: Run = b.run(["status"]);
    (r.code, format!("{}{}", r.stdout, r.stderr))
}

/// The status page's base URL of the daemon of `b` (no trailing slash).
pub fn page_url(b: &TestBox) -> String {
    // The control socket answers a moment before the page listens.
    let mut url = None;
    wait_until(Duration::from_secs(30), "the daemon's status page", || {
        url = status_json(b).and_then(|s| s["http"].as_str().map(|u| u.trim_end_matches('/').to_string()));
        url.is_some()
    });
    url.unwrap()
}

/// An HTTP answer: status and body.
pub struct Answer {
    /// Status code.
    pub code: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let res = match r {
        Ok(res) => res,
        Err(ureq::Error::Status(_, res)) => res,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    let code = res.status();
    let content_type = res.header("content-type").unwrap_or("").to_string();
    Answer { code, content_type, body: res.into_string().unwrap_or_default() }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build()
}

/// GET `url` with extra headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    answer(req.call())
}

/// POST a form to `url` with extra headers.
pub fn post_form(url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Answer {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    answer(req.send_form(form))
}

/// Writes `DATA/pastiche.toml` of box `b`.
pub fn write_config(b: &TestBox, text: &str) {
    std::fs::write(b.data.join("pastiche.toml"), text).unwrap();
}

/// A config backing up `src` every hour and probing buddies every second.
pub fn config_for(src: &Path) -> String {
    format!(
        "[backup]\npaths = [{:?}]\nschedule = \"every 1h\"\n[alerts]\nprobe_seconds = 1\n",
        src.display().to_string()
    )
}
