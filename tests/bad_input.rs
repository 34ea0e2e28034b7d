//! Bad input gets a clear JSON error, exit 1, and leaves the store readable.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_missing_command_is_launch_failed_127_and_an_unexecutable_file_126() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let e = env.err(&["run", "--", "no-such-command-anywhere"], "launch_failed");
    assert_eq!(e["error"]["exit_code"], 127);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found"));
    let id = e["error"]["job_id"].as_str().unwrap().to_string();
    let s = env.ok(&["status", &id]);
    assert_eq!(s["state"], "failed");
    assert_eq!(s["result"], "launch_failed");
    assert_eq!(s["exit_code"], 127);
    assert_cgroups_removed(&id);
    let (code, _) = env.run(&["run", "--exit-status", "--", "no-such-command-anywhere"]);
    assert_eq!(code, 127);

    let script = write_file(&env.scratch(), "script.sh", "#!/bin/sh\necho hi\n");
    let e = env.err(
        &[
            "run",
            "--cwd",
            env.scratch().to_str().unwrap(),
            "--",
            "./script.sh",
        ],
        "launch_failed",
    );
    assert_eq!(e["error"]["exit_code"], 126);
    let (code, _) = env.run(&["run", "--exit-status", "--", script.to_str().unwrap()]);
    assert_eq!(code, 126);
    let e = env.err(
        &["run", "--", env.scratch().to_str().unwrap()],
        "launch_failed",
    );
    assert_eq!(
        e["error"]["exit_code"], 126,
        "a directory is not executable"
    );
}

/// The program is looked up like execvp does: a PATH entry the job cannot
/// execute (a version manager's shim under `$HOME`, outside the places the
/// policy lets it execute from) is skipped and the next entry tried. The
/// control is `permissive`, which may run the shim. When nothing on PATH
/// may run, the error says where the program is and why.
#[test]
fn a_program_the_job_may_not_execute_is_skipped_like_execvp_does() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let shims = fx.sub("home/.some-version-manager/shims");
    let shim = write_file(&shims, "perl", "#!/bin/sh\necho shim\n");
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", s(&shims));
    let run = |policy: &str, path: &str| {
        env.run_with(
            &[("HOME", &home), ("PATH", std::path::Path::new(path))],
            &[
                "run",
                "--policy",
                policy,
                "--cwd",
                s(&fx.cwd()),
                "--",
                "perl",
                "-e",
                "print qq(real\\n)",
            ],
        )
    };
    let (_, v) = run("default", &path);
    assert_eq!(v["stdout"], "real\n", "{v:#}");
    let (_, v) = run("permissive", &path);
    assert_eq!(v["stdout"], "shim\n", "{v:#}");
    let (code, v) = run("default", s(&shims));
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["exit_code"], 126, "{v:#}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(s(&shim)) && message.contains("filesystem.exec"),
        "{message}"
    );
}

#[test]
fn bad_durations_sizes_and_values_are_invalid_argument_errors() {
    let env = Env::new();
    for args in [
        vec!["run", "--timeout", "soon", "--", "true"],
        vec!["run", "--kill-after", "-1", "--", "true"],
        vec!["run", "--memory", "lots", "--", "true"],
        vec!["run", "--memory", "12Q", "--", "true"],
        vec!["run", "--pids", "0", "--", "true"],
        vec!["run", "--cpus", "many", "--", "true"],
        vec!["run", "--max-bytes", "1 parsec", "--", "true"],
        vec!["run", "--until", "forever-ish", "--", "true"],
        vec!["run", "--cwd", "/definitely/not/here", "--", "true"],
        vec!["run", "--tag", "bad tag", "--", "true"],
        vec!["gc", "--older-than", "a while"],
        vec!["kill", "--signal", "SIGFOO", "0123"],
    ] {
        let e = env.err(&args, "invalid_argument");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.len() > 10, "{args:?}: {msg}");
    }
    let e = env.err(
        &["run", "--timeout", "soon", "--", "true"],
        "invalid_argument",
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("\"soon\""));
    // Nothing was created by the rejected requests.
    assert_eq!(env.ok(&["list"])["count"], 0);
    env.err(&["status", "abcdef"], "job_not_found");
    env.err(&["wait", "abcdef"], "job_not_found");
    env.err(&["tail", "abcdef"], "job_not_found");
    env.err(&["kill", "abcdef"], "job_not_found");
    env.err(&["delete", "abcdef"], "job_not_found");
}

/// Runs a shell script in a private mount namespace, so the small tmpfs it
/// mounts is invisible to (and cannot harm) the rest of the host.
fn in_private_mount_ns(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", script])
        .env("AE", bin())
        .output()
        .expect("unshare")
}

