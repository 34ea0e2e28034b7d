//! Lays a deny list out as classic BPF: a binary search on the syscall number.
//!
//! Why a search and not a list of comparisons: when a filter is installed the kernel runs it
//! once for every syscall number (with the arguments unknown) to learn which numbers it allows
//! whatever their arguments; those skip the filter from then on (its action cache). A list of
//! one comparison block per denied syscall made that emulation walk ~250 instructions per
//! number, 0.27 ms of every sandboxed launch on our machines (a seccomp(2) call timed in 300
//! forked children); a search walks about ten. Calls that miss the cache (the denied and the
//! conditional syscalls) take the same short path.
//!
//! The accumulator holds the syscall number on entry. Then:
//! - an inner node tests `nr >= pivot`: below it comes the lower half of the entries, then the
//!   upper half;
//! - a leaf of at most [`LEAF_SIZE`] entries has one `jeq` per entry (to `ret EPERM` for an
//!   unconditional entry, to the entry's argument checks for a conditional one), `ret ALLOW`
//!   for every other number, the argument checks, and `ret EPERM`.
//!
//! Every leaf ends in a `ret`, so no path falls from one subtree into the next. Classic BPF jumps
//! only go forward, and a conditional jump reaches at most 255 instructions: an inner node whose
//! lower half is longer than that jumps over it with a `ja` (32-bit offset) instead.

use super::rules::ArgCondition;
use super::{jump, stmt, SeccompError, BPF_JEQ_K, BPF_LD_W_ABS, BPF_RET_K};

#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp layout loads the low half of a 64-bit argument at its first byte");

/// One denied syscall: always (no conditions), or when any of its conditions matches.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub nr: u32,
    pub conditions: Vec<ArgCondition>,
}

/// Entries compared one by one in a leaf: past four, one more level of search is shorter.
const LEAF_SIZE: usize = 4;

// More classic BPF opcodes (linux/bpf_common.h), class | op | source.
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JA: u16 = 0x05;
const BPF_JGE_K: u16 = 0x05 | 0x30;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// `struct seccomp_data`: `nr` (u32), `arch` (u32), `instruction_pointer` (u64), `args[6]` (u64).
const DATA_ARGS: u32 = 16;

/// The search over `entries`, which must be sorted by number without duplicates.
pub(super) fn lay_out(entries: &[Entry]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    debug_assert!(entries.windows(2).all(|w| w[0].nr < w[1].nr));
    let mut program = Vec::new();
    subtree(entries, &mut program)?;
    Ok(program)
}

fn subtree(entries: &[Entry], out: &mut Vec<libc::sock_filter>) -> Result<(), SeccompError> {
    if entries.len() <= LEAF_SIZE {
        return leaf(entries, out);
    }
    let (lower, upper) = entries.split_at(entries.len() / 2);
    let pivot = upper[0].nr;
    let mut below = Vec::new();
    subtree(lower, &mut below)?;
    match u8::try_from(below.len()) {
        Ok(skip) => out.push(jump(BPF_JGE_K, pivot, skip, 0)),
        Err(_) => {
            let skip = u32::try_from(below.len()).map_err(|_| too_long())?;
            out.push(jump(BPF_JGE_K, pivot, 0, 1));
            out.push(stmt(BPF_JA, skip));
        }
    }
    out.extend(below);
    subtree(upper, out)
}

fn leaf(entries: &[Entry], out: &mut Vec<libc::sock_filter>) -> Result<(), SeccompError> {
    // Where each entry's comparison jumps, counted from the leaf's first instruction: the
    // comparisons, `ret ALLOW`, the argument checks in entry order, `ret EPERM`.
    let checks_at = entries.len() + 1;
    let check_len = |e: &Entry| -> usize {
        let per_condition: usize = e
            .conditions
            .iter()
            .map(|c| if c.mask == u32::MAX { 2 } else { 3 })
            .sum();
        // A conditional entry ends in `ret ALLOW`: no alternative matched.
        if e.conditions.is_empty() {
            0
        } else {
            per_condition + 1
        }
    };
    let deny_at = checks_at + entries.iter().map(check_len).sum::<usize>();
    let base = out.len();

    let mut next_check = checks_at;
    for (i, e) in entries.iter().enumerate() {
        let target = if e.conditions.is_empty() {
            deny_at
        } else {
            next_check
        };
        next_check += check_len(e);
        out.push(jump(BPF_JEQ_K, e.nr, offset(i, target)?, 0));
    }
    out.push(stmt(BPF_RET_K, RET_ALLOW));
    for e in entries.iter().filter(|e| !e.conditions.is_empty()) {
        for c in &e.conditions {
            out.push(stmt(BPF_LD_W_ABS, DATA_ARGS + 8 * u32::from(c.index)));
            if c.mask != u32::MAX {
                out.push(stmt(BPF_ALU_AND_K, c.mask));
            }
            let at = out.len() - base;
            out.push(jump(BPF_JEQ_K, c.value, offset(at, deny_at)?, 0));
        }
        out.push(stmt(BPF_RET_K, RET_ALLOW));
    }
    debug_assert_eq!(out.len() - base, deny_at);
    out.push(stmt(BPF_RET_K, RET_EPERM));
    Ok(())
}

/// The `jt` of a conditional jump at `from` landing on `to` (both leaf-relative).
fn offset(from: usize, to: usize) -> Result<u8, SeccompError> {
    u8::try_from(to - from - 1).map_err(|_| too_long())
}

fn too_long() -> SeccompError {
    SeccompError::Compile("a jump of the syscall search is out of reach of classic BPF".into())
}
