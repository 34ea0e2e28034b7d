//! Real escape attempts from inside a job. Each attempt runs under the
//! `default` and `untrusted` policies and must fail (with the errno the
//! blocking layer gives), and runs once more under `permissive`, where it
//! must succeed: the control proves that the attempt is a real one and
//! that the test can fail. Every target (file, listener, socket, process)
//! is a throwaway the test made itself.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const EPERM: &str = "1";
const ESRCH: &str = "3";
const ENOENT: &str = "2";
const EACCES: &str = "13";
const EROFS: &str = "30";
const EBUSY: &str = "16";
const ENOTTY: &str = "25";
const ENETUNREACH: &str = "101";
const ECONNREFUSED: &str = "111";

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// `base` without the mount namespace, and so without the new root:
/// Landlock is then the filesystem's only wall, and this tests it alone.
fn landlock_only(fx: &Fixture, base: &str) -> String {
    let policy = write_file(
        &fx.sub("policies"),
        &format!("{base}-landlock-only.toml"),
        &format!(
            "extends = \"{base}\"\n[namespaces]\nmount = false\npid = false\n\
             [filesystem]\ntmpfs = []\ndeny = []\nread_only = []\n"
        ),
    );
    s(&policy).to_string()
}

/// Appends to a file; then creates a new file (both paths from argv).
const WRITE_SCRIPT: &str = r#"
my ($f, $g); # declared apart: a `my` is not visible within its own statement
RES("append", open($f, ">>", $ARGV[0]) && (print $f "pwned\n") && close($f));
RES("create", open($g, ">", $ARGV[1]) && close($g));
"#;

#[test]
fn writing_outside_the_allowed_paths_is_denied() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let victim = write_file(&fx.outside(), "victim.txt", "original\n");
    let created = fx.outside().join("created.txt");
    let script = perl_script(WRITE_SCRIPT);
    // What is not granted does not exist in the new root; without it,
    // Landlock refuses.
    let mut cases: Vec<(String, &str)> = CONFINED.iter().map(|p| (p.to_string(), ENOENT)).collect();
    cases.extend(CONFINED.iter().map(|p| (landlock_only(&fx, p), EACCES)));
    for (policy, errno) in &cases {
        let got = env.attempt(
            policy,
            &fx.cwd(),
            &[],
            &[],
            &perl(&script, &[s(&victim), s(&created)]),
        );
        assert_eq!(got, format!("append={errno} create={errno}"), "{policy}");
        assert_eq!(read(&victim), "original\n", "{policy}");
        assert!(!created.exists(), "{policy}");
    }
    // Control: the same attempt without isolation changes the host.
    let got = env.attempt(
        "permissive",
        &fx.cwd(),
        &[],
        &[],
        &perl(&script, &[s(&victim), s(&created)]),
    );
    assert_eq!(got, "append=ok create=ok");
    assert_eq!(read(&victim), "original\npwned\n");
    assert!(created.exists());
}

#[test]
fn writing_through_a_symlink_inside_the_working_directory_is_denied() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let victim = write_file(&fx.outside(), "victim.txt", "original\n");
    // Planted in the job's own (writable under default) directory by the test.
    symlink(&victim, fx.cwd().join("link")).unwrap();
    symlink(fx.outside(), fx.cwd().join("dirlink")).unwrap();
    let script = perl_script(WRITE_SCRIPT);
    let argv = perl(&script, &["link", "dirlink/created.txt"]);
    let mut cases: Vec<(String, &str)> = CONFINED.iter().map(|p| (p.to_string(), ENOENT)).collect();
    cases.extend(CONFINED.iter().map(|p| (landlock_only(&fx, p), EACCES)));
    for (policy, errno) in &cases {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("append={errno} create={errno}"), "{policy}");
        assert_eq!(read(&victim), "original\n", "{policy}");
        assert!(!fx.outside().join("created.txt").exists(), "{policy}");
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "append=ok create=ok");
    assert_eq!(read(&victim), "original\npwned\n");
    assert!(fx.outside().join("created.txt").exists());
}

#[test]
fn a_hardlink_made_by_the_job_does_not_reach_a_file_outside() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    // Same filesystem as the working directory, so only the sandbox can
    // stop the link (not EXDEV between devices).
    let victim = write_file(&fx.outside(), "victim.txt", "original\n");
    let script = perl_script(
        r#"
        my $ok = link($ARGV[0], "hl");
        RES("link", $ok);
        my $f;
        RES("append", open($f, ">>", "hl") && (print $f "pwned\n") && close($f)) if $ok;
        "#,
    );
    let argv = perl(&script, &[s(&victim)]);
    for policy in CONFINED {
        // The file outside is not in the job's view at all.
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("link={ENOENT}"), "{policy}");
        // Landlock alone refuses to reparent a file into a directory where
        // it would gain rights (EXDEV), or the directory is read-only (EACCES).
        let got = env.attempt(&landlock_only(&fx, policy), &fx.cwd(), &[], &[], &argv);
        assert!(
            got == "link=18" || got == format!("link={EACCES}"),
            "{policy}: {got}"
        );
        assert_eq!(read(&victim), "original\n", "{policy}");
        assert!(!fx.cwd().join("hl").exists(), "{policy}");
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "link=ok append=ok");
    assert_eq!(read(&victim), "original\npwned\n");
}

const TRUNCATE_SCRIPT: &str = r#"
my ($r, $w);
RES("read", open($r, "<", $ARGV[0]) && defined(scalar <$r>));
RES("truncate", truncate($ARGV[0], 0));
RES("open_trunc", open($w, ">", $ARGV[0]));
"#;

#[test]
fn a_read_only_file_cannot_be_truncated() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(TRUNCATE_SCRIPT);

    // The new root mounts read grants read-only (EROFS), and a host file the
    // job does not own is not its to write (EACCES, checked first by
    // truncate); Landlock alone refuses too.
    let ro = write_file(&fx.outside(), "ro.txt", "keep me\n");
    let in_cwd = write_file(&fx.cwd(), "ro.txt", "keep me\n");
    for (wall, errno, not_own) in [("new root", EROFS, EACCES), ("landlock", EACCES, EACCES)] {
        let policy = |base: &str| {
            if wall == "new root" {
                base.to_string()
            } else {
                landlock_only(&fx, base)
            }
        };
        // default: a file outside made readable with --allow-read.
        let got = env.attempt(
            &policy("default"),
            &fx.cwd(),
            &["--allow-read", s(&fx.outside())],
            &[],
            &perl(&script, &[s(&ro)]),
        );
        assert_eq!(
            got,
            format!("read=ok truncate={not_own} open_trunc={errno}"),
            "{wall}"
        );
        assert_eq!(read(&ro), "keep me\n");
        // untrusted: the working directory itself is read-only.
        let got = env.attempt(
            &policy("untrusted"),
            &fx.cwd(),
            &[],
            &[],
            &perl(&script, &["ro.txt"]),
        );
        assert_eq!(
            got,
            format!("read=ok truncate={errno} open_trunc={errno}"),
            "{wall}"
        );
        assert_eq!(read(&in_cwd), "keep me\n");
    }

    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &perl(&script, &[s(&ro)]));
    assert_eq!(got, "read=ok truncate=ok open_trunc=ok");
    assert_eq!(read(&ro), "");
}

/// Whether the listener has a pending connection (it is non-blocking).
fn accepted(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

const TCP_SCRIPT: &str = r#"
use Socket;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
RES("connect", connect($s, pack_sockaddr_in(0 + $ARGV[0], inet_aton("127.0.0.1"))));
"#;

#[test]
fn a_tcp_listener_of_the_host_on_loopback_is_unreachable() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let script = perl_script(TCP_SCRIPT);
    let argv = perl(&script, &[&port]);
    for policy in CONFINED {
        // network "none": an empty namespace, not even lo is up.
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("connect={ENETUNREACH}"), "{policy}");
        assert!(!accepted(&listener), "{policy}");
    }
    // "loopback" is the job's own lo, not the host's.
    let got = env.attempt("default", &fx.cwd(), &["--net", "loopback"], &[], &argv);
    assert_eq!(got, format!("connect={ECONNREFUSED}"));
    assert!(!accepted(&listener));

    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "connect=ok");
    assert!(accepted(&listener), "the control connection must arrive");
}

const UNIX_SCRIPT: &str = r#"
use Socket;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
RES("connect", connect($s, pack("S", AF_UNIX) . "\0" . $ARGV[0]));
"#;