#[test]
fn a_read_only_store_gives_store_unavailable_and_stays_readable() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let store = env.scratch().join("ro");
    std::fs::create_dir_all(&store).unwrap();
    let out = in_private_mount_ns(&format!(
        "mount -t tmpfs -o size=1M none {s}; \"$AE\" --root {s}/jobs run -- true > {s}/first.json; \
         for i in 1 2 3 4 5 6 7 8 9 10; do mount -o remount,ro {s} 2>/dev/null && break; sleep 0.2; done; \"$AE\" --root {s}/jobs run -- echo hi || echo \"exit=$?\" >&2; \
         \"$AE\" --root {s}/jobs list; cat {s}/first.json >&2",
        s = store.display()
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        lines[0]["error"]["code"], "store_unavailable",
        "{}",
        lines[0]
    );
    assert!(lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Read-only"));
    assert!(stderr.contains("exit=1"), "{stderr}");
    assert_eq!(lines[1]["type"], "list");
    assert_eq!(
        lines[1]["count"], 1,
        "the job made before the remount is still listed"
    );
    for l in &lines {
        assert_valid(l);
    }
}

#[test]
fn a_full_disk_gives_store_full_and_a_job_filling_it_still_records_its_result() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let store = env.scratch().join("full");
    std::fs::create_dir_all(&store).unwrap();
    let out = in_private_mount_ns(&format!(
        "mount -t tmpfs -o size=512k none {s}; \
         \"$AE\" --root {s}/jobs run -- sh -c 'head -c 2000000 /dev/zero' ; \
         dd if=/dev/zero of={s}/filler bs=4k 2>/dev/null || true; \
         \"$AE\" --root {s}/jobs run -- echo hi || echo \"exit=$?\" >&2; \
         \"$AE\" --root {s}/jobs list",
        s = store.display()
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "stdout: {stdout}\nstderr: {stderr}");
    // The job whose output filled the disk still has an honest result.
    let filled = &lines[0];
    assert_eq!(filled["result"], "success", "{filled:#}");
    assert_eq!(filled["stdout_total_bytes"], 2_000_000);
    // Bytes the log does not hold are never hidden: truncated, and why.
    assert_eq!(filled["stdout_log_truncated"], true, "{filled:#}");
    assert_eq!(
        filled["stdout_log_truncated_by"], "write_error",
        "{filled:#}"
    );
    assert!(
        filled["message"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{filled:#}"
    );
    // A new job cannot even be created: a clear error, nothing half-made.
    assert_eq!(lines[1]["error"]["code"], "store_full", "{}", lines[1]);
    assert_eq!(lines[1]["error"]["retryable"], true);
    assert!(stderr.contains("exit=1"));
    assert_eq!(lines[2]["count"], 1, "{}", lines[2]);
    assert_eq!(lines[2]["jobs"][0]["state"], "exited");
    for l in &lines {
        assert_valid(l);
    }
}

/// A caller that stops reading (closes our stdout before the answer) makes
/// the write fail with EPIPE; it must not kill us with SIGPIPE.
#[test]
fn a_caller_that_stops_reading_does_not_kill_us_with_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let env = Env::new();
    let mut child = env
        .cmd(&["list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent-exec");
    drop(child.stdout.take()); // before it has answered: its write fails
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), None, "{status:?}");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// An option we do not know, before the command, is a mistake: a usage
/// error (exit 2, one JSON object) and no job. After `--`, or once the
/// command has begun, every word is the command's.
#[test]
fn an_unknown_option_is_a_usage_error_before_the_command_and_an_argument_after() {
    let env = Env::new();
    for args in [
        &["run", "--timout", "5", "--", "echo", "hi"][..],
        &["create", "--bogus", "x", "--", "true"],
        &["run", "--no-wiat", "echo", "hi"],
        &["start", "--bogus", "0123"],
    ] {
        let (code, v) = env.run(args);
        assert_eq!(code, 2, "{args:?}: {v:#}");
        assert_eq!(v["error"]["code"], "usage_error", "{args:?}: {v:#}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unexpected argument"),
            "{args:?}: {v:#}"
        );
    }
    assert_eq!(env.ok(&["list"])["count"], 0, "nothing was created");
    if !privileged() {
        return;
    }
    let v = env.ok(&["run", "--", "echo", "--bogus", "-x"]);
    assert_eq!(v["stdout"], "--bogus -x\n", "{v:#}");
    let v = env.ok(&["run", "echo", "-n", "--timeout", "1"]);
    assert_eq!(
        v["argv"],
        serde_json::json!(["echo", "-n", "--timeout", "1"])
    );
    assert_eq!(v["stdout"], "--timeout 1", "{v:#}");
}

/// Inputs that would grow the CLI without end or hang it are refused at
/// once: a device or a FIFO as --env-file or --stdin-file, a --log-cap above
/// what the policy keeps.
#[test]
fn endless_or_blocking_inputs_are_refused() {
    let env = Env::new();
    let fifo = env.scratch().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path for a new FIFO in the test's own directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for args in [
        vec!["run", "--env-file", "/dev/zero", "--", "true"],
        vec!["run", "--env-file", fifo.to_str().unwrap(), "--", "true"],
        vec!["run", "--stdin-file", "/dev/zero", "--", "cat"],
        vec!["run", "--stdin-file", fifo.to_str().unwrap(), "--", "cat"],
    ] {
        let e = env.err(&args, "invalid_argument");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("not a regular file"),
            "{args:?}: {message}"
        );
    }
    let big = env.scratch().join("big.env");
    std::fs::write(&big, "A=".to_string() + &"x".repeat(2 << 20)).unwrap();
    let e = env.err(
        &["run", "--env-file", big.to_str().unwrap(), "--", "true"],
        "invalid_argument",
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("larger than"));
    env.err(
        &["run", "--log-cap", "1G", "--", "true"],
        "override_forbidden",
    );
    assert_eq!(env.ok(&["list"])["count"], 0);
}

