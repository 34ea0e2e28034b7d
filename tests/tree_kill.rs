//! Timeouts and kills reach every process of the job's cgroup, including
//! processes that left the process group, ignore SIGTERM or double-fork.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_timeout_kills_a_tree_that_escaped_with_setsid_and_ignores_sigterm() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.4242"; // unique sleep duration to find our processes
    let script = format!("setsid sh -c \"trap '' TERM; sleep {marker}\" & sleep {marker}");
    let v = env.ok(&[
        "run",
        "--timeout",
        "1",
        "--kill-after",
        "1",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(v["state"], "timed_out");
    assert_eq!(v["result"], "timeout");
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["signal"], "SIGTERM");
    // The main shell died of SIGTERM; the setsid'd shell and its sleep were killed as leftovers.
    assert!(
        v["resources"]["leftover_processes_killed"]
            .as_u64()
            .unwrap()
            >= 1,
        "{v:#}"
    );
    assert!(
        processes_matching(marker).is_empty(),
        "{:?}",
        processes_matching(marker)
    );
    assert_cgroups_removed(&job_id(&v));
}

#[test]
fn kill_after_escalates_when_the_main_process_ignores_sigterm() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.4343";
    let script =
        format!("trap '' TERM; (trap '' TERM; sleep {marker}) & sleep {marker}; sleep {marker}");
    let v = env.ok(&[
        "run",
        "--timeout",
        "0.5",
        "--kill-after",
        "0.5",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(v["state"], "timed_out");
    assert_eq!(
        v["signal"], "SIGKILL",
        "SIGTERM was ignored, so cgroup.kill ended it: {v:#}"
    );
    assert!(v["duration_ms"].as_u64().unwrap() >= 1000);
    assert!(processes_matching(marker).is_empty());
}

#[test]
fn kill_signals_the_whole_cgroup_then_kills_it_after_the_grace() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.4444";
    let script = format!(
        "trap '' TERM; setsid sh -c 'trap \"\" TERM; sleep {marker}' & sleep {marker} & wait"
    );
    let id = job_id(&env.ok(&["run", "--no-wait", "--", "sh", "-c", &script]));
    eventually("the tree is up", Duration::from_secs(5), || {
        processes_matching(marker).len() >= 2
    });
    let v = env.ok(&["kill", "--grace", "0.5", &id]);
    assert_eq!(v["type"], "kill");
    assert_eq!(v["signal_sent"], "SIGTERM");
    assert_eq!(v["state"], "killed");
    assert_eq!(v["result"], "killed");
    assert!(
        processes_matching(marker).is_empty(),
        "{:?}",
        processes_matching(marker)
    );
    assert_cgroups_removed(&id);
    // Killing a finished job is harmless and says so.
    let again = env.ok(&["kill", &id]);
    assert!(again.get("signal_sent").is_none());
    let created = job_id(&env.ok(&["create", "--", "true"]));
    env.err(&["kill", &created], "invalid_state");
}

#[test]
fn leftovers_are_killed_and_counted_when_the_main_process_exits() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.4545";
    // Two daemons double-fork away and keep the log pipe open; the main process exits at once.
    let script = format!("(sleep {marker} &) ; (setsid sleep {marker} &) ; echo main-done");
    let v = env.ok(&["run", "--", "sh", "-c", &script]);
    assert_eq!(v["result"], "success");
    assert_eq!(v["stdout"], "main-done\n");
    assert_eq!(v["resources"]["leftover_processes_killed"], 2, "{v:#}");
    assert!(
        v["duration_ms"].as_u64().unwrap() < 5000,
        "nothing held the pipe open"
    );
    assert!(processes_matching(marker).is_empty());
}

#[test]
fn a_signal_to_the_supervisor_stops_the_job_instead_of_orphaning_it() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let marker = "1000.4646";
    let v = env.ok(&[
        "run",
        "--no-wait",
        "--kill-after",
        "0.2",
        "--",
        "sleep",
        marker,
    ]);
    let sup = v["supervisor_pid"].as_i64().unwrap() as i32;
    // SAFETY: sending SIGTERM to the supervisor this test just started.
    unsafe { libc::kill(sup, libc::SIGTERM) };
    let w = env.ok(&["wait", &job_id(&v)]);
    assert_eq!(w["state"], "killed");
    assert!(w["message"]
        .as_str()
        .unwrap()
        .contains("supervisor was asked to stop"));
    assert!(processes_matching(marker).is_empty());
}
