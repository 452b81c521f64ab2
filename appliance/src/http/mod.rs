//! The status page, its JSON API and `/metrics`, served by the daemon
//! (axum on a small tokio runtime of its own thread) on `[http] listen`
//! (default `127.0.0.1:8484`) or `--http ADDR`. Every asset is embedded.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page (complete without JavaScript) |
//! | `GET /events` | server-sent events: the running job's progress |
//! | `GET /api/overview`, `/api/status`, `/api/health`, `/api/snapshots`, `/api/stats`, `/api/buddies`, `/api/clients` | JSON, see `docs/API.md` |
//! | `POST /api/jobs/backup`, `/api/jobs/sync` | queue a job (JSON) |
//! | `POST /actions/backup`, `/actions/sync` | the page's buttons |
//! | `POST /actions/pairing/ID/accept`, `.../refuse` | answer a pairing request (form with the CSRF token) |
//! | `GET /metrics` | Prometheus text |
//! | `GET`/`POST /login`, `POST /logout` | sessions ([`auth`]) |
//!
//! The [`overview::monitor`] thread runs even when the page is off or its
//! address is taken: it keeps the health verdict on the status board for
//! `pastiche status`.

pub mod auth;
pub mod metrics;
pub mod overview;
pub mod page;
pub mod peers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde::Deserialize;

use crate::buddy::BuddyStorage;
use crate::config::LiveConfig;
use crate::daemon::jobs::JobQueue;
use crate::daemon::status::{JobKind, StatusBoard};
use crate::repo::keys::RootKey;
use crate::repo::SharedBox;
use auth::{Access, Gate, Login};
use overview::{Cache, Overview, Sources};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");
/// How long a stop waits for open connections of the page.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often the progress stream sends.
const TICK: Duration = Duration::from_millis(250);

/// What the status page serves from.
pub struct Parts {
    /// The effective configuration (the page's address and logins are
    /// taken at start; the rest is read live).
    pub config: Arc<LiveConfig>,
    /// The box.
    pub shared: Arc<SharedBox>,
    /// The daemon's status.
    pub board: Arc<StatusBoard>,
    /// Where "back up now" goes.
    pub queue: Arc<JobQueue>,
    /// The buddy store (clients stored here).
    pub storage: Option<BuddyStorage>,
}

/// The running status page and monitor; [`StatusPage::stop`] ends both.
pub struct StatusPage {
    stop: Arc<AtomicBool>,
    monitor: Option<JoinHandle<()>>,
    server: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    /// Where the page is served, if it is.
    pub addr: Option<SocketAddr>,
}

#[derive(Clone)]
struct App {
    cache: Cache,
    board: Arc<StatusBoard>,
    queue: Arc<JobQueue>,
    gate: Arc<Gate>,
    /// (name, KDF, key check) to verify a passphrase login.
    passphrase: Arc<(String, crate::repo::keys::KdfParams, String)>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The box's data directory (pairing requests are answered there).
    data: Arc<std::path::PathBuf>,
}

