//! A caller without root: the same walls through user namespaces of its
//! own, its cgroup where the host delegates one, and without one an honest
//! account of what held (the pid namespace) and what did not (limits).
//!
//! Each test makes an ordinary user (and removes it, with every process it
//! ran), gives it a home under a temporary directory, and runs a copy of
//! the binary as that user with `setpriv`. "Delegated" tests give the user
//! a cgroup the way systemd's `Delegate=yes` does: a directory under the
//! test's own cgroup, owned by the user with its `cgroup.procs` and
//! `cgroup.subtree_control` (and on a hybrid host the same directory in the
//! memory and pids hierarchies), and start the user's command in it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use agent_exec::sandbox::cgroup::{Layout, LayoutKind};
use common::*;
use serde_json::Value;

/// useradd and userdel lock /etc/passwd: one at a time in this process.
static ACCOUNTS: Mutex<()> = Mutex::new(());

struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// Home, binary and the user's files; removed at the end.
    base: tempfile::TempDir,
    bin: PathBuf,
    /// Cgroup directories delegated to the user: its commands start there
    /// (removed at the end).
    delegated: Vec<PathBuf>,
    /// `DBUS_SESSION_BUS_ADDRESS` of its commands.
    bus: Option<String>,
}

impl User {
    fn new() -> User {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("aex{}x{n}", std::process::id());
        // Not under /tmp: `default` mounts a private tmpfs there, which
        // would hide the user's project from its own jobs.
        let base = tempfile::Builder::new()
            .prefix("ae-rootless-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = base.path().join("home");
        account(&[
            "useradd",
            "--create-home",
            "--home-dir",
            s(&home),
            "--shell",
            "/bin/sh",
            "--user-group",
            &name,
        ]);
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        // The binary where the user can run it (the build tree may not be).
        let bin_dir = base.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        let copy = bin_dir.join("agent-exec");
        std::fs::copy(common::bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = User {
            name,
            uid,
            gid,
            base,
            bin: copy,
            delegated: Vec::new(),
            bus: None,
        };
        user.mkdir("proj");
        user
    }

    fn home(&self) -> PathBuf {
        self.base.path().join("home")
    }

    /// The user's project: the working directory of its jobs.
    fn project(&self) -> PathBuf {
        self.home().join("proj")
    }

    /// A directory (and its parents) under the home, owned by the user.
    fn mkdir(&self, rel: &str) -> PathBuf {
        let mut dir = self.home();
        for part in Path::new(rel).components() {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap();
                std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid)).unwrap();
            }
        }
        dir
    }

    /// A file under the home, owned by the user.
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.home().join(rel);
        std::fs::write(&path, content).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        path
    }

    /// Gives the user a cgroup of its own, as systemd's Delegate=yes does,
    /// and starts its commands in it from now on.
    fn delegate(&mut self) {
        let layout = Layout::detect().expect("cgroup layout");
        let name = format!("ae-delegated-{}", self.name);
        let mut dirs = vec![(layout.v2_own.join(&name), true)];
        if layout.kind == LayoutKind::Hybrid {
            for controller in ["memory", "pids"] {
                if let Some(own) = layout.v1_own.get(controller) {
                    dirs.push((own.join(&name), false));
                }
            }
        }
        for (dir, v2) in dirs {
            std::fs::create_dir(&dir).unwrap();
            let files: &[&str] = if v2 {
                &[
                    "",
                    "cgroup.procs",
                    "cgroup.subtree_control",
                    "cgroup.threads",
                ]
            } else {
                &["", "cgroup.procs", "tasks"]
            };
            for f in files {
                let path = if f.is_empty() {
                    dir.clone()
                } else {
                    dir.join(f)
                };
                if path.exists() {
                    std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
                }
            }
            self.delegated.push(dir);
        }
    }

    /// `agent-exec ARGS` as the user, in its project, with an environment
    /// like a real user's: a version manager's shims first on PATH (and
    /// its user bus, when it has one).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        // Into the delegated cgroups first (root may move its own child),
        // then the user's identity.
        let joins: String = self
            .delegated
            .iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs' || exit 99; ", d.display()))
            .collect();
        c.arg("-c")
            .arg(format!("{joins}exec \"$@\""))
            .arg("sh")
            .args(["setpriv", "--reuid", &self.uid.to_string()])
            .args(["--regid", &self.gid.to_string(), "--clear-groups", "--"])
            .arg(&self.bin)
            .args(args);
        let home = self.home();
        c.env_clear()
            .env("HOME", &home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env(
                "PATH",
                format!(
                    "{}/.pyenv/shims:/usr/local/bin:/usr/bin:/bin",
                    home.display()
                ),
            )
            .current_dir(self.project())
            .stdin(Stdio::null());
        if let Some(bus) = &self.bus {
            c.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        c
    }

    fn run(&self, args: &[&str]) -> (i32, Value) {
        let out = self.cmd(args).output().expect("run as the user");
        assert_ne!(
            out.status.code(),
            Some(99),
            "cannot join the delegated cgroup"
        );
        parse_one(&out)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.run(args);
        assert_eq!(v["ok"], true, "expected ok for {args:?}: {v:#}");
        assert_eq!(code, 0, "{v:#}");
        v
    }

    /// Runs `script` with `sh -c` as a job under `policy` and returns the result.
    fn job(&self, policy: &str, extra: &[&str], script: &str) -> Value {
        let mut args = vec!["run", "--policy", policy];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let v = self.ok(&args);
        assert_eq!(
            v["state"].as_str().map(|s| s != "failed"),
            Some(true),
            "{v:#}"
        );
        v
    }

    /// The user's processes (every one of them is the test's).
    fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::metadata(e.path()).is_ok_and(|m| m.uid() == self.uid) {
                // Zombies of a finished supervisor wait for the host's init.
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let state = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next();
                if state != Some("Z") {
                    out.push(pid);
                }
            }
        }
        out
    }
}

