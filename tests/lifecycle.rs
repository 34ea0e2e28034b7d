//! The job lifecycle as a user drives it: run, create/start, status, wait,
//! tail, list, delete, gc, and the JSON contract every answer follows.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[test]
fn run_echo_answers_one_json_object_with_the_full_result() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--", "echo", "hello"]);
    assert_eq!(v["type"], "run");
    assert_eq!(v["state"], "exited");
    assert_eq!(v["result"], "success");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["signal"], serde_json::Value::Null);
    assert_eq!(v["stdout"], "hello\n");
    assert_eq!(v["stdout_total_bytes"], 6);
    assert_eq!(v["argv"], serde_json::json!(["echo", "hello"]));
    let id = job_id(&v);
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let log = std::fs::read_to_string(v["stdout_log_path"].as_str().unwrap()).unwrap();
    assert_eq!(log, "hello\n");
    assert!(v["resources"]["max_rss_bytes"].as_u64().unwrap() > 0);
    assert_cgroups_removed(&id);
}

/// A user who sets nothing has the store in `~/.local/state/agent-exec`,
/// a hidden directory of the home: the job's own `$TMPDIR` and `$JOB_DIR`
/// live there and are still the job's to write (a bug once refused every
/// such run as "a hidden directory of your home").
#[test]
fn a_job_runs_with_the_store_in_its_default_place() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let home = env.dir.path().join("home");
    let project = home.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo ok > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"",
        ])
        .current_dir(&project)
        .env("HOME", &home)
        .env_remove("AGENT_EXEC_ROOT")
        .env_remove("XDG_STATE_HOME")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (_, v) = parse_one(&out);
    assert_eq!(v["result"], "success", "{v:#}");
    assert_eq!(v["stdout"], "ok\n");
    let log = v["stdout_log_path"].as_str().unwrap();
    assert!(
        log.starts_with(home.join(".local/state/agent-exec").to_str().unwrap()),
        "{log}"
    );
    assert_cgroups_removed(&job_id(&v));
}

/// A job over before its supervisor records it running goes straight from
/// created to its final state: the answer and `status` still say when it
/// started, what it cost and which layers held, and the job's directory
/// keeps one state file and no temporaries.
#[test]
fn an_instant_job_is_recorded_whole_without_a_running_state() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for policy in ["permissive", "default"] {
        let v = env.ok(&["run", "--forever", "--policy", policy, "--", "/bin/true"]);
        assert_eq!(v["state"], "exited", "{policy}: {v:#}");
        assert_eq!(v["exit_code"], 0, "{policy}");
        assert!(v["started_at"].is_string(), "{policy}: {v:#}");
        assert!(v["duration_ms"].is_u64(), "{policy}: {v:#}");
        assert!(v["resources"]["cpu_user_ms"].is_u64(), "{policy}: {v:#}");
        assert!(v["sandbox"]["cgroup"].is_string(), "{policy}: {v:#}");
        assert_eq!(v["sandbox"]["no_new_privs"], true, "{policy}: {v:#}");
        let id = job_id(&v);
        let s = env.ok(&["status", &id]);
        for key in ["state", "started_at", "finished_at", "resources", "sandbox"] {
            assert_eq!(s[key], v[key], "{policy}: {key}");
        }
        assert_cgroups_removed(&id);
        // A finished job keeps its records and logs (and $JOB_DIR, had
        // the job left something there), nothing else, once its supervisor
        // has tidied up after its answer.
        let kept = ["job.json", "state.json", "stderr.log", "stdout.log"];
        let mut names = Vec::new();
        eventually(
            "the job to keep only its records",
            Duration::from_secs(10),
            || {
                names = std::fs::read_dir(env.root().join(&id))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>();
                names.sort();
                names == kept
            },
        );
        assert_eq!(names, kept, "{policy}");
    }
}

