//! Every kind of file error, with its exact position.

use super::*;

/// Loads `text` and asserts the error's position, field, kind and that the
/// message contains `needle`.
#[track_caller]
fn check(text: &str, line: u32, column: u32, field: &str, kind: PolicyErrorKind, needle: &str) {
    let fx = Fx::new();
    let e = fx.err(text);
    assert_eq!(
        (e.line, e.column, e.field.as_str(), e.kind),
        (line, column, field, kind),
        "for {text:?}: {e}"
    );
    assert!(
        e.message.contains(needle),
        "{:?} lacks {needle:?}",
        e.message
    );
    assert!(e.file.ends_with("p.toml"));
    assert_eq!(
        e.to_string(),
        format!("{}:{line}:{column}: {}", e.file, e.message)
    );
}

use PolicyErrorKind::*;

#[test]
fn syntax_errors() {
    check("x = 1\n[limits\n", 2, 8, "", Syntax, "unclosed table");
    check(
        "[limits]\nmemory = \"1G\"\nmemory = 2\n",
        3,
        1,
        "",
        Syntax,
        "duplicate key",
    );
    check("description = \"unterminated\n", 1, 28, "", Syntax, "");
}

#[test]
fn unknown_keys() {
    check(
        "descripton = \"x\"\n",
        1,
        1,
        "descripton",
        UnknownKey,
        "did you mean `description`?",
    );
    check(
        "[limits]\nmemory = \"1G\"\n  frobnicate = 3\n",
        3,
        3,
        "limits.frobnicate",
        UnknownKey,
        "unknown key `frobnicate` in [limits]; expected one of: timeout, kill_after, memory",
    );
    check(
        "[network.extra]\n",
        1,
        10,
        "network.extra",
        UnknownKey,
        "in [network]",
    );
    check(
        "[env]\ninherit = false\nalow = []\n",
        3,
        1,
        "env.alow",
        UnknownKey,
        "`allow`",
    );
    check(
        "[overrides]\nmemroy = true\n",
        2,
        1,
        "overrides.memroy",
        UnknownKey,
        "`memory`",
    );
    check("[floor]\n", 1, 2, "floor", UnknownKey, "at the top level");
    // The first unknown key in file order is reported, not the first alphabetically.
    check(
        "[seccomp]\nzzz = 1\naaa = 2\n",
        2,
        1,
        "seccomp.zzz",
        UnknownKey,
        "`zzz`",
    );
}

#[test]
fn wrong_types() {
    check(
        "limits = 5\n",
        1,
        10,
        "limits",
        WrongType,
        "limits must be a table, found an integer (5)",
    );
    check(
        "[namespaces]\nuser = \"yes\"\n",
        2,
        8,
        "namespaces.user",
        WrongType,
        "must be true or false, found a string (\"yes\")",
    );
    check(
        "[limits]\npids = \"many\"\n",
        2,
        8,
        "limits.pids",
        WrongType,
        "a positive integer or \"none\"",
    );
    check(
        "[limits]\ncpu = \"two\"\n",
        2,
        7,
        "limits.cpu",
        WrongType,
        "a positive number or \"none\"",
    );
    check(
        "[limits]\nmemory = true\n",
        2,
        10,
        "limits.memory",
        WrongType,
        "found a boolean (true)",
    );
    check(
        "[limits]\ntimeout = [1]\n",
        2,
        11,
        "limits.timeout",
        WrongType,
        "found an array",
    );
    check(
        "[filesystem]\nread = [\"/usr\", 5]\n",
        2,
        17,
        "filesystem.read[1]",
        WrongType,
        "must be a string, found an integer (5)",
    );
    check(
        "[filesystem]\nread = \"/usr\"\n",
        2,
        8,
        "filesystem.read",
        WrongType,
        "must be an array",
    );
    check(
        "[network]\nbind_ports = \"all\"\n",
        2,
        14,
        "network.bind_ports",
        WrongType,
        "an array of TCP ports or \"any\"",
    );
    check("extends = 5\n", 1, 11, "extends", WrongType, "a string");
    check(
        "[env.set]\nA = 1\n",
        2,
        5,
        "env.set.A",
        WrongType,
        "must be a string",
    );
    check(
        "[overrides]\nnet = 1\n",
        2,
        7,
        "overrides.net",
        WrongType,
        "true or false",
    );
    check(
        "[[limits]]\n",
        1,
        1,
        "limits",
        WrongType,
        "must be a table, found an array",
    );
}