#[test]
fn an_abstract_unix_socket_opened_outside_is_unreachable() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let name = format!(
        "agent-exec-escape-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let accepted = || match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    };
    let script = perl_script(UNIX_SCRIPT);
    let argv = perl(&script, &[&name]);
    for policy in CONFINED {
        // Abstract names live in the network namespace: the job's own is empty.
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("connect={ECONNREFUSED}"), "{policy}");
        assert!(!accepted(), "{policy}");
    }
    // In the host's network namespace landlock's abstract-unix scoping
    // (ABI 6) still refuses a socket created outside the sandbox.
    let got = env.attempt("default", &fx.cwd(), &["--net", "host"], &[], &argv);
    assert_eq!(got, format!("connect={EPERM}"));
    assert!(!accepted());

    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "connect=ok");
    assert!(accepted(), "the control connection must arrive");
}

/// A `sleep` the test owns, killed on drop whatever happens.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("120").spawn().unwrap())
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
    /// Waits up to `d` for it to end; its termination signal, if any.
    fn ended_within(&mut self, d: Duration) -> Option<Option<i32>> {
        use std::os::unix::process::ExitStatusExt;
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Some(st.signal());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_process_outside_cannot_be_signalled() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(r#"RES("kill", kill("TERM", 0 + $ARGV[0]) == 1);"#);
    for policy in CONFINED {
        let mut target = Sleeper::start();
        let pid = target.pid();
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &perl(&script, &[&pid]));
        // The pid namespace: that pid does not exist inside.
        assert_eq!(got, format!("kill={ESRCH}"), "{policy}");
        assert_eq!(target.ended_within(Duration::from_millis(300)), None);
    }
    // Without the pid namespace landlock's signal scoping (ABI 6) refuses.
    let no_pidns = write_file(
        &fx.sub("policies"),
        "no-pidns.toml",
        "extends = \"default\"\n[namespaces]\npid = false\n",
    );
    let mut target = Sleeper::start();
    let pid = target.pid();
    let v = env.job(s(&no_pidns), &fx.cwd(), &[], &[], &perl(&script, &[&pid]));
    assert_eq!(result_line(&v), format!("kill={EPERM}"));
    assert_eq!(target.ended_within(Duration::from_millis(300)), None);

    let mut target = Sleeper::start();
    let pid = target.pid();
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &perl(&script, &[&pid]));
    assert_eq!(got, "kill=ok");
    assert_eq!(
        target.ended_within(Duration::from_secs(5)),
        Some(Some(libc::SIGTERM))
    );
}

#[test]
fn ptrace_of_a_sibling_is_denied() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    // PTRACE_ATTACH (16) to a sleep started by the job itself, then detach (17).
    let script = perl_script(
        r#"
        my $pid = 0 + $ARGV[0];
        my $ok = syscall(101, 16, $pid, 0, 0) == 0;
        RES("attach", $ok);
        if ($ok) { waitpid($pid, 0); syscall(101, 17, $pid, 0, 0); }
        "#,
    );
    // The script travels as $1, so no shell quoting is involved.
    let argv = [
        "sh",
        "-c",
        r#"sleep 30 & pid=$!; perl -e "$1" $pid; kill $pid"#,
        "sh",
        &script,
    ];
    for policy in CONFINED {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("attach={EPERM}"), "{policy}");
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "attach=ok");
}

/// Unmounts `dir` if a control run left something mounted there.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(s(self.0)).unwrap();
        // SAFETY: a valid C string; failure (nothing mounted) is fine.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn mounting_is_denied() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let target = fx.sub("cwd/mnt");
    write_file(&target, "marker", "x");
    let _guard = Unmount(&target);
    // Every job runs without capabilities, so the attempt first asks for a
    // user and mount namespace of its own (unshare(2) is 272), where a
    // mount is allowed; without a sandbox that works and the mount stays
    // private to the job. mount(2) is 165, umount2(2) 166. A successful
    // mount hides the marker and is undone at once.
    let script = perl_script(
        r#"
        RES("unshare", syscall(272, 0x10000000 | 0x20000) == 0);
        my ($src, $fs, $dir) = ("none", "tmpfs", $ARGV[0]);
        my $ok = syscall(165, $src, $dir, $fs, 0, 0) == 0;
        RES("mount", $ok);
        if ($ok) { push @res, "hidden=" . (-e "$dir/marker" ? 0 : 1); syscall(166, $dir, 0); }
        "#,
    );
    let argv = perl(&script, &[s(&target)]);
    for policy in CONFINED {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("unshare={EPERM} mount={EPERM}"), "{policy}");
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "unshare=ok mount=ok hidden=1");
    assert!(target.join("marker").exists());
}

#[test]
fn new_namespaces_cannot_be_created() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    // unshare(2) is 272: CLONE_NEWUSER 0x10000000, CLONE_NEWNS 0x20000.
    let script = perl_script(
        r#"
        RES("user", syscall(272, 0x10000000) == 0);
        RES("mnt", syscall(272, 0x20000) == 0);
        "#,
    );
    let argv = perl(&script, &[]);
    for policy in CONFINED {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("user={EPERM} mnt={EPERM}"), "{policy}");
        // And the util-linux tool fails too.
        let v = env.job(policy, &fx.cwd(), &[], &[], &["unshare", "-U", "true"]);
        assert_ne!(v["exit_code"], 0, "{policy}: {v:#}");
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "user=ok mnt=ok");
    let v = env.job(
        "permissive",
        &fx.cwd(),
        &[],
        &[],
        &["unshare", "-U", "true"],
    );
    assert_eq!(v["exit_code"], 0, "{v:#}");
}

/// A copy of /usr/bin/id owned by `uid` with the setuid bit.
fn setuid_id(dir: &Path, name: &str, uid: u32) {
    let p = dir.join(name);
    std::fs::copy("/usr/bin/id", &p).unwrap();
    std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
}

#[test]
fn a_setuid_binary_made_by_the_test_grants_nothing() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    setuid_id(&fx.cwd(), "id-suid-root", 0);
    setuid_id(&fx.cwd(), "id-suid-other", 12345);
    let sh = "echo RESULT $(./id-suid-root -u) $(./id-suid-other -u) $(id -u)";
    for base in CONFINED {
        // The built-ins execute nothing from $CWD; this copy adds that, so
        // that it is the setuid bit (not landlock's exec rule) under test.
        let policy = write_file(
            &fx.sub("policies"),
            &format!("{base}-exec-cwd.toml"),
            &format!(
                "extends = \"{base}\"\n[filesystem]\nexec = [\"/usr\", \"/bin\", \"/sbin\", \"/lib\", \"/lib64\", \"$CWD\"]\n"
            ),
        );
        let v = env.job(s(&policy), &fx.cwd(), &[], &[], &["sh", "-c", sh]);
        assert_eq!(result_line(&v), "1000 1000 1000", "{base}: {v:#}");
    }
    // Even `permissive` sets no_new_privs (the job runs as the calling
    // root, so only the other owner's copy could show a change).
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &["sh", "-c", sh]);
    assert_eq!(got, "0 0 0");
    // Control, outside agent-exec: the bit does work on this filesystem.
    let out = Command::new(fx.cwd().join("id-suid-other"))
        .arg("-u")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "12345\n");
}

/// TIOCSTI (0x5412) on stdin (/dev/null) and on a pty the job opens
/// (TIOCSPTLCK 0x40045431 unlocks it, TIOCGPTN 0x80045430 names it).
const TIOCSTI_SCRIPT: &str = r#"
# Opening the pty makes it the job's controlling terminal (the job is a
# session leader); closing its master at exit would hang the job up.
$SIG{HUP} = "IGNORE";
my $c = "x"; # perl's syscall needs writable buffers, not literals
RES("stdin", syscall(16, 0, 0x5412, $c) == 0);
if (open(my $m, "+<", "/dev/ptmx")) {
    my $unlock = pack("i", 0);
    my $n = pack("i", 0);
    if (syscall(16, fileno($m), 0x40045431, $unlock) == 0
        && syscall(16, fileno($m), 0x80045430, $n) == 0
        && open(my $t, "+<", "/dev/pts/" . unpack("i", $n))) {
        RES("pty", syscall(16, fileno($t), 0x5412, $c) == 0);
    } else {
        RES("pty_setup", 0);
    }
} else {
    RES("ptmx", 0);
}
"#;

#[test]
fn tiocsti_cannot_inject_terminal_input() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(TIOCSTI_SCRIPT);
    let argv = perl(&script, &[]);
    // seccomp answers before the tty layer: EPERM, not ENOTTY.
    let got = env.attempt(
        "default",
        &fx.cwd(),
        &["--allow-write", "/dev/ptmx", "--allow-write", "/dev/pts"],
        &[],
        &argv,
    );
    assert_eq!(got, format!("stdin={EPERM} pty={EPERM}"));
    // Every job has a private devpts; the filter still answers first.
    let got = env.attempt("untrusted", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, format!("stdin={EPERM} pty={EPERM}"));

    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, format!("stdin={ENOTTY} pty=ok"));
}