/// The job runs in the caller's directory under its real path: started
/// from a symlink to it, the record and the job both see where it leads.
#[test]
fn a_job_started_from_a_symlinked_directory_runs_in_its_real_path() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let real = env.scratch().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = env.scratch().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let real = real.canonicalize().unwrap();
    let out = env
        .cmd(&["run", "--policy", "permissive", "--", "pwd"])
        .current_dir(&link)
        .output()
        .unwrap();
    let (code, v) = parse_one(&out);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["cwd"], real.to_str().unwrap(), "{v:#}");
    assert_eq!(v["stdout"], format!("{}\n", real.display()), "{v:#}");
}

#[test]
fn the_job_outcome_does_not_change_the_request_exit_status_unless_asked() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(v["result"], "exit_code");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stderr"], "oops\n");
    let (code, _) = env.run(&["run", "--exit-status", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    let (code, v) = env.run(&["run", "--exit-status", "--", "sh", "-c", "kill -INT $$"]);
    assert_eq!(v["result"], "signal");
    assert_eq!(v["signal"], "SIGINT");
    assert_eq!(code, 130);
    let (code, _) = env.run(&[
        "run",
        "--exit-status",
        "--timeout",
        "0.2",
        "--",
        "sleep",
        "5",
    ]);
    assert_eq!(code, 124);
}

#[test]
fn run_returns_a_running_snapshot_when_the_observation_window_ends_and_the_job_goes_on() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--until",
        "0.3",
        "--",
        "sh",
        "-c",
        "echo started; sleep 1.5; echo finished",
    ]);
    assert_eq!(v["state"], "running");
    assert_eq!(v["deadline_reached"], true);
    assert_eq!(v["result"], serde_json::Value::Null);
    assert!(v["pid"].as_i64().unwrap() > 0);
    assert!(v["supervisor_pid"].as_i64().unwrap() > 0);
    let id = job_id(&v);
    // The CLI has exited; the job carries on and is found by prefix.
    let w = env.ok(&["wait", &id[..10]]);
    assert_eq!(w["state"], "exited");
    assert_eq!(w["stdout"], "started\nfinished\n");
    assert_eq!(w["deadline_reached"], false);
}

#[test]
fn no_wait_answers_once_the_job_is_recorded_and_launches_it_in_the_background() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--no-wait", "--", "sleep", "2"]);
    // The answer does not wait for the sandbox: the job is recorded, its
    // logs exist and its supervisor (named) is launching it.
    assert!(v["state"] == "created" || v["state"] == "running", "{v:#}");
    assert!(v["waited_ms"].as_u64().unwrap() < 2000);
    assert!(v["supervisor_pid"].as_i64().unwrap() > 0);
    if v["state"] == "created" {
        assert!(
            v["message"].as_str().unwrap().contains("launching"),
            "{v:#}"
        );
    }
    assert!(Path::new(v["stdout_log_path"].as_str().unwrap()).exists());
    let id = job_id(&v);
    let s = launched(&env, &id);
    assert_eq!(s["type"], "status");
    assert_eq!(s["state"], "running");
    assert!(s["pid"].as_i64().unwrap() > 0);
    let w = env.ok(&["wait", "--until", "0.1", &id]);
    assert_eq!(w["state"], "running", "wait's deadline never stops the job");
    assert_eq!(w["deadline_reached"], true);
    let w = env.ok(&["wait", &id]);
    assert_eq!(w["result"], "success");
}

#[test]
fn a_no_wait_job_that_cannot_launch_says_so_in_status_and_wait() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--no-wait", "--", "no-such-command-anywhere"]);
    let id = job_id(&v);
    let (code, w) = env.run(&["wait", "--exit-status", &id]);
    assert_eq!(w["state"], "failed", "{w:#}");
    assert_eq!(w["result"], "launch_failed");
    assert_eq!(w["exit_code"], 127);
    assert_eq!(code, 127);
    assert_cgroups_removed(&id);
}

#[test]
fn a_kill_right_after_no_wait_stops_the_job_while_it_is_still_launching() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for policy in ["default", "permissive"] {
        let marker = "1000.6161";
        let v = env.ok(&[
            "run",
            "--no-wait",
            "--policy",
            policy,
            "--",
            "sleep",
            marker,
        ]);
        let id = job_id(&v);
        // No pause: the supervisor may not even have recorded itself yet.
        let k = env.ok(&["kill", "--grace", "0.5", &id]);
        assert_eq!(k["state"], "killed", "{policy}: {k:#}");
        assert_eq!(k["result"], "killed");
        assert!(
            processes_matching(marker).is_empty(),
            "{policy}: {:?}",
            processes_matching(marker)
        );
        assert_cgroups_removed(&id);
    }
}

