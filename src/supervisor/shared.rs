//! A waiting `run` whose supervisor shares its memory and answers for it.
//!
//! `fork` gives the supervisor a copy of the CLI's address space: page tables
//! copied, then copy-on-write faults in both processes for every page either
//! writes, the supervisor faulting the binary's code in again, and two
//! address spaces torn down at the two exits. On the VMs we measure on (page
//! tables shadowed by the hypervisor) that is the dearest part of a launch
//! after the two programs' own start-up: per `/bin/true` run, 33 page faults
//! and 0.5-0.8 ms of CPU more than a supervisor cloned with `CLONE_VM`, and
//! 0.2-0.3 ms of the CLI's wall time (alternating harness, 150 runs each).
//!
//! So on x86_64 a CLI that waits clones its supervisor with `CLONE_VM` on a
//! stack of its own. Two processes in one address space, with one heap and
//! one set of thread-locals that glibc believes single-threaded, must never
//! use them at the same time, so the roles are split at the clone:
//!
//! - the supervisor runs as before, with the heap, `errno` and everything;
//! - the CLI makes raw system calls only (`raw`: no libc, so no `errno`; no
//!   allocation, no thread-local, no destructor, no return). It waits for the
//!   supervisor's "finished", writes the answer the supervisor rendered for it
//!   into memory they share, and exits.
//!
//! Should the supervisor not answer (the `--until` deadline comes first, or
//! it dies), the CLI replaces its image with `agent-exec __answer`, which
//! watches the store and answers as the CLI itself would have: a fresh
//! process, whatever state the shared heap was left in.
//!
//! The job stays as durable as with `fork`: the supervisor is a process of
//! its own (own pid, session, descriptors, signals); only the memory is
//! shared, and it lives for as long as either of the two does. A CLI killed
//! while it waits leaves a consistent heap behind (it was not using it).
//!
//! `--no-wait` still forks. There the CLI goes on with its heap after the
//! launch (it renders its answer), and a CLI killed in the middle of an
//! allocation (a Ctrl-C right after the command) would hand a supervisor
//! sharing it a heap in an unknown state. Its own copy launches the job
//! whatever becomes of the CLI.

use std::ffi::CString;
use std::fs::File;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use crate::job::model::{JobSpec, JobStatus, Secrets};
use crate::job::store::Store;
use crate::response::AppError;

/// Renders the CLI's answer (its bytes and exit code) once the final state is
/// recorded (given when the supervisor has it at hand, else read from the
/// store); None when the CLI must find the answer itself.
pub type Render<'a> = dyn Fn(Option<&JobStatus>) -> Option<(Vec<u8>, i32)> + 'a;

/// What the CLI does when the supervisor gives no answer.
pub struct Fallback {
    /// `agent-exec ... __answer ID REQUEST`; the supervisor's pid is appended.
    pub argv: Vec<CString>,
    /// Printed (exit code 1) when even that cannot be executed.
    pub failure: Vec<u8>,
}

/// Where the supervisor leaves the rendered answer. Written once, before the
/// "finished" byte; read by the CLI after it. Never freed: a CLI stopped for
/// longer than the supervisor waits may still print it later.
#[derive(Default)]
struct AnswerSlot {
    bytes: AtomicPtr<u8>,
    len: AtomicUsize,
    code: AtomicI32,
}

/// The supervisor's side of the hand-over.
#[derive(Clone, Copy)]
pub(crate) struct Handover {
    slot: &'static AnswerSlot,
    /// Points into the CLI's frame, which stays as it is: after the clone the
    /// CLI never returns from it.
    render: *const Render<'static>,
}

impl Handover {
    /// Renders the answer and leaves it for the CLI.
    pub(crate) fn leave_answer(&self, recorded: Option<&JobStatus>) {
        // SAFETY: see `render`; the CLI only reads the slot once told.
        let Some((bytes, code)) = (unsafe { &*self.render })(recorded) else {
            return;
        };
        let bytes = bytes.leak();
        self.slot.code.store(code, Ordering::Relaxed);
        self.slot.len.store(bytes.len(), Ordering::Relaxed);
        self.slot.bytes.store(bytes.as_mut_ptr(), Ordering::Release);
    }
}

