//! What tumf/agent-exec's users call besides the lifecycle: tag set,
//! delete --all and rm, run --wait=BOOL, install-skills, completions,
//! --yaml and -v.

mod common;

use std::process::Command;

use common::*;

#[test]
fn tags_are_replaced_and_listed_by_the_new_ones() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let id = job_id(&env.ok(&["run", "--tag", "old", "--", "true"]));
    let v = env.ok(&["tag", "set", &id[..8], "--tag", "proj.b", "--tag", "proj.a"]);
    assert_eq!(v["type"], "tag_set");
    assert_eq!(v["tags"], serde_json::json!(["proj.a", "proj.b"]));
    assert_eq!(env.ok(&["status", &id])["tags"], v["tags"]);
    assert_eq!(env.ok(&["list", "--tag", "proj.*"])["count"], 1);
    assert_eq!(env.ok(&["list", "--tag", "old"])["count"], 0);
    env.err(
        &["tag", "set", &id, "--tag", "bad tag!"],
        "invalid_argument",
    );
    let cleared = env.ok(&["tag", "set", &id]);
    assert_eq!(cleared["tags"], serde_json::json!([]));
}

#[test]
fn delete_all_removes_the_ended_jobs_of_this_directory_only() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let ended = job_id(&env.ok(&["run", "--", "true"]));
    let failed = job_id(&env.ok(&["run", "--", "false"]));
    let running = job_id(&env.ok(&["run", "--no-wait", "--", "sleep", "30"]));
    launched(&env, &running);
    let elsewhere = env.scratch();
    let other = job_id(&env.ok(&["run", "--cwd", elsewhere.to_str().unwrap(), "--", "true"]));
    let created = job_id(&env.ok(&["create", "--", "true"]));

    let dry = env.ok(&["delete", "--all", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted"], 0);
    assert_eq!(
        dry["skipped"], 2,
        "the running and the created job: {dry:#}"
    );
    assert_eq!(env.job_ids().len(), 5, "a dry run removes nothing");

    let v = env.ok(&["rm", "--all"]);
    assert_eq!(v["deleted"], 2, "{v:#}");
    let skipped: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["action"] == "skipped")
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    let mut expected = vec![running.as_str(), created.as_str()];
    expected.sort();
    let mut skipped = skipped;
    skipped.sort();
    assert_eq!(skipped, expected);
    for gone in [&ended, &failed] {
        env.err(&["status", gone], "job_not_found");
    }
    env.ok(&["status", &other]);
    for args in [&["delete"][..], &["delete", "--all", &other]] {
        let (code, v) = env.run(args);
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (2, Some("usage_error")),
            "{v:#}"
        );
    }
    env.ok(&["kill", "--grace", "0", &running]);
    env.ok(&["rm", &other]);
}

#[test]
fn run_wait_false_answers_at_once() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--wait=false", "--", "sleep", "5"]);
    assert_ne!(v["state"], "exited");
    let id = job_id(&v);
    let w = env.ok(&["run", "--wait", "--", "true"]);
    assert_eq!(w["state"], "exited");
    env.err(
        &["run", "--no-wait", "--wait=true", "--", "true"],
        "invalid_argument",
    );
    env.ok(&["kill", "--grace", "0", &id]);
}

#[test]
fn install_skills_writes_the_skill_where_asked() {
    let env = Env::new();
    let dir = env.scratch();
    let v = parse_one(
        &env.cmd(&["install-skills"])
            .current_dir(&dir)
            .output()
            .unwrap(),
    )
    .1;
    assert_eq!(v["type"], "install_skills", "{v:#}");
    let skill = dir.join(".agents/skills/agent-exec/SKILL.md");
    let text = std::fs::read_to_string(&skill).unwrap();
    assert!(text.starts_with("---\nname: agent-exec\n"), "{text}");
    let home = env.scratch().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let v = parse_one(
        &env.cmd(&["install-skills", "--global", "--claude"])
            .env("HOME", &home)
            .output()
            .unwrap(),
    )
    .1;
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(home.join(".claude/skills/agent-exec/SKILL.md").is_file());
}