#[test]
fn create_then_start_runs_the_stored_definition_once() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let c = env.ok(&[
        "create",
        "--env",
        "GREETING=hi",
        "--tag",
        "ci",
        "--",
        "sh",
        "-c",
        "echo $GREETING",
    ]);
    assert_eq!(c["type"], "create");
    assert_eq!(c["state"], "created");
    assert_eq!(c["env_keys"], serde_json::json!(["GREETING"]));
    let id = job_id(&c);
    assert_eq!(env.ok(&["status", &id])["state"], "created");
    let s = env.ok(&["start", &id]);
    assert_eq!(s["type"], "start");
    assert_eq!(s["stdout"], "hi\n");
    assert_eq!(s["tags"], serde_json::json!(["ci"]));
    let e = env.err(&["start", &id], "invalid_state");
    assert_eq!(e["error"]["job_id"], id.as_str());
}

#[test]
fn two_concurrent_starts_of_one_created_job_have_exactly_one_winner() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for _ in 0..5 {
        let id = job_id(&env.ok(&["create", "--", "true"]));
        let a = env
            .cmd(&["start", "--no-wait", &id])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let b = env
            .cmd(&["start", "--no-wait", &id])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (ca, va) = parse_one(&a.wait_with_output().unwrap());
        let (cb, vb) = parse_one(&b.wait_with_output().unwrap());
        let oks = [&va, &vb].iter().filter(|v| v["ok"] == true).count();
        assert_eq!(oks, 1, "exactly one start wins: {va} {vb}");
        let loser = if va["ok"] == true {
            (&vb, cb)
        } else {
            (&va, ca)
        };
        assert_eq!(loser.0["error"]["code"], "invalid_state");
        assert_eq!(loser.1, 1);
        env.ok(&["wait", &id]);
    }
}

#[test]
fn job_ids_resolve_by_unambiguous_prefix_only() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let mut ids: Vec<String> = (0..40)
        .map(|_| job_id(&env.ok(&["create", "--", "true"])))
        .collect();
    ids.sort();
    // Among 40 random ids, find two sharing a first character: that prefix is ambiguous.
    let pair = ids
        .windows(2)
        .find(|w| w[0][..1] == w[1][..1])
        .expect("pigeonhole: 40 ids over 16 first characters");
    let e = env.err(&["status", &pair[0][..1]], "ambiguous_job_id");
    let candidates = e["error"]["candidates"].as_array().unwrap();
    assert!(
        candidates.iter().any(|c| c == pair[0].as_str())
            && candidates.iter().any(|c| c == pair[1].as_str())
    );
    let unique = ids
        .iter()
        .find(|id| ids.iter().filter(|o| o[..6] == id[..6]).count() == 1)
        .unwrap();
    assert_eq!(env.ok(&["status", &unique[..6]])["job_id"], unique.as_str());
    env.err(
        &["status", "0123456789abcdef0123456789abcdef"],
        "job_not_found",
    );
    env.err(&["status", "not-hex"], "job_not_found");
}

