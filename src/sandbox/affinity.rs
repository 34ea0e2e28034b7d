//! One CPU for the launch of a job that its caller waits for.
//!
//! `run` is a chain of processes that mostly wait for one another: the CLI
//! forks the supervisor and sleeps, the supervisor clones the job and
//! sleeps until its exec, the job's exit wakes the supervisor, whose note
//! wakes the CLI. The scheduler puts each of them on an idle CPU when it
//! can, and on a virtual machine waking an idle vCPU is the host's work:
//! a pipe round trip here took 8 us on one CPU, 81 us across two, and
//! 357 us when the other had been idle for a millisecond. With the launch
//! kept on the CPU the CLI started on, a permissive `run` of /bin/true
//! started 10 ms after the previous command took 4.37 instead of 4.60 ms
//! (medians of 200, alternating), with a quarter of the spread; run back
//! to back, when no CPU has time to fall idle, it makes no difference.
//!
//! So the CLI pins itself (and so the supervisor it forks, and the job it
//! clones) to the CPU it runs on and remembers the caller's CPU set. The
//! job gets that set back from the supervisor as soon as its exec is done
//! (every thread of its cgroup, see `JobCgroup::give_cpus`), or it is
//! killed and the launch fails: its affinity is always the caller's. Not
//! before the exec: execve moves a task that may run elsewhere to the
//! idlest CPU, and the job's exit would then wake the supervisor on an
//! idle one (in blocks of runs as the benchmark takes them, 4.08 ms
//! against 3.73 ms for the job given its set after the exec). The
//! supervisor gives its own set back once the job sends output, so that
//! the log pump can use another CPU than a busy job, and at the end it
//! waits for the CLI it woke to answer before its housekeeping
//! (`Notifier::finished_then_await_answer`).

use std::sync::OnceLock;

/// The caller's CPU set, when this process pinned itself.
static CALLER_SET: OnceLock<libc::cpu_set_t> = OnceLock::new();

/// Pins the calling thread (and what it forks from now on) to the CPU it
/// is on. Without effect if the kernel refuses (restoring the caller's set
/// then changes nothing either).
pub fn pin_to_this_cpu() {
    // SAFETY: cpu_set_t is plain data; the calls only read and fill it.
    unsafe {
        let mut caller: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut caller) != 0 {
            return;
        }
        let Ok(cpu) = usize::try_from(libc::sched_getcpu()) else {
            return;
        };
        if !libc::CPU_ISSET(cpu, &caller) || libc::CPU_COUNT(&caller) < 2 {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if CALLER_SET.set(caller).is_ok() {
            let _ = set_for(0, &one);
        }
    }
}

/// The caller's CPU set, if this process (or the CLI it was forked from)
/// pinned itself: what the job must get back.
pub fn caller_set() -> Option<libc::cpu_set_t> {
    CALLER_SET.get().copied()
}

/// Gives the caller's CPU set back to the calling thread.
pub fn unpin() -> Result<(), i32> {
    match CALLER_SET.get() {
        Some(set) => set_for(0, set),
        None => Ok(()),
    }
}

/// If this process was pinned, lets whatever shares our CPU (a CLI we just
/// woke) run first, as far as our scheduler group allows.
pub fn yield_cpu() {
    if CALLER_SET.get().is_some() {
        // SAFETY: plain syscall.
        unsafe { libc::sched_yield() };
    }
}

/// From now on, this process runs only when no other wants its CPU
/// (`SCHED_IDLE`): for work nobody waits for. Best effort.
pub fn become_background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on ourselves with a valid parameter.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// `sched_setaffinity(tid, set)` (0: the calling thread).
pub fn set_for(tid: libc::pid_t, set: &libc::cpu_set_t) -> Result<(), i32> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) } == 0 {
        Ok(())
    } else {
        // SAFETY: reading errno of the failed call on this thread.
        Err(unsafe { *libc::__errno_location() })
    }
}
