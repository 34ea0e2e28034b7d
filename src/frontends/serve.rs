//! `agent-exec serve`: the operations as an HTTP API (axum), on loopback
//! by default, every route behind a bearer token.
//!
//! Bodies are the CLI's own JSON objects. A request without the token, or
//! with another, is answered 401 before anything is decoded or run.
//!
//! The token: `AGENT_EXEC_SERVE_TOKEN` (as tumf/agent-exec takes it), else
//! `--token-file`, else a new random one written to `serve.token` in the
//! job store (mode 0600, in a directory only its owner can enter). The one
//! JSON object `serve` prints on stdout says where it listens and which
//! file holds the token, never the token.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::operations::{self, Invocation, UntilBounds};
use super::own_cli::{failure, Answer, OwnCli};
use crate::cli::ServeArgs;
use crate::response::{AppError, ErrorCode};

/// Largest request body: a command with its environment fits many times.
const BODY_LIMIT: usize = 1 << 20;

/// How long requests under way may still answer once the server is told to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

struct App {
    cli: OwnCli,
    token: String,
    bounds: UntilBounds,
}

/// Where `serve` listens and how it is reached, for its one line on stdout.
pub struct Started {
    pub listening: SocketAddr,
    pub token_file: Option<PathBuf>,
}

/// Binds, prints where, and serves until SIGINT or SIGTERM.
pub fn serve(
    root: Option<PathBuf>,
    store_root: &Path,
    args: &ServeArgs,
    announce: impl FnOnce(&Started),
) -> Result<(), AppError> {
    let address: SocketAddr = match (&args.bind, args.port) {
        (Some(bind), _) => bind
            .parse()
            .map_err(|e| AppError::invalid(format!("--bind {bind:?}: {e}")))?,
        (None, Some(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 19263)),
    };
    if !address.ip().is_loopback() && !args.insecure {
        return Err(AppError::invalid(format!(
            "{address} is reachable from other machines, and the API runs commands: \
             bind to loopback, or add --insecure to mean it"
        )));
    }
    let (token, token_file) = token(store_root, args.token_file.as_deref())?;
    let cli = OwnCli::new(root).map_err(|e| {
        AppError::new(
            ErrorCode::Internal,
            format!("cannot find its own binary: {e}"),
        )
    })?;
    let app = Arc::new(App {
        cli,
        token,
        bounds: UntilBounds::unbounded(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot start: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| AppError::invalid(format!("cannot listen on {address}: {e}")))?;
        let listening = listener
            .local_addr()
            .map_err(|e| AppError::new(ErrorCode::IoError, e.to_string()))?;
        announce(&Started {
            listening,
            token_file,
        });
        let router = Router::new()
            .route("/health", get(health))
            .route("/exec", post(exec))
            .route("/status/{id}", get(status))
            .route("/tail/{id}", get(tail))
            .route("/wait/{id}", get(wait))
            .route("/kill/{id}", post(kill))
            .route("/list", get(list))
            .route("/pipeline/run", post(pipeline_run))
            .route("/pipeline/validate", post(pipeline_validate))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(app);
        // On SIGINT/SIGTERM: no new connection, and the requests under
        // way get a moment to answer; a long `wait` does not hold the
        // server up (its job goes on; dropping the request removes its
        // private files).
        let server = axum::serve(listener, router).with_graceful_shutdown(stopped());
        tokio::select! {
            served = server => served.map_err(|e| AppError::new(ErrorCode::IoError, e.to_string())),
            _ = async {
                stopped().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => Ok(()),
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// The token and the file it was read from or written to.
fn token(store_root: &Path, file: Option<&Path>) -> Result<(String, Option<PathBuf>), AppError> {
    let usable = |t: String, from: &str| {
        let t = t.trim().to_string();
        if t.len() < 16 {
            Err(AppError::invalid(format!(
                "{from}: a token of at least 16 characters is required"
            )))
        } else {
            Ok(t)
        }
    };
    if let Ok(t) = std::env::var("AGENT_EXEC_SERVE_TOKEN") {
        return Ok((usable(t, "AGENT_EXEC_SERVE_TOKEN")?, None));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AppError::invalid(format!("--token-file {}: {e}", path.display())))?;
        return Ok((
            usable(text, &format!("--token-file {}", path.display()))?,
            Some(path.to_path_buf()),
        ));
    }
    let mut bytes = [0u8; 32];
    let mut urandom = std::fs::File::open("/dev/urandom")
        .map_err(|e| AppError::new(ErrorCode::IoError, format!("/dev/urandom: {e}")))?;
    std::io::Read::read_exact(&mut urandom, &mut bytes)
        .map_err(|e| AppError::new(ErrorCode::IoError, format!("/dev/urandom: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = store_root.join("serve.token");
    // A new file each time: never one someone else made or linked there.
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, token.as_bytes()))
        .map_err(|e| AppError::new(ErrorCode::IoError, format!("{}: {e}", path.display())))?;
    Ok((token, Some(path)))
}

/// Whether the request carries the token (compared in constant time).
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), app.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    reply(failure(
        ErrorCode::Unauthorized,
        "missing or wrong bearer token (header `Authorization: Bearer TOKEN`)".into(),
    ))
}

/// The CLI's answer with the status its error code means.
fn reply(answer: Answer) -> Response {
    let status = if answer.ok {
        StatusCode::OK
    } else {
        match answer.json["error"]["code"].as_str().unwrap_or_default() {
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "job_not_found" => StatusCode::NOT_FOUND,
            "invalid_argument" | "usage_error" | "ambiguous_job_id" | "invalid_state"
            | "override_forbidden" | "floor_violation" | "policy_error" | "pipeline_invalid"
            | "stdin_too_large" => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    };
    (status, axum::Json(answer.json)).into_response()
}

async fn run_checked(
    app: &App,
    headers: &HeaderMap,
    invocation: impl FnOnce() -> Result<Invocation, String>,
) -> Response {
    if !authorized(app, headers) {
        return unauthorized();
    }
    match invocation() {
        Ok(inv) => reply(app.cli.call(&inv).await),
        Err(message) => reply(failure(ErrorCode::InvalidArgument, message)),
    }
}

/// The query string's fields, read once the request is authorized.
fn query<T: serde::de::DeserializeOwned + Default>(uri: &Uri) -> Result<T, String> {
    if uri.query().is_none_or(str::is_empty) {
        return Ok(T::default());
    }
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| format!("bad query string: {}", e.body_text()))
}

fn body_json(body: &Bytes) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
}

async fn health(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    axum::Json(json!({"schema_version": "1", "ok": true, "type": "health"})).into_response()
}

async fn exec(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let bounds = app.bounds;
    run_checked(&app, &headers, || {
        operations::decode::<operations::Run>(body_json(&body)?)?.invocation(&bounds)
    })
    .await
}

async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    run_checked(&app, &headers, || {
        Ok(operations::Status { job_id: id }.invocation())
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TailQuery {
    lines: Option<u64>,
    max_bytes: Option<u64>,
    offset: Option<u64>,
    stream: Option<String>,
}

async fn tail(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    uri: Uri,
) -> Response {
    // The query is read once the request is authorized.
    let q = || query::<TailQuery>(&uri);
    run_checked(&app, &headers, || {
        let q = q()?;
        Ok(operations::Tail {
            job_id: id,
            lines: q.lines,
            max_bytes: q.max_bytes.map(operations::Size::Bytes),
            offset: q.offset,
            stream: q.stream,
        }
        .invocation())
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    until: Option<f64>,
}

async fn wait(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    uri: Uri,
) -> Response {
    // The query is read once the request is authorized.
    let q = || query::<WaitQuery>(&uri);
    let bounds = app.bounds;
    run_checked(&app, &headers, || {
        let q = q()?;
        Ok(operations::Wait {
            job_id: id,
            until: q.until,
            ..Default::default()
        }
        .invocation(&bounds))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KillQuery {
    signal: Option<String>,
    no_wait: Option<bool>,
}

async fn kill(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    uri: Uri,
) -> Response {
    // The query is read once the request is authorized.
    let q = || query::<KillQuery>(&uri);
    run_checked(&app, &headers, || {
        let q = q()?;
        operations::Kill {
            job_id: id,
            signal: q.signal,
            grace: None,
            no_wait: q.no_wait.unwrap_or(false),
        }
        .invocation()
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    cwd: Option<String>,
    tag: Option<String>,
    limit: Option<u64>,
}

async fn list(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    // The query is read once the request is authorized.
    let q = || query::<ListQuery>(&uri);
    run_checked(&app, &headers, || {
        let q = q()?;
        Ok(operations::List {
            state: q.state,
            cwd: q.cwd,
            tags: q.tag.into_iter().collect(),
            limit: q.limit,
        }
        .invocation())
    })
    .await
}

async fn pipeline_run(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    run_checked(&app, &headers, || {
        Ok(operations::decode::<operations::PipelineRun>(body_json(&body)?)?.invocation())
    })
    .await
}

async fn pipeline_validate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run_checked(&app, &headers, || {
        Ok(operations::decode::<operations::PipelineValidate>(body_json(&body)?)?.invocation())
    })
    .await
}
