//! The MCP server driven by a real MCP client (the Python `mcp` SDK from
//! PyPI), and the HTTP API with good, wrong and missing tokens.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The Python that has the `mcp` SDK: `AGENT_EXEC_TEST_PYTHON`, else the
/// virtual environment `scripts/test.sh` makes.
fn mcp_python() -> PathBuf {
    let python = std::env::var_os("AGENT_EXEC_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh installs the Python MCP SDK there \
         (or set AGENT_EXEC_TEST_PYTHON to a Python that has `mcp`)",
        python.display()
    );
    python
}

fn mcp_client(env: &Env, scenario: &str, extra_env: &[(&str, &str)]) -> Value {
    let workdir = env.scratch();
    let mut cmd = Command::new(mcp_python());
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py"))
        .args([scenario, bin()])
        .arg(env.root())
        .arg(&workdir)
        .env("XDG_CONFIG_HOME", env.config_home())
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the MCP client");
    assert!(
        out.status.success(),
        "MCP client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client prints one JSON object")
}

/// initialize, tools/list, and a run/status/tail/wait/kill/list round, with
/// secrets, stdin and bad requests; observation capped by the server's
/// AGENT_EXEC_MCP_MAX_UNTIL_SECONDS.
#[test]
fn a_real_mcp_client_runs_observes_and_kills_jobs() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let began = Instant::now();
    let v = mcp_client(
        &env,
        "round_trip",
        &[("AGENT_EXEC_MCP_MAX_UNTIL_SECONDS", "1")],
    );
    assert_eq!(v["server"], "agent-exec");
    assert_eq!(v["instructions"], true);
    assert_eq!(
        v["tools"],
        serde_json::json!([
            "kill",
            "list",
            "pipeline_run",
            "pipeline_validate",
            "run",
            "status",
            "tail",
            "wait"
        ])
    );
    let run = &v["run"]["json"];
    assert_eq!(v["run"]["is_error"], false, "{v:#}");
    assert_eq!(run["state"], "exited", "{run:#}");
    assert_eq!(run["exit_code"], 3);
    assert!(
        run["stdout"].as_str().unwrap().contains("hello from mcp"),
        "{run:#}"
    );
    assert_eq!(v["status"]["json"]["state"], "exited");
    assert!(
        v["tail"]["json"]["stderr"]
            .as_str()
            .unwrap()
            .contains("oops"),
        "{v:#}"
    );

    // `wait` asked 30 s; the server's cap answered after 1 s, job running.
    assert_eq!(v["wait_capped"]["is_error"], false, "{v:#}");
    assert_eq!(v["wait_capped"]["json"]["state"], "running", "{v:#}");
    assert!(began.elapsed() < Duration::from_secs(25), "the cap held");
    assert_eq!(v["kill"]["is_error"], false, "{v:#}");
    assert_eq!(v["list"]["json"]["count"], 1, "{v:#}");

    let secret_run = v["env"].to_string();
    assert!(!secret_run.contains("hunter2-from-mcp"), "{secret_run}");
    assert!(!secret_run.contains("literal-xyz-secret"), "{secret_run}");
    assert!(
        v["env"]["json"]["stdout"].as_str().unwrap().contains("***"),
        "{v:#}"
    );
    assert!(v["stdin"]["json"]["stdout"]
        .as_str()
        .unwrap()
        .contains("fed through stdin"));

    // Values reach the job exactly as asked, quotes and spaces included.
    assert_eq!(
        v["env_exact"]["json"]["stdout"], "'single'|\"double\"| spaced ",
        "{v:#}"
    );
    // A pipeline comes as text: the server reads no file for its caller.
    assert!(!v["no_file_read"].to_string().contains("root:"), "{v:#}");
    for (step, code) in [
        ("bad_arguments", "invalid_argument"),
        ("missing_job", "job_not_found"),
        ("validate", "pipeline_invalid"),
        ("no_file_read", "invalid_argument"),
    ] {
        assert_eq!(v[step]["is_error"], true, "{step}: {v:#}");
        assert_eq!(v[step]["json"]["error"]["code"], code, "{step}: {v:#}");
    }
    // Nothing of the bad requests ran: four runs and the slow job only.
    assert_eq!(env.ok(&["list", "--all"])["count"], 5);
}