/// Starts the monitor and, if `[http] listen` is set, the page. An address
/// that cannot be bound is reported on the board, not fatal: the box keeps
/// backing up.
pub fn start(parts: Parts) -> Result<StatusPage> {
    let repo = parts.shared.repo().clone();
    let cache: Cache = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sources = Sources {
        shared: parts.shared.clone(),
        board: parts.board.clone(),
        config: parts.config.clone(),
        storage: parts.storage.clone(),
        started: peers::unix_now(),
    };
    // The first overview is made before serving, so the page never starts empty.
    match sources.build() {
        Ok(o) => {
            parts.board.update(|r| r.health = Some(o.health.clone()));
            *cache.write().unwrap_or_else(|e| e.into_inner()) = Some(o);
        }
        Err(e) => tracing::warn!("cannot gather the status: {e:#}"),
    }
    let monitor = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pastiche-monitor".into())
            .spawn(move || overview::monitor(sources, cache, stop))?
    };
    let mut page = StatusPage { stop, monitor: Some(monitor), server: None, addr: None };
    let config = parts.config.get();
    let Some(listen) = config.http.listen else { return Ok(page) };
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            parts.board.event(format!("the status page cannot listen on {listen}: {e}; it is off"));
            return Ok(page);
        }
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let token = auth::load_or_create_token(&repo.dir)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = App {
        cache,
        board: parts.board.clone(),
        queue: parts.queue,
        gate: Arc::new(Gate::new(token, Duration::from_secs(config.http.session_minutes * 60))),
        passphrase: Arc::new((repo.config.name.clone(), repo.config.kdf, repo.config.key_check.clone())),
        shutdown: rx.clone(),
        data: Arc::new(repo.dir.clone()),
    };
    let router = router(app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pastiche-http")
        .enable_all()
        .build()
        .context("cannot start the status page's runtime")?;
    let thread = std::thread::Builder::new().name("pastiche-http".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!("the status page cannot listen: {e}"),
            };
            let (mut rx, mut cut) = (rx.clone(), rx);
            let served = axum::serve(listener, router.into_make_service_with_connect_info::<auth::Peer>())
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                });
            // A client that never finishes reading must not hold the daemon's stop.
            tokio::select! {
                r = std::future::IntoFuture::into_future(served) => {
                    if let Err(e) = r {
                        tracing::error!("the status page stopped: {e}");
                    }
                }
                _ = async move {
                    let _ = cut.wait_for(|stop| *stop).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => tracing::warn!("status page connections still open after {SHUTDOWN_GRACE:?}: cut"),
            }
        });
        // Connections still open are cut when the runtime goes.
        runtime.shutdown_timeout(Duration::from_secs(1));
    })?;
    parts.board.update(|r| r.http = Some(format!("http://{addr}/")));
    parts.board.event(format!("status page on http://{addr}/"));
    page.server = Some((tx, thread));
    page.addr = Some(addr);
    Ok(page)
}

impl StatusPage {
    /// Stops serving and monitoring.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((tx, thread)) = self.server.take() {
            let _ = tx.send(true);
            let _ = thread.join();
        }
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
    }
}

fn router(app: App) -> Router {
    let guarded = Router::new()
        .route("/", get(index))
        .route("/events", get(events))
        .route("/api/overview", get(api_overview))
        .route("/api/status", get(api_status))
        .route("/api/health", get(api_health))
        .route("/api/snapshots", get(api_snapshots))
        .route("/api/stats", get(api_stats))
        .route("/api/buddies", get(api_buddies))
        .route("/api/clients", get(api_clients))
        .route("/api/jobs/{job}", post(api_job))
        .route("/actions/{job}", post(form_job))
        .route("/actions/pairing/{id}/{answer}", post(form_pairing))
        .route("/metrics", get(metrics_text))
        .route("/logout", post(logout))
        .layer(middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/assets/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .merge(guarded)
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// Headers every answer carries: no framing (clickjacking), no sniffing,
/// scripts and styles from this origin only.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    res
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn unauthorized(req_path: &str) -> Response {
    if req_path.starts_with("/api/") || req_path == "/metrics" || req_path == "/events" {
        let body = Json(serde_json::json!({"error": "log in first: a session cookie or Authorization: Bearer TOKEN"}));
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, Html(page::login(None))).into_response()
    }
}

/// Lets in the box's own user over loopback, a live session, or the bearer
/// token; refuses everyone else.
async fn guard(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<auth::Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host_ok = headers.get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(auth::is_loopback_host);
    let access = if let Some(bearer) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        match app.gate.check_bearer(peer.addr.ip(), bearer.trim()) {
            Ok(true) => Some(Access::Bearer),
            Ok(false) => None,
            Err(auth::LockedOut) => return too_many(),
        }
    } else if let Some(id) = cookie(headers, auth::COOKIE).and_then(|c| app.gate.session(&c)) {
        Some(Access::Session(id))
    } else if host_ok && app.gate.is_own_user(peer.uid) {
        Some(Access::Loopback)
    } else {
        None
    };
    match access {
        Some(a) => {
            req.extensions_mut().insert(a);
            next.run(req).await
        }
        None => unauthorized(req.uri().path()),
    }
}

