//! The job store under damage and races: records that cannot be read are
//! shown, never silently dropped; what an interrupted creation or removal
//! left is collected; concurrent deletes and collections agree.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn run_true(env: &Env) -> String {
    job_id(&env.ok(&["run", "--", "true"]))
}

/// A record that cannot be read (not JSON, a wrong-typed field, a state
/// that is not JSON) is listed as `corrupt` with the reason, counted as
/// skipped when a filter asks for what it lost, and can be deleted.
#[test]
fn a_damaged_record_is_listed_and_can_be_deleted() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let good = run_true(&env);
    let bad_state = run_true(&env);
    let bad_type = run_true(&env);
    let root = env.root();
    std::fs::write(root.join(&bad_state).join("state.json"), "{").unwrap();
    let job = root.join(&bad_type).join("job.json");
    let text = std::fs::read_to_string(&job).unwrap();
    let wrong = text.replacen("\"argv\":[", "\"argv\":5,\"x\":[", 1);
    assert_ne!(wrong, text);
    std::fs::write(&job, wrong).unwrap();

    let v = env.ok(&["list"]);
    assert_eq!(v["count"], 3, "{v:#}");
    let corrupt: Vec<&serde_json::Value> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "corrupt")
        .collect();
    assert_eq!(corrupt.len(), 2, "{v:#}");
    for j in &corrupt {
        assert!(!j["reason"].as_str().unwrap().is_empty(), "{j}");
    }
    let v = env.ok(&["list", "--tag", "nope"]);
    assert_eq!(
        (v["count"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(2)),
        "{v:#}"
    );
    let v = env.ok(&["list", "--state", "corrupt"]);
    assert_eq!(v["count"], 2, "{v:#}");
    let v = env.ok(&["gc", "--older-than", "1ms"]);
    assert_eq!(
        v["skipped"], 2,
        "gc leaves them to delete, and says so: {v:#}"
    );

    for id in [&bad_state, &bad_type] {
        env.ok(&["delete", id]);
    }
    let v = env.ok(&["list"]);
    assert_eq!(v["count"], 0, "the good one went to gc: {v:#}");
    assert!(!root.join(&good).exists());
}

/// What a creation killed in its first milliseconds leaves (a directory
/// with only `start.lock` or a temporary record), and a removal killed
/// half-way, are invisible to `list` and removed by `gc` once a minute
/// old; a younger one may be a creation under way and is left.
#[test]
fn what_an_interrupted_creation_left_is_collected() {
    let env = Env::new();
    let root = env.root();
    std::fs::create_dir_all(&root).unwrap();
    let old_lock = root.join("0123456789abcdef0123456789abcdef");
    let old_tmp = root.join("fedcba9876543210fedcba9876543210");
    let old_deleting = root.join(".deleting-00112233445566778899aabbccddeeff.1");
    let young = root.join("00000000000000000000000000000001");
    for (dir, file) in [
        (&old_lock, "start.lock"),
        (&old_tmp, "job.json.tmp.123"),
        (&old_deleting, "stdout.log"),
        (&young, "start.lock"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), "x").unwrap();
    }
    for dir in [&old_lock, &old_tmp, &old_deleting] {
        let status = std::process::Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let v = env.ok(&["list"]);
    assert_eq!(
        (v["count"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(0)),
        "{v:#}"
    );
    let v = env.ok(&["gc", "--dry-run"]);
    assert!(old_lock.exists(), "--dry-run changes nothing");
    assert_eq!(v["jobs"].as_array().unwrap().len(), 3, "{v:#}");
    env.ok(&["gc"]);
    for gone in [&old_lock, &old_tmp, &old_deleting] {
        assert!(!gone.exists(), "{}", gone.display());
    }
    assert!(young.exists());
}

/// Four `delete` of one job at once: exactly one removes it, the others
/// learn it is gone (`job_not_found`); two `gc` at once both succeed and
/// together remove every job once.
#[test]
fn concurrent_deletes_and_collections_agree() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let id = run_true(&env);
    let spawn = |args: &[&str]| {
        env.cmd(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..4).map(|_| spawn(&["delete", &id])).collect();
    let mut codes: Vec<String> = children
        .into_iter()
        .map(|c| {
            let (_, v) = parse_one(&c.wait_with_output().unwrap());
            if v["ok"] == true {
                "ok".to_string()
            } else {
                v["error"]["code"].as_str().unwrap().to_string()
            }
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["job_not_found", "job_not_found", "job_not_found", "ok"]
    );

    let ids: Vec<String> = (0..12).map(|_| run_true(&env)).collect();
    let gcs: Vec<_> = (0..2)
        .map(|_| spawn(&["gc", "--older-than", "1ms"]))
        .collect();
    let mut deleted = 0;
    for c in gcs {
        let (code, v) = parse_one(&c.wait_with_output().unwrap());
        assert_eq!(
            (code, &v["ok"]),
            (0, &serde_json::Value::Bool(true)),
            "{v:#}"
        );
        deleted += v["deleted"].as_u64().unwrap();
    }
    assert_eq!(deleted, ids.len() as u64);
    assert!(ids
        .iter()
        .all(|id| !Path::new(&env.root()).join(id).exists()));
}

/// Retention by count and by size: `gc --max-jobs N` keeps the newest N
/// finished jobs, `--max-bytes` the newest that fit, whatever their age;
/// each removal says why.
#[test]
fn gc_keeps_the_newest_jobs_within_a_count_or_a_size() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let line = format!("head -c {} /dev/zero", 100_000 * (i + 1));
            job_id(&env.ok(&["run", "--", "sh", "-c", &line]))
        })
        .collect();
    let v = env.ok(&["gc", "--max-jobs", "3", "--dry-run"]);
    let doomed: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(doomed, [ids[1].as_str(), ids[0].as_str()], "{v:#}");
    assert_eq!(v["jobs"][0]["reason"], "beyond --max-jobs");
    // The newest (500 KB) and the one before (400 KB) fit in 1 MB.
    let v = env.ok(&["gc", "--max-bytes", "1000000"]);
    assert_eq!(v["deleted"], 3, "{v:#}");
    let left = env.job_ids();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&ids[4]) && left.contains(&ids[3]));
}

