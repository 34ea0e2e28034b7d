//! Shared harness: run the real binary against a throwaway job store, check
//! that stdout is exactly one JSON object, and validate it against the
//! schema that `agent-exec schema` prints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent-exec")
}

/// These tests need root, cgroups and the kernel's isolation features. CI
/// runs them as root and they fail loudly there; a developer without root
/// may opt out with AGENT_EXEC_SKIP_PRIVILEGED=1.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var_os("AGENT_EXEC_SKIP_PRIVILEGED").is_some() {
        eprintln!("skipping: not root and AGENT_EXEC_SKIP_PRIVILEGED is set");
        return false;
    }
    panic!("this test needs root (cgroups, namespaces); run as root or set AGENT_EXEC_SKIP_PRIVILEGED=1 to skip");
}

/// A job store in a temporary directory, removed (with its jobs) at the end.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("ae-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// Kills whatever a job of this store might still run (a failed assertion
    /// must not leak processes or cgroups into the next test).
    fn kill_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(self.root()) else {
            return;
        };
        let Ok(layout) = agent_exec::sandbox::cgroup::Layout::detect() else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let cgroup = agent_exec::sandbox::cgroup::JobCgroup::reattach(&layout, &id);
            if cgroup.v2_dir().is_dir() {
                cgroup.kill_all();
                cgroup.wait_empty(Duration::from_secs(5));
                cgroup.remove();
            }
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `$XDG_CONFIG_HOME` of this store's commands: `agent-exec/config.toml` in it is their config.
    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// A scratch directory for the test's own files.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(self.root()).args(args);
        c.current_dir(self.dir.path());
        // The test's own config (none unless it writes one), never the caller's.
        c.env("XDG_CONFIG_HOME", self.config_home());
        c.stdin(Stdio::null());
        c
    }

    /// Runs agent-exec and returns (exit status, the one JSON object it printed).
    pub fn run(&self, args: &[&str]) -> (i32, Value) {
        let out = self.cmd(args).output().expect("spawn agent-exec");
        parse_one(&out)
    }

    /// Like `run`, asserting `ok: true` and exit 0.
    pub fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.run(args);
        assert_eq!(v["ok"], true, "expected ok for {args:?}: {v:#}");
        assert_eq!(code, 0, "exit status for {args:?}: {v:#}");
        v
    }

    /// Like `run`, asserting `ok: false` with the given code and exit 1.
    pub fn err(&self, args: &[&str], code: &str) -> Value {
        let (status, v) = self.run(args);
        assert_eq!(v["ok"], false, "expected an error for {args:?}: {v:#}");
        assert_eq!(v["error"]["code"], code, "{v:#}");
        assert!(!v["error"]["message"].as_str().unwrap_or("").is_empty());
        assert_eq!(status, 1, "exit status for {args:?}: {v:#}");
        v
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_leftovers();
    }
}

/// Asserts stdout is exactly one JSON object on one line, valid against the schema.
pub fn parse_one(out: &Output) -> (i32, Value) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be exactly one line of JSON, got:\n{stdout}\nstderr:\n{stderr}"
    );
    let v: Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_valid(&v);
    (out.status.code().unwrap_or(-1), v)
}

/// Validates one response against the published schema.
pub fn assert_valid(v: &Value) {
    assert_eq!(v["schema_version"], "1", "{v}");
    assert!(v["ok"].is_boolean(), "{v}");
    assert!(v["type"].is_string(), "{v}");
    let validator = validator();
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "response does not match the schema: {errors:?}\n{v:#}"
    );
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(bin())
            .arg("schema")
            .output()
            .expect("agent-exec schema");
        let v: Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
        assert_eq!(v["type"], "schema");
        jsonschema::validator_for(&v["schema"]).expect("the schema compiles")
    })
}

/// Processes whose command line contains `needle` (to prove a tree is gone).
pub fn processes_matching(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        // Zombies have an empty cmdline; only living matches count.
        if cmd.contains(needle) && !cmd.contains("agent-exec") {
            found.push((pid, cmd));
        }
    }
    found
}

/// Waits (bounded) for a condition that another process makes true.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

/// Every cgroup directory agent-exec could have made for `job_id`.
pub fn cgroup_dirs(job_id: &str) -> Vec<PathBuf> {
    let layout = agent_exec::sandbox::cgroup::Layout::detect().expect("cgroup layout");
    let name = agent_exec::sandbox::cgroup::dir_name(job_id);
    let mut dirs = vec![layout.v2_own.join(&name)];
    for own in layout.v1_own.values() {
        dirs.push(own.join(&name));
    }
    dirs
}

/// The supervisor removes a job's cgroups right after it has recorded the
/// final state and told its caller (housekeeping nobody waits for), so they
/// may outlive `run`/`wait` by a fraction of a millisecond: give it time.
pub fn assert_cgroups_removed(job_id: &str) {
    let dirs = cgroup_dirs(job_id);
    eventually(
        "the job's cgroups to be removed",
        Duration::from_secs(10),
        || dirs.iter().all(|d| !d.exists()),
    );
}