#[test]
fn the_callers_environment_does_not_reach_the_job() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let vars = [("SECRET_FROM_CALLER", "hunter2")];
    let sh = "echo RESULT ${SECRET_FROM_CALLER-unset} ${GIVEN-unset}";
    for policy in CONFINED {
        let v = env.job(
            policy,
            &fx.cwd(),
            &["--env", "GIVEN=yes"],
            &vars,
            &["sh", "-c", sh],
        );
        assert_eq!(result_line(&v), "unset yes", "{policy}");
        let keys = v["env_keys"].as_array().unwrap();
        assert!(!keys.iter().any(|k| k == "SECRET_FROM_CALLER"), "{v:#}");
    }
    let got = env.attempt(
        "permissive",
        &fx.cwd(),
        &["--env", "GIVEN=yes"],
        &vars,
        &["sh", "-c", sh],
    );
    assert_eq!(got, "hunter2 yes");
}

/// The job waits for `plan` (written by the test once it knows the job's
/// directory and its supervisor's pid), then appends to its own stdout.log
/// and plants a symlink where the supervisor writes its next state file.
const RECORD_SCRIPT: &str = r#"
my $plan;
for (1 .. 400) { last if open($plan, "<", "plan") && -s "plan"; select(undef, undef, undef, 0.025); }
my ($pid, $dir, $victim) = split(" ", scalar <$plan>);
my $log;
RES("log", open($log, ">>", "$dir/stdout.log") && (print $log "forged\n") && close($log));
RES("plant", symlink($victim, "$dir/state.json.tmp.$pid"));
"#;

#[test]
fn a_job_cannot_tamper_with_its_own_job_record() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(RECORD_SCRIPT);
    for policy in ["default", "untrusted", "permissive"] {
        let cwd = fx.sub(&format!("cwd-{policy}"));
        let victim = write_file(&fx.outside(), &format!("victim-{policy}"), "precious\n");
        let v = env.ok(&[
            "run",
            "--no-wait",
            "--policy",
            policy,
            "--cwd",
            s(&cwd),
            "--",
            "perl",
            "-e",
            &script,
        ]);
        let id = job_id(&v);
        let job_dir = Path::new(v["stdout_log_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        let plan = format!("{} {} {}\n", v["supervisor_pid"], s(&job_dir), s(&victim));
        std::fs::write(cwd.join("plan.tmp"), plan).unwrap();
        std::fs::rename(cwd.join("plan.tmp"), cwd.join("plan")).unwrap();
        let w = env.ok(&["wait", &id, "--until", "30"]);
        assert_eq!(w["state"], "exited", "{w:#}");
        let got = result_line(&w);
        if policy == "permissive" {
            // Control: without landlock the job reaches its record and plants
            // the link, yet the supervisor's exclusive, no-follow temporary
            // file keeps the write from going through it: the store itself
            // defends the host, whatever the policy.
            assert_eq!(got, "log=ok plant=ok");
            assert_eq!(
                read(&victim),
                "precious\n",
                "permissive: the supervisor followed a planted link"
            );
            continue;
        }
        // The store is not in the job's view: the path leads nowhere, or
        // into the job's own private /tmp (the test's store is under /tmp).
        assert!(
            got == format!("log={ENOENT} plant={ENOENT}") || got == "log=ok plant=ok",
            "{policy}: {got}"
        );
        assert_eq!(
            read(&victim),
            "precious\n",
            "{policy}: a host file was overwritten"
        );
        let log = std::fs::read_to_string(job_dir.join("stdout.log")).unwrap();
        assert!(!log.contains("forged"), "{policy}: {log:?}");
        assert!(
            !job_dir.join("state.json").is_symlink(),
            "{policy}: the record is a planted link"
        );
        env.ok(&["status", &id]);
    }
}

/// A job with neither a user, a pid nor a mount namespace (its command is
/// the cloned child itself, with no init in between, on the host's root)
/// must still get every other layer: Landlock, seccomp, no capabilities,
/// no_new_privs. And a
/// failure at exec itself must still come back as the job's launch failure.
#[test]
fn a_job_launched_without_user_and_pid_namespaces_still_gets_every_other_layer() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let policy = write_file(
        &fx.sub("policies"),
        "hostids.toml",
        "extends = \"default\"\n[namespaces]\nuser = false\npid = false\nmount = false\n\
         [filesystem]\ntmpfs = []\ndeny = []\nread_only = []\n",
    );
    let victim = write_file(&fx.outside(), "victim.txt", "original\n");
    let created = fx.outside().join("created.txt");
    // unshare(2) is 272 (CLONE_NEWNS 0x20000).
    let script = perl_script(&format!(
        "{WRITE_SCRIPT}\nRES(\"mnt\", syscall(272, 0x20000) == 0);\n\
         open(my $st, '<', '/proc/self/status');\n\
         for (<$st>) {{ push @res, \"$1=$2\" if /^(CapEff|CapBnd|NoNewPrivs|Seccomp):\\s*(\\S+)/ }}\n"
    ));
    let v = env.job(
        s(&policy),
        &fx.cwd(),
        &[],
        &[],
        &perl(&script, &[s(&victim), s(&created)]),
    );
    assert_eq!(
        result_line(&v),
        format!(
            "append={EACCES} create={EACCES} mnt={EPERM} CapEff=0000000000000000 \
             CapBnd=0000000000000000 NoNewPrivs=1 Seccomp=2"
        ),
        "{v:#}"
    );
    assert_eq!(read(&victim), "original\n");
    assert!(!created.exists());
    let namespaces = v["sandbox"]["namespaces"].to_string();
    assert!(
        !namespaces.contains("user") && !namespaces.contains("pid"),
        "{v:#}"
    );
    assert_eq!(
        v["sandbox"]["landlock"]["status"], "fully_enforced",
        "{v:#}"
    );

    // The program is found, executable and may run, but the kernel does not
    // know its format: the error is the kernel's, as without confinement.
    let bogus = write_file(&fx.cwd(), "bogus", "\u{7f}ELF, but not really\n");
    std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (policy, why) in [
        (s(&policy), "Exec format error"),
        ("permissive", "Exec format error"),
    ] {
        let e = env.err(
            &[
                "run",
                "--policy",
                policy,
                "--cwd",
                s(&fx.cwd()),
                "--",
                "./bogus",
            ],
            "launch_failed",
        );
        assert_eq!(e["error"]["exit_code"], 126, "{policy}: {e:#}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{policy}: {e:#}");
    }
}

/// A job cannot make a setuid or setgid file, in its own working directory
/// or anywhere: such a file would outlive the job with its owner's rights
/// (the caller's, root on CI). chmod(2) is 90, openat(2) 257, mkdir(2) 83.
#[test]
fn a_job_cannot_set_setuid_or_setgid_bits() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let script = perl_script(
        r#"
        open(my $f, ">", "plain") or die "create: $!"; close($f);
        RES("chmod_suid", chmod(04755, "plain"));
        RES("chmod_sgid", chmod(02755, "plain"));
        my ($made, $dir) = ("made", "dir"); # syscall wants writable strings
        RES("openat_suid", syscall(257, -100, $made, 0x41, 04755) >= 0);
        RES("mkdir_sgid", syscall(83, $dir, 02755) == 0);
        RES("chmod_plain", chmod(0700, "plain"));
        "#,
    );
    let argv = perl(&script, &[]);
    for policy in ["default", "untrusted", "ci"] {
        let fx = Fixture::new();
        let cwd = fx.cwd();
        // untrusted keeps the working directory read-only: the job works in $TMPDIR.
        let argv = if policy == "untrusted" {
            vec!["sh", "-c", r#"cd "$TMPDIR" && perl -e "$1""#, "sh", &script]
        } else {
            argv.clone()
        };
        let got = env.attempt(policy, &cwd, &[], &[], &argv);
        assert_eq!(
            got,
            format!(
                "chmod_suid={EPERM} chmod_sgid={EPERM} openat_suid={EPERM} mkdir_sgid={EPERM} chmod_plain=ok"
            ),
            "{policy}"
        );
        let mode = std::fs::metadata(cwd.join("plain")).map(|m| m.permissions().mode());
        assert!(mode.is_err() || mode.unwrap() & 0o6000 == 0, "{policy}");
    }
    // Control: without a filter the same calls make set-id files.
    let fx = Fixture::new();
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(
        got,
        "chmod_suid=ok chmod_sgid=ok openat_suid=ok mkdir_sgid=ok chmod_plain=ok"
    );
    let made = std::fs::metadata(fx.cwd().join("made")).unwrap();
    assert_eq!(made.permissions().mode() & 0o4000, 0o4000);
}