/// Launches the job's supervisor sharing our memory and answers once it has
/// (never returning); returns Ok only where that is not possible (not x86_64,
/// or the clone failed), for the caller to fork one instead.
#[cfg(target_arch = "x86_64")]
pub fn spawn_answering(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    lock: &File,
    render: &Render<'_>,
    fallback: &Fallback,
    deadline_ns: Option<u64>,
) -> Result<(), AppError> {
    use std::os::fd::AsRawFd;

    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

    use super::event_loop::handled_signals;
    use crate::job::liveness::pidfd_open;

    // Everything the CLI needs after the clone is made before it.
    let (notify_read, notify_write) = super::spawn::notify_pipe(spec)?;
    let caller = pidfd_open(std::process::id() as libc::pid_t);
    let slot: &'static AnswerSlot = Box::leak(Box::default());
    // The pid's digits (u64::MAX has 20) and a NUL, written once it is
    // known: only through this pointer, which argv holds too.
    const PID_ARG: usize = 24;
    let mut pid_buf = [0u8; PID_ARG];
    let pid_arg = pid_buf.as_mut_ptr();
    let mut argv: Vec<*const libc::c_char> = fallback.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(pid_arg.cast_const().cast());
    argv.push(std::ptr::null());
    // SAFETY: reading the process's environment pointer, as execve needs it.
    let envp = unsafe { environ };
    // 8 MiB, a main thread's default, reserved lazily.
    let Ok(stack) = crate::sandbox::ChildStack::map(8 << 20) else {
        return Ok(());
    };
    // SAFETY: `render` lives in our caller's frame, which outlives the
    // supervisor's use of it (we never return once the clone succeeded).
    let render: *const Render<'static> = unsafe { std::mem::transmute(render) };
    let child = Child {
        store,
        spec,
        secrets,
        lock: lock.as_raw_fd(),
        notify_read: notify_read.as_raw_fd(),
        notify_write: notify_write.as_raw_fd(),
        caller: caller.as_ref().map(|c| c.as_raw_fd()),
        handover: Handover { slot, render },
        born_after_ns: crate::job::liveness::boottime_ns(),
    };
    // As with fork: the supervisor's signals are blocked from its first
    // instruction (see spawn_detached).
    let mut caller_mask = SigSet::empty();
    let _ = sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&handled_signals()),
        Some(&mut caller_mask),
    );
    // SAFETY: `child` and the stack stay valid for the supervisor's life:
    // the stack is never unmapped, and `child` is in this frame, which we
    // never leave once the clone succeeded.
    let pid = unsafe {
        crate::sandbox::clone3_on_stack(
            libc::CLONE_VM as u64,
            None,
            &stack,
            supervisor_main,
            &child,
        )
    };
    if pid < 0 {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&caller_mask), None);
        drop(stack);
        return Ok(());
    }
    std::mem::forget(stack);
    // From here on: raw system calls only (see the module's doc).
    // SAFETY: plain system calls on our own descriptors and memory.
    unsafe {
        raw::restore_mask(&caller_mask);
        raw::close(notify_write.as_raw_fd());
        if let Some(c) = &caller {
            raw::close(c.as_raw_fd());
        }
        let supervisor = raw::pidfd_open(pid as i32);
        let pid_arg = std::slice::from_raw_parts_mut(pid_arg, PID_ARG);
        let digits = crate::sandbox::namespaces::write_decimal(pid as u64, pid_arg);
        pid_arg[digits] = 0;
        await_answer(
            notify_read.as_raw_fd(),
            supervisor,
            deadline_ns,
            slot,
            &argv,
            envp,
            &fallback.failure,
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn spawn_answering(
    _store: &Store,
    _spec: &JobSpec,
    _secrets: &Secrets,
    _lock: &File,
    _render: &Render<'_>,
    _fallback: &Fallback,
    _deadline_ns: Option<u64>,
) -> Result<(), AppError> {
    Ok(())
}

#[cfg(target_arch = "x86_64")]
extern "C" {
    static environ: *const *const libc::c_char;
}

/// What the supervisor starts with, in the CLI's frame.
#[cfg(target_arch = "x86_64")]
struct Child<'a> {
    store: &'a Store,
    spec: &'a JobSpec,
    secrets: &'a Secrets,
    lock: i32,
    notify_read: i32,
    notify_write: i32,
    caller: Option<i32>,
    handover: Handover,
    /// `CLOCK_BOOTTIME` just before the clone (see `liveness::own_ref`).
    born_after_ns: Option<u64>,
}

/// The supervisor's first function, on its own stack. The CLI is in its raw
/// wait by now or soon: the heap and the thread-locals are ours.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn supervisor_main(child: *const Child<'_>) -> ! {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: see spawn_answering: the CLI's frame outlives us.
    let child = unsafe { &*child };
    // SAFETY: the descriptors are our copies (no CLONE_FILES): ours to own.
    let (lock, notify, caller) = unsafe {
        libc::close(child.notify_read);
        (
            File::from_raw_fd(child.lock),
            OwnedFd::from_raw_fd(child.notify_write),
            child.caller.map(|c| OwnedFd::from_raw_fd(c)),
        )
    };
    super::spawn::leave_caller();
    let notifier = super::spawn::Notifier::answering(notify, caller, child.handover);
    let code = super::spawn::become_supervisor(
        child.store,
        child.spec,
        child.secrets,
        lock,
        notifier,
        child.born_after_ns,
    );
    // SAFETY: leave without the CLI's exit handlers (they are not ours to run).
    unsafe { libc::_exit(code) }
}