/// A job started with `--no-wait` reads as created until its supervisor has
/// launched it; this is its first status past that point.
pub fn launched(env: &Env, id: &str) -> Value {
    let mut last = Value::Null;
    eventually("the job is launched", Duration::from_secs(10), || {
        last = env.ok(&["status", id]);
        last["state"] != "created"
    });
    last
}

/// The id of the one job in `env`'s store, once it runs: for a job whose
/// CLI is still waiting on it, and so has not named it yet.
pub fn the_running_job(env: &Env) -> String {
    let mut id = String::new();
    eventually("the job to be running", Duration::from_secs(10), || {
        // The one job directory (the store also holds its index).
        let Some(name) = std::fs::read_dir(env.root())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return false;
        };
        id = name;
        env.run(&["status", &id]).1["state"] == "running"
    });
    id
}

pub fn job_id(v: &Value) -> String {
    v["job_id"].as_str().expect("job_id").to_string()
}

pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, content).unwrap();
    p
}

// ---------------------------------------------------------------------------
// Sandbox tests (escapes, policies, doctor): fixtures outside /tmp and job
// helpers. Kept apart from the lifecycle harness above.
// ---------------------------------------------------------------------------

/// Throwaway files for escape attempts, in a temporary directory under the
/// cargo target dir rather than /tmp: the `default` policy mounts a private
/// tmpfs on /tmp, which would hide files there and make an attempt fail
/// for the wrong reason (ENOENT instead of a denial).
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(base).unwrap();
        Fixture {
            dir: tempfile::Builder::new()
                .prefix("ae-sandbox-")
                .tempdir_in(base)
                .expect("fixture tempdir"),
        }
    }

    /// The job's working directory (`$CWD`).
    pub fn cwd(&self) -> PathBuf {
        self.sub("cwd")
    }

    /// A directory no built-in policy grants: the target of escapes.
    pub fn outside(&self) -> PathBuf {
        self.sub("outside")
    }

    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// `path` as a &str (fixture paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The built-in policies whose isolation every escape test attacks.
pub const CONFINED: [&str; 2] = ["default", "untrusted"];

impl Env {
    /// Runs `cmd` as a job under `policy` in `cwd` with `extra` run options
    /// (and `vars` in agent-exec's own environment), observes it to the
    /// end, and asserts the job itself ran and exited (so a launch failure
    /// can never pass for a blocked escape).
    pub fn job(
        &self,
        policy: &str,
        cwd: &Path,
        extra: &[&str],
        vars: &[(&str, &str)],
        cmd: &[&str],
    ) -> Value {
        let mut args = vec!["run", "--until", "60", "--policy", policy, "--cwd", s(cwd)];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        let mut c = self.cmd(&args);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().expect("spawn agent-exec");
        let (code, v) = parse_one(&out);
        assert_eq!(v["ok"], true, "job under {policy} {extra:?} {cmd:?}: {v:#}");
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(v["state"], "exited", "the job must run to its end: {v:#}");
        // A policy named by path reports its file stem.
        let name = if policy.contains('/') {
            Path::new(policy).file_stem().unwrap().to_str().unwrap()
        } else {
            policy
        };
        assert_eq!(v["policy"], name, "{v:#}");
        v
    }

    /// Like [`Env::job`] for a job that prints exactly one `RESULT ...` line
    /// on stdout; returns what follows `RESULT `.
    pub fn attempt(
        &self,
        policy: &str,
        cwd: &Path,
        extra: &[&str],
        vars: &[(&str, &str)],
        cmd: &[&str],
    ) -> String {
        let v = self.job(policy, cwd, extra, vars, cmd);
        result_line(&v)
    }
}

/// The text after `RESULT ` on the job's only RESULT line.
pub fn result_line(v: &Value) -> String {
    let out = v["stdout"].as_str().unwrap_or("");
    let found: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the job must print one RESULT line; stdout {out:?}, stderr {:?}\n{v:#}",
        v["stderr"]
    );
    found[0].to_string()
}

/// argv for `perl -e SCRIPT ARGS...`.
pub fn perl<'a>(script: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["perl", "-e", script];
    v.extend_from_slice(args);
    v
}

/// Perl snippet: `RES(label, ok)` appends `label=ok` or `label=<errno>`.
/// Every attempt script starts with it and ends with `DONE`.
pub const PERL_PRELUDE: &str = r#"
my @res;
sub RES { my ($l, $ok) = @_; push @res, "$l=" . ($ok ? "ok" : ($! + 0)); }
sub DONE { print "RESULT ", join(" ", @res), "\n"; }
"#;

/// `PERL_PRELUDE` + body + `DONE()`.
pub fn perl_script(body: &str) -> String {
    format!("{PERL_PRELUDE}\n{body}\nDONE();\n")
}

impl Env {
    /// Like [`Env::run`] with extra variables in agent-exec's environment
    /// (`AGENT_EXEC_FLOOR`, `AGENT_EXEC_POLICY_DIR`...).
    pub fn run_with(&self, vars: &[(&str, &Path)], args: &[&str]) -> (i32, Value) {
        let mut c = self.cmd(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        parse_one(&c.output().expect("spawn agent-exec"))
    }

    /// The ids of every job in this store (to prove a refused run made none).
    pub fn job_ids(&self) -> Vec<String> {
        let v = self.ok(&["list", "--all"]);
        v["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_string())
            .collect()
    }
}
