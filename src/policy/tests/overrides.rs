//! Command-line overrides: tightening always, loosening only when the
//! policy's [overrides] permits.

use std::time::Duration;

use super::*;

fn forbidden(e: OverrideError) -> (&'static str, String, String, String) {
    match e {
        OverrideError::Forbidden {
            field,
            policy,
            requested,
            current,
        } => (field, policy, requested, current),
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn tightening_is_always_allowed() {
    let u = Fx::new().builtin("untrusted");
    let o = Overrides {
        net: Some(NetMode::None),
        memory: Some(256 << 20),
        pids: Some(16),
        cpus: Some(0.5),
        timeout: Some(Duration::from_secs(10)),
        ..Overrides::default()
    };
    let p = u.apply_overrides(&o).unwrap();
    assert_eq!(p.limits.memory, Some(256 << 20));
    assert_eq!(p.limits.pids, Some(16));
    // untrusted has no cpu limit: any cpu limit is a tightening.
    assert_eq!(p.limits.cpu, Some(0.5));
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(10)));
    // Equal to the current value is not loosening either.
    let same = Overrides {
        memory: u.limits.memory,
        ..Overrides::default()
    };
    assert_eq!(u.apply_overrides(&same).unwrap(), u);
    // No overrides: unchanged.
    assert_eq!(u.apply_overrides(&Overrides::default()).unwrap(), u);
}