/// A `wait` or `status` racing the job's removal learns the job is gone
/// (`job_not_found`), never an I/O error.
#[test]
fn a_reader_racing_a_removal_learns_the_job_is_gone() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for _ in 0..20 {
        let id = run_true(&env);
        let readers: Vec<_> = (0..3)
            .map(|i| {
                let cmd = if i == 0 { "wait" } else { "status" };
                env.cmd(&[cmd, &id])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        env.ok(&["delete", &id]);
        for r in readers {
            let (_, v) = parse_one(&r.wait_with_output().unwrap());
            if v["ok"] == false {
                assert_eq!(v["error"]["code"], "job_not_found", "{v:#}");
            }
        }
    }
}

/// A running job whose directory was removed (by hand, by a tool that
/// cleans the store) is still killed by `kill ID`, through its cgroup, and
/// its cgroup goes; without the cgroup, the answer is `job_not_found`.
#[test]
fn a_running_job_without_its_directory_is_still_killed() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let v = env.ok(&["run", "--no-wait", "--", "sleep", "1000.5171"]);
    let id = job_id(&v);
    eventually("the job runs", std::time::Duration::from_secs(5), || {
        !processes_matching("1000.5171").is_empty()
    });
    std::fs::remove_dir_all(env.root().join(&id)).unwrap();
    let v = env.ok(&["kill", "--grace", "1", &id]);
    assert_eq!(v["type"], "kill", "{v:#}");
    assert_eq!(v["state"], "lost", "{v:#}");
    assert_eq!(v["ended"], true, "{v:#}");
    assert!(v["processes"].as_u64().unwrap() >= 1, "{v:#}");
    eventually("the job is gone", std::time::Duration::from_secs(5), || {
        processes_matching("1000.5171").is_empty()
    });
    assert_cgroups_removed(&id);
    env.err(&["kill", &id], "job_not_found");
}

fn ids_in(v: &serde_json::Value) -> Vec<String> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

