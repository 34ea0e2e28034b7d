//! Policies as a user meets them: errors in policy files with file, line
//! and column; `policy list/show/check`; host policies; the host floor;
//! command-line overrides a policy forbids; and a `sandbox` report that
//! matches what the job really finds itself in.

mod common;

use std::path::Path;

use serde_json::{json, Value};

use common::*;

/// Asserts a `policy_error` at `file:line:column` for `field`.
fn assert_located(v: &Value, file: &Path, line: u64, column: u64, field: Option<&str>) {
    assert_eq!(v["error"]["code"], "policy_error", "{v:#}");
    let loc = &v["error"]["location"];
    assert_eq!(loc["file"], s(file), "{v:#}");
    assert_eq!(loc["line"], line, "{v:#}");
    assert_eq!(loc["column"], column, "{v:#}");
    match field {
        Some(f) => assert_eq!(loc["field"], f, "{v:#}"),
        None => assert!(loc.get("field").is_none(), "{v:#}"),
    }
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{}:{line}:{column}: ", s(file))),
        "the message leads with FILE:LINE:COL: {message}"
    );
}

/// A bad policy file: name, text, line, column, field, a word the message
/// must contain.
type Case = (
    &'static str,
    &'static str,
    u64,
    u64,
    Option<&'static str>,
    &'static str,
);

#[test]
fn bad_policy_files_are_errors_with_file_line_and_column() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let dir = fx.sub("policies");
    let cases: [Case; 6] = [
        (
            "unknown-key.toml",
            "extends = \"default\"\n\n[limits]\nmemroy = \"1G\"\n",
            4,
            1,
            Some("limits.memroy"),
            "memory",
        ),
        (
            "bad-size.toml",
            "extends = \"default\"\n[limits]\nmemory = \"12Q\"\n",
            3,
            10,
            Some("limits.memory"),
            "size",
        ),
        (
            "bad-duration.toml",
            "extends = \"default\"\n[limits]\n  timeout = \"ten\"\n",
            3,
            13,
            Some("limits.timeout"),
            "duration",
        ),
        (
            "wrong-type.toml",
            "[limits]\npids = \"many\"\n",
            2,
            8,
            Some("limits.pids"),
            "integer",
        ),
        (
            "impossible.toml",
            "[network]\nmode = \"none\"\nconnect_ports = [80]\n",
            3,
            17,
            Some("network.connect_ports"),
            "none",
        ),
        ("syntax.toml", "[limits\n", 1, 8, None, "]"),
    ];
    for (name, text, line, column, field, word) in cases {
        let file = write_file(&dir, name, text);
        let v = env.err(&["policy", "check", s(&file)], "policy_error");
        assert_located(&v, &file, line, column, field);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(word), "{name}: {message}");

        // The same file named by --policy: the same error, and no job.
        let v2 = env.err(&["run", "--policy", s(&file), "--", "true"], "policy_error");
        assert_eq!(v2["error"], v["error"], "{name}");
    }
    // A file that is not there is named in the error.
    let missing = dir.join("nope.toml");
    let v = env.err(&["policy", "check", s(&missing)], "policy_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(s(&missing)),
        "{v:#}"
    );
    assert!(env.job_ids().is_empty(), "a refused run creates no job");
}

#[test]
fn an_unknown_policy_name_is_an_error_listing_the_built_ins() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.err(&["run", "--policy", "nosuch", "--", "true"], "policy_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("nosuch"), "{message}");
    for name in ["default", "untrusted", "ci", "permissive"] {
        assert!(message.contains(name), "{message}");
    }
    env.err(&["policy", "show", "nosuch"], "policy_error");
    assert!(env.job_ids().is_empty());
}

