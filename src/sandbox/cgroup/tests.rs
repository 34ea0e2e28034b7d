//! Job cgroups on the real kernel of this host (root, hybrid or pure v2).

use super::*;
use crate::sandbox::test_fork::in_child;
use nix::sys::wait::WaitStatus;
use std::collections::BTreeMap;

fn unique(what: &str) -> String {
    format!("test-{what}-{}", std::process::id())
}

#[test]
fn a_child_joins_its_v1_controllers_by_itself() {
    let layout = Layout::detect().expect("cgroups on the test host");
    let name = unique("selfjoin");
    let cgroup = JobCgroup::create(&layout, &name, &Limits::default()).unwrap();
    let join = cgroup.open_self_join().unwrap();
    if layout.kind == LayoutKind::V2 {
        assert!(
            join.is_empty(),
            "clone-into-cgroup covers every v2 controller"
        );
        cgroup.remove();
        return;
    }
    assert!(
        !join.is_empty(),
        "memory and pids are joined on a hybrid host"
    );
    let fds = join.raw_fds().to_vec();
    let suffix = format!("/{}", dir_name(&name));
    let status = in_child(|| {
        join_self(&fds).map_err(|e| format!("join_self: errno {e}"))?;
        let mine = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        for controller in ["memory", "pids"] {
            let line = mine
                .lines()
                .find(|l| l.split(':').nth(1) == Some(controller))
                .ok_or(format!("no {controller} line"))?;
            if layout.v1_own.contains_key(controller) && !line.ends_with(&suffix) {
                return Err(format!("{controller} not joined: {line}"));
            }
        }
        Ok(())
    });
    drop(join);
    cgroup.remove();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    for dir in layout.v1_own.values() {
        assert!(!dir.join(dir_name(&name)).exists(), "removed");
    }
}

#[test]
fn joining_a_removed_cgroup_reports_the_errno() {
    let layout = Layout::detect().expect("cgroups on the test host");
    if layout.kind == LayoutKind::V2 {
        return; // nothing to join on pure v2
    }
    let name = unique("gone");
    let cgroup = JobCgroup::create(&layout, &name, &Limits::default()).unwrap();
    let join = cgroup.open_self_join().unwrap();
    cgroup.remove();
    let fds = join.raw_fds().to_vec();
    let status = in_child(|| match join_self(&fds) {
        Err(libc::ENODEV) | Err(libc::ENOENT) => Ok(()),
        other => Err(format!("expected ENODEV, got {other:?}")),
    });
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}

#[test]
fn removing_a_job_cgroup_leaves_its_parent_alone() {
    // The parent of a job's cgroup is the caller's: never ours to remove,
    // even when it is empty. Here the parents are empty cgroups of our own.
    let host = Layout::detect().expect("cgroups on the test host");
    let parent_name = unique("parent");
    let v2_own = create_under(&host.v2_own, &parent_name).expect("v2 parent");
    let mut parents = vec![v2_own.clone()];
    let mut v1_own = BTreeMap::new();
    for (controller, own) in &host.v1_own {
        let dir = create_under(own, &parent_name).expect("v1 parent");
        parents.push(dir.clone());
        v1_own.insert(controller.clone(), dir);
    }
    struct Cleanup(Vec<PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for dir in &self.0 {
                let _ = fs::remove_dir(dir);
            }
        }
    }
    let _cleanup = Cleanup(parents.clone());
    let layout = Layout {
        kind: host.kind,
        v2_own,
        v1_own,
    };
    let cgroup = JobCgroup::create(&layout, &unique("child"), &Limits::default()).unwrap();
    cgroup.remove();
    for parent in &parents {
        assert!(parent.is_dir(), "{} was removed", parent.display());
    }
}

#[test]
fn every_thread_of_the_job_gets_the_cpus_even_those_started_before() {
    use std::os::unix::process::CommandExt;
    let layout = Layout::detect().expect("cgroups on the test host");
    let name = unique("cpus");
    let cgroup = JobCgroup::create(&layout, &name, &Limits::default()).unwrap();
    let procs = std::ffi::CString::new(
        cgroup
            .v2_dir()
            .join("cgroup.procs")
            .to_string_lossy()
            .into_owned(),
    )
    .unwrap();
    // SAFETY: cpu_set_t is plain data, filled by the kernel.
    let all = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    };
    let first = (0..libc::CPU_SETSIZE as usize)
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &all) })
        .unwrap();
    // A job pinned to one CPU that has started a process of its own.
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "sleep 30 & sleep 30; :"]);
    // SAFETY: only raw syscalls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(first, &mut one);
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0
                || fd < 0
                || libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut job = command.spawn().unwrap();
    let threads = || {
        read_text(cgroup.v2_dir().join("cgroup.threads"))
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let tids = threads();
    let given = cgroup.give_cpus(&all);
    let sets: Vec<(i32, bool)> = tids
        .iter()
        .map(|&tid| {
            // SAFETY: as above.
            let same = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
                libc::CPU_EQUAL(&set, &all)
            };
            (tid, same)
        })
        .collect();
    cgroup.kill_all();
    let _ = job.wait();
    cgroup.wait_empty(Duration::from_secs(5));
    cgroup.remove();
    given.unwrap();
    assert_eq!(
        tids.len(),
        3,
        "sh, its background sleep and its sleep: {tids:?}"
    );
    assert!(sets.iter().all(|(_, same)| *same), "{sets:?}");
}

#[test]
fn the_kernel_and_mountinfo_agree_on_where_our_cgroups_are() {
    // Every launch asks the kernel about the usual mount points (statx +
    // statmount) instead of reading mountinfo; on the test hosts (Linux
    // 6.11 or later, cgroups where systemd mounts them) that must succeed
    // and give the same directories.
    let usual = Layout::detect_from_usual_mounts()
        .expect("statmount (Linux 6.11) and the cgroup hierarchies at /sys/fs/cgroup");
    let mountinfo = Layout::detect_from_mountinfo().expect("cgroups on the test host");
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(usual.kind, mountinfo.kind);
    assert_eq!(real(&usual.v2_own), real(&mountinfo.v2_own));
    let dirs = |l: &Layout| -> BTreeMap<String, PathBuf> {
        l.v1_own.iter().map(|(c, p)| (c.clone(), real(p))).collect()
    };
    assert_eq!(dirs(&usual), dirs(&mountinfo));
    if usual.kind == LayoutKind::Hybrid {
        for controller in ["memory", "pids"] {
            assert!(usual.v1_own.contains_key(controller), "{controller} found");
        }
    }
    assert!(
        Layout::detect().is_ok_and(|l| l.v2_own == usual.v2_own && l.v1_own == usual.v1_own),
        "detect takes the kernel's answer"
    );
}
