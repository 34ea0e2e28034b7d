//! The host floor: parsing with positions, and every check.

use std::time::Duration;

use super::*;

fn floor(fx: &Fx, text: &str) -> Floor {
    std::fs::write(&fx.sources.floor_path, text).unwrap();
    Floor::load_from(&fx.sources).unwrap()
}

fn check(f: &Floor, p: &Policy) -> Result<(), FloorError> {
    f.check(p, &p.expand_paths(&vars()).unwrap())
}

#[test]
fn missing_file_is_no_floor() {
    let fx = Fx::new();
    let f = Floor::load_from(&fx.sources).unwrap();
    assert_eq!(f, Floor::default());
    assert!(f.path.is_none());
    for name in builtin_names() {
        check(&f, &fx.builtin(name)).unwrap();
    }
}

#[test]
fn full_floor_parses() {
    let fx = Fx::new();
    let f = floor(
        &fx,
        concat!(
            "allow_permissive = false\nallowed_policies = [\"default\", \"/srv/p.toml\"]\n",
            "network = \"loopback\"\nmax_timeout = \"2h\"\nmax_memory = \"4G\"\n",
            "max_pids = 1024\nmax_cpu = 2\nwritable = [\"/home\", \"/tmp/\"]\n",
            "require_seccomp = true\nrequire_enforcement = \"strict\"\n",
            "require_namespaces = [\"user\", \"pid\", \"user\"]\n",
        ),
    );
    assert_eq!(f.path.as_deref(), Some(fx.sources.floor_path.as_path()));
    assert!(!f.allow_permissive);
    assert_eq!(f.network, Some(NetMode::Loopback));
    assert_eq!(f.max_timeout, Some(Duration::from_secs(7200)));
    assert_eq!(f.max_memory, Some(4 << 30));
    assert_eq!((f.max_pids, f.max_cpu), (Some(1024), Some(2.0)));
    assert_eq!(
        f.writable,
        Some(["/home", "/tmp"].map(PathBuf::from).to_vec())
    );
    assert_eq!(f.require_enforcement, Some(Enforcement::Strict));
    assert_eq!(f.require_namespaces, ["user", "pid"]);
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["max_timeout_ms"], 7_200_000);
}

#[test]
fn bad_floor_files_have_positions() {
    let fx = Fx::new();
    let err = |text: &str| {
        std::fs::write(&fx.sources.floor_path, text).unwrap();
        Floor::load_from(&fx.sources).unwrap_err()
    };
    let e = err("max_memory = \"4G\"\nmax_memroy = \"8G\"\n");
    assert_eq!(
        (e.line, e.column, e.kind),
        (2, 1, PolicyErrorKind::UnknownKey)
    );
    assert!(e.message.contains("did you mean `max_memory`?"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:1: unknown key `max_memroy` at the top level; did you mean `max_memory`?",
            fx.sources.floor_path.display()
        )
    );
    let e = err("max_timeout = \"forever\"\n");
    assert_eq!((e.line, e.column, e.field.as_str()), (1, 15, "max_timeout"));
    let e = err("max_memory = \"none\"\n");
    assert_eq!(
        (e.line, e.column, e.kind),
        (1, 14, PolicyErrorKind::BadValue)
    );
    let e = err("network = \"internet\"\n");
    assert_eq!((e.line, e.column), (1, 11));
    let e = err("\nwritable = [\"/home\", \"$CWD\"]\n");
    assert_eq!((e.line, e.column, e.field.as_str()), (2, 22, "writable[1]"));
    let e = err("writable = [\"tmp\"]\n");
    assert!(e.message.contains("relative path"), "{e}");
    let e = err("require_namespaces = [\"net\"]\n");
    assert_eq!(
        (e.line, e.column, e.kind),
        (1, 23, PolicyErrorKind::BadValue)
    );
    let e = err("require_seccomp = \"yes\"\n");
    assert_eq!(e.kind, PolicyErrorKind::WrongType);
    let e = err("max_pids = [\n");
    assert_eq!(e.kind, PolicyErrorKind::Syntax);
    for bad in ["job_uid = 0\n", "job_gid = 4294967295\n", "job_uid = 1.5\n"] {
        let e = err(bad);
        assert_eq!((e.line, e.column), (1, 11), "{bad}: {e}");
    }
}