#[test]
fn loosening_a_locked_policy_names_the_field_and_policy() {
    let u = Fx::new().builtin("untrusted");
    let one = |o: Overrides| forbidden(u.apply_overrides(&o).unwrap_err());

    let (field, policy, requested, current) = one(Overrides {
        memory: Some(1 << 30),
        ..Overrides::default()
    });
    assert_eq!((field, policy.as_str()), ("memory", "untrusted"));
    assert_eq!(
        (requested.as_str(), current.as_str()),
        ("1G", "at most 512M")
    );

    assert_eq!(
        one(Overrides {
            pids: Some(129),
            ..Overrides::default()
        })
        .0,
        "pids"
    );
    assert_eq!(
        one(Overrides {
            timeout: Some(Duration::from_secs(301)),
            ..Overrides::default()
        })
        .2,
        "301s"
    );
    let net = one(Overrides {
        net: Some(NetMode::Loopback),
        ..Overrides::default()
    });
    assert_eq!(
        (net.0, net.2.as_str(), net.3.as_str()),
        ("net", "loopback", "at most none")
    );
    assert_eq!(
        one(Overrides {
            allow_read: vec!["/srv".into()],
            ..Overrides::default()
        })
        .0,
        "allow_read"
    );
    assert_eq!(
        one(Overrides {
            allow_exec: vec!["/srv".into()],
            ..Overrides::default()
        })
        .0,
        "allow_exec"
    );
    let e = u
        .apply_overrides(&Overrides {
            allow_write: vec!["/srv".into(), "/data".into()],
            ..Overrides::default()
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "policy \"untrusted\" does not allow loosening allow_write: requested /srv, /data, the policy allows only the paths it lists (ask for no more than that, or use a policy whose [overrides] sets allow_write = true)"
    );
}

#[test]
fn cpus_loosening_needs_permission() {
    let fx = Fx::new();
    let p = fx
        .load("extends = \"untrusted\"\n[limits]\ncpu = 1\n")
        .unwrap();
    let e = p
        .apply_overrides(&Overrides {
            cpus: Some(2.0),
            ..Overrides::default()
        })
        .unwrap_err();
    assert_eq!(forbidden(e).0, "cpus");
    let p = fx
        .load("extends = \"untrusted\"\n[limits]\ncpu = 1\n[overrides]\ncpus = true\n")
        .unwrap();
    let p = p
        .apply_overrides(&Overrides {
            cpus: Some(2.0),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(p.limits.cpu, Some(2.0));
}

#[test]
fn permitted_loosening_applies() {
    let d = Fx::new().builtin("default");
    let o = Overrides {
        allow_read: vec!["/srv/data/".into(), "/usr".into()],
        allow_write: vec!["/srv/out".into()],
        allow_exec: vec!["/srv/tools".into()],
        net: Some(NetMode::Host),
        allow_domains: vec![],
        memory: Some(8 << 30),
        pids: Some(10_000),
        cpus: Some(4.0),
        timeout: Some(Duration::from_secs(7200)),
    };
    let p = d.apply_overrides(&o).unwrap();
    assert_eq!(
        p.filesystem
            .read
            .iter()
            .filter(|r| r.as_os_str() == "/usr")
            .count(),
        1
    );
    assert!(p.filesystem.read.contains(&PathBuf::from("/srv/data")));
    assert_eq!(p.filesystem.write.last(), Some(&PathBuf::from("/srv/out")));
    assert_eq!(p.filesystem.exec.last(), Some(&PathBuf::from("/srv/tools")));
    assert_eq!(p.network.mode, NetMode::Host);
    assert!(!p.namespace_names().contains(&"net"));
    assert_eq!(p.limits.memory, Some(8 << 30));
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(7200)));
}

/// `--allow-domain` adds to the policy's list and, without `--net`, turns
/// a narrower network into `proxy`; it is refused with a mode that has no
/// proxy, and where the policy keeps its network.
#[test]
fn allow_domain_turns_the_proxy_on() {
    let fx = Fx::new();
    let d = fx.builtin("default");
    let o = Overrides {
        allow_domains: vec!["pypi.org".into(), "*.pythonhosted.org".into()],
        ..Overrides::default()
    };
    let p = d.apply_overrides(&o).unwrap();
    assert_eq!(p.network.mode, NetMode::Proxy);
    assert_eq!(p.network.added_domains, ["pypi.org", "*.pythonhosted.org"]);
    assert!(
        p.network.allow_domains.is_empty(),
        "a flag is not a policy file"
    );
    assert!(p.namespace_names().contains(&"net"));
    for net in [NetMode::Loopback, NetMode::Host] {
        let o = Overrides {
            net: Some(net),
            allow_domains: vec!["pypi.org".into()],
            ..Overrides::default()
        };
        assert!(
            matches!(d.apply_overrides(&o), Err(OverrideError::Invalid { .. })),
            "{net}"
        );
    }
    let bad = Overrides {
        allow_domains: vec!["http://pypi.org".into()],
        ..Overrides::default()
    };
    assert!(matches!(
        d.apply_overrides(&bad),
        Err(OverrideError::Invalid { .. })
    ));
    let untrusted = fx.builtin("untrusted");
    assert!(matches!(
        untrusted.apply_overrides(&o),
        Err(OverrideError::Forbidden { field: "net", .. })
    ));
}

#[test]
fn narrowing_the_network_drops_port_lists() {
    let fx = Fx::new();
    fx.host(
        "web",
        "extends = \"ci\"\n[network]\nconnect_ports = [443]\n",
    );
    let p = fx.builtin("web");
    let p = p
        .apply_overrides(&Overrides {
            net: Some(NetMode::None),
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(
        (p.network.mode, p.network.connect_ports),
        (NetMode::None, None)
    );
}

#[test]
fn unusable_values_are_invalid_not_forbidden() {
    let d = Fx::new().builtin("default");
    let invalid = |o: Overrides| match d.apply_overrides(&o) {
        Err(OverrideError::Invalid { field, message }) => (field, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        invalid(Overrides {
            memory: Some(0),
            ..Overrides::default()
        })
        .0,
        "memory"
    );
    assert_eq!(
        invalid(Overrides {
            pids: Some(0),
            ..Overrides::default()
        })
        .0,
        "pids"
    );
    assert_eq!(
        invalid(Overrides {
            cpus: Some(f64::NAN),
            ..Overrides::default()
        })
        .0,
        "cpus"
    );
    assert_eq!(
        invalid(Overrides {
            cpus: Some(-1.0),
            ..Overrides::default()
        })
        .0,
        "cpus"
    );
    assert_eq!(
        invalid(Overrides {
            timeout: Some(Duration::ZERO),
            ..Overrides::default()
        })
        .0,
        "timeout"
    );
    let (field, message) = invalid(Overrides {
        allow_read: vec!["relative/dir".into()],
        ..Overrides::default()
    });
    assert_eq!(field, "allow_read");
    assert!(message.contains("absolute path"));
    let e = d
        .apply_overrides(&Overrides {
            allow_write: vec!["/srv/../etc".into()],
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(e.to_string().starts_with("--allow-write: "), "{e}");
}

#[test]
fn paths_on_an_unconfined_filesystem_are_a_no_op() {
    let fx = Fx::new();
    let mut p = fx.builtin("permissive");
    p.overrides = OverridePermissions::default();
    let q = p
        .apply_overrides(&Overrides {
            allow_write: vec!["/srv".into()],
            ..Overrides::default()
        })
        .unwrap();
    assert!(q.filesystem.write.is_empty());
}
