//! Lookup by name and path, host shadowing, `extends` chains, merge rules
//! and `list`.

use std::time::Duration;

use super::*;

#[test]
fn host_policy_shadows_the_builtin() {
    let fx = Fx::new();
    let path = fx.host(
        "default",
        "description = \"site default\"\n[network]\nmode = \"loopback\"\n",
    );
    let p = fx.builtin("default");
    assert_eq!(p.source, PolicySource::Host { path });
    assert_eq!(p.description, "site default");
    assert_eq!(p.network.mode, NetMode::Loopback);
    // Without extends it starts from the strict base, not from the built-in.
    assert!(p.filesystem.read.is_empty());
    assert_eq!(p.limits.memory, None);
}

#[test]
fn host_policy_extending_its_own_name_gets_the_builtin() {
    let fx = Fx::new();
    fx.host(
        "default",
        "extends = \"default\"\n[limits]\nmemory = \"2G\"\n",
    );
    let p = fx.builtin("default");
    assert_eq!(p.inherits, ["default"]);
    assert_eq!(p.limits.memory, Some(2 << 30));
    assert_eq!(p.limits.pids, Some(512));
    // Other built-ins that extend `default` still get the built-in one.
    assert_eq!(fx.builtin("untrusted").limits.memory, Some(512 << 20));
    assert_eq!(fx.builtin("ci").inherits, ["default"]);
}

#[test]
fn chains_merge_nearest_last() {
    let fx = Fx::new();
    fx.host(
        "team",
        "extends = \"untrusted\"\n[limits]\npids = 64\n[env]\nset = { TEAM = \"a\", NO_COLOR = \"0\" }\n",
    );
    fx.host(
        "job",
        "extends = \"team\"\ndescription = \"the job\"\n[limits]\ntimeout = \"none\"\n",
    );
    let p = fx.builtin("job");
    assert_eq!(p.inherits, ["team", "untrusted", "default"]);
    assert_eq!(p.description, "the job");
    assert_eq!(p.limits.pids, Some(64));
    assert_eq!(p.limits.timeout, None);
    assert_eq!(p.limits.memory, Some(512 << 20));
    assert_eq!(p.seccomp.profile, SeccompProfile::Strict);
    // env.set merges key by key, nearest wins.
    assert_eq!(p.env.set["TEAM"], "a");
    assert_eq!(p.env.set["NO_COLOR"], "0");
    assert_eq!(p.env.set["GIT_TERMINAL_PROMPT"], "0");
    // description is not inherited.
    assert_eq!(fx.builtin("team").description, "");
}

#[test]
fn lists_replace_and_settings_reset_what_depends_on_them() {
    let fx = Fx::new();
    let p = fx
        .load("extends = \"default\"\n[filesystem]\nread = [\"/usr\"]\n")
        .unwrap();
    assert_eq!(p.filesystem.read, [PathBuf::from("/usr")]);
    assert_eq!(p.filesystem.write[0], PathBuf::from("$CWD"));

    // landlock = false drops the inherited lists instead of conflicting.
    let p = fx
        .load("extends = \"default\"\n[filesystem]\nlandlock = false\n")
        .unwrap();
    assert!(!p.filesystem.landlock && p.filesystem.read.is_empty());
    assert_eq!(p.filesystem.tmpfs, [PathBuf::from("/tmp")]);

    // Setting the mode drops inherited port lists.
    fx.host(
        "web",
        "extends = \"ci\"\n[network]\nconnect_ports = [443, 80, 443]\n",
    );
    let web = fx.builtin("web");
    assert_eq!(web.network.connect_ports, Some(vec![80, 443]));
    assert_eq!(web.network.bind_ports, None);
    let p = fx
        .load("extends = \"web\"\n[network]\nmode = \"none\"\n")
        .unwrap();
    assert_eq!(
        (p.network.mode, p.network.connect_ports),
        (NetMode::None, None)
    );
    let p = fx
        .load("extends = \"web\"\n[network]\nconnect_ports = \"any\"\n")
        .unwrap();
    assert_eq!(p.network.connect_ports, None);
}

#[test]
fn every_value_form_is_read() {
    let fx = Fx::new();
    let p = fx
        .load(concat!(
            "enforcement = \"best_effort\"\n",
            "[limits]\n",
            "timeout = 90\nkill_after = 0.5\nmemory = 1048576\npids = \"none\"\n",
            "cpu = 1.5\nfile_size = \"1.5G\"\nopen_files = 256\noutput_bytes = \"1M\"\n",
            "[filesystem]\nread = [\"/usr/\", \"$HOME/.cargo\", \"/usr\"]\n",
            "[network]\nmode = \"loopback\"\nbind_ports = [8080]\n",
            "[namespaces]\nipc = false\nhostname = \"box\"\n",
            "[env]\ninherit = false\nallow = [\"*\"]\n",
            "[seccomp]\ndeny = [\"ptrace\", \"bpf\", \"ptrace\"]\n",
            "[overrides]\nmemory = true\n",
        ))
        .unwrap();
    assert_eq!(p.enforcement, Enforcement::BestEffort);
    let l = &p.limits;
    assert_eq!(l.timeout, Some(Duration::from_secs(90)));
    assert_eq!(l.kill_after, Some(Duration::from_millis(500)));
    assert_eq!(l.memory, Some(1 << 20));
    assert_eq!(l.pids, None);
    assert_eq!(l.cpu, Some(1.5));
    assert_eq!(l.file_size, Some(3 << 29));
    assert_eq!(l.open_files, Some(256));
    assert_eq!(l.output_bytes, 1 << 20);
    assert_eq!(
        p.filesystem.read,
        ["/usr", "$HOME/.cargo"].map(PathBuf::from)
    );
    assert_eq!(p.network.bind_ports, Some(vec![8080]));
    assert!(!p.namespaces.ipc && p.namespaces.uts);
    assert_eq!(p.namespaces.hostname.as_deref(), Some("box"));
    assert!(p.env.allows("ANY"));
    assert_eq!(p.seccomp.deny, ["ptrace", "bpf"]);
    assert!(p.overrides.memory && !p.overrides.pids);
    assert_eq!(
        p.namespace_names(),
        ["user", "pid", "mount", "uts", "net", "cgroup"]
    );
}