#[test]
fn the_disk_cap_and_the_jobs_host_identity() {
    let fx = Fx::new();
    let d = fx.builtin("default");
    assert_eq!(d.limits.disk, Some(256 << 20));
    assert_eq!(fx.builtin("untrusted").limits.disk, Some(256 << 20));
    let f = floor(&fx, "max_disk = \"128M\"\njob_uid = 3000\njob_gid = 3001\n");
    assert_eq!(
        check(&f, &d).unwrap_err().to_string(),
        "host floor forbids limits.disk = 256M (the floor allows at most 128M)"
    );
    let mut p = d.clone();
    p.limits.disk = None;
    assert_eq!(check(&f, &p).unwrap_err().requested, "none");
    p.limits.disk = Some(64 << 20);
    check(&f, &p).unwrap();
    assert_eq!((f.job_identity.uid, f.job_identity.gid), (3000, 3001));
    let none = floor(&fx, "");
    assert_eq!(
        none.job_identity.uid,
        crate::sandbox::identity::DEFAULT_JOB_ID
    );
}

#[test]
fn limits_above_the_floor_are_refused_never_narrowed() {
    let fx = Fx::new();
    let f = floor(
        &fx,
        "max_memory = \"4G\"\nmax_timeout = \"1h\"\nmax_pids = 4096\n",
    );
    let d = fx.builtin("default");
    check(&f, &d).unwrap();
    let ci = fx.builtin("ci");
    check(&f, &ci).unwrap(); // 4G, 3600s, 4096 pids: exactly at the floor.

    let big = d
        .apply_overrides(&Overrides {
            memory: Some(8 << 30),
            ..Overrides::default()
        })
        .unwrap();
    let e = check(&f, &big).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host floor forbids limits.memory = 8G (the floor allows at most 4G)"
    );
    assert_eq!(
        big.limits.memory,
        Some(8 << 30),
        "the policy is not narrowed"
    );

    let e = check(&f, &fx.builtin("permissive")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host floor forbids limits.timeout = none (the floor allows at most 3600s)"
    );
    let mut p = d.clone();
    p.limits.memory = None;
    assert_eq!(check(&f, &p).unwrap_err().requested, "none");
    let mut p = d.clone();
    p.limits.pids = Some(5000);
    assert_eq!(check(&f, &p).unwrap_err().field, "limits.pids");
    let mut p = d.clone();
    p.limits.pids = None;
    assert_eq!(check(&f, &p).unwrap_err().requested, "none");
    let f = floor(&fx, "max_cpu = 1.5\n");
    let mut p = d.clone();
    assert_eq!(
        check(&f, &p).unwrap_err().field,
        "limits.cpu",
        "no cpu limit is above max_cpu"
    );
    p.limits.cpu = Some(1.5);
    check(&f, &p).unwrap();
    p.limits.cpu = Some(2.0);
    assert_eq!(
        check(&f, &p).unwrap_err().to_string(),
        "host floor forbids limits.cpu = 2 (the floor allows at most 1.5)"
    );
}

#[test]
fn network_enforcement_seccomp_and_namespaces() {
    let fx = Fx::new();
    let f = floor(
        &fx,
        "network = \"loopback\"\nrequire_enforcement = \"strict\"\nrequire_seccomp = true\nrequire_namespaces = [\"pid\"]\n",
    );
    check(&f, &fx.builtin("default")).unwrap();
    let e = check(&f, &fx.builtin("ci")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "host floor forbids network.mode = host (the floor allows at most loopback)"
    );
    let mut p = fx.builtin("default");
    p.enforcement = Enforcement::BestEffort;
    assert_eq!(check(&f, &p).unwrap_err().field, "enforcement");
    let mut p = fx.builtin("default");
    p.seccomp.profile = SeccompProfile::None;
    assert_eq!(check(&f, &p).unwrap_err().field, "seccomp.profile");
    let mut p = fx.builtin("default");
    p.namespaces.pid = false;
    assert_eq!(check(&f, &p).unwrap_err().field, "namespaces.pid");
    p.namespaces.pid = true;
    p.namespaces.ipc = false;
    check(&f, &p).unwrap();
}

