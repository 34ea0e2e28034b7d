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
    let cgroup = JobCgroup::create(&layout, &name, &Limits::default(), false).unwrap();
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
    let cgroup = JobCgroup::create(&layout, &name, &Limits::default(), false).unwrap();
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
    let cgroup = JobCgroup::create(&layout, &unique("child"), &Limits::default(), false).unwrap();
    cgroup.remove();
    for parent in &parents {
        assert!(parent.is_dir(), "{} was removed", parent.display());
    }
}

/// A record may name the job's cgroup in a systemd scope; a link named like
/// it, pointing at any other cgroup, must reach nothing (`status` would
/// kill everything in it).
#[test]
fn a_recorded_cgroup_is_only_the_jobs_own_in_its_scope_and_never_a_link() {
    let Ok(layout) = Layout::detect() else {
        return;
    };
    let id = unique("rec");
    let scope = layout.v2_own.join(format!("{}-1.scope", dir_name(&id)));
    std::fs::create_dir(&scope).unwrap();
    let job = scope.join(dir_name(&id));
    std::fs::create_dir(&job).unwrap();
    let links = tempfile::tempdir().unwrap();
    let link_scope = links.path().join(format!("{}-1.scope", dir_name(&id)));
    std::fs::create_dir(&link_scope).unwrap();
    let link = link_scope.join(dir_name(&id));
    std::os::unix::fs::symlink(&layout.v2_own, &link).unwrap();
    let found = JobCgroup::reattach_at(&layout, &id, &job).map(|c| c.v2_dir().to_path_buf());
    let through_link = JobCgroup::reattach_at(&layout, &id, &link).is_some();
    let other_job = JobCgroup::reattach_at(&layout, "someone-else", &job).is_some();
    let _ = std::fs::remove_dir(&job);
    let _ = std::fs::remove_dir(&scope);
    assert_eq!(
        found.as_deref(),
        Some(job.as_path()),
        "the control: the real one"
    );
    assert!(
        !through_link,
        "a link named like the job's cgroup was taken"
    );
    assert!(!other_job, "another job's cgroup was taken");
}
