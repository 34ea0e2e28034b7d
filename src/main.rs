//! Thin entry point: parse, dispatch, print one JSON object, exit.

use std::io::Write;

use clap::Parser;

use agent_exec::cli::{Cli, Command};
use agent_exec::commands::{dispatch, Reply};
use agent_exec::response::{AppError, ErrorCode};

fn main() {
    agent_exec::timefmt::mark_start();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if agent_exec::sandbox::init::is_init(argv.first().map(|a| a.as_os_str())) {
        agent_exec::sandbox::init::main(argv);
    }
    // `COMPLETE=bash agent-exec …`: the shell asks for completions.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let mut yaml = false;
    let reply = match Cli::try_parse() {
        // stdout is the protocol's: nothing else is printed there.
        Ok(Cli {
            command: Command::Mcp,
            root,
            verbose,
            ..
        }) => {
            agent_exec::diag::set_level(verbose);
            std::process::exit(agent_exec::frontends::mcp::serve(root))
        }
        Ok(cli) => {
            agent_exec::diag::set_level(cli.verbose);
            yaml = cli.yaml;
            dispatch(cli)
        }
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
    let (text, code) = if yaml {
        reply.into_yaml()
    } else {
        reply.into_output()
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&text);
    let _ = out.flush();
    std::process::exit(code);
}