fn too_many() -> Response {
    let wait = auth::FAILURE_WINDOW.as_secs().to_string();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, wait)],
        Html(page::login(Some("Too many wrong secrets from this address: wait a few minutes."))),
    )
        .into_response()
}

/// The overview with the live status (`None` until the first one is made).
fn current(app: &App) -> Option<Overview> {
    let mut o = app.cache.read().unwrap_or_else(|e| e.into_inner()).clone()?;
    // The job's progress and the queue are live; the rest is at most REFRESH old.
    let health = o.status.health.take();
    o.status = app.board.report();
    o.status.health = o.status.health.or(health);
    Some(o)
}

/// Answers with `f` of the current overview.
fn with_overview(app: &App, f: impl FnOnce(Overview) -> Response) -> Response {
    match current(app) {
        Some(o) => f(o),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the status is being gathered; try again").into_response(),
    }
}

async fn index(State(app): State<App>, Extension(access): Extension<Access>) -> Response {
    with_overview(&app, |o| {
        let mut res = Html(page::status(&o, &app.gate.csrf_for(&access))).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    })
}

async fn api_overview(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o).into_response())
}

async fn api_status(State(app): State<App>) -> Response {
    Json(app.board.report()).into_response()
}

async fn api_health(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o.health).into_response())
}

async fn api_snapshots(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o.snapshots).into_response())
}

async fn api_stats(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o.stats).into_response())
}

async fn api_buddies(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o.buddies).into_response())
}

async fn api_clients(State(app): State<App>) -> Response {
    with_overview(&app, |o| Json(o.clients).into_response())
}

async fn metrics_text(State(app): State<App>) -> Response {
    with_overview(&app, |o| ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&o)).into_response())
}

/// The job a route names: `backup`, or `sync` (shipping to the buddies).
fn job_of(name: &str) -> Option<JobKind> {
    match name {
        "backup" => Some(JobKind::Backup),
        "sync" => Some(JobKind::Ship),
        _ => None,
    }
}

