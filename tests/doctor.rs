//! `agent-exec doctor`: one schema-valid JSON report of what this host can
//! enforce, cross-checked against the kernel directly, and the exit status
//! that tells whether the `default` policy can be enforced.

mod common;

use std::ffi::CString;
use std::process::Stdio;

use serde_json::Value;

use common::*;

/// Runs doctor (optionally with a host policy directory); returns the exit
/// status, the report (validated against the schema) and doctor's pid.
fn doctor(env: &Env, policy_dir: Option<&std::path::Path>) -> (i32, Value, u32) {
    let mut c = env.cmd(&["doctor"]);
    if let Some(dir) = policy_dir {
        c.env("AGENT_EXEC_POLICY_DIR", dir);
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let (code, v) = parse_one(&out);
    assert_eq!(v["type"], "doctor", "{v:#}");
    (code, v, pid)
}

fn verdict<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the report: {v:#}"))
}

/// The landlock ABI version, asked of the kernel directly.
fn kernel_landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns a number.
    unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, 0usize, 0usize, 1u32) }
}

fn fs_type(path: &str) -> i64 {
    let c = CString::new(path).unwrap();
    // SAFETY: a valid C string and a zeroed statfs buffer.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0, "statfs {path}");
        st.f_type as i64
    }
}

#[test]
fn doctor_reports_this_host_truthfully_and_the_default_policy_enforceable() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let (code, v, pid) = doctor(&env, None);
    assert_eq!(code, 0, "the default policy is enforceable here: {v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["default_enforceable"], true);
    for name in ["default", "untrusted", "ci", "permissive"] {
        let p = verdict(&v, name);
        assert_eq!(p["enforceable"], true, "{p}");
        assert_eq!(p["missing"], serde_json::json!([]), "{p}");
    }
    assert_eq!(verdict(&v, "default")["enforcement"], "strict");
    assert_eq!(verdict(&v, "permissive")["enforcement"], "best_effort");

    // The probes agree with the kernel.
    let host = &v["host"];
    let abi = kernel_landlock_abi();
    assert!(abi >= 1, "landlock is available on the test machines");
    assert_eq!(host["landlock"]["available"], true);
    assert_eq!(host["landlock"]["abi"], abi);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(host["kernel_release"], release.trim());
    let max_userns: u64 = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        host["namespaces"]["user"]["max_user_namespaces"],
        max_userns
    );
    for ns in ["user", "pid", "mount", "ipc", "uts", "net", "cgroup"] {
        assert_eq!(host["namespaces"][ns]["available"], true, "{ns}: {host:#}");
    }
    for probe in ["seccomp", "pidfd_open", "clone3", "no_new_privs"] {
        assert_eq!(host[probe]["available"], true, "{probe}: {host:#}");
    }

    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let cg = &v["cgroup"];
    assert_eq!(cg["available"], true);
    assert_eq!(cg["cgroup_kill"], true);
    if fs_type("/sys/fs/cgroup") == CGROUP2_SUPER_MAGIC {
        assert_ne!(cg["layout"], "hybrid", "{cg:#}");
    } else {
        assert_eq!(fs_type("/sys/fs/cgroup/unified"), CGROUP2_SUPER_MAGIC);
        assert_eq!(cg["layout"], "hybrid", "{cg:#}");
        let v2_dir = cg["v2_dir"].as_str().unwrap_or("");
        assert!(v2_dir.starts_with("/sys/fs/cgroup/unified"), "{cg:#}");
    }
    // The probe cgroup doctor made to look at a job cgroup is gone.
    assert_cgroups_removed(&format!("doctor-{pid}"));

    // And a job started here gets what doctor promised.
    let fx = Fixture::new();
    let job = env.job("default", &fx.cwd(), &[], &[], &["true"]);
    assert_eq!(job["sandbox"]["landlock"]["abi"], abi);
    assert_eq!(job["sandbox"]["landlock"]["status"], "fully_enforced");
    assert_eq!(job["sandbox"]["cgroup"], cg["layout"]);
}

#[test]
fn doctor_judges_host_policies_and_fails_when_default_cannot_be_used() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let hd = fx.sub("host-policies");
    write_file(
        &hd,
        "mine.toml",
        "extends = \"default\"\ndescription = \"host one\"\n",
    );
    let broken = write_file(&hd, "broken.toml", "[limits]\nmemory = \"12Q\"\n");
    let (code, v, _) = doctor(&env, Some(&hd));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(verdict(&v, "mine")["enforceable"], true);
    let b = verdict(&v, "broken");
    assert_eq!(b["enforceable"], false, "{b}");
    let error = b["error"].as_str().unwrap_or("");
    assert!(error.starts_with(&format!("{}:2:10: ", s(&broken))), "{b}");

    // A host `default` that cannot be loaded: the default policy is not
    // enforceable, and doctor says so with its exit status.
    let hd2 = fx.sub("host-policies-2");
    write_file(&hd2, "default.toml", "bogus = 1\n");
    let (code, v, _) = doctor(&env, Some(&hd2));
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["default_enforceable"], false);
    let d = verdict(&v, "default");
    assert_eq!(d["enforceable"], false);
    assert!(d["error"].as_str().unwrap().contains("bogus"), "{d}");
    // The other built-ins are judged on their own.
    assert_eq!(verdict(&v, "untrusted")["enforceable"], true);
}