#[test]
fn bad_sizes_and_durations() {
    check(
        "[limits]\nmemory = \"12Q\"\n",
        2,
        10,
        "limits.memory",
        BadValue,
        "limits.memory: invalid size: \"12Q\"",
    );
    check(
        "[limits]\nmemory = 0\n",
        2,
        10,
        "limits.memory",
        BadValue,
        "greater than zero (use \"none\" for no limit)",
    );
    check(
        "[limits]\nmemory = -5\n",
        2,
        10,
        "limits.memory",
        BadValue,
        "found -5",
    );
    check(
        "[limits]\noutput_bytes = \"none\"\n",
        2,
        16,
        "limits.output_bytes",
        BadValue,
        "invalid size",
    );
    check(
        "[limits]\ntimeout = \"soon\"\n",
        2,
        11,
        "limits.timeout",
        BadValue,
        "invalid duration: \"soon\"",
    );
    check(
        "[limits]\ntimeout = 0\n",
        2,
        11,
        "limits.timeout",
        BadValue,
        "greater than zero",
    );
    check(
        "[limits]\n\ttimeout = \"3 weeks\"\n",
        2,
        12,
        "limits.timeout",
        BadValue,
        "invalid duration",
    );
    check(
        "[limits]\npids = 0\n",
        2,
        8,
        "limits.pids",
        BadValue,
        "found 0",
    );
    check(
        "[limits]\npids = -1\n",
        2,
        8,
        "limits.pids",
        BadValue,
        "found -1",
    );
    check(
        "[limits]\ncpu = 0.0\n",
        2,
        7,
        "limits.cpu",
        BadValue,
        "a positive number",
    );
    check(
        "[limits]\ncpu = nan\n",
        2,
        7,
        "limits.cpu",
        BadValue,
        "a positive number",
    );
    check(
        "[limits]\nopen_files = 99999999999999999999999\n",
        2,
        14,
        "limits.open_files",
        BadValue,
        "",
    );
}

#[test]
fn bad_choices_and_names() {
    check(
        "enforcement = \"sometimes\"\n",
        1,
        15,
        "enforcement",
        BadValue,
        "must be one of strict, best_effort, found \"sometimes\"",
    );
    check(
        "[network]\nmode = \"wide\"\n",
        2,
        8,
        "network.mode",
        BadValue,
        "none, loopback, proxy, host",
    );
    check(
        "[network]\nmode = \"proxy\"\nallow_domains = [\"pypi.org\", \"http://x\"]\n",
        3,
        30,
        "network.allow_domains[1]",
        BadValue,
        "not a host pattern",
    );
    check(
        "[network]\ndeny_domains = [\"a.*.b\"]\n",
        2,
        17,
        "network.deny_domains[0]",
        BadValue,
        "expected example.com, *.example.com",
    );
    check(
        "[network.hosts]\n\"registry.test\" = \"localhost\"\n",
        2,
        19,
        "network.hosts.registry.test",
        BadValue,
        "must be an IP address",
    );
    check(
        "[network.hosts]\n\"bad name\" = \"127.0.0.1\"\n",
        2,
        1,
        "network.hosts.bad name",
        BadValue,
        "is not a host name",
    );
    check(
        "[network]\nmode = \"host\"\nconnect_ports = [443, 70000]\n",
        3,
        23,
        "network.connect_ports[1]",
        BadValue,
        "a port from 1 to 65535",
    );
    check(
        "[seccomp]\nprofile = \"paranoid\"\n",
        2,
        11,
        "seccomp.profile",
        BadValue,
        "default, strict, none",
    );
    check(
        "[seccomp]\ndeny = [\"ptrace\", \"Open\"]\n",
        2,
        19,
        "seccomp.deny[1]",
        BadValue,
        "not a syscall name",
    );
    check(
        "[namespaces]\nhostname = \"-bad\"\n",
        2,
        12,
        "namespaces.hostname",
        BadValue,
        "1 to 64 letters",
    );
    check(
        "[env]\nallow = [\"PATH\", \"A*B\"]\n",
        2,
        18,
        "env.allow[1]",
        BadValue,
        "prefix ending in '*'",
    );
    check(
        "[env.set]\n\"A=B\" = \"x\"\n",
        2,
        1,
        "env.set.A=B",
        BadValue,
        "not a valid variable name",
    );
    check(
        "extends = \"\"\n",
        1,
        11,
        "extends",
        BadValue,
        "must name a policy",
    );
    check(
        "extends = \"../x y\"\n",
        1,
        11,
        "extends",
        NotFound,
        "cannot read policy file",
    );
    check(
        "extends = \"bad name\"\n",
        1,
        11,
        "extends",
        BadValue,
        "invalid policy name",
    );
}

#[test]
fn bad_paths() {
    check(
        "[filesystem]\nwrite = [\"$CWD\", \"build\"]\n",
        2,
        18,
        "filesystem.write[1]",
        BadValue,
        "relative path \"build\" is not allowed",
    );
    check(
        "[filesystem]\nread = [\"$WORKSPACE/src\"]\n",
        2,
        9,
        "filesystem.read[0]",
        BadValue,
        "unknown variable $WORKSPACE",
    );
    check(
        "[filesystem]\nexec = [\n  \"/usr\",\n  \"/opt/../etc\",\n]\n",
        4,
        3,
        "filesystem.exec[1]",
        BadValue,
        "`..` is not allowed",
    );
    check(
        "[filesystem]\ntmpfs = [\"/tmp/$USER\"]\n",
        2,
        10,
        "filesystem.tmpfs[0]",
        BadValue,
        "may only start a path",
    );
}

