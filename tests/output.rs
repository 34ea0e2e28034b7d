//! Logs, excerpts, masking, caps, environment and stdin.

mod common;

use common::*;

#[test]
fn a_masked_secret_never_reaches_the_logs_or_the_json_even_split_across_writes() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let secret = "hunter2-very-secret";
    // The secret is written in three pieces with pauses, so the pump reads it across boundaries.
    let script = "printf 'A=hunter2'; sleep 0.1; printf '%s' '-very-'; sleep 0.1; printf 'secret\\n'; echo \"$TOKEN\" >&2";
    let v = env.ok(&[
        "run",
        "--env",
        &format!("TOKEN={secret}"),
        "--mask",
        "TOKEN",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(v["stdout"], "A=***\n");
    assert_eq!(v["stderr"], "***\n");
    assert_eq!(v["masked"], serde_json::json!(["TOKEN"]));
    for log in ["stdout_log_path", "stderr_log_path"] {
        let text = std::fs::read_to_string(v[log].as_str().unwrap()).unwrap();
        assert!(!text.contains("hunter2"), "{log}: {text}");
    }
    let stored = std::fs::read_to_string(env.root().join(job_id(&v)).join("job.json")).unwrap();
    assert!(!stored.contains(secret), "job.json: {stored}");
    // A literal mask hides text in the argv too.
    let v = env.ok(&[
        "run",
        "--mask",
        "s3cr3t-literal",
        "--",
        "echo",
        "key=s3cr3t-literal",
    ]);
    assert_eq!(v["argv"], serde_json::json!(["echo", "key=***"]));
    assert_eq!(v["stdout"], "key=***\n");
    assert_eq!(v["masked"], serde_json::json!(["literal#1"]));
}

#[test]
fn a_created_job_keeps_its_secrets_out_of_the_definition_until_it_starts() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let c = env.ok(&[
        "create",
        "--env",
        "PASS=open-sesame-42",
        "--mask",
        "PASS",
        "--",
        "sh",
        "-c",
        "echo $PASS",
    ]);
    let id = job_id(&c);
    let dir = env.root().join(&id);
    assert!(!std::fs::read_to_string(dir.join("job.json"))
        .unwrap()
        .contains("open-sesame-42"));
    let v = env.ok(&["start", &id]);
    assert_eq!(v["stdout"], "***\n");
    assert!(
        !dir.join("secrets.json").exists(),
        "clear-text secrets are removed once the job runs"
    );
}

/// A mask that hides nothing in the definition (a literal secret the
/// command may print) still reaches the logs of a job started later, and
/// the job still gets its variables.
#[test]
fn a_created_job_with_a_literal_mask_keeps_its_environment() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let c = env.ok(&[
        "create",
        "--mask",
        "sekrit",
        "--env",
        "FOO=bar",
        "--",
        "sh",
        "-c",
        "echo \"FOO=[$FOO] sekrit\"",
    ]);
    let v = env.ok(&["start", &job_id(&c)]);
    assert_eq!(v["stdout"], "FOO=[bar] ***\n", "{v:#}");
}

#[test]
fn output_above_the_log_cap_is_counted_truncated_and_reported() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--log-cap",
        "64K",
        "--",
        "head",
        "-c",
        "1000000",
        "/dev/zero",
    ]);
    assert_eq!(v["result"], "success");
    assert_eq!(v["stdout_total_bytes"], 1_000_000);
    assert_eq!(v["stdout_log_truncated"], true);
    assert_eq!(v["stdout_log_truncated_by"], "cap");
    // The head and the tail of 32 KiB each, and the marker between them.
    assert_eq!(v["stdout_log_omitted"]["at"], 32 * 1024, "{v:#}");
    assert_eq!(
        v["stdout_log_omitted"]["bytes"],
        1_000_000 - 64 * 1024,
        "{v:#}"
    );
    let len = std::fs::metadata(v["stdout_log_path"].as_str().unwrap())
        .unwrap()
        .len();
    assert!(len > 64 * 1024 && len < 64 * 1024 + 200, "{len}");
}

/// A test run's summary is at the end: past the cap (the built-in 64 MiB),
/// a 100 MiB log keeps its last line, and `tail` shows it.
#[test]
fn a_log_past_its_cap_keeps_its_last_line() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--forever",
        "--",
        "perl",
        "-e",
        "my $l = ('x' x 1023) . qq(\\n); print $l for 1 .. 102400; print qq(LAST LINE\\n)",
    ]);
    assert_eq!(v["exit_code"], 0, "{v:#}");
    assert_eq!(v["stdout_total_bytes"], 100 * 1024 * 1024 + 10, "{v:#}");
    assert_eq!(v["stdout_log_truncated"], true);
    assert_eq!(
        v["stdout_log_omitted"]["bytes"],
        36 * 1024 * 1024 + 10,
        "{v:#}"
    );
    assert!(
        v["stdout"].as_str().unwrap().ends_with("LAST LINE\n"),
        "{v:#}"
    );
    let id = job_id(&v);
    let t = env.ok(&["tail", "--lines", "1", &id]);
    assert!(
        t["stdout"].as_str().unwrap().ends_with("] …\nLAST LINE\n"),
        "{t:#}"
    );
    let log = std::fs::read(v["stdout_log_path"].as_str().unwrap()).unwrap();
    assert!(log.ends_with(b"LAST LINE\n"));
    assert!(String::from_utf8_lossy(&log[32 << 20..(32 << 20) + 200]).contains("bytes omitted"));
}