/// A job store that another user could change (it, or a directory above it
/// that is not sticky, is theirs or writable by them) is refused: they could
/// swap a created job's record for one of theirs, which `start` would run
/// as the caller. The control is the same store made private.
#[test]
fn a_store_another_user_could_change_is_refused() {
    if !privileged() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let agent = |root: &std::path::Path| {
        parse_one(
            &Command::new(bin())
                .args(["--root", s(root), "list"])
                .output()
                .unwrap(),
        )
    };
    let theirs = fx.sub("theirs/store");
    std::os::unix::fs::chown(&theirs, Some(12345), Some(12345)).unwrap();
    let open_parent = fx.sub("open");
    mode(&open_parent, 0o777);
    let under_open = fx.sub("open/store");
    for (root, why) in [
        (&theirs, "belongs to uid 12345"),
        (&under_open, "writable by other users"),
    ] {
        let (code, v) = agent(root);
        assert_eq!(code, 1, "{v:#}");
        assert_eq!(v["error"]["code"], "store_unavailable", "{v:#}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(why),
            "{v:#}"
        );
    }
    // Control: once private, both are fine.
    std::os::unix::fs::chown(&theirs, Some(0), Some(0)).unwrap();
    mode(&open_parent, 0o755);
    for root in [&theirs, &under_open] {
        let (code, v) = agent(root);
        assert_eq!(code, 0, "{v:#}");
    }
}

/// What the kernel would refuse at exec, or what could make a record the
/// store cannot read back, is refused when the job is defined, naming the
/// limit, and nothing is created: more CPUs than the host has, a
/// variable over the kernel's 128 KiB (an argument that long cannot even
/// reach agent-exec), arguments and variables over 1 MiB together,
/// over-long or too many tags.
#[test]
fn requests_beyond_what_can_run_are_refused_before_anything_is_made() {
    let env = Env::new();
    let big = "a".repeat(200 * 1024);
    let env_file = write_file(
        &env.scratch(),
        "many.env",
        &(0..10)
            .map(|i| format!("V{i}={}\n", "b".repeat(100 * 1024)))
            .collect::<String>(),
    );
    let long_tag = "t".repeat(65);
    let many_tags: Vec<String> = (0..33)
        .flat_map(|i| ["--tag".into(), format!("t{i}")])
        .collect();
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--cpus".into(), "100000".into()], "CPUs"),
        (vec!["--tag".into(), long_tag], "1 to 64"),
        (many_tags, "at most 32"),
        (
            vec![
                "--env-file".into(),
                s(&env_file).into(),
                "--env".into(),
                format!("W={}", "c".repeat(120 * 1024)),
            ],
            "at most 1048576",
        ),
    ];
    let one_big = write_file(&env.scratch(), "big.env", &format!("BIG={big}\n"));
    cases.push((
        vec!["--env-file".into(), s(&one_big).into()],
        "131071 bytes per",
    ));
    for (flags, needle) in cases {
        let mut args: Vec<&str> = vec!["create"];
        args.extend(flags.iter().map(|f| f.as_str()));
        if !flags.contains(&"--".to_string()) {
            args.extend(["--", "true"]);
        }
        let v = env.err(&args, "invalid_argument");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(env.job_ids().is_empty());
}
