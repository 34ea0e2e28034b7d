//! A supervisor that dies must not leave its job running unsupervised.

mod common;

use std::time::Duration;

use common::*;

/// Under `default` the job's pid-namespace init dies with the supervisor and
/// the kernel takes the whole namespace with it; under `permissive` (no pid
/// namespace) only the main process has the parent-death signal, and the
/// next `status` kills and counts what it left in the cgroup. Either way the
/// job ends up `lost` with nothing left running.
#[test]
fn a_sigkilled_supervisor_takes_the_job_along_and_the_job_is_recorded_as_lost() {
    if !privileged() {
        return;
    }
    for (policy, marker, leftovers) in [("default", "1000.5151", 0), ("permissive", "1000.5153", 2)]
    {
        let env = Env::new();
        let v = env.ok(&[
            "run",
            "--no-wait",
            "--policy",
            policy,
            "--",
            "sh",
            "-c",
            &format!("sleep {marker} & sleep {marker} & wait"),
        ]);
        let id = job_id(&v);
        let sup = v["supervisor_pid"].as_i64().unwrap() as i32;
        let main = launched(&env, &id)["pid"].as_i64().unwrap() as i32;
        eventually("the job's children are up", Duration::from_secs(5), || {
            processes_matching(marker).len() >= 3
        });
        // SAFETY: killing the supervisor this test started.
        unsafe { libc::kill(sup, libc::SIGKILL) };
        // The parent-death signal ends the main process without anyone's help.
        eventually(
            "the main process died with its supervisor",
            Duration::from_secs(5),
            || {
                !std::path::Path::new(&format!("/proc/{main}/cmdline")).exists()
                    || std::fs::read_to_string(format!("/proc/{main}/stat"))
                        .map(|s| s.contains(") Z"))
                        .unwrap_or(true)
            },
        );
        let s = env.ok(&["status", &id]);
        assert_eq!(s["state"], "lost", "{policy}: {s:#}");
        assert_eq!(s["result"], "lost");
        assert!(s["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {sup}")));
        assert_eq!(
            s["resources"]["leftover_processes_killed"], leftovers,
            "{policy}: {s:#}"
        );
        assert!(
            processes_matching(marker).is_empty(),
            "{policy}: {:?}",
            processes_matching(marker)
        );
        assert_cgroups_removed(&id);
        // The verdict is recorded: later readers agree.
        assert_eq!(env.ok(&["list"])["jobs"][0]["state"], "lost");
        let (code, _) = env.run(&["wait", "--exit-status", &id]);
        assert_eq!(code, 125);
    }
}

/// A waiting `run` whose supervisor is killed answers, from the store, with
/// the verdict any later reader gets.
#[test]
fn a_waiting_run_whose_supervisor_is_killed_answers_that_its_job_was_lost() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let cli = env
        .cmd(&[
            "run",
            "--forever",
            "--exit-status",
            "--",
            "sleep",
            "1000.5454",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = the_running_job(&env);
    let sup = env.ok(&["status", &id])["supervisor_pid"].as_i64().unwrap() as i32;
    // SAFETY: killing the supervisor this test started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    let (code, v) = parse_one(&cli.wait_with_output().unwrap());
    assert_eq!(v["type"], "run", "{v:#}");
    assert_eq!(v["state"], "lost", "{v:#}");
    assert_eq!(v["result"], "lost");
    assert_eq!(job_id(&v), id);
    assert_eq!(code, 125, "--exit-status: a runner failure");
    assert!(processes_matching("1000.5454").is_empty());
}

#[test]
fn wait_notices_a_dying_supervisor_without_polling() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--no-wait", "--", "sleep", "1000.5252"]);
    let id = job_id(&v);
    let sup = v["supervisor_pid"].as_i64().unwrap() as i32;
    let waiter = env
        .cmd(&["wait", "--forever", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: killing the supervisor this test started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    let (_, w) = parse_one(&waiter.wait_with_output().unwrap());
    assert_eq!(w["state"], "lost");
    assert!(processes_matching("1000.5252").is_empty());
}

/// A job whose supervisor died long ago: `gc --dry-run` shows it due and
/// changes nothing (neither its record nor what it left running); the
/// reader that records it lost dates its end to when it was last known
/// alive, not to now, so gc does not keep it another retention window.
#[test]
fn a_long_dead_supervisor_is_dated_by_its_last_sign_of_life() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.5161";
    let v = env.ok(&[
        "run",
        "--no-wait",
        "--policy",
        "permissive",
        "--",
        "sh",
        "-c",
        &format!("sleep {marker} & sleep {marker} & wait"),
    ]);
    let id = job_id(&v);
    let sup = v["supervisor_pid"].as_i64().unwrap() as i32;
    eventually("the job's children are up", Duration::from_secs(5), || {
        processes_matching(marker).len() >= 2
    });
    // SAFETY: killing the supervisor this test started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    eventually("the supervisor is gone", Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{sup}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{sup}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    });
    // Its last signs of life, two hours ago.
    let dir = env.root().join(&id);
    let state_path = dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let then = now - 2 * 3600 * 1000;
    state["updated_at_ms"] = then.into();
    state["started_at_ms"] = then.into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    for log in ["stdout.log", "stderr.log"] {
        let ok = std::process::Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(dir.join(log))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let before = std::fs::read(&state_path).unwrap();
    let v = env.ok(&["gc", "--dry-run", "--older-than", "1h"]);
    let entry = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(entry["action"], "would_delete", "{v:#}");
    assert_eq!(entry["state"], "lost", "{v:#}");
    assert_eq!(
        std::fs::read(&state_path).unwrap(),
        before,
        "--dry-run wrote"
    );
    assert_eq!(processes_matching(marker).len(), 2, "--dry-run killed");
    // Recorded lost now: due at once, and what it left is killed.
    let v = env.ok(&["gc", "--older-than", "1h"]);
    assert_eq!(v["deleted"], 1, "{v:#}");
    eventually("what it left is killed", Duration::from_secs(5), || {
        processes_matching(marker).is_empty()
    });
}