#[test]
fn list_filters_and_orders_newest_first_then_delete_and_gc_clean_up() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let first = job_id(&env.ok(&["run", "--tag", "proj.build", "--", "true"]));
    let second = job_id(&env.ok(&["run", "--tag", "other", "--", "false"]));
    let created = job_id(&env.ok(&["create", "--", "true"]));
    let l = env.ok(&["list"]);
    assert_eq!(l["type"], "list");
    let ids: Vec<&str> = l["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![created.as_str(), second.as_str(), first.as_str()]);
    let item = &l["jobs"][1];
    assert_eq!(item["short_job_id"], &second[..7]);
    assert_eq!(item["command"], serde_json::json!(["false"]));
    assert!(
        item["started_at"].is_string() && item["updated_at"].is_string(),
        "{item:#}"
    );
    assert_eq!(l["truncated"], false);
    let cut = env.ok(&["list", "--limit", "2"]);
    assert_eq!(
        (cut["count"].as_u64(), cut["truncated"].as_bool()),
        (Some(2), Some(true))
    );
    let created_only = env.ok(&["list", "--state", "created"]);
    assert_eq!(created_only["count"], 1);
    env.err(&["ps", "--state", "created"], "invalid_argument");
    let tagged = env.ok(&["list", "--tag", "proj.*"]);
    assert_eq!(tagged["jobs"][0]["job_id"], first.as_str());
    assert_eq!(tagged["count"], 1);
    env.err(&["list", "--state", "sleeping"], "invalid_argument");
    // A pattern no tag could match is a mistake, as `run --tag` says.
    env.err(&["list", "--tag", "bad pattern!"], "invalid_argument");

    // Jobs of another directory are listed with --all (or their --cwd).
    let elsewhere = env.scratch();
    let other = job_id(&env.ok(&["run", "--cwd", elsewhere.to_str().unwrap(), "--", "true"]));
    assert_eq!(env.ok(&["list"])["count"], 3, "this directory's jobs only");
    let all = env.ok(&["list", "--all"]);
    assert_eq!(all["count"], 4);
    assert_eq!(all["jobs"][0]["job_id"], other.as_str());
    let there = env.ok(&["list", "--cwd", elsewhere.to_str().unwrap()]);
    assert_eq!(there["count"], 1);
    env.ok(&["delete", &other]);

    let d = env.ok(&["delete", &first]);
    assert_eq!(d["type"], "delete");
    assert_eq!(d["deleted"], 1);
    env.err(&["status", &first], "job_not_found");

    let running = job_id(&env.ok(&["run", "--no-wait", "--", "sleep", "3"]));
    env.err(&["delete", &running], "invalid_state");
    launched(&env, &running);
    let ps = env.ok(&["ps"]);
    assert_eq!(ps["count"], 1, "ps: the running jobs");
    assert_eq!(ps["jobs"][0]["job_id"], running.as_str());
    let st = env.ok(&["status", &running]);
    assert!(
        st["duration_ms"].is_null(),
        "no duration while running: {st:#}"
    );
    let dry = env.ok(&["gc", "--older-than", "0s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let would: Vec<&str> = dry["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["action"] == "would_delete")
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        would,
        vec![second.as_str()],
        "created and running jobs are never collected"
    );
    assert!(env.root().join(&second).exists(), "dry run removes nothing");
    let gc = env.ok(&["gc", "--older-than", "0s"]);
    assert_eq!(gc["deleted"], 1);
    assert!(!env.root().join(&second).exists());
    assert_eq!(gc["older_than_source"], "flag");
    assert!(gc["scanned_dirs"].as_u64().unwrap() >= 2, "{gc:#}");
    assert_eq!(gc["candidate_count"], 1);
    let kept = env.ok(&["gc", "--older-than", "7d"]);
    assert_eq!(kept["deleted"], 0);
    let killed = env.ok(&["kill", &running]);
    assert!(killed["observed_within_ms"].is_u64(), "{killed:#}");
    let again = env.ok(&["kill", &running]);
    assert_eq!(again["observed_within_ms"], 0, "{again:#}");
}

