//! Resource limits and accounting come from the job's cgroup and wait4.

mod common;

use common::*;

#[test]
fn a_job_past_its_memory_limit_is_reported_as_oom() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--memory",
        "64M",
        "--",
        "perl",
        "-e",
        "$x = 'a' x (200*1024*1024); print length $x",
    ]);
    assert_eq!(v["oom_killed"], true, "{v:#}");
    assert_eq!(v["result"], "oom");
    assert_eq!(v["state"], "killed");
    let peak = v["resources"]["memory_peak_bytes"].as_u64().unwrap();
    assert!(peak <= 64 << 20, "peak {peak} is within the limit");
    assert!(peak > 32 << 20, "peak {peak} shows the allocation");
    assert_eq!(v["sandbox"]["limits"]["memory_bytes"], 64u64 << 20);
}

/// Burns until the process's own user time reaches 1 s (checked every 200k
/// iterations), with `run` options `opts`; checks the reported user time.
fn one_busy_second(env: &Env, opts: &[&str]) -> serde_json::Value {
    let burn = "while (1) { for (1..200000) {} last if (times)[0] >= 1.0 }";
    let args: Vec<&str> = ["run"]
        .iter()
        .chain(opts)
        .chain(&["--", "perl", "-e", burn])
        .copied()
        .collect();
    let v = env.ok(&args);
    assert_eq!(v["result"], "success");
    let user = v["resources"]["cpu_user_ms"].as_u64().unwrap();
    assert!(
        (900..=1100).contains(&user),
        "cpu_user_ms {user} should be 1000 ± 10%"
    );
    v
}

#[test]
fn cpu_time_of_one_busy_second_is_reported_within_ten_percent() {
    if !privileged() {
        return;
    }
    let v = one_busy_second(&Env::new(), &[]);
    let system = v["resources"]["cpu_system_ms"].as_u64().unwrap();
    assert!(system < 200, "cpu_system_ms {system}");
}

#[test]
fn a_lone_process_has_its_cpu_time_from_its_rusage_within_ten_percent() {
    if !privileged() {
        return;
    }
    // No pid namespace: the job's only task is perl itself (pids_peak 1), whose
    // wait4 rusage stands in for the cgroup's cpu.stat.
    let v = one_busy_second(&Env::new(), &["--policy", "permissive"]);
    assert_eq!(v["resources"]["pids_peak"], 1, "{v:#}");
    assert_eq!(v["oom_killed"], false);
}

#[test]
fn cpu_time_counts_children_in_the_cgroup_too() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let burn = "perl -e 'while (1) { for (1..200000) {} last if (times)[0] >= 0.5 }'";
    let v = env.ok(&["run", "--", "sh", "-c", &format!("{burn} & {burn} & wait")]);
    let user = v["resources"]["cpu_user_ms"].as_u64().unwrap();
    assert!(
        (900..=1100).contains(&user),
        "two children of 0.5 s each: {user}"
    );
    assert!(v["resources"]["pids_peak"].as_u64().unwrap() >= 3);
}

#[test]
fn pids_limit_stops_a_fork_loop_and_peaks_are_reported() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--pids",
        "5",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    assert!(
        v["stderr"].as_str().unwrap().contains("fork")
            || v["stderr"].as_str().unwrap().contains("Resource"),
        "{v:#}"
    );
    assert_eq!(v["resources"]["pids_peak"], 5);
    assert_eq!(v["sandbox"]["limits"]["pids"], 5);
}

#[test]
fn max_rss_comes_from_wait4() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&[
        "run",
        "--",
        "perl",
        "-e",
        "$x = 'a' x (50*1024*1024); print length $x",
    ]);
    let rss = v["resources"]["max_rss_bytes"].as_u64().unwrap();
    assert!(rss >= 50 << 20, "max_rss {rss}");
}

#[test]
fn a_cpu_limit_throttles_the_job() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // 0.4 s of CPU at 0.2 CPUs cannot take less than 2 s of wall time (a lower
    // bound: a loaded machine only makes it longer).
    let burn = "while (1) { for (1..100000) {} last if (times)[0] >= 0.4 }";
    let v = env.ok(&["run", "--cpus", "0.2", "--", "perl", "-e", burn]);
    assert_eq!(v["sandbox"]["limits"]["cpu"], 0.2);
    let wall = v["duration_ms"].as_u64().unwrap();
    assert!(
        wall >= 1500,
        "throttled to 0.2 CPUs, 0.4 s of CPU took only {wall} ms"
    );
}
