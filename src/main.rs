//! Thin entry point: parse, dispatch, print one JSON object, exit.
//!
//! `no_main`: every command is a process that lives a few milliseconds, and
//! Rust's own start-up (finding the main thread's stack guard by reading
//! /proc/self/maps, mapping an alternate signal stack, installing stack
//! overflow handlers: ten system calls and three page faults, strace and
//! perf stat) bought nothing a short-lived CLI needs. The one piece of it we
//! rely on is kept: SIGPIPE ignored, so a reader gone is an EPIPE error, not
//! our death. Arguments still reach `std::env::args` (glibc hands them to
//! std's initialiser before `main`).
#![no_main]

use std::io::Write;

use clap::Parser;

use agent_exec::cli::Cli;
use agent_exec::commands::{dispatch, Reply};
use agent_exec::response::{AppError, ErrorCode};

/// The C entry point, called by glibc once the process is set up.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: setting a signal disposition before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The plain `run` line skips building clap's command tree (see cli::fast).
    let parsed = match agent_exec::cli::fast::parse(std::env::args_os()) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse(),
    };
    let reply = match parsed {
        Ok(cli) => dispatch(cli),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.render().to_string();
                eprintln!("{text}");
                let first = text.lines().next().unwrap_or("invalid command line");
                let message = first.trim_start_matches("error: ").to_string();
                Reply::error(AppError::new(ErrorCode::UsageError, message), 2)
            }
        },
    };
    // One write: stdout's line buffer would split a long answer in two.
    let (text, code) = reply.into_output();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&text);
    let _ = out.flush();
    std::process::exit(code);
}