#[test]
fn excerpts_keep_head_and_tail_within_max_bytes() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--max-bytes", "64", "--", "seq", "1", "10000"]);
    let out = v["stdout"].as_str().unwrap();
    assert!(out.starts_with("1\n2\n3\n"), "{out}");
    assert!(out.ends_with("9999\n10000\n"), "{out}");
    assert!(out.contains("bytes omitted; log: "), "{out}");
    assert!(out.contains(v["stdout_log_path"].as_str().unwrap()));
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stdout_total_bytes"], 48894);
}

#[test]
fn environment_comes_from_flags_files_and_optionally_the_caller() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = write_file(
        &env.scratch(),
        "vars.env",
        "# comment\nexport FROM_FILE=\"file value\"\nSHARED=file\n",
    );
    let v = env.ok(&[
        "run",
        "--env-file",
        file.to_str().unwrap(),
        "--env",
        "SHARED=flag",
        "--",
        "sh",
        "-c",
        "echo \"$FROM_FILE|$SHARED|${AE_TEST_INHERITED:-unset}\"",
    ]);
    assert_eq!(v["stdout"], "file value|flag|unset\n");
    assert_eq!(v["env_keys"], serde_json::json!(["FROM_FILE", "SHARED"]));
    // The caller's environment reaches the job only under a policy that inherits it.
    let refused = env
        .cmd(&["run", "--inherit-env", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(parse_one(&refused).1["error"]["code"], "override_forbidden");
    let inherited = env
        .cmd(&[
            "run",
            "--policy",
            "permissive",
            "--",
            "sh",
            "-c",
            "echo ${AE_TEST_INHERITED:-unset}",
        ])
        .env("AE_TEST_INHERITED", "yes")
        .output()
        .unwrap();
    assert_eq!(parse_one(&inherited).1["stdout"], "yes\n");
    let scrubbed = env
        .cmd(&[
            "run",
            "--policy",
            "permissive",
            "--no-inherit-env",
            "--",
            "sh",
            "-c",
            "echo ${AE_TEST_INHERITED:-unset}",
        ])
        .env("AE_TEST_INHERITED", "yes")
        .output()
        .unwrap();
    assert_eq!(parse_one(&scrubbed).1["stdout"], "unset\n");
    env.err(
        &["run", "--env", "=novalue", "--", "true"],
        "invalid_argument",
    );
    let bad = write_file(&env.scratch(), "bad.env", "JUST_A_WORD\n");
    let e = env.err(
        &["run", "--env-file", bad.to_str().unwrap(), "--", "true"],
        "invalid_argument",
    );
    assert!(e["error"]["message"].as_str().unwrap().contains(":1:"));
}

#[test]
fn stdin_is_dev_null_unless_given() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // `cat` would hang forever on a terminal; with /dev/null it ends at once.
    let out = env
        .cmd(&["run", "--", "cat"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(parse_one(&out).1["stdout"], "");
    assert_eq!(
        env.ok(&["run", "--stdin", "from flag", "--", "cat"])["stdout"],
        "from flag"
    );
    let f = write_file(&env.scratch(), "in.txt", "from file\n");
    assert_eq!(
        env.ok(&["run", "--stdin-file", f.to_str().unwrap(), "--", "cat"])["stdout"],
        "from file\n"
    );
    let mut child = env
        .cmd(&["run", "--stdin", "-", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"from pipe").unwrap();
    assert_eq!(
        parse_one(&child.wait_with_output().unwrap()).1["stdout"],
        "from pipe"
    );
    let big = env.scratch().join("big.bin");
    std::fs::write(&big, vec![b'x'; (16 << 20) + 1]).unwrap();
    env.err(
        &["run", "--stdin-file", big.to_str().unwrap(), "--", "cat"],
        "stdin_too_large",
    );
}

/// The job writes into pipes of 256 KiB, not the kernel's 64 KiB: a
/// stream then moves much faster through the pump (docs/performance.md).
#[test]
fn the_jobs_output_pipes_hold_256_kib() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // F_GETPIPE_SZ is 1032.
    let v = env.ok(&[
        "run",
        "--",
        "perl",
        "-e",
        "print fcntl(STDOUT, 1032, 0), ' ', fcntl(STDERR, 1032, 0)",
    ]);
    assert_eq!(v["stdout"], "262144 262144", "{v:#}");
}

/// Every local user can read a process's command line. A secret given on
/// the caller's (`--env TOKEN=…`) must not stay readable there for as long
/// as the job runs: the supervisor replaces it.
#[test]
fn a_secret_on_the_command_line_is_not_left_in_the_supervisors() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let secret = "s3cr3t-on-the-command-line";
    // Control: a process's command line is readable, secret and all.
    let mut control = std::process::Command::new("perl")
        .args(["-e", "sleep 5", secret])
        .spawn()
        .unwrap();
    // (It is filled in a moment after the exec that `spawn` waits for.)
    let path = format!("/proc/{}/cmdline", control.id());
    eventually(
        "the control's command line",
        std::time::Duration::from_secs(5),
        || {
            let cmdline = std::fs::read(&path).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(secret)
        },
    );
    control.kill().unwrap();
    control.wait().unwrap();

    let v = env.ok(&[
        "run",
        "--no-wait",
        "--env",
        &format!("TOKEN={secret}"),
        "--mask",
        "TOKEN",
        "--",
        "sleep",
        "5",
    ]);
    let id = job_id(&v);
    let sup = v["supervisor_pid"].as_i64().unwrap();
    eventually("the job to run", std::time::Duration::from_secs(5), || {
        env.ok(&["status", &id])["state"] == "running"
    });
    let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains(secret), "{cmdline:?}");
    assert!(cmdline.contains("supervisor"), "{cmdline:?}");
    env.ok(&["kill", "--signal", "KILL", "--grace", "0", &id]);
}