/// Refuses a request whose `Origin` is another site's (browsers send it on
/// every cross-site POST).
fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else {
        return true;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else { return false };
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

fn queue_job(
    app: &App,
    access: &Access,
    headers: &HeaderMap,
    name: &str,
    csrf: &str,
) -> Result<JobKind, (StatusCode, &'static str)> {
    if !same_origin(headers) || !app.gate.csrf_ok(access, csrf) {
        return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
    }
    let Some(kind) = job_of(name) else { return Err((StatusCode::NOT_FOUND, "no such job")) };
    if app.queue.request(kind) {
        app.board.event(format!("{} asked for from the status page", kind.name()));
        app.board.update(|r| r.queued = app.queue.queued());
    }
    Ok(kind)
}

async fn api_job(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    axum::extract::Path(job): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    match queue_job(&app, &access, &headers, &job, &csrf) {
        Ok(kind) => (StatusCode::ACCEPTED, Json(serde_json::json!({"queued": kind, "queue": app.queue.queued()})))
            .into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn form_job(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    axum::extract::Path(job): axum::extract::Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    match queue_job(&app, &access, &headers, &job, &form.csrf) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(r) => r.into_response(),
    }
}

/// The page's accept and refuse buttons of a pairing request: the same
/// answer as `pastiche buddy accept|refuse ID`, which the daemon's overlay
/// thread then sends.
async fn form_pairing(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    axum::extract::Path((id, answer)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !same_origin(&headers) || !app.gate.csrf_ok(&access, &form.csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    let result = match answer.as_str() {
        "accept" => crate::overlay::owner::accept(&app.data, &id),
        "refuse" => crate::overlay::owner::refuse(&app.data, &id),
        _ => return (StatusCode::NOT_FOUND, "accept or refuse").into_response(),
    };
    match result {
        Ok(r) => {
            let done = if answer == "accept" { "accepted" } else { "refused" };
            app.board.event(format!(
                "pairing request {} from {} {done} on the status page (confirmation {})",
                r.id, r.name, r.confirm
            ));
            Redirect::to("/#pairing").into_response()
        }
        Err(e) => (StatusCode::CONFLICT, format!("{e:#}")).into_response(),
    }
}

async fn events(State(app): State<App>) -> Response {
    let stream = futures_util::stream::unfold((app, true), |(mut app, first)| async move {
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = app.shutdown.changed() => return None,
            }
        }
        if *app.shutdown.borrow() {
            return None;
        }
        let s = app.board.report();
        // Hashed in place: a stream must not copy the whole overview four times a second.
        let generation =
            app.cache.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(page::generation).unwrap_or_default();
        let data = serde_json::json!({
            "current": s.current, "queued": s.queued, "generation": generation,
            "verdict": s.health.as_ref().map(|h| h.verdict),
        });
        let event = Event::default().event("status").data(data.to_string());
        Some((Ok::<_, Infallible>(event), (app, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn login_page() -> Html<String> {
    Html(page::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    secret: String,
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<auth::Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site login refused").into_response();
    }
    let gate = app.gate.clone();
    let check = app.passphrase.clone();
    // The passphrase check runs the KDF: keep it off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        gate.login(peer.addr.ip(), &form.secret, |pass| {
            RootKey::derive(pass.as_bytes(), &check.0, check.1).is_ok_and(|k| k.check_value() == check.2)
        })
    })
    .await;
    match outcome {
        Ok(Login::Session { id, .. }) => {
            let cookie = format!(
                "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                auth::COOKIE,
                app.gate.lifetime().as_secs()
            );
            let mut res = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Ok(Login::LockedOut) => too_many(),
        Ok(Login::Wrong) => {
            (StatusCode::UNAUTHORIZED, Html(page::login(Some("Wrong token or passphrase.")))).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the login check failed").into_response(),
    }
}

async fn logout(State(app): State<App>, Extension(access): Extension<Access>) -> Response {
    if let Access::Session(id) = access {
        app.gate.logout(&id);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("pastiche_session=; Path=/; HttpOnly; Max-Age=0"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_and_origins() {
        let h = headers(&[(header::COOKIE, "a=1; pastiche_session=abc; b=2")]);
        assert_eq!(cookie(&h, auth::COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let same = headers(&[(header::HOST, "nas.lan:8484"), (header::ORIGIN, "http://nas.lan:8484")]);
        assert!(same_origin(&same));
        let cross = headers(&[(header::HOST, "nas.lan:8484"), (header::ORIGIN, "http://evil.example")]);
        assert!(!same_origin(&cross));
        let null = headers(&[(header::HOST, "nas.lan:8484"), (header::ORIGIN, "null")]);
        assert!(!same_origin(&null), "a sandboxed page's null origin is another site");
        assert!(same_origin(&headers(&[(header::HOST, "nas.lan:8484")])), "no Origin: not a cross-site browser POST");
    }

    /// Whatever a client puts in the headers the gate reads, it gets an
    /// answer, never a panic.
    #[test]
    fn hostile_header_values_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"=;: ,[]/\\.%\"'a0fF:\t-_\xc3\xa9";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = auth::is_loopback_host(&text);
            if let Ok(v) = HeaderValue::from_str(&text) {
                let mut h = HeaderMap::new();
                h.insert(header::COOKIE, v.clone());
                h.insert(header::ORIGIN, v.clone());
                h.insert(header::HOST, v);
                let _ = cookie(&h, auth::COOKIE);
                let _ = same_origin(&h);
            }
        }
    }
}
