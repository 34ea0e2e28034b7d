//! Test helper: run a closure in a forked child, so that irreversible process-wide changes
//! (seccomp filters, dropped capabilities, rlimits) never reach the test runner.

use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Forks; the child runs `body` and exits 0 on `Ok`, 1 on `Err` (after writing the message to
/// fd 2), 101 on a panic. Returns the child's wait status. The closure's own process effects
/// (signals, `_exit`) show up in the status.
pub(crate) fn in_child(body: impl FnOnce() -> Result<(), String>) -> WaitStatus {
    // SAFETY: the child only runs `body` and then `_exit`s; it never returns into the test
    // harness. glibc's fork keeps malloc usable in the child.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = match catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => 0,
                Ok(Err(message)) => {
                    let line = format!("child check failed: {message}\n");
                    // SAFETY: writing a live buffer to fd 2.
                    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                    1
                }
                Err(_) => 101,
            };
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// Asserts that the child body succeeded.
pub(crate) fn assert_child_ok(body: impl FnOnce() -> Result<(), String>) {
    match in_child(body) {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("child failed: {other:?} (see stderr for the failed check)"),
    }
}

/// `Ok` when `rc` is -1 with `errno == expected`, else an error naming `what`.
pub(crate) fn expect_errno(what: &str, rc: libc::c_long, expected: i32) -> Result<(), String> {
    let errno = nix::errno::Errno::last_raw();
    if rc == -1 && errno == expected {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected errno {expected} ({}), got rc={rc} errno={errno} ({})",
            nix::errno::Errno::from_raw(expected),
            nix::errno::Errno::from_raw(errno)
        ))
    }
}

/// `Ok` when `rc` is not -1, else an error naming `what` and errno.
pub(crate) fn expect_ok(what: &str, rc: libc::c_long) -> Result<(), String> {
    if rc != -1 {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected success, got errno {}",
            nix::errno::Errno::last()
        ))
    }
}
