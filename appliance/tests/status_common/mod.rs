//! Helpers of the status page tests (the daemon itself is
//! [`crate::common::daemon::Daemon`]): its status and plain HTTP requests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub use crate::common::buddy::free_addr;
pub use crate::common::daemon::{wait_for, Daemon};
use crate::common::{Run, TestBox};

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
    wait_for(30, "the daemon's status page", || {
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