#[test]
fn policy_check_of_a_valid_file_shows_the_merged_result() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let file = write_file(
        &fx.sub("policies"),
        "mine.toml",
        "extends = \"untrusted\"\ndescription = \"mine\"\n[limits]\nmemory = \"256M\"\n",
    );
    let v = env.ok(&["policy", "check", s(&file)]);
    assert_eq!(v["type"], "policy_check");
    assert_eq!(v["valid"], true);
    let p = &v["policy"];
    assert_eq!(p["name"], "mine");
    assert_eq!(p["source"], json!({"kind": "file", "path": s(&file)}));
    assert_eq!(p["inherits"], json!(["untrusted", "default"]));
    assert_eq!(p["description"], "mine");
    // Its own value, untrusted's, and default's, merged.
    assert_eq!(p["limits"]["memory_bytes"], 256 << 20);
    assert_eq!(p["limits"]["pids"], 128);
    assert_eq!(p["limits"]["kill_after_ms"], 5000);
    assert_eq!(p["filesystem"]["write"], json!(["$TMPDIR", "/dev/null"]));
    assert_eq!(p["seccomp"]["profile"], "strict");
}

#[test]
fn policy_list_and_show_cover_built_in_and_host_policies() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let v = env.ok(&["policy", "list"]);
    assert_eq!(v["type"], "policy_list");
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["ci", "default", "permissive", "untrusted"] {
        assert!(names.contains(&name), "{names:?}");
    }
    for p in v["policies"].as_array().unwrap() {
        assert_eq!(p["source"], json!({"kind": "builtin"}), "{p}");
        assert!(!p["description"].as_str().unwrap().is_empty(), "{p}");
        assert_eq!(p["error"], Value::Null, "{p}");
    }

    // `show` gives the effective values of policies/default.toml.
    let d = env.ok(&["policy", "show", "default"]);
    assert_eq!(d["type"], "policy");
    let d = &d["policy"];
    assert_eq!(d["name"], "default");
    assert_eq!(d["enforcement"], "strict");
    assert_eq!(d["limits"]["memory_bytes"], 1u64 << 30);
    assert_eq!(d["limits"]["pids"], 512);
    assert_eq!(d["limits"]["timeout_ms"], 600_000);
    assert_eq!(d["network"]["mode"], "none");
    assert_eq!(d["env"]["inherit"], false);
    assert_eq!(d["seccomp"]["profile"], "default");
    // untrusted inherits what it does not set.
    let u = &env.ok(&["policy", "show", "untrusted"])["policy"];
    assert_eq!(u["inherits"], json!(["default"]));
    // ... and sets its own lists: nothing of $HOME, nothing it writes runs.
    assert!(!u["filesystem"]["read"].to_string().contains("$HOME"));
    assert!(!u["filesystem"]["exec"].to_string().contains("$CWD"));
    assert_eq!(u["filesystem"]["write"], json!(["$TMPDIR", "/dev/null"]));
    assert_eq!(u["overrides"]["allow_write"], false);
    let p = &env.ok(&["policy", "show", "permissive"])["policy"];
    assert_eq!(p["filesystem"]["landlock"], false);
    assert_eq!(p["seccomp"]["profile"], "none");

    // A host directory adds policies (a broken one is listed with its error).
    let hd = fx.sub("host-policies");
    let mine = write_file(
        &hd,
        "mine.toml",
        "extends = \"default\"\ndescription = \"host one\"\n[limits]\npids = 64\n",
    );
    let broken = write_file(&hd, "broken.toml", "bogus = 1\n");
    let vars = [("AGENT_EXEC_POLICY_DIR", hd.as_path())];
    let (code, v) = env.run_with(&vars, &["policy", "list"]);
    assert_eq!(code, 0, "{v:#}");
    let find = |name: &str| {
        v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {v:#}"))
            .clone()
    };
    let m = find("mine");
    assert_eq!(m["source"], json!({"kind": "host", "path": s(&mine)}));
    assert_eq!(m["description"], "host one");
    assert_eq!(m["error"], Value::Null);
    let b = find("broken");
    let error = b["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}:1:1: ", s(&broken))),
        "{error}"
    );
    assert_eq!(find("default")["source"], json!({"kind": "builtin"}));

    let (code, v) = env.run_with(&vars, &["policy", "show", "mine"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["policy"]["limits"]["pids"], 64);
    assert_eq!(v["policy"]["inherits"], json!(["default"]));

    // ...and a job runs under it by name.
    let (code, v) = env.run_with(
        &vars,
        &[
            "run",
            "--policy",
            "mine",
            "--cwd",
            s(&fx.cwd()),
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["policy"], "mine");
    assert_eq!(v["result"], "success");
    assert_eq!(v["sandbox"]["limits"]["pids"], 64);
    let (code, v) = env.run_with(&vars, &["run", "--policy", "broken", "--", "true"]);
    assert_eq!(code, 1);
    assert_eq!(v["error"]["code"], "policy_error", "{v:#}");
    assert_eq!(v["error"]["location"]["file"], s(&broken));
}

#[test]
fn a_request_above_the_host_floor_is_refused_naming_the_field() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let floor = write_file(
        &fx.sub("etc"),
        "floor.toml",
        "max_memory = \"2G\"\nnetwork = \"loopback\"\nallow_permissive = false\nmax_pids = 1000\nmax_timeout = \"1h\"\n",
    );
    let vars = [("AGENT_EXEC_FLOOR", floor.as_path())];
    let cwd = fx.cwd();
    let refused = |args: &[&str], field: &str| {
        let mut all = vec!["run", "--cwd", s(&cwd)];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        let (code, v) = env.run_with(&vars, &all);
        assert_eq!(code, 1, "{args:?}: {v:#}");
        assert_eq!(v["error"]["code"], "floor_violation", "{args:?}: {v:#}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{args:?}: {message}");
    };
    refused(&["--memory", "4G"], "limits.memory");
    refused(&["--pids", "5000"], "limits.pids");
    refused(&["--timeout", "2h"], "limits.timeout");
    refused(&["--net", "host"], "network.mode");
    // Whole policies too: ci asks for the host network, permissive for no landlock.
    refused(&["--policy", "ci"], "network.mode");
    refused(&["--policy", "permissive"], "filesystem.landlock");
    assert!(env.job_ids().is_empty(), "nothing ran");

    // Within the floor the job runs, with exactly what it asked for.
    let (code, v) = env.run_with(
        &vars,
        &[
            "run",
            "--cwd",
            s(&cwd),
            "--memory",
            "2G",
            "--net",
            "loopback",
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["result"], "success");
    assert_eq!(v["sandbox"]["network"], "loopback");
    assert_eq!(v["sandbox"]["limits"]["memory_bytes"], 2u64 << 30);

    // A floor file with a mistake stops every run, with its position.
    let bad = write_file(
        &fx.sub("etc"),
        "bad-floor.toml",
        "max_pids = 10\nmax_memory = \"lots\"\n",
    );
    let (code, v) = env.run_with(
        &[("AGENT_EXEC_FLOOR", bad.as_path())],
        &["run", "--", "true"],
    );
    assert_eq!(code, 1);
    assert_located(&v, &bad, 2, 14, Some("max_memory"));
}

#[test]
fn overrides_may_tighten_but_not_loosen_a_policy_that_forbids_it() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    let outside = fx.outside();
    for (args, field) in [
        (vec!["--allow-write", s(&outside)], "allow_write"),
        (vec!["--allow-read", s(&outside)], "allow_read"),
        (vec!["--memory", "1G"], "memory"),
        (vec!["--pids", "1000"], "pids"),
        (vec!["--timeout", "1h"], "timeout"),
        (vec!["--net", "loopback"], "net"),
    ] {
        let mut all = vec!["run", "--policy", "untrusted", "--cwd", s(&cwd)];
        all.extend_from_slice(&args);
        all.extend_from_slice(&["--", "true"]);
        let v = env.err(&all, "override_forbidden");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("untrusted"), "{message}");
        assert!(message.contains(field), "{message}");
    }
    assert!(env.job_ids().is_empty());

    // Tightening is always allowed, and the job gets what it asked for.
    let v = env.ok(&[
        "run",
        "--policy",
        "untrusted",
        "--cwd",
        s(&cwd),
        "--memory",
        "256M",
        "--pids",
        "64",
        "--timeout",
        "30",
        "--",
        "true",
    ]);
    assert_eq!(v["result"], "success");
    let limits = &v["sandbox"]["limits"];
    assert_eq!(limits["memory_bytes"], 256u64 << 20);
    assert_eq!(limits["pids"], 64);
    assert_eq!(limits["timeout_s"], 30.0);

    // A policy file can forbid one override and keep the rest.
    let file = write_file(
        &fx.sub("policies"),
        "no-net.toml",
        "extends = \"default\"\n[overrides]\nnet = false\n",
    );
    let v = env.err(
        &[
            "run",
            "--policy",
            s(&file),
            "--net",
            "loopback",
            "--",
            "true",
        ],
        "override_forbidden",
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("net"));
    let v = env.ok(&[
        "run",
        "--policy",
        s(&file),
        "--cwd",
        s(&cwd),
        "--allow-read",
        s(&outside),
        "--",
        "true",
    ]);
    assert_eq!(v["result"], "success");
}