/// The CLI's wait, in raw system calls only (see the module's doc).
#[cfg(target_arch = "x86_64")]
unsafe fn await_answer(
    notify: i32,
    supervisor: i32,
    deadline_ns: Option<u64>,
    slot: &AnswerSlot,
    argv: &[*const libc::c_char],
    envp: *const *const libc::c_char,
    failure: &[u8],
) -> ! {
    let mut fds = [
        libc::pollfd {
            fd: notify,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: supervisor,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let watched = if supervisor >= 0 { 2 } else { 1 };
    // SAFETY (for the block): system calls on our own descriptors and on
    // memory we own or the supervisor published before telling us.
    unsafe {
        loop {
            let timeout = match deadline_ns {
                None => -1,
                Some(deadline) => {
                    let now = raw::monotonic_ns();
                    if now >= deadline {
                        break;
                    }
                    ((deadline - now).div_ceil(1_000_000)).min(i32::MAX as u64) as i32
                }
            };
            let ready = raw::poll(&mut fds[..watched], timeout);
            if ready == -(libc::EINTR as isize) || ready == 0 {
                continue;
            }
            if ready < 0 {
                break;
            }
            if fds[0].revents != 0 {
                let mut byte = [0u8; 8];
                let got = raw::read(notify, &mut byte);
                if got == -(libc::EINTR as isize) {
                    continue;
                }
                if got <= 0 {
                    break; // the supervisor is gone
                }
                if !byte[..got as usize].contains(&(super::Milestone::Finished as u8)) {
                    continue;
                }
                let bytes = slot.bytes.load(Ordering::Acquire);
                if bytes.is_null() {
                    break;
                }
                raw::write_all(1, bytes, slot.len.load(Ordering::Relaxed));
                raw::exit_group(slot.code.load(Ordering::Relaxed));
            }
            if watched == 2 && fds[1].revents != 0 {
                break; // exited without a word
            }
        }
        raw::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), envp);
        raw::write_all(1, failure.as_ptr(), failure.len());
        raw::exit_group(1)
    }
}

/// System calls without libc: no `errno`, no thread-local, no allocation.
#[cfg(target_arch = "x86_64")]
mod raw {
    unsafe fn syscall(nr: i64, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes arguments valid for `nr`.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                in("r10") d,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    pub unsafe fn restore_mask(mask: &nix::sys::signal::SigSet) {
        let set: *const libc::sigset_t = mask.as_ref();
        // SAFETY: a valid sigset; the kernel reads its first 8 bytes.
        unsafe {
            syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as usize,
                set as usize,
                0,
                8,
            )
        };
    }

    pub unsafe fn close(fd: i32) {
        // SAFETY: closing our own descriptor.
        unsafe { syscall(libc::SYS_close, fd as usize, 0, 0, 0) };
    }

    /// A pidfd, or -1 (before Linux 5.3: the pipe's end still tells).
    pub unsafe fn pidfd_open(pid: i32) -> i32 {
        // SAFETY: no memory is passed.
        let fd = unsafe { syscall(libc::SYS_pidfd_open, pid as usize, 0, 0, 0) };
        if fd < 0 {
            -1
        } else {
            fd as i32
        }
    }

    pub unsafe fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> isize {
        // SAFETY: a valid pollfd array of the length given.
        unsafe {
            syscall(
                libc::SYS_poll,
                fds.as_mut_ptr() as usize,
                fds.len(),
                timeout_ms as usize,
                0,
            )
        }
    }

    pub unsafe fn read(fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: reading into a buffer we own.
        unsafe {
            syscall(
                libc::SYS_read,
                fd as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
            )
        }
    }

    /// Writes all of it unless the reader is gone.
    pub unsafe fn write_all(fd: i32, mut bytes: *const u8, mut len: usize) {
        while len > 0 {
            // SAFETY: `len` readable bytes at `bytes`.
            let n = unsafe { syscall(libc::SYS_write, fd as usize, bytes as usize, len, 0) };
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n <= 0 {
                return;
            }
            // SAFETY: still within the buffer.
            bytes = unsafe { bytes.add(n as usize) };
            len -= n as usize;
        }
    }

    pub unsafe fn execve(
        path: *const libc::c_char,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
    ) {
        // SAFETY: NUL-terminated path and NULL-terminated arrays.
        unsafe {
            syscall(
                libc::SYS_execve,
                path as usize,
                argv as usize,
                envp as usize,
                0,
            )
        };
    }

    pub unsafe fn exit_group(code: i32) -> ! {
        // SAFETY: ends the process; nothing runs after it.
        unsafe {
            syscall(libc::SYS_exit_group, code as usize, 0, 0, 0);
            std::hint::unreachable_unchecked()
        }
    }

    pub unsafe fn monotonic_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: filling a timespec we own.
        unsafe {
            syscall(
                libc::SYS_clock_gettime,
                libc::CLOCK_MONOTONIC as usize,
                &mut t as *mut libc::timespec as usize,
                0,
                0,
            )
        };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}