/// The index is how `list` finds jobs, never what it believes over their
/// records: a record changed behind its back is read again, a store
/// without an index (as an older version made it) or with a damaged one
/// gets it rebuilt whole, a job whose row is missing is put back by `gc`,
/// and a row whose job is gone is dropped.
#[test]
fn the_index_is_rebuilt_and_never_believed_over_the_records() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let a = run_true(&env);
    let b = run_true(&env);
    let root = env.root();
    env.ok(&["list"]);
    assert!(root.join("index.sqlite").is_file());

    let state = root.join(&a).join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replacen("\"exited\"", "\"killed\"", 1)).unwrap();
    let v = env.ok(&["list"]);
    assert_eq!(v["jobs"][1]["state"], "killed", "{v:#}");
    let v = env.ok(&["list", "--state", "exited"]);
    assert_eq!(ids_in(&v), std::slice::from_ref(&b), "{v:#}");

    let drop_index = || {
        for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
            let _ = std::fs::remove_file(root.join(f));
        }
    };
    drop_index();
    let v = env.ok(&["list"]);
    assert_eq!(ids_in(&v), [b.clone(), a.clone()], "{v:#}");
    assert!(root.join("index.sqlite").is_file());

    drop_index();
    std::fs::write(root.join("index.sqlite"), vec![0x5a; 8192]).unwrap();
    let v = env.ok(&["list"]);
    assert_eq!(ids_in(&v), [b.clone(), a.clone()], "{v:#}");
    assert!(root.join("index.sqlite.damaged").is_file());

    // A whole job without its row: a copy of b under another id.
    let c = "c0ffee00c0ffee00c0ffee00c0ffee00";
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(root.join(&b))
        .arg(root.join(c))
        .status()
        .unwrap();
    assert!(copied.success());
    let job = root.join(c).join("job.json");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&job, text.replace(&b, c)).unwrap();
    assert_eq!(
        env.ok(&["status", c])["state"],
        "exited",
        "its records are the truth"
    );
    assert_eq!(env.ok(&["list"])["count"], 2, "not listed before gc");
    env.ok(&["gc"]);
    let v = env.ok(&["list"]);
    assert_eq!(v["count"], 3, "{v:#}");
    assert_eq!(env.ok(&["status", &c[..8]])["job_id"], c, "found by prefix");

    std::fs::remove_dir_all(root.join(&a)).unwrap();
    let v = env.ok(&["list"]);
    assert!(!ids_in(&v).contains(&a), "{v:#}");
    env.err(&["status", &a[..10]], "job_not_found");
}

/// After each job its supervisor collects what the config's `[gc]` says
/// goes (here: all but the newest finished job); with `auto = false`
/// nothing is collected (the control). A config that cannot be used
/// names its file, line and column, and nothing runs.
#[test]
fn finished_jobs_are_collected_after_jobs_as_the_config_says() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let dir = env.config_home().join("agent-exec");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "[gc]\nauto = false\nmax_jobs = 1\n").unwrap();
    for _ in 0..3 {
        run_true(&env);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        env.ok(&["list"])["count"],
        3,
        "auto = false collects nothing"
    );

    std::fs::write(&config, "[gc]\nmax_jobs = 1\n").unwrap();
    let newest = run_true(&env);
    eventually(
        "the supervisor to collect",
        std::time::Duration::from_secs(10),
        || ids_in(&env.ok(&["list"])) == [newest.clone()],
    );

    std::fs::write(&config, "[gc]\nauto = true\nolder_than = \"soon\"\n").unwrap();
    let v = env.err(&["run", "--", "true"], "invalid_argument");
    assert_eq!(v["error"]["location"]["line"], 3, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config.toml"),
        "{v:#}"
    );
    assert_eq!(env.ok(&["list"])["count"], 1, "nothing ran");
}

