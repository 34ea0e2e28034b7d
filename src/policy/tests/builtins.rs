//! The shipped policies: they load, say what the design promises, and
//! their JSON matches the published schema.

use std::time::Duration;

use super::*;

#[test]
fn default_is_fully_isolated() {
    let p = Fx::new().builtin("default");
    assert_eq!(
        (p.name.as_str(), &p.source),
        ("default", &PolicySource::Builtin)
    );
    assert!(p.inherits.is_empty());
    assert_eq!(p.enforcement, Enforcement::Strict);
    assert_eq!(
        p.namespace_names(),
        ["user", "pid", "mount", "ipc", "uts", "net", "cgroup"]
    );
    assert_eq!(p.network.mode, NetMode::None);
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(600)));
    assert_eq!(p.limits.kill_after, Some(Duration::from_secs(5)));
    assert_eq!(p.limits.memory, Some(1 << 30));
    assert_eq!(p.limits.pids, Some(512));
    assert_eq!(p.limits.output_bytes, 64 << 20);
    assert_eq!(p.seccomp.profile, SeccompProfile::Default);
    assert_eq!(p.filesystem.tmpfs, [PathBuf::from("/tmp")]);
    for secret in [
        "$HOME/.ssh",
        "$HOME/.aws",
        "$HOME/.netrc",
        "$HOME/.config/gh",
        "$HOME/.pgpass",
        "$HOME/.claude",
    ] {
        assert!(
            p.filesystem.deny.contains(&PathBuf::from(secret)),
            "{secret}"
        );
    }
    for kept in ["$CWD/.git", "$CWD/.bashrc", "$HOME/.gitconfig"] {
        assert!(
            p.filesystem.read_only.contains(&PathBuf::from(kept)),
            "{kept}"
        );
    }
    assert!(!p.env.inherit);
    assert!(p.env.allows("PATH") && p.env.allows("LC_ALL") && !p.env.allows("AWS_SECRET"));
    assert_eq!(
        p.env.set.get("GIT_TERMINAL_PROMPT").map(String::as_str),
        Some("0")
    );

    let fs = p.expand_paths(&vars()).unwrap();
    assert!(fs.landlock);
    for dir in ["/usr", "/etc", "/proc", "/dev/urandom", "/work/app"] {
        assert!(fs.read.contains(&PathBuf::from(dir)), "{dir} not readable");
    }
    assert_eq!(
        fs.write[..4],
        ["/work/app", "/tmp", "/state/jobs/j1", "/dev/null"].map(PathBuf::from)
    );
    // The rest of what may be written is the toolchains' caches in $HOME.
    assert!(fs.write[4..].iter().all(|p| p.starts_with("/home/dev/")));
    // What the job builds runs, and so do the toolchains of $HOME.
    for dir in ["/work/app", "/home/dev/.cargo/bin", "/home/dev/.pyenv"] {
        assert!(
            fs.exec.contains(&PathBuf::from(dir)),
            "{dir} not executable"
        );
    }
}

#[test]
fn untrusted_is_tighter_than_default() {
    let fx = Fx::new();
    let (d, u) = (fx.builtin("default"), fx.builtin("untrusted"));
    assert_eq!(u.inherits, ["default"]);
    assert!(u.filesystem.read.contains(&PathBuf::from("$CWD")));
    assert!(!u.filesystem.write.contains(&PathBuf::from("$CWD")));
    assert!(u.filesystem.write.contains(&PathBuf::from("$TMPDIR")));
    // Nothing of $HOME, nothing of what the job writes runs.
    let fs = [&u.filesystem.read, &u.filesystem.write, &u.filesystem.exec];
    assert!(fs.iter().all(|l| l.iter().all(|p| !p.starts_with("$HOME"))));
    assert!(!u
        .filesystem
        .exec
        .iter()
        .any(|p| p.starts_with("$CWD") || p.starts_with("$TMPDIR")));
    assert_eq!(u.seccomp.profile, SeccompProfile::Strict);
    assert_eq!(u.limits.memory, Some(512 << 20));
    assert_eq!(u.limits.pids, Some(128));
    assert_eq!(u.limits.timeout, Some(Duration::from_secs(300)));
    assert_eq!(u.overrides, OverridePermissions::default());
    assert_eq!(u.namespaces, d.namespaces);
    assert_eq!(u.network, d.network);
}

#[test]
fn ci_has_network_and_home() {
    let c = Fx::new().builtin("ci");
    assert_eq!(c.network.mode, NetMode::Host);
    assert!(!c.namespace_names().contains(&"net"));
    assert!(c.filesystem.read.contains(&PathBuf::from("$HOME")));
    assert_eq!(
        c.filesystem.write[..2],
        ["$CWD", "$TMPDIR"].map(PathBuf::from)
    );
    assert_eq!(c.limits.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(c.limits.memory, Some(4 << 30));
    assert_eq!(c.limits.pids, Some(4096));
    assert_eq!(c.seccomp.profile, SeccompProfile::Default);
    assert!(c.env.allows("GITHUB_SHA") && !c.env.allows("SSH_AUTH_SOCK"));
}

#[test]
fn permissive_is_cgroup_only() {
    let p = Fx::new().builtin("permissive");
    assert!(p.namespace_names().is_empty());
    assert!(!p.filesystem.landlock);
    assert!(p.filesystem.read.is_empty() && p.filesystem.write.is_empty());
    assert_eq!(p.seccomp.profile, SeccompProfile::None);
    assert_eq!(p.network.mode, NetMode::Host);
    assert!(p.env.inherit && p.env.allows("ANYTHING"));
    assert_eq!(p.enforcement, Enforcement::BestEffort);
    assert_eq!(p.limits.memory, None);
    let fs = p.expand_paths(&vars()).unwrap();
    assert!(!fs.landlock && fs.read.is_empty());
}

#[test]
fn json_matches_the_schema() {
    let schema = serde_json::to_value(schemars::schema_for!(Policy)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let fx = Fx::new();
    for name in builtin_names() {
        let json = serde_json::to_value(fx.builtin(name)).unwrap();
        assert!(validator.is_valid(&json), "{name}: {json}");
    }
    let json = serde_json::to_value(fx.builtin("default")).unwrap();
    assert_eq!(json["limits"]["timeout_ms"], 600_000);
    assert_eq!(json["limits"]["memory_bytes"], 1u64 << 30);
    assert_eq!(json["limits"]["cpu"], serde_json::Value::Null);
    assert_eq!(json["source"]["kind"], "builtin");
    assert_eq!(json["network"]["mode"], "none");
    // The schema is not vacuous: a wrong type is rejected.
    let mut bad = json.clone();
    bad["limits"]["pids"] = "many".into();
    assert!(!validator.is_valid(&bad));
}