#[test]
fn paths_and_names() {
    let fx = Fx::new();
    std::fs::create_dir(fx.dir.path().join("sub")).unwrap();
    fx.file("base.toml", "extends = \"ci\"\n[limits]\npids = 7\n");
    let child = fx.file("sub/child.toml", "extends = \"../base.toml\"\n");
    let p = resolve(&child, &fx.sources).unwrap();
    assert_eq!(p.name, "child");
    assert_eq!(p.source, PolicySource::File { path: child.into() });
    assert_eq!(p.inherits, ["base", "ci", "default"]);
    assert_eq!(p.limits.pids, Some(7));

    // Anything ending in .toml is a path, even without a slash.
    let e = resolve("default.toml", &fx.sources).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::NotFound);
    assert!(e.file.ends_with("default.toml"), "{e}");
    let e = resolve("../etc", &fx.sources).unwrap_err();
    assert_ne!(e.kind, PolicyErrorKind::BadValue);
    let e = resolve(".hidden", &fx.sources).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::BadValue);
}

#[test]
fn extends_cycles_are_reported_where_they_close() {
    let fx = Fx::new();
    fx.host("a", "extends = \"b\"\n");
    fx.host("b", "description = \"b\"\nextends = \"a\"\n");
    let e = resolve("a", &fx.sources).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::Cycle);
    assert!(e.file.ends_with("b.toml"));
    assert_eq!((e.line, e.column, e.field.as_str()), (2, 11, "extends"));
    let host = fx.sources.host_dir.display();
    assert!(
        e.message
            .ends_with(&format!("{host}/a.toml -> {host}/b.toml -> {host}/a.toml")),
        "{e}"
    );
}

#[test]
fn errors_in_a_parent_name_the_parent_file() {
    let fx = Fx::new();
    fx.host("broken", "[limits]\nmemory = \"lots\"\n");
    let e = fx.err("extends = \"broken\"\n");
    assert!(e.file.ends_with("broken.toml"), "{e}");
    assert_eq!((e.line, e.column), (2, 10));
}

#[test]
fn list_shows_builtins_host_policies_and_broken_files() {
    let fx = Fx::new();
    fx.host("ci", "extends = \"ci\"\ndescription = \"our ci\"\n");
    fx.host("zeta", "description = \"z\"\n");
    fx.host("broken", "[limits\n");
    std::fs::write(fx.sources.host_dir.join("notes.txt"), "x").unwrap();
    std::fs::write(fx.sources.host_dir.join(".hidden.toml"), "x").unwrap();
    let entries = list(&fx.sources).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["broken", "ci", "default", "permissive", "untrusted", "zeta"]
    );
    let ci = &entries[1];
    assert!(ci.shadows_builtin && ci.description == "our ci" && ci.error.is_none());
    assert!(matches!(ci.source, PolicySource::Host { .. }));
    let broken = &entries[0];
    assert!(!broken.shadows_builtin);
    assert!(broken
        .error
        .as_deref()
        .unwrap()
        .contains("broken.toml:1:8: unclosed table"));
    let default = &entries[2];
    assert_eq!(default.source, PolicySource::Builtin);
    assert!(
        !default.shadows_builtin
            && default
                .description
                .starts_with("An agent's build-and-test loop")
    );

    // No host directory at all: just the built-ins.
    let none = PolicySources::new(fx.dir.path().join("absent"), fx.dir.path().join("f"));
    assert_eq!(list(&none).unwrap().len(), 4);
    // A host "directory" that is a file is an error worth reporting.
    let odd = PolicySources::new(
        fx.dir.path().join("host/zeta.toml"),
        fx.dir.path().join("f"),
    );
    assert_eq!(list(&odd).unwrap_err().kind, PolicyErrorKind::Io);
}

#[test]
fn sources_default_to_etc() {
    assert_eq!(PolicySources::DEFAULT_HOST_DIR, "/etc/agent-exec/policies");
    assert_eq!(PolicySources::DEFAULT_FLOOR, "/etc/agent-exec/floor.toml");
    let defaults = PolicySources::new(
        PolicySources::DEFAULT_HOST_DIR,
        PolicySources::DEFAULT_FLOOR,
    );
    assert_eq!(PolicySources::from_vars(None, None, false), defaults);
    assert_eq!(
        PolicySources::from_vars(Some("".into()), Some("".into()), false),
        defaults
    );
    let custom = PolicySources::from_vars(Some("/p".into()), Some("/f.toml".into()), false);
    assert_eq!(custom, PolicySources::new("/p", "/f.toml"));
    // An administrator's floor cannot be swapped out from the environment.
    let hardened = PolicySources::from_vars(Some("/p".into()), Some("/dev/null".into()), true);
    assert_eq!(hardened, defaults);
}