impl Drop for User {
    fn drop(&mut self) {
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                // SAFETY: a process of the user this test made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in self.delegated.iter().rev() {
            for _ in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
        account(&["userdel", &self.name]);
    }
}

/// useradd/userdel, retried while another program holds the lock.
fn account(args: &[&str]) {
    let _one = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = None;
    for _ in 0..50 {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        if out.status.success() {
            return;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{args:?} failed: {last:?}");
}

fn not_applied(v: &Value) -> Vec<String> {
    v["sandbox"]["not_applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_user_without_a_cgroup_gets_the_walls_and_an_honest_report() {
    if !privileged() {
        return;
    }
    let user = User::new();
    let v = user.job(
        "default",
        &[],
        "id -u; echo made > made.txt; cat /proc/1/cmdline | tr '\\0' ' '",
    );
    assert_eq!(v["result"], "success", "{v:#}");
    let sandbox = &v["sandbox"];
    assert_eq!(sandbox["cgroup"], "none");
    for ns in ["user", "pid", "mount", "ipc", "uts", "net"] {
        assert!(
            sandbox["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == ns),
            "{ns}: {sandbox:#}"
        );
    }
    assert_eq!(sandbox["landlock"]["status"], "fully_enforced");
    assert_eq!(sandbox["seccomp"], "default");
    assert_eq!(sandbox["capabilities"], "none");
    // The job is the caller on the host, and its files are the caller's.
    assert_eq!(sandbox["host_uid"], user.uid);
    assert_eq!(
        std::fs::metadata(user.project().join("made.txt"))
            .unwrap()
            .uid(),
        user.uid
    );
    // pid 1 is the fresh init, not a copy of the supervisor.
    assert!(
        v["stdout"].as_str().unwrap().contains("agent-exec-init"),
        "{v:#}"
    );
    // What needed a cgroup says so; pids held by RLIMIT_NPROC.
    let missing = not_applied(&v);
    assert!(
        missing
            .iter()
            .any(|m| m.starts_with("limits.memory: needs a cgroup")),
        "{missing:?}"
    );
    assert!(
        !missing.iter().any(|m| m.starts_with("limits.pids")),
        "{missing:?}"
    );
    // What is not in force is not shown as a limit; pids is.
    assert!(sandbox["limits"]["memory_bytes"].is_null(), "{sandbox:#}");
    assert_eq!(sandbox["limits"]["pids"], 512);
    assert_eq!(v["resources"]["accounting"], "processes");
    assert!(v["resources"]["pids_peak"].is_null());
    // The store is the user's XDG state directory.
    let id = job_id(&v);
    let store = user.home().join(".local/state/agent-exec");
    assert!(store.join(&id).join("stdout.log").is_file());
    assert_eq!(std::fs::metadata(&store).unwrap().uid(), user.uid);

    // The lifecycle around it, from the same store.
    let started = user.ok(&["run", "--no-wait", "--", "sleep", "30"]);
    let running = job_id(&started);
    eventually("the job runs", Duration::from_secs(5), || {
        user.ok(&["status", &running])["state"] == "running"
    });
    let listed = user.ok(&["list"]);
    assert!(listed["jobs"].as_array().unwrap().len() >= 2, "{listed:#}");
    let killed = user.ok(&["kill", &running, "--grace", "1"]);
    assert_eq!(killed["state"], "killed", "{killed:#}");
    assert_eq!(
        user.ok(&["tail", &id])["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .next(),
        Some("1000")
    );
    user.ok(&["delete", &id]);
    assert!(!store.join(&id).exists());

    // A policy that requires a cgroup refuses, and says how to get one.
    let (code, refused) = user.run(&["run", "--policy", "untrusted", "--", "true"]);
    assert_eq!(code, 1);
    assert_eq!(
        refused["error"]["code"], "sandbox_unavailable",
        "{refused:#}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cgroup = \"required\"") && message.contains("Delegate=yes"),
        "{message}"
    );
}

#[test]
fn without_a_cgroup_the_pid_namespace_kills_the_whole_tree() {
    if !privileged() {
        return;
    }
    let user = User::new();
    // A tree that left the session and ignores SIGTERM.
    let marker = "1000.2424";
    let script = format!(
        "trap '' TERM; setsid sh -c \"trap '' TERM; sleep {marker}\" & (sleep {marker} &); sleep {marker}"
    );
    let v = user.job("default", &["--timeout", "1", "--kill-after", "1"], &script);
    assert_eq!(v["result"], "timeout", "{v:#}");
    assert_eq!(v["sandbox"]["cgroup"], "none");
    assert!(
        processes_matching(marker).is_empty(),
        "{:?}",
        processes_matching(marker)
    );

    // Leftovers of a main process that exits are killed and counted.
    let v = user.job(
        "default",
        &[],
        &format!("setsid sleep {marker} & sleep {marker} & exit 0"),
    );
    assert_eq!(v["result"], "success");
    assert!(
        v["resources"]["leftover_processes_killed"]
            .as_u64()
            .unwrap()
            >= 2,
        "{v:#}"
    );
    assert!(processes_matching(marker).is_empty());

    // `kill` reaches every process through the init, which forwards it.
    let started = user.ok(&[
        "run",
        "--no-wait",
        "--",
        "sh",
        "-c",
        &format!("setsid sh -c 'sleep {marker}' & sleep {marker}"),
    ]);
    let id = job_id(&started);
    eventually("the job's tree is up", Duration::from_secs(5), || {
        processes_matching(marker).len() >= 2
    });
    let killed = user.ok(&["kill", &id, "--grace", "5"]);
    assert_eq!(killed["state"], "killed", "{killed:#}");
    assert_eq!(killed["signal"], "SIGTERM");
    assert!(
        processes_matching(marker).is_empty(),
        "{:?}",
        processes_matching(marker)
    );

    // The control: without a pid namespace (permissive) a process that
    // left the job's process group survives, and the report says so.
    let v = user.job(
        "permissive",
        &[],
        &format!("setsid sleep {marker} & exit 0"),
    );
    assert!(
        not_applied(&v).iter().any(|m| m.starts_with("tree kill")),
        "{:?}",
        not_applied(&v)
    );
    let mut seen = Vec::new();
    for _ in 0..250 {
        seen = processes_matching(marker);
        if seen.len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.len(),
        1,
        "the setsid'd sleep outlives the job: {seen:?}"
    );
}

#[test]
fn without_a_cgroup_cpu_and_memory_come_from_the_processes() {
    if !privileged() {
        return;
    }
    let user = User::new();
    // Half a second of CPU in a grandchild, and 100 MB in another process.
    let script = "perl -e 'while (1) { for (1..200000) {} last if (times)[0] >= 0.5 }' & \
                  perl -e '$x = \"a\" x (100*1024*1024); sleep 0' ; wait";
    let v = user.job("default", &[], script);
    assert_eq!(v["result"], "success", "{v:#}");
    let r = &v["resources"];
    assert_eq!(r["accounting"], "processes");
    let user_ms = r["cpu_user_ms"].as_u64().unwrap();
    assert!((450..=900).contains(&user_ms), "cpu_user_ms {user_ms}");
    let peak = r["memory_peak_bytes"].as_u64().unwrap();
    assert!(
        peak >= 100 << 20,
        "memory peak {peak} is the largest process"
    );
    // The control: the same memory limit a cgroup would enforce is not.
    let v = user.job(
        "default",
        &["--memory", "64M"],
        "perl -e '$x = \"a\" x (200*1024*1024); print length $x'",
    );
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(not_applied(&v)
        .iter()
        .any(|m| m.starts_with("limits.memory")));
}

#[test]
fn without_a_cgroup_pids_counts_the_jobs_processes_only() {
    if !privileged() {
        return;
    }
    let user = User::new();
    // Eight processes of the same user outside the job.
    let mut outside = Vec::new();
    for _ in 0..8 {
        outside.push(
            Command::new("setpriv")
                .args([
                    "--reuid",
                    &user.uid.to_string(),
                    "--regid",
                    &user.gid.to_string(),
                ])
                .args(["--clear-groups", "--", "sleep", "30"])
                .spawn()
                .unwrap(),
        );
    }
    // init + sh + ten sleeps: 12 tasks.
    let ten = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.5 & done; wait; echo done";
    let fits = user.job("default", &["--pids", "12"], ten);
    assert_eq!(fits["stdout"], "done\n", "{fits:#}");
    let over = user.job("default", &["--pids", "11"], ten);
    assert_ne!(over["result"], "success", "{over:#}");
    assert!(
        over["stderr"].as_str().unwrap().contains("fork"),
        "{over:#}"
    );
    for mut p in outside {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// The attacks the sandbox's design names, as a user: each against a file
/// or socket the test made, each with the control that shows it works
/// without the sandbox (`permissive`).
#[test]
fn a_users_job_cannot_reach_what_its_policy_does_not_grant() {
    if !privileged() {
        return;
    }
    let user = User::new();
    let secret = user.file("secret.txt", "the caller's secret\n");
    let target = user.file("target.txt", "untouched\n");
    user.mkdir(".ssh");
    let key = user.file(".ssh/id_ed25519", "PRIVATE KEY\n");
    // A unix socket of the user's, outside the grants.
    let socket = user.mkdir("run").join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::os::unix::fs::chown(&socket, Some(user.uid), Some(user.gid)).unwrap();
    listener.set_nonblocking(true).unwrap();

    let attack = format!(
        "cat {secret} {key}; echo owned > {target}; \
         chmod u+s made-setuid 2>&1; ls -l made-setuid; \
         perl -MIO::Socket::UNIX -e 'print IO::Socket::UNIX->new(Peer => \"{socket}\") ? \"connected\\n\" : \"refused\\n\"'; \
         cat /proc/1/environ | tr '\\0' ' '; echo; ls /proc/1/fd 2>&1 | head -1",
        secret = secret.display(),
        key = key.display(),
        target = target.display(),
        socket = socket.display(),
    );
    user.file("proj/made-setuid", "#!/bin/sh\n");
    for policy in ["default", "untrusted"] {
        if policy == "untrusted" {
            continue; // needs a cgroup: attacked in the delegated test
        }
        let v = user.job(policy, &["--env", "API_TOKEN=hunter2"], &attack);
        let out = format!(
            "{}{}",
            v["stdout"].as_str().unwrap(),
            v["stderr"].as_str().unwrap()
        );
        assert!(!out.contains("the caller's secret"), "{policy}: {out}");
        assert!(!out.contains("PRIVATE KEY"), "{policy}: {out}");
        assert!(!out.contains("connected"), "{policy}: {out}");
        assert!(
            !out.contains("hunter2") && !out.contains("HOME="),
            "pid 1's environment: {out}"
        );
        assert!(
            !out.contains("-rwS") && !out.contains("-rws"),
            "setuid bit: {out}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    }
    assert!(listener.accept().is_err(), "nothing connected");
    // A published port would be a port nobody relays (the relay enters the
    // job's network, which takes root): refused, never reported as open.
    let (code, v) = user.run(&[
        "run",
        "--net",
        "loopback",
        "--publish",
        "18125",
        "--",
        "true",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--publish needs root"),
        "{v:#}"
    );
    // The control: without the walls every attack works.
    let v = user.job("permissive", &[], &attack);
    let out = format!(
        "{}{}",
        v["stdout"].as_str().unwrap(),
        v["stderr"].as_str().unwrap()
    );
    assert!(
        out.contains("the caller's secret") && out.contains("PRIVATE KEY"),
        "{out}"
    );
    assert!(out.contains("connected"), "{out}");
    assert!(out.contains("-rwS") || out.contains("-rws"), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "owned\n");
}

/// A user's job cannot execute a memfd: root sets vm.memfd_noexec for the
/// job, a user's job gets memfds sealed against exec from seccomp instead.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_users_job_cannot_execute_a_memfd() {
    if !privileged() {
        return;
    }
    let user = User::new();
    let script = r#"use strict;
        my ($x, $y) = ("x", "y");
        my $fd = syscall(319, $x, 1);                  # memfd_create(MFD_CLOEXEC)
        print "plain: ", ($fd >= 0 ? "made" : "refused $!"), "\n";
        my $sealed = syscall(319, $y, 1 | 8);          # | MFD_NOEXEC_SEAL
        print "sealed: ", ($sealed >= 0 ? "made" : "refused $!"), "\n";
        if ($fd >= 0) {
            open(my $src, "<", "/bin/true") or die; local $/; my $bin = <$src>;
            require POSIX; POSIX::write($fd, $bin, length $bin) == length $bin or die;
            exec { "/proc/self/fd/$fd" } "true" or print "exec: failed $!\n";
        }"#;
    let v = user.ok(&["run", "--", "perl", "-e", script]);
    let out = v["stdout"].as_str().unwrap();
    assert!(out.contains("plain: refused"), "{v:#}");
    assert!(out.contains("sealed: made"), "{v:#}");
    // The control: without seccomp the memfd is made and runs.
    let v = user.ok(&["run", "--policy", "permissive", "--", "perl", "-e", script]);
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(
        v["stdout"].as_str().unwrap().contains("plain: made"),
        "{v:#}"
    );
    assert!(
        !v["stdout"].as_str().unwrap().contains("exec: failed"),
        "{v:#}"
    );
}

#[test]
fn with_a_delegated_cgroup_a_users_job_gets_limits_and_exact_accounting() {
    if !privileged() {
        return;
    }
    let mut user = User::new();
    user.delegate();
    let layout = Layout::detect().unwrap();
    let expected = match layout.kind {
        LayoutKind::V2 => "v2",
        LayoutKind::Hybrid => "hybrid",
    };
    // The memory limit holds. (On pure v2 a cgroup that holds the caller's
    // shell, as this one does, cannot give its children controllers, and
    // without a systemd to ask the limit is honestly left out.)
    let v = user.job(
        "default",
        &["--memory", "64M"],
        "perl -e '$x = \"a\" x (200*1024*1024); print length $x'",
    );
    assert_eq!(v["sandbox"]["cgroup"], expected, "{v:#}");
    assert_eq!(v["resources"]["accounting"], "cgroup");
    let pure_v2 = layout.kind == LayoutKind::V2;
    if pure_v2 {
        assert!(
            not_applied(&v)
                .iter()
                .any(|m| m.starts_with("limits.memory")),
            "{v:#}"
        );
        assert!(v["sandbox"]["limits"]["memory_bytes"].is_null(), "{v:#}");
    } else {
        assert_eq!(v["result"], "oom", "{v:#}");
        assert!(
            !not_applied(&v).iter().any(|m| m.starts_with("limits.")),
            "{:?}",
            not_applied(&v)
        );
    }
    // The tree dies through the cgroup; the peaks come from it.
    let marker = "1000.2525";
    let script =
        format!("trap '' TERM; setsid sh -c \"trap '' TERM; sleep {marker}\" & sleep {marker}");
    let v = user.job("default", &["--timeout", "1", "--kill-after", "1"], &script);
    assert_eq!(v["result"], "timeout");
    if !pure_v2 {
        assert!(v["resources"]["pids_peak"].as_u64().unwrap() >= 3, "{v:#}");
    }
    assert!(processes_matching(marker).is_empty());
    // `untrusted` runs now (where its limits can hold), and its walls hold.
    let secret = user.file("secret.txt", "the caller's secret\n");
    let script = format!("cat {}; echo x > y", secret.display());
    if pure_v2 {
        let (code, refused) =
            user.run(&["run", "--policy", "untrusted", "--", "sh", "-c", &script]);
        assert_eq!(
            (code, &refused["error"]["code"]),
            (1, &Value::from("sandbox_unavailable"))
        );
    } else {
        let v = user.job("untrusted", &[], &script);
        assert_eq!(v["sandbox"]["cgroup"], expected);
        assert!(!v["stdout"].as_str().unwrap().contains("secret"), "{v:#}");
    }
    assert!(!user.project().join("y").exists());
    // Every job cgroup goes (after the answer); only the delegated
    // directories remain.
    for dir in &user.delegated {
        let children = || -> Vec<std::ffi::OsString> {
            std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect()
        };
        eventually(
            "the job cgroups are removed",
            Duration::from_secs(5),
            || children().is_empty(),
        );
    }
}

#[test]
fn doctor_as_a_user_says_what_it_has_and_how_to_get_the_rest() {
    if !privileged() {
        return;
    }
    let mut user = User::new();
    let out = user.cmd(&["doctor"]).output().unwrap();
    let (code, v) = parse_one(&out);
    assert_eq!(code, 0, "default runs without a cgroup: {v:#}");
    assert_eq!(v["caller"]["root"], false);
    assert_eq!(v["cgroup"]["available"], false);
    let verdict = |name: &str| {
        v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(verdict("default")["enforceable"], true, "{v:#}");
    assert!(!verdict("default")["not_applied"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(verdict("untrusted")["enforceable"], false);
    let advice = v["advice"].to_string();
    assert!(advice.contains("Delegate=yes"), "{advice}");
    // With a delegated cgroup there is nothing left to advise about it
    // (on pure v2, one that holds the shell gives no controllers: that is
    // what is left to advise).
    user.delegate();
    let out = user.cmd(&["doctor"]).output().unwrap();
    let (code, v) = parse_one(&out);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["cgroup"]["available"], true, "{v:#}");
    if Layout::detect().unwrap().kind == LayoutKind::V2 {
        assert!(v["advice"].to_string().contains("controller"), "{v:#}");
        return;
    }
    assert!(!v["advice"].to_string().contains("cgroups:"), "{v:#}");
    assert!(
        v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["enforceable"] == true || p["name"] == "permissive"),
        "{v:#}"
    );
}

/// A floor the user cannot read is an error, never "no floor".
#[test]
fn a_floor_the_user_cannot_read_stops_every_job() {
    if !privileged() {
        return;
    }
    let user = User::new();
    let floor = user.base.path().join("floor.toml");
    std::fs::write(&floor, "max_timeout = \"1h\"\n").unwrap();
    std::fs::set_permissions(&floor, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = user.cmd(&["run", "--", "true"]);
    cmd.env("AGENT_EXEC_FLOOR", &floor);
    let (code, v) = parse_one(&cmd.output().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{v:#}"
    );
    // A floor that caps memory needs a cgroup to hold the cap: without one
    // a user's job is refused rather than run uncapped.
    let capping = user.base.path().join("capping.toml");
    std::fs::write(&capping, "max_memory = \"2G\"\n").unwrap();
    std::fs::set_permissions(&capping, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = user.cmd(&["run", "--", "true"]);
    cmd.env("AGENT_EXEC_FLOOR", &capping);
    let (code, v) = parse_one(&cmd.output().unwrap());
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["code"], "sandbox_unavailable", "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("host floor requires"),
        "{v:#}"
    );
    // The control: readable, the same floor lets the job run.
    std::fs::set_permissions(&floor, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = user.cmd(&["run", "--", "true"]);
    cmd.env("AGENT_EXEC_FLOOR", &floor);
    let (code, v) = parse_one(&cmd.output().unwrap());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["result"], "success");
}

/// A real bus daemon with a stand-in for the user's systemd on it
/// (tests/fake_systemd.py): it makes delegated scopes under the test's own
/// cgroup, as systemd makes them under the user's manager.
struct ServiceManager {
    daemon: std::process::Child,
    manager: std::process::Child,
    log: PathBuf,
    /// Where it makes scopes (removed at the end, as systemd would).
    parent: PathBuf,
}

impl ServiceManager {
    fn start(user: &mut User) -> ServiceManager {
        let dir = user.base.path().join("bus");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("bus");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon)");
        eventually("the bus listens", Duration::from_secs(5), || {
            socket.exists()
        });
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let address = format!("unix:path={}", socket.display());
        let layout = Layout::detect().unwrap();
        let log = dir.join("calls.ndjson");
        let python = std::env::var_os("AGENT_EXEC_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
            });
        let mut manager = Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fake_systemd.py"
            ))
            .arg(&address)
            .arg(&layout.v2_own)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test venv's python (scripts/test.sh installs dbus-fast there)");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(manager.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the stand-in for systemd did not start"
        );
        user.bus = Some(address);
        ServiceManager {
            daemon,
            manager,
            log,
            parent: layout.v2_own,
        }
    }

    /// The calls the manager got, one JSON object each.
    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for ServiceManager {
    fn drop(&mut self) {
        let _ = self.manager.kill();
        let _ = self.manager.wait();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // systemd removes a scope once its processes are gone: the leaf the
        // supervisor moved into, then the scope.
        for call in self.calls() {
            let scope = self.parent.join(call["name"].as_str().unwrap_or("-"));
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&scope)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            // What a failed test left in them is the test's own.
            for dir in &dirs {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    // SAFETY: a process of a job this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            dirs.push(scope);
            for dir in dirs {
                for _ in 0..100 {
                    match std::fs::remove_dir(&dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => break,
                    }
                }
            }
        }
    }
}

/// A login shell's cgroup is root's; the user's service manager hands out
/// delegated scopes. The supervisor asks for one over D-Bus and the job
/// gets a cgroup of its own in it.
#[test]
fn a_user_without_a_cgroup_gets_a_delegated_scope_from_its_service_manager() {
    if !privileged() {
        return;
    }
    let mut user = User::new();
    let manager = ServiceManager::start(&mut user);
    let layout = Layout::detect().unwrap();
    let marker = "1000.2626";
    let script =
        format!("trap '' TERM; setsid sh -c \"trap '' TERM; sleep {marker}\" & sleep {marker}");
    let v = user.job(
        "default",
        &["--timeout", "1", "--kill-after", "1", "--memory", "64M"],
        &script,
    );
    let calls = manager.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    let unit = call["name"].as_str().unwrap().to_string();
    assert!(
        unit.starts_with(&format!("agent-exec-{}-", job_id(&v))),
        "{unit}"
    );
    assert_eq!(call["properties"]["Delegate"], true, "{call}");
    assert_eq!(
        call["properties"]["PIDs"],
        serde_json::json!([v["supervisor_pid"]]),
        "{call}"
    );
    // The job had a cgroup, and the tree died through it.
    let expected = match layout.kind {
        LayoutKind::V2 => "v2",
        LayoutKind::Hybrid => "hybrid",
    };
    assert_eq!(v["sandbox"]["cgroup"], expected, "{v:#}");
    assert_eq!(v["resources"]["accounting"], "cgroup");
    assert_eq!(v["result"], "timeout");
    // The memory limit holds where the scope has the controller (systemd
    // delegates only the v2 hierarchy): either it is in force, or it is out
    // of `sandbox.limits` and named in `not_applied`.
    let unapplied = not_applied(&v)
        .iter()
        .any(|m| m.starts_with("limits.memory"));
    assert_eq!(
        v["sandbox"]["limits"]["memory_bytes"].is_null(),
        unapplied,
        "{v:#}"
    );
    if layout.kind == LayoutKind::Hybrid {
        assert!(unapplied, "{v:#}");
    }
    assert!(processes_matching(marker).is_empty());
    // The job's cgroup went; the supervisor's leaf is all that is left.
    eventually("the job cgroup is removed", Duration::from_secs(5), || {
        !layout
            .v2_own
            .join(&unit)
            .join(format!("agent-exec-{}", job_id(&v)))
            .exists()
    });

    // doctor finds the same way to a cgroup.
    let out = user.cmd(&["doctor"]).output().unwrap();
    let (code, doctor) = parse_one(&out);
    assert_eq!(code, 0, "{doctor:#}");
    assert_eq!(doctor["cgroup"]["available"], true, "{doctor:#}");
    assert!(
        doctor["cgroup"]["detail"]
            .as_str()
            .unwrap()
            .contains("delegated scope"),
        "{doctor:#}"
    );
    assert_eq!(manager.calls().len(), 2);

    // A supervisor killed mid-job: the next `status` finds the job's cgroup
    // in the scope, where the supervisor recorded it, and kills what is
    // left. The control: the same with the record's path removed leaves it.
    for recorded in [true, false] {
        let marker = if recorded { "1000.2727" } else { "1000.2828" };
        let script = format!("setsid sleep {marker} & sleep {marker}");
        let started = user.ok(&[
            "run",
            "--no-wait",
            "--policy",
            "permissive",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let id = job_id(&started);
        let sleeps = || {
            processes_matching(marker)
                .into_iter()
                .filter(|(_, cmd)| cmd.starts_with("sleep"))
                .count()
        };
        eventually("the job runs", Duration::from_secs(5), || sleeps() == 2);
        let running = user.ok(&["status", &id]);
        let supervisor = running["supervisor_pid"].as_i64().unwrap() as i32;
        let state = user
            .home()
            .join(".local/state/agent-exec")
            .join(&id)
            .join("state.json");
        let mut record: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert!(record["cgroup"].is_string(), "{record:#}");
        if !recorded {
            record.as_object_mut().unwrap().remove("cgroup");
            std::fs::write(&state, serde_json::to_vec(&record).unwrap()).unwrap();
        }
        // SAFETY: the supervisor of a job of the user this test made.
        unsafe { libc::kill(supervisor, libc::SIGKILL) };
        eventually("the supervisor is gone", Duration::from_secs(5), || {
            // Gone, or a zombie waiting for the host's init.
            let stat =
                std::fs::read_to_string(format!("/proc/{supervisor}/stat")).unwrap_or_default();
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
        });
        let lost = user.ok(&["status", &id]);
        assert_eq!(lost["state"], "lost", "{lost:#}");
        if recorded {
            assert!(
                processes_matching(marker).is_empty(),
                "{:?}",
                processes_matching(marker)
            );
            assert!(
                lost["resources"]["leftover_processes_killed"]
                    .as_u64()
                    .unwrap()
                    >= 1
            );
        } else {
            assert!(
                !processes_matching(marker).is_empty(),
                "the control found them anyway"
            );
            for (pid, _) in processes_matching(marker) {
                // SAFETY: a leftover of the job this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let calls_so_far = manager.calls().len();

    // The control: without a bus there is no scope, and no cgroup.
    user.bus = None;
    let v = user.job("default", &[], "true");
    assert_eq!(v["sandbox"]["cgroup"], "none", "{v:#}");
    assert!(
        not_applied(&v)
            .iter()
            .any(|m| m.contains("no delegated scope from systemd")),
        "{:?}",
        not_applied(&v)
    );
    assert_eq!(manager.calls().len(), calls_so_far);
}