/// Another process's descriptors (pidfd_getfd 438, through pidfd_open 434),
/// kernel object comparisons (kcmp 312) and memory advice (process_madvise
/// 440) are not for jobs; openat2 (437) answers ENOSYS, so that libc falls
/// back to openat, whose mode the filter can read.
#[test]
fn descriptor_theft_and_unfiltered_opens_are_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(
        r#"
        my $me = 0 + $$; # a number, not the string perl's syscall would pass a pointer to
        my $pidfd = syscall(434, $me, 0);
        RES("pidfd_open", $pidfd >= 0);
        RES("pidfd_getfd", syscall(438, $pidfd, 0, 0) >= 0);
        RES("kcmp", syscall(312, $me, $me, 0, 0, 0) >= 0);
        my ($how, $null) = (pack("QQQ", 0, 0, 0), "/dev/null");
        RES("openat2", syscall(437, -100, $null, $how, 24) >= 0);
        "#,
    );
    let argv = perl(&script, &[]);
    for policy in ["default", "untrusted", "ci"] {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(
            got,
            format!("pidfd_open=ok pidfd_getfd={EPERM} kcmp={EPERM} openat2=38"),
            "{policy}"
        );
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "pidfd_open=ok pidfd_getfd=ok kcmp=ok openat2=ok");
}

/// Code that never was a file cannot be run: a memfd holding a copy of
/// /bin/true is not executable in a job's pid namespace (vm.memfd_noexec),
/// and asking for an executable one (MFD_EXEC) is refused. memfd_create(2)
/// is 319.
#[test]
fn a_memfd_cannot_be_executed() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(
        r#"
        open(my $src, "<", "/bin/true") or die; binmode($src);
        my $bin = do { local $/; <$src> };
        my ($name, $name2) = ("code", "code2");
        my $fd = syscall(319, $name, 0);
        RES("memfd", $fd >= 0);
        open(my $m, ">&=", $fd) or die "fdopen: $!"; binmode($m);
        print $m $bin; $m->flush();
        my $pid = fork();
        if ($pid == 0) { exec { "/proc/self/fd/$fd" } "true"; exit(100 + ($! + 0)); }
        waitpid($pid, 0);
        push @res, "exec=" . ($? >> 8);
        RES("mfd_exec", syscall(319, $name2, 0x10) >= 0);
        "#,
    );
    let argv = perl(&script, &[]);
    for policy in ["default", "untrusted", "ci"] {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        // 113: exec failed with EACCES.
        assert_eq!(
            got,
            format!("memfd=ok exec=113 mfd_exec={EPERM}"),
            "{policy}"
        );
    }
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "memfd=ok exec=0 mfd_exec=ok");
}

/// A working directory of `/` (cron, a service, a careless caller) would
/// make `$CWD` the whole host: refused, saying how to pass one, unless a
/// policy names it. So is a working directory inside the job store.
#[test]
fn the_host_root_or_the_store_is_never_a_working_directory() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for policy in ["default", "untrusted", "ci"] {
        // untrusted only reads its working directory, and names /etc and /usr.
        let refused: &[&str] = if policy == "untrusted" {
            &["/"]
        } else {
            // Whatever lies in a system tree or a shared directory is not the
            // caller's to hand over (the job would own it, idmapped).
            &[
                "/",
                "/etc",
                "/usr",
                "/usr/bin",
                "/usr/local/lib",
                "/tmp",
                "/home",
                "/var/log",
                "/var/lib",
                "/opt",
            ]
        };
        for cwd in refused {
            let (code, v) = env.run(&["run", "--policy", policy, "--cwd", cwd, "--", "true"]);
            assert_eq!(code, 1, "{policy} {cwd}: {v:#}");
            assert_eq!(v["error"]["code"], "invalid_argument", "{v:#}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("--cwd DIR"), "{message}");
        }
        // --allow-write of a system directory is refused the same way.
        let fx = Fixture::new();
        let (code, v) = env.run(&[
            "run",
            "--policy",
            policy,
            "--cwd",
            s(&fx.cwd()),
            "--allow-write",
            "/etc",
            "--",
            "true",
        ]);
        assert_eq!(code, 1, "{policy}: {v:#}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("/etc"),
            "{v:#}"
        );
    }
    // Inside the store.
    std::fs::create_dir_all(env.root().join("sub")).unwrap();
    let (code, v) = env.run(&["run", "--cwd", s(&env.root().join("sub")), "--", "true"]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job store"),
        "{v:#}"
    );
    // The caller's home, or a directory above it, as a writable tree.
    let fx = Fixture::new();
    let home = fx.sub("home");
    for cwd in [home.clone(), fx.sub("")] {
        let (code, v) = env.run_with(&[("HOME", &home)], &["run", "--cwd", s(&cwd), "--", "true"]);
        assert_eq!(code, 1, "{v:#}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("home directory"),
            "{v:#}"
        );
    }
    // ... but read-only, it is fine.
    let (code, v) = env.run_with(
        &[("HOME", &home)],
        &[
            "run",
            "--policy",
            "untrusted",
            "--cwd",
            s(&home),
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(env.job_ids().len(), 1, "nothing else ran");
    // Control: a policy that names `/` gets it.
    let fx = Fixture::new();
    let policy = write_file(
        &fx.sub("policies"),
        "root-reader.toml",
        "extends = \"default\"\n[filesystem]\nread = [\"/\"]\nwrite = [\"$TMPDIR\"]\n\
         exec = [\"/usr\", \"/lib\", \"/lib64\"]\n",
    );
    let v = env.job(s(&policy), Path::new("/"), &[], &[], &["true"]);
    assert_eq!(v["result"], "success", "{v:#}");
}

/// The host floor holds for what is launched: a record edited between
/// `create` and `start` (to the host network, no seccomp, no Landlock) is
/// refused at launch; and the grace after SIGTERM counts against the
/// floor's longest time, so `--kill-after` cannot stretch it.
#[test]
fn the_floor_is_checked_again_at_launch_and_counts_the_kill_grace() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let floor = write_file(
        &fx.sub("etc"),
        "floor.toml",
        "network = \"loopback\"\nallow_permissive = false\nrequire_seccomp = true\nmax_timeout = \"10m\"\n",
    );
    let vars = [("AGENT_EXEC_FLOOR", floor.as_path())];
    let cwd = fx.cwd();
    for policy in ["default", "untrusted"] {
        let (code, v) = env.run_with(
            &vars,
            &[
                "run",
                "--policy",
                policy,
                "--cwd",
                s(&cwd),
                "--kill-after",
                "1h",
                "--",
                "true",
            ],
        );
        assert_eq!(code, 1, "{policy}: {v:#}");
        assert_eq!(v["error"]["code"], "floor_violation", "{v:#}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limits.kill_after"),
            "{v:#}"
        );
    }
    let edit = |id: &str| {
        let path = env.root().join(id).join("job.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        spec["sandbox"]["network"] = "host".into();
        spec["sandbox"]["seccomp"] = "none".into();
        spec["sandbox"]["landlock"] = false.into();
        std::fs::write(&path, spec.to_string()).unwrap();
    };
    let c = env.ok(&["create", "--cwd", s(&cwd), "--", "true"]);
    let id = job_id(&c);
    edit(&id);
    let (code, v) = env.run_with(&vars, &["start", &id]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["code"], "launch_failed", "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("host floor"),
        "{v:#}"
    );
    // Control: without a floor the edited record is what runs.
    let c = env.ok(&["create", "--cwd", s(&cwd), "--", "true"]);
    let id = job_id(&c);
    edit(&id);
    let v = env.ok(&["start", &id]);
    assert_eq!(v["sandbox"]["network"], "host", "{v:#}");
    assert_eq!(v["sandbox"]["seccomp"], "none", "{v:#}");
}

/// A host unix socket (a root daemon's, docker's) cannot be reached by its
/// path: what the policy does not grant is not in the job's view (there is
/// no /run), whatever the empty network namespace leaves open to paths.
#[test]
fn a_host_unix_socket_is_not_in_the_view() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let path = fx.outside().join("daemon.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = perl_script(
        r#"
        use Socket;
        socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        RES("connect", connect($s, pack_sockaddr_un($ARGV[0])));
        RES("run", -e "/run");
        "#,
    );
    let argv = perl(&script, &[s(&path)]);
    for policy in ["default", "untrusted", "ci"] {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &argv);
        assert_eq!(got, format!("connect={ENOENT} run={ENOENT}"), "{policy}");
    }
    assert!(listener.accept().is_err(), "nobody connected");
    let got = env.attempt("permissive", &fx.cwd(), &[], &[], &argv);
    assert_eq!(got, "connect=ok run=ok");
    assert!(listener.accept().is_ok(), "the control connected");
}