#[test]
fn impossible_combinations_point_at_the_line_that_caused_them() {
    // Base (no extends) has network none: the port list is the culprit.
    check(
        "[network]\nconnect_ports = [443]\n",
        2,
        17,
        "network.connect_ports",
        Conflict,
        "no effect with network.mode = \"none\"",
    );
    check(
        "[network]\nmode = \"none\"\nbind_ports = [8080]\n",
        3,
        14,
        "network.bind_ports",
        Conflict,
        "bind_ports has no effect",
    );
    // pid is inherited true; the file turned mount off.
    check(
        "[namespaces]\nmount = false\n",
        2,
        9,
        "namespaces.mount",
        Conflict,
        "fresh /proc",
    );
    check(
        "[namespaces]\npid = true\nmount = false\n",
        2,
        7,
        "namespaces.pid",
        Conflict,
        "pid namespace",
    );
    check(
        "[filesystem]\ntmpfs = [\"/tmp\"]\n[namespaces]\npid = false\nmount = false\n",
        2,
        9,
        "filesystem.tmpfs",
        Conflict,
        "tmpfs would be mounted on the host",
    );
    check(
        "[filesystem]\ndeny = [\"$HOME/.ssh\"]\n[namespaces]\npid = false\nmount = false\n",
        2,
        8,
        "filesystem.deny",
        Conflict,
        "mounts in the job's own view",
    );
    check(
        "[namespaces]\nuts = false\nhostname = \"box\"\n",
        3,
        12,
        "namespaces.hostname",
        Conflict,
        "needs namespaces.uts = true",
    );
    check(
        "[filesystem]\nlandlock = false\nread = [\"/usr\"]\n",
        3,
        8,
        "filesystem.read",
        Conflict,
        "leaves the whole filesystem open",
    );
    check(
        "[seccomp]\nprofile = \"none\"\ndeny = [\"ptrace\"]\n",
        3,
        8,
        "seccomp.deny",
        Conflict,
        "installs none",
    );
}

#[test]
fn conflicts_with_an_inherited_setting_point_into_the_extending_file() {
    check(
        "extends = \"default\"\n\n[network]\nconnect_ports = [443]\n",
        4,
        17,
        "network.connect_ports",
        Conflict,
        "network.mode = \"none\"",
    );
    check(
        "extends = \"untrusted\"\n[seccomp]\nprofile = \"none\"\ndeny = [\"bpf\"]\n",
        4,
        8,
        "seccomp.deny",
        Conflict,
        "",
    );
}

#[test]
fn extends_errors() {
    check(
        "extends = \"nosuch\"\n",
        1,
        11,
        "extends",
        NotFound,
        "no policy named \"nosuch\" (built-in: default, untrusted, ci, permissive",
    );
    check(
        "description = \"x\"\nextends = \"p.toml\"\n",
        2,
        11,
        "extends",
        Cycle,
        "extends cycle:",
    );
}

#[test]
fn errors_without_a_position() {
    let fx = Fx::new();
    let e = resolve("nosuch", &fx.sources).unwrap_err();
    assert_eq!((e.kind, e.line, e.file.as_str()), (NotFound, 0, ""));
    assert!(
        e.to_string().starts_with("no policy named \"nosuch\""),
        "{e}"
    );
    let missing = fx.dir.path().join("missing.toml");
    let e = resolve(missing.to_str().unwrap(), &fx.sources).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (NotFound, 0, 0));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read policy file", missing.display())));
    let e = resolve(fx.dir.path().to_str().unwrap(), &fx.sources).unwrap_err();
    assert_eq!(e.kind, Io, "{e}");
    assert_eq!(e.kind.code(), "policy_unreadable");
}

#[test]
fn non_utf8_and_huge_files() {
    let fx = Fx::new();
    let path = fx.dir.path().join("bin.toml");
    std::fs::write(&path, b"description = \"ok\"\nx = \"\xff\"\n").unwrap();
    let e = resolve(path.to_str().unwrap(), &fx.sources).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (Syntax, 2, 6), "{e}");
    assert!(e.message.contains("not valid UTF-8"));

    let big = format!("description = \"{}\"\n", "x".repeat(2 << 20));
    let path = fx.file("big.toml", &big);
    let e = resolve(&path, &fx.sources).unwrap_err();
    assert_eq!(e.kind, Io);
    assert!(e.message.contains("larger than 1 MiB"), "{e}");
}

#[test]
fn error_positions_in_inline_tables_and_dotted_keys() {
    check(
        "limits = { memory = \"1G\", pids = \"x\" }\n",
        1,
        34,
        "limits.pids",
        WrongType,
        "",
    );
    check(
        "limits.memory = \"lots\"\n",
        1,
        17,
        "limits.memory",
        BadValue,
        "invalid size",
    );
    check(
        "network.mode = \"none\"\nnetwork.connect_ports = [1]\n",
        2,
        25,
        "network.connect_ports",
        Conflict,
        "",
    );
}