/// What a job finds out about its own confinement, one fact per line.
const SELF_REPORT: &str = r#"grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t'
echo "uid:$(id -u)"
echo "pid:$$"
echo "host:$(hostname)"
echo "ifaces:$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ',')"
echo "root:$(test -e /var && echo host || echo new)"
"#;

fn facts(v: &Value) -> Vec<String> {
    v["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn run_reports_the_sandbox_layers_the_job_really_has() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let all_ns = json!(["user", "pid", "mount", "ipc", "uts", "cgroup", "net"]);
    for (policy, seccomp) in [("default", "default"), ("untrusted", "strict")] {
        let v = env.job(policy, &fx.cwd(), &[], &[], &["sh", "-c", SELF_REPORT]);
        let sb = &v["sandbox"];
        let mut ns = sb["namespaces"].as_array().unwrap().clone();
        ns.sort_by_key(|n| n.as_str().unwrap().to_string());
        let mut want = all_ns.as_array().unwrap().clone();
        want.sort_by_key(|n| n.as_str().unwrap().to_string());
        assert_eq!(ns, want, "{policy}: {sb:#}");
        assert_eq!(
            sb["landlock"],
            json!({"abi": 7, "status": "fully_enforced"})
        );
        assert_eq!(sb["seccomp"], seccomp);
        assert_eq!(sb["no_new_privs"], true);
        assert_eq!(sb["capabilities"], "none");
        assert_eq!(sb["network"], "none");
        assert_eq!(sb["uid"], 1000);
        assert_eq!(sb["hostname"], "agent-exec");
        // ...and that is what the job sees.
        assert_eq!(
            facts(&v),
            [
                "CapEff:0000000000000000",
                "CapBnd:0000000000000000",
                "NoNewPrivs:1",
                "Seccomp:2",
                "uid:1000",
                // The command runs as pid 2 under agent-exec's minimal init.
                "pid:2",
                "host:agent-exec",
                "ifaces:lo,",
                "root:new",
            ],
            "{policy}: {v:#}"
        );
    }

    let v = env.job(
        "permissive",
        &fx.cwd(),
        &[],
        &[],
        &["sh", "-c", SELF_REPORT],
    );
    let sb = &v["sandbox"];
    assert_eq!(sb["namespaces"], json!([]), "{sb:#}");
    assert_eq!(sb["landlock"]["status"], "not_applied");
    assert_eq!(sb["seccomp"], "none");
    assert_eq!(sb["network"], "host");
    assert_eq!(sb["uid"], 0);
    let f = facts(&v);
    assert_eq!(f[2], "NoNewPrivs:1", "{f:?}");
    assert_eq!(f[3], "Seccomp:0", "{f:?}");
    assert_eq!(f[4], "uid:0", "{f:?}");
    assert_ne!(f[5], "pid:1", "{f:?}");
    assert_ne!(f[6], "host:agent-exec", "{f:?}");
    assert_ne!(f[7], "ifaces:lo,", "the host's interfaces: {f:?}");
    assert_eq!(f[8], "root:host", "{f:?}");

    // --net loopback: the job's own namespace with lo up (a listener of its
    // own is reachable), where under "none" lo is down (ENETUNREACH).
    let script = perl_script(
        r#"
        use Socket;
        my ($l, $c);
        socket($l, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        my $ok = bind($l, pack_sockaddr_in(0, inet_aton("127.0.0.1"))) && listen($l, 1);
        RES("bind", $ok);
        if ($ok) {
            my ($port) = unpack_sockaddr_in(getsockname($l));
            socket($c, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
            RES("connect", connect($c, pack_sockaddr_in($port, inet_aton("127.0.0.1"))));
        }
        "#,
    );
    let v = env.job(
        "default",
        &fx.cwd(),
        &["--net", "loopback"],
        &[],
        &perl(&script, &[]),
    );
    assert_eq!(v["sandbox"]["network"], "loopback");
    assert!(v["sandbox"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("net")));
    assert_eq!(result_line(&v), "bind=ok connect=ok");
    let v = env.job("default", &fx.cwd(), &[], &[], &perl(&script, &[]));
    assert_eq!(result_line(&v), "bind=ok connect=101");
}

/// Path flags mean what a shell user means: `~` and `$HOME` (quoted, so the
/// shell left them alone) expand to the caller's home, a relative path is
/// relative to `--cwd`, a path that does not exist is an error naming it
/// (nothing is created), and `--allow-exec` lets the job run what it built.
#[test]
fn path_flags_expand_like_a_shell_and_must_exist() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let cache = fx.sub("home/cache");
    let notes = write_file(&home, "notes.txt", "remember\n");
    let data = write_file(&fx.sub("data"), "input.txt", "42\n");
    let cwd = fx.cwd();
    let tool = write_file(&fx.sub("cwd/bin"), "tool", "#!/bin/sh\necho built\n");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |flags: &[&str], cmd: &str| {
        let mut args = vec!["run", "--cwd", s(&cwd)];
        args.extend_from_slice(flags);
        args.extend(["--", "sh", "-c", cmd]);
        env.run_with(&[("HOME", &home)], &args)
    };
    let (code, v) = run(
        &[
            "--allow-write",
            "$HOME/cache",
            "--allow-read",
            "~/notes.txt",
            "--allow-read",
            "../data",
        ],
        &format!(
            "echo made > {}/made && cat {} {}",
            s(&cache),
            s(&notes),
            s(&data)
        ),
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["stdout"], "remember\n42\n", "{v:#}");
    assert_eq!(
        std::fs::read_to_string(cache.join("made")).unwrap(),
        "made\n"
    );

    for (flag, path, named) in [
        ("--allow-read", "~/missing", "/home/missing"),
        ("--allow-write", "$HOME/nope", "/home/nope"),
        ("--allow-read", "$NOTAVAR/x", "$NOTAVAR"),
    ] {
        let before = env.job_ids().len();
        let (code, v) = run(&[flag, path], "true");
        assert_eq!(code, 1, "{flag} {path}: {v:#}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{v:#}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(flag) && message.contains(named),
            "{message}"
        );
        assert_eq!(env.job_ids().len(), before, "nothing was created");
    }

    // A program outside what the policy lets run runs where --allow-exec
    // says; without it, no. (default runs what is in the working directory.)
    let tools = fx.sub("tools");
    let tool = write_file(&tools, "tool", "#!/bin/sh\necho built\n");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let call = format!("{}/tool", s(&tools));
    let (_, v) = run(&["--allow-read", "../tools"], &call);
    assert_eq!(v["exit_code"], 126, "{v:#}");
    let (_, v) = run(&["--allow-exec", "../tools"], &call);
    assert_eq!(v["stdout"], "built\n", "{v:#}");
    // untrusted lets nothing be loosened.
    let (code, v) = run(
        &["--policy", "untrusted", "--allow-exec", "bin"],
        "./bin/tool",
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["code"], "override_forbidden", "{v:#}");
}

/// A block says why: what the job tried and the sandbox refused is listed
/// in `denials`, each with the flag that would allow it, and a failed job
/// says so in `message`. Only what the sandbox caused counts: a path that
/// does not exist on the host either, or the same errors under
/// `permissive`, give none.
#[test]
fn a_block_says_why_with_the_flag_that_allows_it() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let secret = write_file(&fx.outside(), "secret.txt", "s\n");
    let readable = fx.sub("readable");
    let script = format!(
        "cat {secret}; cat {missing}; touch {readable}/new; \
         python3 -c 'import socket; socket.getaddrinfo(\"pypi.org\", 443)'; exit 1",
        secret = s(&secret),
        missing = s(&fx.outside().join("not-there")),
        readable = s(&readable),
    );
    let v = env.job(
        "default",
        &fx.cwd(),
        &["--allow-read", s(&readable)],
        &[],
        &["sh", "-c", &script],
    );
    let denials = v["denials"].as_array().expect("denials").clone();
    let hints: Vec<String> = denials
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap(),
                d["hint"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(denials.len(), 3, "{v:#}");
    assert!(
        hints[0].starts_with(&format!("filesystem --allow-read {}", s(&secret))),
        "{hints:?}"
    );
    assert!(
        hints[1].starts_with(&format!("filesystem --allow-write {}", s(&readable))),
        "{hints:?}"
    );
    assert!(
        hints[2].starts_with("network the job's network is none"),
        "{hints:?}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the job's output reports what the sandbox refuses"),
        "{v:#}"
    );
    // Control: without the sandbox the same commands are refused nothing.
    let v = env.job("permissive", &fx.cwd(), &[], &[], &["sh", "-c", &script]);
    assert!(v["denials"].is_null(), "{v:#}");
}

/// The other kinds of block a job meets, each with its own hint: a program
/// it may read but not run (`--allow-exec`), and a file the policy hides
/// (`filesystem.deny`).
#[test]
fn a_block_on_exec_or_a_hidden_file_names_its_key() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let tools = fx.sub("tools");
    let tool = write_file(&tools, "tool", "#!/bin/sh\necho ran\n");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write_file(&fx.cwd(), "secret.env", "TOKEN=x\n");
    let policy = write_file(
        &fx.sub("policies"),
        "hiding.toml",
        "extends = \"default\"\n[filesystem]\ndeny = [\"$CWD/secret.env\"]\n",
    );
    let script = format!("{}; cat secret.env; exit 1", s(&tool));
    let v = env.job(
        s(&policy),
        &fx.cwd(),
        &["--allow-read", s(&tools)],
        &[],
        &["sh", "-c", &script],
    );
    let hints: Vec<&str> = v["denials"]
        .as_array()
        .unwrap_or_else(|| panic!("no denials: {v:#}"))
        .iter()
        .map(|d| d["hint"].as_str().unwrap())
        .collect();
    assert!(
        hints
            .iter()
            .any(|h| h.starts_with(&format!("--allow-exec {}", s(&tool)))),
        "{v:#}"
    );
    assert!(
        hints
            .iter()
            .any(|h| h.starts_with("filesystem.deny hides it")),
        "{v:#}"
    );
    // What a job prints is its own to choose: a hidden credential is never
    // answered with the flag that would show it.
    assert!(!hints.iter().any(|h| h.contains("--allow-read")), "{v:#}");
}