/// The job store is never in the view, even when a grant holds it: a job
/// whose working directory contains the store sees no other job's record,
/// secrets or logs.
#[test]
fn the_store_is_hidden_even_inside_a_granted_tree() {
    if !privileged() {
        return;
    }
    let fx = Fixture::new();
    let store = fx.cwd().join("store");
    let cwd = fx.cwd();
    let agent = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("--root")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let (code, v) = parse_one(&out);
        assert_eq!(code, 0, "{args:?}: {v:#}");
        v
    };
    // Another job, created (its secrets wait in the store) and left there.
    let other = job_id(&agent(&[
        "create",
        "--env",
        "TOKEN=s3cr3t",
        "--mask",
        "TOKEN",
        "--",
        "true",
    ]));
    let secrets = store.join(&other).join("secrets.json");
    assert!(secrets.exists());
    let record = store.join(&other).join("job.json");
    let script = perl_script(
        r#"
        my ($f, $d);
        RES("secrets", open($f, "<", $ARGV[0]));
        RES("record", -e $ARGV[1]);
        opendir($d, $ARGV[2]) or die "opendir: $!";
        push @res, "entries=" . scalar(grep { !/^\./ } readdir($d));
        "#,
    );
    let argv = perl(&script, &[s(&secrets), s(&record), s(&store)]);
    for policy in ["default", "untrusted", "ci", "permissive"] {
        let mut args = vec!["run", "--policy", policy, "--cwd", s(&cwd), "--"];
        args.extend(argv.iter().copied());
        let v = agent(&args);
        assert_eq!(v["state"], "exited", "{v:#}");
        if policy == "permissive" {
            // Control: without a view of its own the job reads them, and
            // the store's other entries (jobs, its index).
            let line = result_line(&v);
            let entries = line.strip_prefix("secrets=ok record=ok entries=");
            assert!(
                entries.is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 2)),
                "{line}"
            );
            continue;
        }
        let want = {
            // An empty, read-only directory is all there is, but for the
            // job's own (where its $TMPDIR and $JOB_DIR are mounted).
            format!("secrets={ENOENT} record={ENOENT} entries=1")
        };
        assert_eq!(result_line(&v), want, "{policy}");
    }
    // The same store named through a symlink from elsewhere is the same
    // store, and just as hidden.
    let link = fx.sub("links").join("store");
    symlink(&store, &link).unwrap();
    let mut args = vec![
        "--root",
        s(&link),
        "run",
        "--policy",
        "default",
        "--cwd",
        s(&cwd),
        "--",
    ];
    args.extend(argv.iter().copied());
    let out = Command::new(bin())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (_, v) = parse_one(&out);
    assert_eq!(
        result_line(&v),
        format!("secrets={ENOENT} record={ENOENT} entries=1"),
        "{v:#}"
    );
}

/// A job cannot move what the view hides out from under its mount: renaming
/// a directory above the store (or above a denied path) in a writable tree
/// would move it on the host, where the next job in that tree would see it
/// unhidden. Every directory between the grant and the hidden place is a
/// mount point in the view, so the rename fails with EBUSY. The control is
/// a sibling directory, which the same job renames freely.
#[test]
fn what_the_view_hides_cannot_be_moved_away() {
    if !privileged() {
        return;
    }
    let fx = Fixture::new();
    let cwd = fx.cwd();
    let store = cwd.join("a/b/store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(cwd.join("c")).unwrap();
    std::fs::create_dir_all(cwd.join("d/e")).unwrap();
    let secret = write_file(&cwd.join("d/e"), "secret", "key\n");
    let policy = write_file(
        &fx.sub("policies"),
        "deny.toml",
        "extends = \"default\"\n[filesystem]\ndeny = [\"$CWD/d/e/secret\"]\n",
    );
    let agent = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("--root")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        parse_one(&out)
    };
    let script = perl_script(
        r#"
        RES("sibling", rename("c", "c2") && rename("c2", "c"));
        RES("above_store", rename("a", "a2"));
        RES("between", rename("a/b", "a/b2"));
        RES("above_secret", rename("d", "d2"));
        "#,
    );
    let argv = perl(&script, &[]);
    // Under default, d holds nothing hidden: the job may move it (a control).
    // Under a policy that denies d/e/secret, d is pinned like the store.
    for (policy, above_secret) in [("default", "ok"), (s(&policy), EBUSY)] {
        let mut args = vec!["run", "--policy", policy, "--cwd", s(&cwd), "--"];
        args.extend(argv.iter().copied());
        let (code, v) = agent(&args);
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(
            result_line(&v),
            format!("sibling=ok above_store={EBUSY} between={EBUSY} above_secret={above_secret}"),
            "{policy}: {v:#}"
        );
        assert!(store.join(job_id(&v)).join("job.json").exists());
        // No repository here: nothing to keep read-only, and the job is told.
        let noted = v["sandbox"]["not_applied"].to_string();
        assert!(
            noted.contains(&format!("{}/.git", s(&cwd))) && noted.contains("could create them"),
            "{v:#}"
        );
        if cwd.join("d2").exists() {
            std::fs::rename(cwd.join("d2"), cwd.join("d")).unwrap();
        }
    }
    assert_eq!(read(&secret), "key\n");
}

/// A program the policy does not let the job execute cannot be run through
/// the dynamic loader either: `ld.so ./program` maps it executable, which
/// the `noexec` mount of a place without exec rights refuses (Landlock's
/// exec right covers execve only).
#[test]
fn the_dynamic_loader_cannot_run_what_may_not_be_executed() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let sh = r#"cp /bin/true "$TMPDIR/t" && chmod +x "$TMPDIR/t" || exit 90
        "$TMPDIR/t"; direct=$?
        /lib64/ld-linux-x86-64.so.2 "$TMPDIR/t" 2>/dev/null; loader=$?
        echo "RESULT direct=$direct loader=$loader""#;
    let got = env.attempt("untrusted", &fx.cwd(), &[], &[], &["sh", "-c", sh]);
    assert!(got.starts_with("direct=126 loader="), "{got}");
    assert_ne!(got, "direct=126 loader=0", "the loader ran it");
    // Control: Landlock alone stops execve, not the loader.
    let got = env.attempt(
        &landlock_only(&fx, "untrusted"),
        &fx.cwd(),
        &[],
        &[],
        &["sh", "-c", sh],
    );
    assert_eq!(got, "direct=126 loader=0");
    // Where the policy grants exec ($TMPDIR under default and ci), the job's
    // own tmpfs runs what it built, both ways.
    for policy in ["default", "ci"] {
        let got = env.attempt(policy, &fx.cwd(), &[], &[], &["sh", "-c", sh]);
        assert_eq!(got, "direct=0 loader=0", "{policy}");
    }
}