#[test]
fn tail_gives_bounded_excerpts_offsets_and_a_follow_stream() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let id = job_id(&env.ok(&["run", "--", "seq", "1", "1000"]));
    let t = env.ok(&["tail", "--lines", "2", &id]);
    assert_eq!(t["type"], "tail");
    assert!(t["stdout"].as_str().unwrap().ends_with("999\n1000\n"));
    assert_eq!(t["stdout_truncated"], true);
    assert_eq!(t["stdout_total_bytes"], 3893);
    let o = env.ok(&["tail", "--offset", "3880", "--stream", "stdout", &id]);
    assert_eq!(o["stdout"], "998\n999\n1000\n");
    assert_eq!(o["stdout_next_offset"], 3893);

    // --follow: NDJSON chunks as the job writes, then a final tail_end line.
    let job = job_id(&env.ok(&[
        "run",
        "--no-wait",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]));
    let out = env.cmd(&["tail", "--follow", &job]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        assert_valid(l);
    }
    let data: String = lines
        .iter()
        .filter(|l| l["type"] == "tail_chunk")
        .map(|l| l["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, "line1\nline2\nline3\n");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "tail_end");
    assert_eq!(last["state"], "exited");
}

#[test]
fn stdout_carries_nothing_but_json_even_for_usage_errors() {
    let env = Env::new();
    let (code, v) = env.run(&["run"]);
    assert_eq!(code, 2);
    assert_eq!(v["error"]["code"], "usage_error");
    let (code, v) = env.run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert_eq!(v["ok"], false);
}

#[test]
fn the_schema_is_generated_and_describes_every_response_type() {
    let env = Env::new();
    let v = env.ok(&["schema"]);
    let text = v["schema"].to_string();
    for t in [
        "\"run\"",
        "\"status\"",
        "\"tail_chunk\"",
        "\"list\"",
        "\"gc\"",
        "\"error\"",
        "job_not_found",
        "ambiguous_job_id",
        "stdin_too_large",
    ] {
        assert!(text.contains(t), "schema lacks {t}");
    }
}

#[test]
fn fifty_jobs_started_at_once_all_finish_with_their_own_results() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let children: Vec<_> = (0..50)
        .map(|i| {
            env.cmd(&[
                "run",
                "--forever",
                "--",
                "sh",
                "-c",
                &format!("echo job{i}; exit {}", i % 7),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let (_, v) = parse_one(&child.wait_with_output().unwrap());
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["stdout"], format!("job{i}\n"));
        assert_eq!(v["exit_code"], (i % 7) as i64);
        assert_cgroups_removed(&job_id(&v));
    }
    let l = env.ok(&["list"]);
    assert_eq!(l["count"], 50);
    assert!(l["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["state"] == "exited"));
    std::thread::sleep(Duration::from_millis(10));
}

/// The job gets exactly the CPUs its caller may use, whether the caller
/// may use all of them or was restricted (as `taskset` does), with or
/// without namespaces.
#[test]
fn the_job_runs_on_the_cpus_of_its_caller() {
    use std::os::unix::process::CommandExt;
    if !privileged() {
        return;
    }
    let env = Env::new();
    let allowed = |policy: &str, only: Option<usize>| {
        let mut c = env.cmd(&[
            "run",
            "--policy",
            policy,
            "--",
            "sh",
            "-c",
            "grep Cpus_allowed_list /proc/self/status; sh -c 'grep Cpus_allowed_list /proc/self/status'",
        ]);
        if let Some(cpu) = only {
            // SAFETY: sched_setaffinity on ourselves between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (code, v) = parse_one(&c.output().expect("spawn agent-exec"));
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(v["exit_code"], 0, "{v:#}");
        let out = v["stdout"].as_str().unwrap().to_string();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0], lines[1], "a child of the job: {out:?}");
        lines[0]
            .trim_start_matches("Cpus_allowed_list:")
            .trim()
            .to_string()
    };
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    // SAFETY: cpu_set_t is plain data, filled by the kernel.
    let last = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .unwrap()
    };
    for policy in ["permissive", "default"] {
        assert_eq!(allowed(policy, None), ours, "{policy}");
        assert_eq!(allowed(policy, Some(last)), last.to_string(), "{policy}");
    }
}

/// The supervisor removes the job's cgroups once its waiting caller has
/// answered; a caller stopped before it could answer holds them only for
/// a short grace, and still answers when it is let go.
#[test]
fn a_caller_stopped_before_its_answer_does_not_keep_the_jobs_cgroups() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let cli = env
        .cmd(&["run", "--forever", "--", "sleep", "0.5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = cli.id() as libc::pid_t;
    let id = the_running_job(&env);
    /// Lets the CLI go on however the test ends.
    struct Resume(libc::pid_t);
    impl Drop for Resume {
        fn drop(&mut self) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(cli_pid, libc::SIGSTOP) }, 0);
    let resume = Resume(cli_pid);
    eventually("the job to have exited", Duration::from_secs(10), || {
        env.ok(&["status", &id])["state"] == "exited"
    });
    assert_cgroups_removed(&id);
    drop(resume);
    let (code, v) = parse_one(&cli.wait_with_output().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["state"], "exited", "{v:#}");
    assert_eq!(job_id(&v), id);
}

/// The supervisor of a waiting `run` is a process of its own, executed
/// afresh: its own memory, descriptors and session, and the job outlives a
/// CLI killed while it waits.
#[test]
fn a_waiting_runs_supervisor_shares_neither_its_memory_nor_its_fate() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let mut cli = env
        .cmd(&["run", "--forever", "--", "sh", "-c", "sleep 1; echo done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = cli.id() as libc::pid_t;
    let id = the_running_job(&env);
    let sup = env.ok(&["status", &id])["supervisor_pid"].as_i64().unwrap() as libc::pid_t;
    let kcmp = |kind: libc::c_int| {
        // SAFETY: kcmp only compares kernel objects of two processes.
        let r = unsafe { libc::syscall(libc::SYS_kcmp, cli_pid, sup, kind, 0, 0) };
        assert!(r >= 0, "kcmp: {}", std::io::Error::last_os_error());
        r
    };
    const KCMP_VM: libc::c_int = 1;
    const KCMP_FILES: libc::c_int = 2;
    assert_ne!(kcmp(KCMP_VM), 0, "address spaces of their own");
    assert_ne!(kcmp(KCMP_FILES), 0, "descriptor tables of their own");
    // SAFETY: plain queries.
    assert_ne!(unsafe { libc::getsid(sup) }, unsafe {
        libc::getsid(cli_pid)
    });
    cli.kill().unwrap();
    cli.wait().unwrap();
    let w = env.ok(&["wait", "--forever", &id]);
    assert_eq!(w["state"], "exited", "{w:#}");
    assert_eq!(w["stdout"], "done\n");
    eventually("the supervisor to be gone", Duration::from_secs(5), || {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(sup, 0) } == 0;
        !alive
    });
    assert_cgroups_removed(&id);
}

/// As in a shell: one argument after `--` is a command line (`sh -c`),
/// several are argv; piped or redirected stdin reaches the job, and an
/// idle pipe (a harness that keeps stdin open) is not waited on.
#[test]
fn a_shell_line_and_piped_stdin_work_as_in_a_shell() {
    if !privileged() {
        return;
    }
    use std::io::Write;
    use std::process::Stdio;
    let env = Env::new();
    let v = env.ok(&["run", "--", "echo a && echo b | tr b c"]);
    assert_eq!(v["stdout"], "a\nc\n", "{v:#}");
    assert_eq!(
        v["argv"],
        serde_json::json!(["sh", "-c", "echo a && echo b | tr b c"])
    );
    let v = env.ok(&["run", "--", "echo", "a && b"]);
    assert_eq!(v["stdout"], "a && b\n", "{v:#}");

    // Piped.
    let mut child = env
        .cmd(&["run", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let (_, v) = parse_one(&child.wait_with_output().unwrap());
    assert_eq!(v["stdout"], "piped in\n", "{v:#}");
    // Redirected from a file.
    let input = write_file(&env.scratch(), "input.txt", "from a file\n");
    let out = env
        .cmd(&["run", "--", "cat"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(parse_one(&out).1["stdout"], "from a file\n");
    // A pipe kept open with nothing in it: the job gets no input, at once.
    let mut child = env
        .cmd(&["run", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _keep_open = child.stdin.take();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(parse_one(&out).1["stdout"], "", "no input, no hang");
}

/// `--publish PORT:0`: a server the job starts in its own network is
/// reached from the host's loopback through the port the result names.
/// The control is the job's port itself, which the host cannot reach.
#[test]
fn a_published_port_reaches_the_jobs_server_from_the_host() {
    if !privileged() {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let env = Env::new();
    let server = "import socket\n\
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        s.bind(('127.0.0.1', 47613)); s.listen(5)\n\
        while True:\n    c, _ = s.accept(); c.sendall(b'echo:' + c.recv(100)); c.close()\n";
    let v = env.ok(&[
        "run",
        "--no-wait",
        "--net",
        "loopback",
        "--publish",
        "47613:0",
        "--",
        "python3",
        "-c",
        server,
    ]);
    let id = job_id(&v);
    let mut host_port = 0;
    eventually(
        "the port is published and served",
        Duration::from_secs(10),
        || {
            let s = env.ok(&["status", &id]);
            host_port = s["published"][0]["host_port"].as_u64().unwrap_or(0);
            host_port != 0
                && std::net::TcpStream::connect(("127.0.0.1", host_port as u16))
                    .ok()
                    .and_then(|mut c| {
                        c.write_all(b"ping\n").ok()?;
                        let mut line = String::new();
                        BufReader::new(c).read_line(&mut line).ok()?;
                        (line == "echo:ping\n").then_some(())
                    })
                    .is_some()
        },
    );
    let s = env.ok(&["status", &id]);
    assert_eq!(s["published"][0]["port"], 47613, "{s:#}");
    // Control: the job's own port is not the host's.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 47613)).is_err());
    env.ok(&["kill", &id]);
    env.ok(&["wait", &id]);
    // Once the job is over, nothing is forwarded (the port number may
    // already serve another test) and nothing is claimed.
    if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", host_port as u16)) {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = c.write_all(b"ping\n");
        let mut line = String::new();
        let _ = BufReader::new(c).read_line(&mut line);
        assert_ne!(line, "echo:ping\n", "still forwarded after the job ended");
    }
    assert!(env.ok(&["status", &id])["published"].is_null());
    // Publishing needs the job's own loopback.
    env.err(
        &["run", "--publish", "47613", "--", "true"],
        "invalid_argument",
    );
}

/// The fields tumf/agent-exec's users read: excerpt ranges and encoding,
/// the masked environment, when the state was written, how long the
/// request took.
#[test]
fn a_run_answers_with_ranges_encoding_and_the_masked_environment() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--env",
        "TOKEN=s3cret-value",
        "--env",
        "MODE=fast",
        "--mask",
        "TOKEN",
        "--max-bytes",
        "100",
        "--",
        "sh",
        "-c",
        "seq 1 200; printf x >&2",
    ]);
    assert_eq!(v["encoding"], "utf-8-lossy");
    let total = v["stdout_total_bytes"].as_u64().unwrap();
    assert_eq!(v["stdout_range"], serde_json::json!([0, total]), "{v:#}");
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr_range"], serde_json::json!([0, 1]));
    assert_eq!(
        v["env_vars"],
        serde_json::json!(["MODE=fast", "TOKEN=***"]),
        "{v:#}"
    );
    assert!(!v.to_string().contains("s3cret-value"));
    assert!(v["elapsed_ms"].as_u64().unwrap() >= v["waited_ms"].as_u64().unwrap());
    assert!(v["updated_at"].is_string());
    let id = job_id(&v);
    let t = env.ok(&["tail", "--lines", "2", &id]);
    assert_eq!(t["encoding"], "utf-8-lossy");
    assert!(
        t["stdout"].as_str().unwrap().ends_with("\n199\n200\n"),
        "{t:#}"
    );
    assert_eq!(
        t["stdout_range"],
        serde_json::json!([total - 8, total]),
        "{t:#}"
    );
}

/// `--stdin -` from a terminal is `stdin_required`, and nothing is made.
#[test]
fn stdin_from_a_terminal_is_refused_as_required() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let script = "import pty, sys; pty.spawn(sys.argv[1:])";
    let out = std::process::Command::new("python3")
        .args(["-c", script, bin(), "--root"])
        .arg(env.root())
        .args(["run", "--stdin", "-", "--", "cat"])
        .env("XDG_CONFIG_HOME", env.config_home())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!(v["error"]["code"], "stdin_required", "{v:#}");
    assert_eq!(env.job_ids().len(), 0);
}