#[test]
fn permissive_and_allowed_policies() {
    let fx = Fx::new();
    let f = floor(&fx, "allow_permissive = false\n");
    let e = check(&f, &fx.builtin("permissive")).unwrap_err();
    assert_eq!(e.field, "filesystem.landlock");
    check(&f, &fx.builtin("ci")).unwrap();

    let path = fx.file("mine.toml", "extends = \"default\"\n");
    let f = floor(
        &fx,
        &format!("allowed_policies = [\"default\", \"untrusted\", {path:?}]\n"),
    );
    check(&f, &fx.builtin("default")).unwrap();
    check(&f, &resolve(&path, &fx.sources).unwrap()).unwrap();
    let e = check(&f, &fx.builtin("ci")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "host floor forbids policy = ci (the floor allows only default, untrusted, {path})"
        )
    );
    // A file that merely calls itself "default" is not the default policy.
    let fake = fx.file("default.toml", "extends = \"permissive\"\n");
    let e = check(&f, &resolve(&fake, &fx.sources).unwrap()).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.requested.as_str()),
        ("policy", fake.as_str())
    );
}

#[test]
fn writable_paths_must_lie_within_the_floor() {
    let fx = Fx::new();
    let root = fx.dir.path().canonicalize().unwrap();
    let allowed = root.join("allowed");
    let outside = root.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    // The temp dir itself lives under /tmp, so the floor lists only `allowed`.
    let f = floor(
        &fx,
        &format!("writable = [{:?}]\n", allowed.display().to_string()),
    );

    let mut vars = vars();
    vars.cwd = allowed.join("proj");
    vars.job_dir = allowed.join("jobs/j1");
    vars.tmpdir = allowed.join("tmp");
    let d = fx.builtin("untrusted"); // writes $TMPDIR and /dev/null
    let mut p = d.clone();
    p.filesystem.write = vec!["$CWD".into(), "$JOB_DIR".into(), "$TMPDIR".into()];
    f.check(&p, &p.expand_paths(&vars).unwrap()).unwrap();

    // /dev/null is outside: the floor must list it for policies that write it.
    let e = f.check(&d, &d.expand_paths(&vars).unwrap()).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.requested.as_str()),
        ("filesystem.write", "/dev/null")
    );
    assert!(e.allowed.starts_with("only paths within "));

    // A symlink inside an allowed directory that points outside is refused.
    vars.cwd = allowed.join("link");
    let e = f.check(&p, &p.expand_paths(&vars).unwrap()).unwrap_err();
    assert_eq!(e.requested, outside.display().to_string());

    // No landlock means everything is writable.
    let perm = fx.builtin("permissive");
    let e = f
        .check(&perm, &perm.expand_paths(&vars).unwrap())
        .unwrap_err();
    assert_eq!(e.requested, "/ (filesystem.landlock = false)");
}

#[test]
fn require_cgroup_refuses_policies_that_may_go_without() {
    let fx = Fx::new();
    let f = floor(&fx, "require_cgroup = true\n");
    assert!(f.require_cgroup);
    // `default` (and `ci`, which extends it) may run without a cgroup.
    let err = check(&f, &fx.builtin("default")).unwrap_err();
    assert_eq!(err.field, "cgroup");
    check(&f, &fx.builtin("untrusted")).unwrap();
    // The control: without the key the same policy passes.
    check(&floor(&fx, "max_pids = 4096\n"), &fx.builtin("default")).unwrap();
    let err = Floor::parse("floor.toml", "require_cgroup = \"yes\"\n").unwrap_err();
    assert_eq!((err.line, err.column), (1, 18), "{err}");
}

/// A caller who may not even look into the floor's directory must not be
/// told "no floor" (and so be free to point AGENT_EXEC_FLOOR elsewhere).
#[test]
fn a_floor_the_caller_cannot_see_is_not_absent() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fx::new();
    let private = fx.dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("floor.toml"), "max_pids = 1\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hidden = private.join("floor.toml");
    let absent = fx.dir.path().join("absent.toml");
    crate::sandbox::test_fork::assert_child_ok(|| {
        // SAFETY: plain syscalls in the forked child.
        if unsafe { libc::setresgid(65534, 65534, 65534) | libc::setresuid(65534, 65534, 65534) }
            != 0
        {
            return Err("cannot become nobody".into());
        }
        if std::fs::symlink_metadata(&hidden).is_ok() {
            return Err("nobody could see the private floor: the test proves nothing".into());
        }
        if !crate::policy::resolve::may_exist(&hidden) {
            return Err("a floor nobody may look at counted as absent".into());
        }
        if crate::policy::resolve::may_exist(&absent) {
            return Err("a missing floor counted as present".into());
        }
        let err = Floor::load(&hidden).map(|_| ()).unwrap_err();
        if !err.to_string().contains("Permission denied") {
            return Err(format!("unexpected error: {err}"));
        }
        Ok(())
    });
}