/// pid 1 of the job is a freshly exec'd init, not a copy of the supervisor:
/// its environment (the caller's, secrets and all, in a copy), memory and
/// descriptors are out of reach, its command line names nothing of the
/// caller, and its status pipe cannot be fed a forged wait status. The
/// control is a process of the job's own, same uid, same layers: there the
/// same reads and the same reopening of a pipe through `/proc` succeed.
#[test]
fn pid_1_is_a_fresh_init_that_gives_nothing_away() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let script = perl_script(
        r#"
        sub slurp { my ($p) = @_; my $f; open($f, "<", $p) or return undef; local $/; my $d = <$f>; return $d // ""; }
        sub forge {
            my ($pid) = @_;
            my @got;
            opendir(my $d, "/proc/$pid/fd") or return "list" . ($! + 0);
            for my $n (grep { /^\d+$/ && $_ > 2 } readdir($d)) {
                my $w;
                if (open($w, ">", "/proc/$pid/fd/$n")) {
                    # A wait status of 0 (success) and no leftovers, as the init writes it.
                    syswrite($w, pack("LL", 0, 0)); close($w); push @got, "ok";
                } else { push @got, $! + 0; }
            }
            my %u = map { $_ => 1 } @got;
            return join(",", sort keys %u);
        }
        # Control: a child of ours holding a pipe, with the secret in its environment.
        my ($r, $w);
        { local $^F = 100; pipe($r, $w) or die; } # kept across the kid's exec
        my $kid = fork();
        if ($kid == 0) { close($r); $ENV{PROBE} = $ARGV[0]; exec("sleep", "30"); exit(1); }
        close($w);
        select(undef, undef, undef, 0.2);
        my $env = slurp("/proc/$kid/environ");
        RES("kid_environ", defined $env && index($env, $ARGV[0]) >= 0);
        push @res, "kid_fd=" . forge($kid);
        kill("KILL", $kid); waitpid($kid, 0);
        # The attack on pid 1.
        RES("environ", defined slurp("/proc/1/environ"));
        RES("mem", defined slurp("/proc/1/mem"));
        RES("maps", defined slurp("/proc/1/maps"));
        push @res, "fd=" . forge(1);
        my $cmd = slurp("/proc/1/cmdline") // "";
        push @res, "cmdline=" . (split(/\0/, $cmd))[0];
        push @res, "leak=" . (index($cmd, $ARGV[0]) >= 0 ? "yes" : "no");
        DONE();
        exit(3);
        "#,
    );
    let secret = "s3cret-of-the-caller";
    let argv = perl(&script, &[secret]);
    for policy in ["default", "untrusted", "ci"] {
        let v = env.job(
            policy,
            &fx.cwd(),
            &["--env", &format!("SECRET={secret}"), "--mask", "SECRET"],
            &[("CALLER_SECRET", secret)],
            &argv,
        );
        assert_eq!(
            result_line(&v),
            format!(
                "kid_environ=ok kid_fd=ok environ={EACCES} mem={EACCES} maps={EACCES} \
                 fd=list{EACCES} cmdline=agent-exec-init leak=no"
            ),
            "{policy}"
        );
        // Not recorded as success: the forged status never reached the init's pipe.
        assert_eq!(v["exit_code"], 3, "{v:#}");
    }
}

/// A root caller's job is an unprivileged host user, so host permissions
/// guard the host whatever the other walls do: a root-only file the policy
/// lets it read, a file readable only by root's group, and root-only files
/// of its own /proc are refused. The caller's own trees are idmapped: in the
/// working directory the job works as the owner, and what it creates there
/// belongs to the caller on disk. The control is the same job under
/// `permissive`, which runs as the caller (root, without capabilities:
/// what its owner and group bits allow).
#[test]
fn a_root_callers_job_is_an_unprivileged_host_user() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let root_only = write_file(&fx.outside(), "root-only", "secret\n");
    mode(&root_only, 0o600).unwrap();
    // Another user's file that root's group may read.
    let group_only = write_file(&fx.outside(), "group-only", "secret\n");
    mode(&group_only, 0o040).unwrap();
    std::os::unix::fs::chown(&group_only, Some(12345), Some(0)).unwrap();
    let script = perl_script(
        r#"
        sub can_read { my $f; open($f, "<", $_[0]) && defined(<$f>) }
        RES("root_only", can_read($ARGV[0]));
        RES("group_only", can_read($ARGV[1]));
        RES("timer_list", can_read("/proc/timer_list"));
        RES("slabinfo", can_read("/proc/slabinfo"));
        my $f;
        RES("create", open($f, ">", "made-by-job") && close($f));
        push @res, "owner_inside=" . (stat("made-by-job"))[4];
        RES("chmod_own", chmod(0640, "made-by-job"));
        open(my $m, "<", "/proc/self/uid_map"); my @map = split(" ", scalar <$m>);
        push @res, "host_uid=$map[1]";
        "#,
    );
    let argv = perl(&script, &[s(&root_only), s(&group_only)]);
    let outside = fx.outside();
    let grant = ["--allow-read", s(&outside)];
    let floor = write_file(&fx.sub("etc"), "floor.toml", "job_uid = 2000000123\n");
    for (policy, host_uid, vars) in [
        ("default", "2000000000", vec![]),
        ("ci", "2000000000", vec![]),
        (
            "default",
            "2000000123",
            vec![("AGENT_EXEC_FLOOR", s(&floor))],
        ),
    ] {
        let made = fx.cwd().join("made-by-job");
        let _ = std::fs::remove_file(&made);
        let v = env.job(policy, &fx.cwd(), &grant, &vars, &argv);
        assert_eq!(
            result_line(&v),
            format!(
                "root_only={EACCES} group_only={EACCES} timer_list={EACCES} slabinfo={EACCES} \
                 create=ok owner_inside=1000 chmod_own=ok host_uid={host_uid}"
            ),
            "{policy}: {v:#}"
        );
        assert_eq!(v["sandbox"]["host_uid"].to_string(), host_uid, "{v:#}");
        // On disk, what the job made is the caller's.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&made).unwrap().uid(), 0);
    }
    // untrusted: the working directory is read-only, yet still the job's to read.
    let v = env.job("untrusted", &fx.cwd(), &[], &[], &["cat", "made-by-job"]);
    assert_eq!(v["exit_code"], 0, "{v:#}");
    // A caller's 0700 tree in the shared-memory tmpfs is the caller's too.
    if Path::new("/dev/shm").is_dir() {
        let shm = tempfile::Builder::new()
            .prefix("agent-exec-test-")
            .tempdir_in("/dev/shm")
            .unwrap();
        write_file(shm.path(), "in-shm", "mine\n");
        let v = env.job("default", shm.path(), &[], &[], &["cat", "in-shm"]);
        assert_eq!(v["stdout"], "mine\n", "{v:#}");
    }

    // Control: the caller's own identity reads everything.
    let got = env.attempt("permissive", &fx.cwd(), &grant, &[], &argv);
    assert_eq!(
        got,
        "root_only=ok group_only=ok timer_list=ok slabinfo=ok create=ok owner_inside=0 \
         chmod_own=ok host_uid=0"
    );
}

/// A caller's tree on a filesystem that cannot be idmapped (ramfs, mounted
/// by the test in a mount namespace of its own): `strict` refuses to start,
/// naming the path; `best_effort` starts and says so in `not_applied`,
/// and the job, not the owner there, cannot write.
#[test]
fn a_tree_that_cannot_be_idmapped_is_refused_or_reported() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let dir = fx.sub("ramfs");
    let best_effort = write_file(
        &fx.sub("policies"),
        "best-effort.toml",
        "extends = \"default\"\nenforcement = \"best_effort\"\n",
    );
    let run = |policy: &str| {
        let inner = format!(
            "mount -t ramfs none '{dir}' && exec '{bin}' --root '{root}' run --policy '{policy}' \
             --cwd '{dir}' -- sh -c 'echo RESULT; touch x'",
            dir = s(&dir),
            bin = bin(),
            root = s(&env.root()),
        );
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &inner])
            .output()
            .unwrap();
        parse_one(&out)
    };
    let (code, v) = run("default");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["error"]["code"], "sandbox_unavailable", "{v:#}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(s(&dir)) && message.contains("idmapped"),
        "{v:#}"
    );
    let (code, v) = run(s(&best_effort));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["exit_code"], 1, "{v:#}");
    let noted = v["sandbox"]["not_applied"].to_string();
    assert!(
        noted.contains(&format!("idmapped mount of {}", s(&dir))),
        "{v:#}"
    );
    assert!(!dir.join("x").exists());
    // doctor, run there, names the tree and the policies it stops; run in a
    // tree that can be idmapped (the control), it finds nothing missing.
    let doctor = |cwd: &Path| {
        let inner = format!(
            "mount -t ramfs none '{dir}' && cd '{cwd}' && exec '{bin}' doctor",
            dir = s(&dir),
            cwd = s(cwd),
            bin = bin(),
        );
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &inner])
            .output()
            .unwrap();
        parse_one(&out).1
    };
    let v = doctor(&dir);
    let cwd = &v["identity"]["idmapped_mounts"][0];
    assert_eq!(cwd["tree"], "cwd", "{v:#}");
    assert_eq!(cwd["available"], false, "{v:#}");
    let default = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "default")
        .unwrap();
    assert!(
        default["missing"].to_string().contains("idmapped mount"),
        "{v:#}"
    );
    let v = doctor(&fx.cwd());
    assert_eq!(
        v["identity"]["idmapped_mounts"][0]["available"], true,
        "{v:#}"
    );
    assert_eq!(v["identity"]["uid"], 2_000_000_000u32, "{v:#}");
}