/// `run` interrupted by SIGINT, SIGTERM or SIGKILL at random moments of
/// its first milliseconds (seeded, bounded): afterwards, and once `gc` has
/// taken what the interrupted creations left, every directory of the
/// store is a whole job that `status` reads and `list` lists.
#[test]
fn signals_at_random_moments_of_run_leave_whole_jobs_or_nothing() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let mut seed: u64 = std::env::var("AGENT_EXEC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2022);
    eprintln!("seed {seed} (AGENT_EXEC_TEST_SEED repeats a run)");
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    std::fs::create_dir_all(env.root()).unwrap();
    for _ in 0..60 {
        let mut child = env
            .cmd(&["run", "--", "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(next(6_000)));
        let signal = [libc::SIGINT, libc::SIGTERM, libc::SIGKILL][next(3) as usize];
        // SAFETY: signalling the child this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap();
    }
    let root = env.root();
    let entries = || -> Vec<String> {
        std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The index, and the marks of jobs whose row is not written yet.
            .filter(|n| !n.starts_with("index.sqlite") && n != ".new")
            .collect()
    };
    // The supervisors already launched finish their `true`.
    eventually(
        "every job to end",
        std::time::Duration::from_secs(20),
        || env.ok(&["list", "--state", "running"])["count"] == 0,
    );
    // What the interrupted creations left, as if found a while later.
    let mut half_made = 0;
    for name in entries() {
        let whole = root.join(&name).join("job.json").is_file();
        if !whole {
            half_made += 1;
            let aged = std::process::Command::new("touch")
                .args(["-d", "2 minutes ago"])
                .arg(root.join(&name))
                .status()
                .unwrap();
            assert!(aged.success());
        }
    }
    env.ok(&["gc"]);
    let mut on_disk = entries();
    on_disk.sort();
    for name in &on_disk {
        let v = env.ok(&["status", name]);
        assert!(
            ["created", "exited", "killed", "lost", "failed"]
                .contains(&v["state"].as_str().unwrap()),
            "{v:#}"
        );
    }
    let mut listed = ids_in(&env.ok(&["list"]));
    listed.sort();
    assert_eq!(listed, on_disk);
    eprintln!(
        "{} whole jobs, {half_made} interrupted creations collected",
        on_disk.len()
    );
    assert!(!on_disk.is_empty(), "some runs got as far as a job");
}

/// Eight callers making the first jobs of a new store at once all succeed:
/// one of them makes the index, the others wait for it (turning the new
/// file into a WAL database does not wait by itself).
/// A launch never waits on the index: with another process holding the
/// index's write lock, `run` and `run --no-wait` answer at once (the
/// control: `gc`, which must write rows, waits until the lock goes), and
/// once it goes every job is listed and no mark is left.
#[test]
fn a_launch_never_waits_on_the_index() {
    if !privileged() {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let env = Env::new();
    run_true(&env);
    let index = env.root().join("index.sqlite");
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()",
            s(&index),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    // Each within 10 s, where a wait on the lock would take its 30.
    let answered_within = |args: &[&str], limit: Duration| {
        let mut child = env.cmd(args).stdout(Stdio::piped()).spawn().unwrap();
        let began = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if began.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(parse_one(&child.wait_with_output().unwrap()))
    };
    let waited = answered_within(&["run", "--", "true"], Duration::from_secs(10));
    assert_eq!(
        waited.map(|(code, v)| (code, v["state"].clone())),
        Some((0, "exited".into()))
    );
    let quick = answered_within(&["run", "--no-wait", "--", "true"], Duration::from_secs(10));
    let (code, v) = quick.expect("run --no-wait answers while the index is locked");
    assert_eq!(code, 0, "{v:#}");
    assert!(
        answered_within(&["gc"], Duration::from_secs(2)).is_none(),
        "the control: gc writes the index and waits for the lock"
    );

    holder.stdin.take().unwrap().write_all(b"").unwrap();
    holder.wait().unwrap();
    let v = env.ok(&["list"]);
    assert_eq!(v["count"], 3, "{v:#}");
    eventually("no job marked new", Duration::from_secs(10), || {
        env.ok(&["list"]);
        std::fs::read_dir(env.root().join(".new")).map_or(true, |mut d| d.next().is_none())
    });
}

#[test]
fn the_first_jobs_of_a_new_store_made_at_once_all_succeed() {
    if !privileged() {
        return;
    }
    for _ in 0..6 {
        let env = Env::new();
        let children: Vec<_> = (0..8)
            .map(|_| {
                env.cmd(&["run", "--no-wait", "--", "true"])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let (code, v) = parse_one(&c.wait_with_output().unwrap());
            assert_eq!((code, &v["ok"]), (0, &serde_json::json!(true)), "{v:#}");
        }
        assert_eq!(env.ok(&["list"])["count"], 8);
    }
}

/// `gc` removes jobs several at a time (a removal mostly waits on the
/// disk): while it removes 3000 jobs, it runs more than one thread.
#[test]
fn gc_removes_jobs_several_at_a_time() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let seed = run_true(&env);
    let root = env.root();
    let job = std::fs::read_to_string(root.join(&seed).join("job.json")).unwrap();
    let state = std::fs::read_to_string(root.join(&seed).join("state.json")).unwrap();
    for i in 0..3000u32 {
        let id = format!("{i:08x}{}", &seed[8..]);
        let dir = root.join(&id);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("job.json"), job.replace(&seed, &id)).unwrap();
        std::fs::write(dir.join("state.json"), &state).unwrap();
        std::fs::write(dir.join("stdout.log"), "").unwrap();
        std::fs::write(dir.join("stderr.log"), "").unwrap();
    }
    env.ok(&["gc"]); // indexes them
    assert_eq!(env.ok(&["list"])["count"], 3001);
    let gc = env
        .cmd(&["gc", "--older-than", "1ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tasks = format!("/proc/{}/task", gc.id());
    let mut most = 0;
    // Until it shows a second thread, or (a zombie keeps its one task
    // listed until reaped) a minute has passed.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < end {
        let Ok(entries) = std::fs::read_dir(&tasks) else {
            break;
        };
        most = most.max(entries.count());
        if most > 1 {
            break;
        }
    }
    let (_, v) = parse_one(&gc.wait_with_output().unwrap());
    assert_eq!(v["deleted"], 3001, "{}", v["skipped"]);
    assert!(most > 1, "gc ran on one thread");
    assert_eq!(env.ok(&["list"])["count"], 0);
}