/// Closing the transport ends the server, never a job.
#[test]
fn closing_the_mcp_transport_leaves_jobs_running() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = mcp_client(&env, "leave_running", &[]);
    assert_eq!(v["run"]["json"]["state"], "running", "{v:#}");
    let id = v["run"]["json"]["job_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.ok(&["status", &id])["state"], "running");
    env.ok(&["kill", "--grace", "0", &id]);
}

/// A running `agent-exec serve` and the address it printed.
struct Served {
    child: Child,
    address: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling the child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn serve(env: &Env, token: &str) -> Served {
    let mut child = env
        .cmd(&["serve", "--bind", "127.0.0.1:0"])
        .env("AGENT_EXEC_SERVE_TOKEN", token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value = serde_json::from_str(&line).expect("serve prints one JSON object");
    assert_eq!(started["type"], "serve", "{started:#}");
    Served {
        child,
        address: started["listening"].as_str().unwrap().to_string(),
    }
}

/// curl: (HTTP status, JSON body).
fn http(
    served: &Served,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg(format!("http://{}{path}", served.address));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// Every route wants the token: missing or wrong, 401 and nothing runs;
/// with it, the CLI's own JSON bodies.
#[test]
fn the_http_api_runs_nothing_without_its_token() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let token = "a-test-token-0123456789abcdef";
    let served = serve(&env, token);
    let marker = env.scratch().join("ran");
    let body = serde_json::json!({
        "command": ["touch", marker.to_str().unwrap()],
        "policy": "permissive",
        "cwd": env.scratch().to_str().unwrap(),
    })
    .to_string();
    for bad in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
        let (code, v) = http(&served, "POST", "/exec", bad, Some(&body));
        assert_eq!(code, 401, "{bad:?}: {v:#}");
        assert_eq!(v["error"]["code"], "unauthorized", "{v:#}");
        let (code, _) = http(&served, "GET", "/list", bad, None);
        assert_eq!(code, 401);
    }
    assert!(!marker.exists(), "nothing ran without the token");
    assert_eq!(env.ok(&["list"])["count"], 0);

    let (code, v) = http(&served, "POST", "/exec", Some(token), Some(&body));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["state"], "exited", "{v:#}");
    assert!(marker.exists(), "the control: with the token it ran");
    let id = v["job_id"].as_str().unwrap();
    let (code, v) = http(&served, "GET", &format!("/status/{id}"), Some(token), None);
    assert_eq!((code, v["state"].as_str()), (200, Some("exited")), "{v:#}");
    let (code, v) = http(
        &served,
        "GET",
        "/status/0123456789abcdef",
        Some(token),
        None,
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("job_not_found"))
    );
    let (code, v) = http(
        &served,
        "POST",
        "/exec",
        Some(token),
        Some("{\"command\": []}"),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (code, v) = http(&served, "GET", "/list?limit=5", Some(token), None);
    assert_eq!((code, v["count"].as_u64()), (200, Some(1)), "{v:#}");

    // The API's own token is not its jobs' to read, even where the policy
    // passes the whole environment on.
    let body = serde_json::json!({
        "command": ["sh", "-c", "printf '%s' \"$AGENT_EXEC_SERVE_TOKEN\""],
        "policy": "permissive",
    })
    .to_string();
    let (code, v) = http(&served, "POST", "/exec", Some(token), Some(&body));
    assert_eq!((code, v["stdout"].as_str()), (200, Some("")), "{v:#}");
    // A pipeline comes as text; no file is read for the caller.
    let (code, v) = http(
        &served,
        "POST",
        "/pipeline/validate",
        Some(token),
        Some("{\"file\": \"/etc/shadow\"}"),
    );
    assert_eq!(code, 400, "{v:#}");
    assert!(!v.to_string().contains("root:"), "{v:#}");
}