/// Each shell that is installed accepts its script; bash completes job
/// ids from the store.
#[test]
fn completion_scripts_parse_and_job_ids_complete() {
    let env = Env::new();
    let mut checked = 0;
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"]),
        ("fish", &["--no-execute"]),
    ] {
        let out = env.cmd(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(!out.stdout.is_empty(), "{shell}");
        let Ok(mut child) = Command::new(shell)
            .args(check)
            .stdin(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("{shell} is not installed: its script is not checked");
            continue;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        assert!(
            child.wait().unwrap().success(),
            "{shell} -n rejects the script"
        );
        checked += 1;
    }
    assert!(checked >= 1, "bash at least checks its script");
    env.err(&["completions", "tcsh"], "invalid_argument");

    if !privileged() {
        return;
    }
    let id = job_id(&env.ok(&["run", "--", "true"]));
    let out = Command::new(bin())
        .args(["--", "agent-exec", "status", ""])
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "2")
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("AGENT_EXEC_ROOT", env.root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&id), "{text}");
}

#[test]
fn yaml_and_verbose_keep_stdout_one_answer() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let out = env
        .cmd(&["--yaml", "-v", "run", "--", "echo", "hi"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("schema_version: \"1\"\nok: true\ntype: run\n"),
        "{text}"
    );
    assert!(!text.contains('{'), "YAML, not JSON: {text}");
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("agent-exec: policy: default"), "{said}");
    assert!(said.contains("agent-exec: job store: "), "{said}");
}

/// `--shell-wrapper` and the config's `[shell]` pick what runs a one-string
/// command; `[compression] default` picks the view; a bad value names its
/// line.
#[test]
fn the_shell_and_the_view_come_from_the_flag_else_the_config() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--", "echo $0"]);
    assert_eq!(v["stdout"], "sh\n");
    assert!(v.get("compression").is_none(), "off by default: {v:#}");
    let v = env.ok(&["run", "--shell-wrapper", "bash -c", "--", "echo $0"]);
    assert_eq!(v["stdout"], "bash\n");

    let config = env.config_home().join("agent-exec");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "[shell]\nunix = [\"bash\", \"-c\"]\n\n[compression]\ndefault = \"summary\"\n",
    )
    .unwrap();
    let v = env.ok(&["run", "--", "echo $0"]);
    assert_eq!(v["stdout"], "bash\n");
    assert_eq!(v["compression"]["mode"], "summary", "{v:#}");
    let v = env.ok(&["run", "--compress", "off", "--", "true"]);
    assert!(v.get("compression").is_none());
    env.err(
        &["run", "--compress", "bogus", "--", "true"],
        "invalid_argument",
    );

    std::fs::write(
        config.join("config.toml"),
        "[compression]\ndefault = \"bogus\"\n",
    )
    .unwrap();
    let e = env.err(&["run", "--", "true"], "invalid_argument");
    assert_eq!(e["error"]["location"]["line"], 2, "{e:#}");
}

/// `restart` runs the same job again under its id, with fresh logs; a
/// running job is stopped first; one whose masked values are gone is
/// refused.
#[test]
fn restart_runs_the_same_job_again() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let dir = env.scratch();
    let script = "echo run >> runs.txt; wc -l < runs.txt; exit 3";
    let v = env.ok(&["run", "--cwd", dir.to_str().unwrap(), "--", script]);
    assert_eq!(
        (v["exit_code"].as_i64(), v["stdout"].as_str()),
        (Some(3), Some("1\n"))
    );
    let id = job_id(&v);
    let again = env.ok(&["restart", &id[..10]]);
    assert_eq!(again["type"], "restart");
    assert_eq!(again["job_id"], id.as_str());
    assert_eq!(again["state"], "exited");
    assert_eq!(again["stdout"], "2\n", "fresh logs: {again:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("runs.txt")).unwrap(),
        "run\nrun\n"
    );

    let slow = job_id(&env.ok(&["run", "--no-wait", "--", "sleep", "30"]));
    let first = launched(&env, &slow);
    let v = env.ok(&["restart", "--no-wait", &slow]);
    assert_eq!(v["job_id"], slow.as_str());
    let second = launched(&env, &slow);
    assert_eq!(second["state"], "running", "{second:#}");
    assert_ne!(second["pid"], first["pid"], "a new process");
    env.ok(&["kill", "--grace", "0", &slow]);

    let secret = job_id(&env.ok(&["run", "--env", "K=v4lue", "--mask", "K", "--", "true"]));
    env.err(&["restart", &secret], "invalid_state");
}