/// Inside what a policy grants, the built-ins hide the usual credentials
/// of `$HOME` and keep what would later run as the caller (git's hooks and
/// config, shell start-up files) read-only in the writable working
/// directory. The mount points cannot be moved away either. The control
/// is `permissive`; naming a hidden path on the command line shows it.
#[test]
fn credentials_are_hidden_and_hooks_are_read_only() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    write_file(&home.join(".ssh"), "id_ed25519", "PRIVATE KEY\n");
    write_file(&home, ".netrc", "machine x password y\n");
    std::fs::create_dir_all(home.join(".cargo")).unwrap();
    write_file(&home.join(".cargo"), "credentials.toml", "token = \"t\"\n");
    write_file(&home, ".gitconfig", "[user]\n");
    write_file(&home, ".pgpass", "db:5432:*:u:pw\n");
    let cwd = fx.cwd();
    std::fs::create_dir_all(cwd.join(".git/hooks")).unwrap();
    write_file(&cwd.join(".git"), "config", "[core]\n");
    write_file(&cwd, ".bashrc", "# rc\n");
    let script = perl_script(
        r##"
        my $h = $ARGV[0];
        sub can_read { my $f; open($f, "<", $_[0]) && defined(<$f>) }
        sub can_append { my $f; open($f, ">>", $_[0]) && (print $f "# pwned\n") && close($f) }
        RES("ssh_key", can_read("$h/.ssh/id_ed25519"));
        opendir(my $d, "$h/.ssh"); push @res, "ssh_entries=" . scalar(grep { !/^\./ } readdir($d));
        RES("netrc", can_read("$h/.netrc"));
        RES("cargo_token", can_read("$h/.cargo/credentials.toml"));
        RES("gitconfig", can_read("$h/.gitconfig"));
        my $hook;
        RES("hook", open($hook, ">", ".git/hooks/pre-commit") && close($hook));
        RES("git_config", can_append(".git/config"));
        RES("bashrc", can_append(".bashrc"));
        my $ok;
        RES("own_file", open($ok, ">", "work.txt") && close($ok));
        RES("commondir", open($hook, ">", ".git/commondir") && close($hook));
        RES("move_hooks", rename(".git/hooks", ".git/hooks-moved"));
        RES("move_git", rename(".git", ".git-moved"));
        RES("pgpass", can_read("$h/.pgpass"));
        "##,
    );
    let vars = [("HOME", s(&home))];
    let argv = perl(&script, &[s(&home)]);
    let read_home = ["--allow-read", s(&home)];
    for (policy, extra) in [("ci", &[][..]), ("default", &read_home[..])] {
        let v = env.job(policy, &cwd, extra, &vars, &argv);
        assert_eq!(
            result_line(&v),
            format!(
                "ssh_key={ENOENT} ssh_entries=0 netrc={EACCES} cargo_token={EACCES} \
                 gitconfig=ok hook={EROFS} git_config={EROFS} bashrc={EROFS} own_file=ok \
                 commondir={EROFS} move_hooks={EROFS} move_git={EBUSY} pgpass={EACCES}"
            ),
            "{policy}: {v:#}"
        );
    }
    assert_eq!(read(&cwd.join(".git/config")), "[core]\n");
    assert_eq!(read(&cwd.join(".bashrc")), "# rc\n");
    assert!(!cwd.join(".git/hooks/pre-commit").exists());

    // Named on the command line, a hidden path is shown.
    let ssh = home.join(".ssh");
    let v = env.job(
        "default",
        &cwd,
        &["--allow-read", s(&ssh)],
        &vars,
        &["cat", s(&ssh.join("id_ed25519"))],
    );
    assert_eq!(v["stdout"], "PRIVATE KEY\n", "{v:#}");

    // Control: without the view, every attempt succeeds.
    let got = env.attempt("permissive", &cwd, &[], &vars, &argv);
    assert_eq!(
        got,
        "ssh_key=ok ssh_entries=1 netrc=ok cargo_token=ok gitconfig=ok hook=ok git_config=ok \
         bashrc=ok own_file=ok commondir=ok move_hooks=ok move_git=ok pgpass=ok"
    );
}

/// A job cannot fill the host's disk through its own directories: `/tmp`,
/// `$TMPDIR` and `$JOB_DIR` are each capped at `limits.disk` (ENOSPC past
/// it), and what the job leaves in `$JOB_DIR` is kept in the store when it
/// ends. The control is `permissive`, whose `$TMPDIR` and `$JOB_DIR` are
/// host directories.
#[test]
fn the_jobs_own_directories_are_capped_at_limits_disk() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let policy = write_file(
        &fx.sub("policies"),
        "small-disk.toml",
        "extends = \"default\"\n[limits]\ndisk = \"1M\"\n",
    );
    let script = perl_script(
        r#"
        my $chunk = "x" x 65536;
        my @labels = ("tmp", "tmpdir", "job_dir");
        for my $dir ($ARGV[0], $ENV{TMPDIR}, $ENV{JOB_DIR}) {
            my $f; my $ok = open($f, ">", "$dir/fill");
            if ($ok) { for (1 .. 32) { $ok = syswrite($f, $chunk); last unless $ok; } }
            RES(shift(@labels), $ok);
            unlink("$dir/fill");
        }
        my $k; open($k, ">", "$ENV{JOB_DIR}/kept.txt") && (print $k "result\n") && close($k);
        "#,
    );
    let v = env.job(s(&policy), &fx.cwd(), &[], &[], &perl(&script, &["/tmp"]));
    assert_eq!(result_line(&v), "tmp=28 tmpdir=28 job_dir=28", "{v:#}");
    assert_eq!(v["sandbox"]["limits"]["disk_bytes"], 1 << 20, "{v:#}");
    let kept = env.root().join(job_id(&v)).join("files/kept.txt");
    assert_eq!(read(&kept), "result\n");

    // A hole and hard links cost the tmpfs little, the store's copy no more
    // than limits.disk: the copy stops there and the result says so.
    let sh = r#"truncate -s 2G "$JOB_DIR/hole" && head -c 512K /dev/zero > "$JOB_DIR/half" &&
        for i in 1 2 3 4 5 6 7 8; do ln "$JOB_DIR/half" "$JOB_DIR/l$i"; done"#;
    let v = env.job(s(&policy), &fx.cwd(), &[], &[], &["sh", "-c", sh]);
    assert_eq!(v["exit_code"], 0, "{v:#}");
    let files = env.root().join(job_id(&v)).join("files");
    let kept: u64 = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(kept <= 1 << 20, "{kept} bytes kept");
    assert!(v["message"].to_string().contains("only in part"), "{v:#}");

    // Without a view, /tmp would be the host's: a directory of the test's stands for it.
    let tmp = fx.sub("tmp");
    let v = env.job(
        "permissive",
        &fx.cwd(),
        &[],
        &[],
        &perl(&script, &[s(&tmp)]),
    );
    assert_eq!(result_line(&v), "tmp=ok tmpdir=ok job_dir=ok", "{v:#}");
}

/// The store is written and read only as itself: a log replaced by a hard
/// link to someone's file (which truncation would empty) or by a symlink
/// makes the launch refuse, and `tail` does not read through a link. The
/// store is out of every job's view, so the planting here is done by the
/// test, as anyone who could write the store would. The control is the
/// same job with its logs left alone.
#[test]
fn the_store_is_never_written_or_read_through_a_planted_link() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let victim = write_file(&fx.outside(), "victim.txt", "precious\n");
    let cwd = fx.cwd();
    let create = || job_id(&env.ok(&["create", "--cwd", s(&cwd), "--", "echo", "hello"]));
    for plant in ["hardlink", "symlink"] {
        let id = create();
        let log = env.root().join(&id).join("stdout.log");
        let _ = std::fs::remove_file(&log);
        match plant {
            "hardlink" => std::fs::hard_link(&victim, &log).unwrap(),
            _ => symlink(&victim, &log).unwrap(),
        }
        let (code, v) = env.run(&["start", &id]);
        assert_eq!(code, 1, "{plant}: {v:#}");
        assert_eq!(v["error"]["code"], "launch_failed", "{plant}: {v:#}");
        assert_eq!(read(&victim), "precious\n", "{plant}");
        let t = env.run(&["tail", &id]).1;
        assert!(
            !t.to_string().contains("precious"),
            "{plant}: tail read through the link: {t:#}"
        );
    }
    // Control: the same job, its log left alone.
    let id = create();
    let v = env.ok(&["start", &id]);
    assert_eq!(v["stdout"], "hello\n", "{v:#}");
}

