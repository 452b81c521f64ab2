//! A real `pastiche daemon` in a child process, for every test that needs
//! one: started on a box (returning once its control socket answers), asked
//! for its status through the CLI, stopped with SIGTERM or killed; its log
//! is kept and echoed to the test's output.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestBox;

/// Waits up to `secs` for `cond`; panics with `what` if it never holds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its log lines so far.
    pub log: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Daemon {
    /// Starts `pastiche daemon ARGS` on `b` and waits until its control
    /// socket answers.
    pub fn start(b: &TestBox, name: &str, args: &[&str]) -> Daemon {
        let mut cmd = b.cmd(["daemon"]);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start pastiche daemon");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sink, tag) = (log.clone(), name.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut d = Daemon { child, log, name: name.to_string() };
        let sock = b.data.join("control.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if UnixStream::connect(&sock).is_ok() {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("the daemon {name} exited with {status}:\n{}", d.log.lock().unwrap().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon {name} never opened its control socket");
    }

    /// `status --json` of the daemon of `b`. Its exit code is the health
    /// verdict's (0 ok, 1 warning, 2 critical), checked against the report.
    pub fn status(b: &TestBox) -> Value {
        let r = b.run(["--json", "status"]);
        let s: Value = serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("status is not one JSON object ({e})\n{}", r.describe()));
        let expected = match s["health"]["verdict"].as_str() {
            Some("ok") => 0,
            Some("warning") => 1,
            Some("critical") => 2,
            v => panic!("status has no health verdict ({v:?})\n{}", r.describe()),
        };
        r.code_is(expected);
        s
    }

    /// Waits until the status satisfies `cond`.
    pub fn wait_status(b: &TestBox, secs: u64, what: &str, mut cond: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = Daemon::status(b);
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; status: {s:#}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long
    /// it took.
    pub fn terminate(mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        signal(self.child.id(), "TERM");
        let status = self.child.wait().expect("wait for the daemon");
        (status.code(), t.elapsed())
    }

    /// SIGTERM, then waits up to 20 s for the exit (SIGKILL after that).
    pub fn stop(&mut self) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// [`Daemon::kill`], consuming it.
    pub fn kill9(mut self) {
        self.kill();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the log has a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Waits up to `secs` for a line containing `text`: the log is read
    /// from the daemon's stderr by another thread, so it may trail what
    /// the daemon did (and a test saw on disk).
    pub fn wait_logged(&self, secs: u64, text: &str) {
        wait_for(secs, &format!("the daemon to log {text:?}"), || self.logged(text));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("[{}] killed at the end of the test", self.name);
            self.kill();
        }
    }
}

/// Sends a signal with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("run kill");
    assert!(ok.success(), "kill -{sig} {pid} failed");
}