/// The end of a job is told to the command and the file the caller set,
/// at launch or later with `notify set`; what was delivered is recorded.
#[test]
fn a_jobs_end_is_told_to_its_sinks() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let dir = env.scratch();
    let events = dir.join("events.ndjson");
    let seen = dir.join("seen.json");
    let v = env.ok(&[
        "run",
        "--notify-file",
        events.to_str().unwrap(),
        "--notify-command",
        &format!(
            "cat > {}; echo \"$AGENT_EXEC_JOB_ID\" >> {}",
            seen.display(),
            seen.display()
        ),
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    let id = job_id(&v);
    eventually(
        "both sinks told",
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_to_string(&seen).is_ok_and(|s| s.ends_with(&format!("{id}\n")))
                && events.exists()
        },
    );
    let line = std::fs::read_to_string(&events).unwrap();
    let event: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(event["event_type"], "job.finished");
    assert_eq!(
        (event["job_id"].as_str(), event["exit_code"].as_i64()),
        (Some(id.as_str()), Some(4))
    );
    // The record of the deliveries is written once both are done.
    let record = env.root().join(&id).join("completion_event.json");
    let read_record = || -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
        (v["delivery_results"].as_array()?.len() == 2).then_some(v)
    };
    eventually(
        "the deliveries recorded",
        std::time::Duration::from_secs(10),
        || read_record().is_some(),
    );
    let recorded = read_record().unwrap();
    let results = recorded["delivery_results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{recorded:#}");
    assert!(results.iter().all(|r| r["success"] == true), "{recorded:#}");

    // Set on a running job: told when it ends.
    let slow = job_id(&env.ok(&["run", "--no-wait", "--", "sleep", "2"]));
    let later = dir.join("later.ndjson");
    let s = env.ok(&["notify", "set", &slow, "--file", later.to_str().unwrap()]);
    assert_eq!(s["type"], "notify.set");
    eventually(
        "told at its end",
        std::time::Duration::from_secs(10),
        || later.exists(),
    );
    let cleared = env.ok(&["notify", "set", &slow, "--clear"]);
    assert_eq!(cleared["notification"], serde_json::json!({}));
}

/// Each output line that matches is an event, as the log holds it (masked
/// values masked); a pattern that cannot be used creates nothing.
#[test]
fn matching_output_lines_are_events() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let dir = env.scratch();
    let events = dir.join("matches.ndjson");
    let v = env.ok(&[
        "run",
        "--env",
        "S=hunter22",
        "--mask",
        "S",
        "--output-pattern",
        "ERROR",
        "--output-file",
        events.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo ok; echo \"ERROR one $S\"; echo fine; echo 'ERROR two' >&2",
    ]);
    let id = job_id(&v);
    eventually(
        "both matches told",
        std::time::Duration::from_secs(10),
        || std::fs::read_to_string(&events).is_ok_and(|t| t.lines().count() == 2),
    );
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(!text.contains("hunter22"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen: Vec<(String, String)> = lines
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().into(),
                e["line"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("stderr".to_string(), "ERROR two".to_string()),
            ("stdout".to_string(), "ERROR one ***".to_string())
        ]
    );
    assert_eq!(lines[0]["event_type"], "job.output.matched");
    let recorded =
        std::fs::read_to_string(env.root().join(&id).join("notification_events.ndjson")).unwrap();
    assert_eq!(recorded.lines().count(), 2);

    let regex_events = dir.join("regex.ndjson");
    env.ok(&[
        "run",
        "--output-pattern",
        r"^E\w+ two$",
        "--output-match-type",
        "regex",
        "--output-stream",
        "stdout",
        "--output-file",
        regex_events.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo 'ERROR two'; echo 'ERROR two' >&2; echo 'ERROR three'",
    ]);
    eventually(
        "the regex match told",
        std::time::Duration::from_secs(10),
        || std::fs::read_to_string(&regex_events).is_ok_and(|t| t.lines().count() == 1),
    );

    let before = env.job_ids().len();
    env.err(
        &[
            "run",
            "--output-pattern",
            "(",
            "--output-match-type",
            "regex",
            "--",
            "true",
        ],
        "invalid_argument",
    );
    assert_eq!(env.job_ids().len(), before, "nothing created");
}