/// A working directory is not a way to name what the policy hides: a
/// symlink one job leaves in its tree (`frontend -> ../.ssh`,
/// `sub -> .git`) cannot make the next job's `--cwd` a denied directory or
/// a git directory. The control is a symlink to an ordinary directory.
#[test]
fn a_planted_symlink_cannot_make_a_hidden_place_the_working_directory() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let ssh = fx.sub("home/.ssh");
    write_file(&ssh, "id_ed25519", "PRIVATE KEY\n");
    let project = fx.sub("home/project");
    std::fs::create_dir_all(project.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    symlink("../.ssh", project.join("frontend")).unwrap();
    symlink(".git", project.join("sub")).unwrap();
    symlink("src", project.join("code")).unwrap();
    let outside = fx.sub("other-user/.ssh");
    symlink(&outside, project.join("backend")).unwrap();
    let run = |cwd: &Path| env.run_with(&[("HOME", &home)], &["run", "--cwd", s(cwd), "--", "ls"]);
    // Through a link a job may have left, no working directory at all: not
    // to a denied place, a git directory, another user's home or anywhere.
    for planted in ["frontend", "sub", "backend", "code"] {
        let (code, v) = run(&project.join(planted));
        assert_eq!(code, 1, "{planted}: {v:#}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{v:#}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("which a job may have left"),
            "{v:#}"
        );
    }
    // Named by their real paths, a denied place and a git directory are
    // still refused; an ordinary directory is the control.
    for (real, what) in [
        (ssh.clone(), "filesystem.deny"),
        (project.join(".git"), "git directory"),
    ] {
        let (code, v) = run(&real);
        assert_eq!(code, 1, "{v:#}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(what),
            "{v:#}"
        );
    }
    let (code, v) = run(&project.join("src"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["exit_code"], 0, "{v:#}");
    // A path flag through a planted link is refused the same way.
    symlink("../.ssh", project.join("vendor")).unwrap();
    let (code, v) = env.run_with(
        &[("HOME", &home)],
        &[
            "run",
            "--cwd",
            s(&project),
            "--allow-read",
            "./vendor",
            "--",
            "true",
        ],
    );
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("which a job may have left"),
        "{v:#}"
    );
    assert_eq!(read(&ssh.join("id_ed25519")), "PRIVATE KEY\n");
}

/// What one job may leave behind cannot steer the next job's grants: a
/// symlink in the caller's home or working directory on the way to a
/// policy's grant makes that grant void (and said so), a `read_only` entry
/// that a link sends into the store does not uncover it, a planted
/// `.env` link is not read for the caller, a hidden directory of the home
/// is no working directory, and a policy file the job may write is refused.
/// Each control is the same thing without the planted link.
#[test]
fn what_a_job_leaves_cannot_steer_the_next_jobs_sandbox() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let home = fx.sub("home");
    let ssh = fx.sub("home/.ssh");
    write_file(&ssh, "id_ed25519", "PRIVATE KEY\n");
    let project = fx.sub("home/project");
    let vars = [("HOME", home.as_path())];
    let run = |args: &[&str]| env.run_with(&vars, args);

    // A toolchain grant through a planted link: void, and reported.
    symlink("../.ssh", home.join(".cargo")).unwrap();
    let (_, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--",
        "cat",
        &format!("{}/.cargo/id_ed25519", s(&home)),
    ]);
    assert_ne!(v["exit_code"], 0, "{v:#}");
    assert!(!v["stdout"].to_string().contains("PRIVATE"), "{v:#}");
    assert!(
        v["sandbox"]["not_applied"]
            .to_string()
            .contains("which a job may have left"),
        "{v:#}"
    );
    // Control: a real toolchain directory is granted.
    std::fs::remove_file(home.join(".cargo")).unwrap();
    write_file(&fx.sub("home/.cargo"), "env", "tool\n");
    let (_, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--",
        "cat",
        &format!("{}/.cargo/env", s(&home)),
    ]);
    assert_eq!(v["stdout"], "tool\n", "{v:#}");

    // A read_only entry sent into the store by a link leaves it hidden.
    let store = project.join(".agent-exec");
    let with_store = |args: &[&str]| {
        parse_one(
            &Command::new(bin())
                .env("HOME", &home)
                .arg("--root")
                .arg(&store)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let (code, v) = with_store(&[
        "create",
        "--cwd",
        s(&project),
        "--env",
        "T=s3cr3t",
        "--mask",
        "T",
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{v:#}");
    symlink(".agent-exec", project.join(".bashrc")).unwrap();
    let (_, v) = with_store(&[
        "run",
        "--cwd",
        s(&project),
        "--",
        "sh",
        "-c",
        "cat .agent-exec/*/secrets.json",
    ]);
    assert!(!v["stdout"].to_string().contains("s3cr3t"), "{v:#}");
    assert_ne!(v["exit_code"], 0, "{v:#}");
    std::fs::remove_file(project.join(".bashrc")).unwrap();

    // A planted .env link is not read for the caller; a real file is.
    let npmrc = write_file(&home, ".npmrc", "_authToken=t0k3n\n");
    symlink(&npmrc, project.join(".env")).unwrap();
    let env_file = project.join(".env");
    let (code, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--env-file",
        s(&env_file),
        "--",
        "env",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("symlink"),
        "{v:#}"
    );
    let real_env = write_file(&fx.sub("conf"), "vars.env", "X=1\n");
    let (code, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--env-file",
        s(&real_env),
        "--",
        "env",
    ]);
    assert_eq!(code, 0, "{v:#}");

    // A hidden directory of the home is no working directory (a planted
    // `frontend -> ../.local/bin` would lead there); a cache inside what
    // the policy names may still be asked for.
    let local_bin = fx.sub("home/.local/bin");
    let (code, v) = run(&["run", "--cwd", s(&local_bin), "--", "true"]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hidden directory"),
        "{v:#}"
    );
    let pip = fx.sub("home/.cache/pip");
    let (code, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--allow-write",
        s(&pip),
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{v:#}");

    // A policy file the job may write is refused; outside, it is used.
    let inside = write_file(&project, "agent.toml", "extends = \"default\"\n");
    let (code, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--policy",
        s(&inside),
        "--",
        "true",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may write"),
        "{v:#}"
    );
    let outside = write_file(&fx.sub("policies"), "agent.toml", "extends = \"default\"\n");
    let (code, v) = run(&[
        "run",
        "--cwd",
        s(&project),
        "--policy",
        s(&outside),
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        std::fs::read_to_string(ssh.join("id_ed25519")).unwrap(),
        "PRIVATE KEY\n"
    );

    // Without $HOME, `$HOME` is the user database's home, not `/`: the
    // credentials hidden are the caller's, not `/.ssh`.
    let out = env
        .cmd(&["create", "--cwd", s(&project), "--", "true"])
        .env_remove("HOME")
        .output()
        .unwrap();
    let (code, v) = parse_one(&out);
    assert_eq!(code, 0, "{v:#}");
    let record = read(&env.root().join(job_id(&v)).join("job.json"));
    assert!(
        record.contains(&format!("{}/.ssh", passwd_home())),
        "{record}"
    );
    assert!(!record.contains("\"/.ssh\""), "{record}");
}

/// The home the user database gives the caller.
fn passwd_home() -> String {
    let out = Command::new("sh")
        .args(["-c", "getent passwd $(id -u) | cut -d: -f6"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A directory swapped for a link while the caller names a path through it
/// (a job still running in the tree can do that in a loop) never steers the
/// path: it is opened component by component from descriptors, so the
/// check and the use are one lookup. The swapper runs on the host here,
/// as fast as it can, through 200 attempts; the control is the same path
/// with the link left in place for good, which is refused every time.
#[test]
fn a_link_swapped_in_while_a_path_is_named_never_steers_it() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let project = fx.sub("project");
    let other = fx.sub("otherapp");
    write_file(&other, ".env", "PW=stolen\n");
    write_file(&fx.sub("project/config"), ".env", "PW=own\n");
    symlink(&other, project.join("swap")).unwrap();
    let swapper = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
while True:
    libc.renameat2(-100, a, -100, b, 2)
"#;
    let mut child = Command::new("python3")
        .args([
            "-c",
            swapper,
            s(&project.join("config")),
            s(&project.join("swap")),
        ])
        .spawn()
        .unwrap();
    let env_file = project.join("config/.env");
    let mut stolen = 0;
    for _ in 0..200 {
        let (code, v) = env.run(&[
            "create",
            "--cwd",
            s(&project),
            "--env-file",
            s(&env_file),
            "--",
            "true",
        ]);
        if code == 0 {
            let record = read(&env.root().join(job_id(&v)).join("job.json"));
            if record.contains("stolen") {
                stolen += 1;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(stolen, 0, "the swapped-in link was followed");
    // Control: with the link in place for good, the path is refused.
    if project.join("config").is_dir() && !project.join("config").is_symlink() {
        std::fs::rename(project.join("config"), project.join("swap-back")).unwrap();
        std::fs::rename(project.join("swap"), project.join("config")).unwrap();
    }
    let (code, v) = env.run(&[
        "create",
        "--cwd",
        s(&project),
        "--env-file",
        s(&env_file),
        "--",
        "true",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("which a job may have left"),
        "{v:#}"
    );
}
