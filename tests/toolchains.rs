//! The everyday loop of an agent, under the `default` policy with no flag:
//! build and test a small real project with each toolchain of the machine,
//! as the caller is (its real `$HOME` with rustup's cargo and pyenv's
//! shims, its real `PATH`). A toolchain this machine lacks is skipped with
//! a printed reason; cargo and python are always there.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::*;

/// Runs `script` under `default` in `cwd`, with the caller's environment.
fn default_job(env: &Env, cwd: &Path, script: &str) -> Value {
    let (code, v) = env.run(&[
        "run",
        "--forever",
        "--cwd",
        s(cwd),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["policy"], "default", "{v:#}");
    assert_eq!(v["exit_code"], 0, "{script}: {v:#}");
    v
}

fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {program} is not installed on this machine");
    }
    found
}

/// cargo through rustup's proxy in `~/.cargo/bin`, a path dependency, and a
/// registry crate from the cache (offline: the job has no network).
#[test]
fn cargo_builds_and_tests_with_a_path_dependency_and_a_cached_crate() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    write_file(
        &cwd,
        "util/Cargo.toml",
        "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write_file(&cwd, "util/src/lib.rs", "pub fn two() -> i32 { 2 }\n");
    write_file(
        &cwd,
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nutil = { path = \"../util\" }\nlibc = \"0.2\"\n",
    );
    write_file(
        &cwd,
        "app/src/lib.rs",
        "pub fn four() -> i32 { util::two() * 2 }\n\
         pub fn pid() -> i32 { unsafe { libc::getpid() } }\n\
         #[test]\nfn adds() { assert_eq!(four(), 4); assert!(pid() > 0); }\n",
    );
    let v = default_job(&env, &cwd, "cd app && cargo test --offline 2>&1");
    let out = v["stdout"].as_str().unwrap();
    assert!(out.contains("test adds ... ok"), "{out}");
}

/// python3 as the caller's PATH finds it (a pyenv shim first), a venv in
/// the project, and unittest run from the venv.
#[test]
fn python_makes_a_venv_and_runs_unittest() {
    if !privileged() {
        return;
    }
    let venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv {
        eprintln!("skipped: this machine's python3 has no venv/ensurepip (python3-venv)");
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    write_file(
        &cwd,
        "test_sum.py",
        "import unittest\n\nclass Sum(unittest.TestCase):\n    def test_sum(self):\n        \
         self.assertEqual(sum([1, 2]), 3)\n",
    );
    let v = default_job(
        &env,
        &cwd,
        "python3 -m venv .venv && .venv/bin/python -m unittest -v 2>&1",
    );
    let out = v["stdout"].as_str().unwrap();
    assert!(out.contains("test_sum") && out.contains("OK"), "{out}");
    assert!(cwd.join(".venv/bin/python").exists());
}

/// An npm script that calls a program of `node_modules/.bin`.
#[test]
fn npm_runs_a_script_from_node_modules_bin() {
    if !privileged() || !have("npm") {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    write_file(
        &cwd,
        "package.json",
        r#"{"name": "p", "version": "1.0.0", "scripts": {"test": "node -e 'console.log(6*7)' && greet"}}"#,
    );
    write_file(&cwd, "node_modules/.bin/greet", "#!/bin/sh\necho hello\n");
    std::fs::set_permissions(
        cwd.join("node_modules/.bin/greet"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let v = default_job(&env, &cwd, "npm test 2>&1");
    let out = v["stdout"].as_str().unwrap();
    assert!(out.contains("42") && out.contains("hello"), "{out}");
}

/// make, cc, and the program just built.
#[test]
fn make_builds_with_cc_and_runs_the_program() {
    if !privileged() || !have("make") || !have("cc") {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    write_file(
        &cwd,
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"built\"); return 0; }\n",
    );
    write_file(
        &cwd,
        "Makefile",
        "hello: hello.c\n\tcc -o hello hello.c\ntest: hello\n\t./hello\n",
    );
    let v = default_job(&env, &cwd, "make -s test 2>&1");
    assert!(v["stdout"].as_str().unwrap().contains("built"), "{v:#}");
}

/// go test, which builds its test binary in `$TMPDIR` and runs it there,
/// for a user whose home has no `~/.cache` yet (a fresh account): the
/// caches the policy names writable are made for the job (0700, the
/// caller's), and go fills its build cache there.
#[test]
fn go_tests_a_module_in_a_fresh_home() {
    if !privileged() || !have("go") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let cwd = fx.cwd();
    write_file(&cwd, "go.mod", "module example.com/m\n\ngo 1.19\n");
    write_file(
        &cwd,
        "m_test.go",
        "package m\n\nimport \"testing\"\n\nfunc TestSum(t *testing.T) {\n\tif 1+2 != 3 {\n\t\tt.Fatal(\"sum\")\n\t}\n}\n",
    );
    let (code, v) = env.run_with(
        &[("HOME", &home)],
        &[
            "run",
            "--forever",
            "--cwd",
            s(&cwd),
            "--",
            "sh",
            "-c",
            "go test ./... 2>&1",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["exit_code"], 0, "{v:#}");
    assert!(v["stdout"].as_str().unwrap().contains("ok"), "{v:#}");
    let cache = home.join(".cache");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", cache.display());
    assert!(cache.join("go-build").is_dir());
}

/// Attack: a link where a cache is to be made (`~/go -> elsewhere`, left by
/// someone who could write the home) is never followed: nothing is made
/// at its target. Control: without the link, `~/go/pkg` is made.
#[test]
fn a_cache_is_never_made_through_a_link() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let elsewhere = fx.outside();
    std::os::unix::fs::symlink(&elsewhere, home.join("go")).unwrap();
    let (_, v) = env.run_with(
        &[("HOME", &home)],
        &["run", "--cwd", s(&fx.cwd()), "--", "true"],
    );
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(!elsewhere.join("pkg").exists(), "made through the link");
    assert!(home.join(".cache").is_dir(), "the other caches are made");
    // Control.
    std::fs::remove_file(home.join("go")).unwrap();
    let (_, v) = env.run_with(
        &[("HOME", &home)],
        &["run", "--cwd", s(&fx.cwd()), "--", "true"],
    );
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(home.join("go/pkg").is_dir());
}

/// `--compress tests` (and `route`, which picks it for `cargo test`) reads
/// a real failing `cargo test` into counts and the failing tests' first
/// error lines.
#[test]
fn a_failing_cargo_test_is_read_into_counts_and_failures() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let cwd = fx.cwd();
    write_file(
        &cwd,
        "calc/Cargo.toml",
        "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write_file(
        &cwd,
        "calc/src/lib.rs",
        "#[test]\nfn passes() {}\n\
         #[test]\nfn fails() { assert_eq!(1 + 1, 3, \"arithmetic broke\"); }\n\
         #[test]\n#[ignore]\nfn slow() {}\n",
    );
    for mode in ["tests", "route"] {
        let (code, v) = env.run(&[
            "run",
            "--forever",
            "--compress",
            mode,
            "--cwd",
            s(&cwd.join("calc")),
            "--",
            "cargo",
            "test",
            "--offline",
        ]);
        assert_eq!(code, 0, "{v:#}");
        let c = &v["compression"];
        assert_eq!(c["detected_kind"], "tests", "{mode}: {c:#}");
        let t = &c["tests"];
        assert_eq!(t["runner"], "cargo");
        assert_eq!(
            (t["passed"].as_u64(), t["failed"].as_u64()),
            (Some(1), Some(1)),
            "{t:#}"
        );
        assert_eq!(t["skipped"], 1);
        assert_eq!(t["failures"][0]["name"], "fails");
        let lines = t["failures"][0]["first_lines"].to_string();
        assert!(lines.contains("arithmetic broke"), "{lines}");
    }
}
