//! `run` command lines parsed without building clap's command tree.
//!
//! Agents start every job with `agent-exec run [options] -- command...`.
//! Building clap's `Command` for it and matching against it was a third of
//! the CLI's instructions and, with the heap it touches, about 0.3 ms of
//! every launch (alternating runs with and without it). This parser handles
//! the plain form of that line and nothing else: long options this file
//! knows, each at most once, as `--name value` or `--name=value`, then `--`
//! and at least one word of command. Anything else (help, a short option,
//! an unknown or repeated option, a value that starts with `-` or is empty,
//! options that conflict, no `--`) returns `None`, and clap parses the line
//! as before, errors and all.
//!
//! The result must be the very `Cli` clap would give: the tests compare the
//! two on every option clap defines for `run` and on the cases each rule
//! above sends to clap.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command, ExcerptArgs, JobDefinition, Observe, RunArgs};

/// The `Cli` for a plain `run` line (`args` includes the program name), or
/// `None` when clap must decide.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Option<Cli> {
    let words: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect::<Option<_>>()?;
    let mut root: Option<PathBuf> = None;
    let mut observe = Observe {
        until: None,
        forever: false,
        no_wait: false,
        excerpt: ExcerptArgs {
            max_bytes: None,
            tail_lines: None,
        },
        exit_status: false,
    };
    let mut def = JobDefinition::default();
    let mut seen_run = false;
    let mut rest = words.into_iter();
    while let Some(word) = rest.next() {
        if word == "--" {
            if !seen_run {
                return None;
            }
            def.command = rest.collect();
            break;
        }
        if !seen_run {
            if word == "run" {
                seen_run = true;
                continue;
            }
            // Only the global option may come before the subcommand.
            if word != "--root" && !word.starts_with("--root=") {
                return None;
            }
        }
        let body = word.strip_prefix("--")?;
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let mut value = || -> Option<String> {
            let v = match &inline {
                Some(v) => v.clone(),
                None => rest.next()?,
            };
            (!v.is_empty() && !v.starts_with('-')).then_some(v)
        };
        match name {
            "root" => once(&mut root, value().map(PathBuf::from)?)?,
            "until" => once(&mut observe.until, value()?)?,
            "max-bytes" => once(&mut observe.excerpt.max_bytes, value()?)?,
            "tail-lines" => {
                let v = value()?;
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                once(&mut observe.excerpt.tail_lines, v.parse().ok()?)?
            }
            "timeout" => once(&mut def.timeout, value()?)?,
            "kill-after" => once(&mut def.kill_after, value()?)?,
            "cwd" => once(&mut def.cwd, value().map(PathBuf::from)?)?,
            "stdin" => once(&mut def.stdin, value()?)?,
            "stdin-file" => once(&mut def.stdin_file, value().map(PathBuf::from)?)?,
            "policy" => once(&mut def.policy, value()?)?,
            "net" => once(&mut def.net, value()?)?,
            "memory" => once(&mut def.memory, value()?)?,
            "pids" => once(&mut def.pids, value()?)?,
            "cpus" => once(&mut def.cpus, value()?)?,
            "log-cap" => once(&mut def.log_cap, value()?)?,
            "env" => def.env.push(value()?),
            "env-file" => def.env_file.push(value().map(PathBuf::from)?),
            "mask" => def.mask.push(value()?),
            "tag" => def.tag.push(value()?),
            "allow-read" => def.allow_read.push(value().map(PathBuf::from)?),
            "allow-write" => def.allow_write.push(value().map(PathBuf::from)?),
            flag => {
                if inline.is_some() {
                    return None;
                }
                let slot = match flag {
                    "forever" => &mut observe.forever,
                    "no-wait" => &mut observe.no_wait,
                    "exit-status" => &mut observe.exit_status,
                    "inherit-env" => &mut def.inherit_env,
                    "no-inherit-env" => &mut def.no_inherit_env,
                    _ => return None,
                };
                if *slot {
                    return None;
                }
                *slot = true;
            }
        }
    }
    let conflicts = (observe.forever && (observe.until.is_some() || observe.no_wait))
        || (def.stdin.is_some() && def.stdin_file.is_some())
        || (def.inherit_env && def.no_inherit_env);
    if def.command.is_empty() || conflicts {
        return None;
    }
    Some(Cli {
        root,
        command: Command::Run(RunArgs { observe, def }),
    })
}

/// Sets an option given at most once.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn os(words: &[&str]) -> Vec<OsString> {
        std::iter::once("agent-exec")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// The fast parse of `words`, after checking it against clap: when it
    /// gives a `Cli`, clap must give the same one.
    fn agreed(words: &[&str]) -> Option<Cli> {
        let fast = parse(os(words));
        if let Some(fast) = &fast {
            let clap = Cli::try_parse_from(os(words))
                .unwrap_or_else(|e| panic!("{words:?}: clap refuses what the fast path took: {e}"));
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{words:?}");
        }
        fast
    }

    /// Every option clap defines for `run` is one the fast path takes, in
    /// both spellings, with the value clap would store; a new option added
    /// to the clap types without being taught here fails this test.
    #[test]
    fn every_run_option_clap_knows_is_taken_the_same_way() {
        let cli = Cli::command();
        // `run` is deferred in `Cli::command()`: build its arguments here.
        let run = <RunArgs as clap::Args>::augment_args(clap::Command::new("run"));
        let mut longs = Vec::new();
        for arg in run.get_arguments().chain(cli.get_arguments()) {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if long == "help" || long == "version" {
                continue;
            }
            longs.push(long.to_string());
            let takes_value = arg.get_action().takes_values();
            let value = if long == "tail-lines" { "12" } else { "x1" };
            let spellings: Vec<Vec<String>> = if takes_value {
                vec![
                    vec![format!("--{long}"), value.into()],
                    vec![format!("--{long}={value}")],
                ]
            } else {
                vec![vec![format!("--{long}")]]
            };
            for spelling in spellings {
                let mut words: Vec<&str> = vec!["run"];
                words.extend(spelling.iter().map(String::as_str));
                words.extend(["--", "true", "--flag", "-x"]);
                assert!(agreed(&words).is_some(), "the fast path refuses {words:?}");
            }
        }
        assert!(longs.len() >= 25, "too few options found: {longs:?}");
    }

    #[test]
    fn plain_lines_parse_like_clap() {
        for words in [
            &["run", "--", "true"][..],
            &[
                "run",
                "--forever",
                "--policy",
                "permissive",
                "--",
                "/bin/true",
            ],
            &["run", "--no-wait", "--", "sleep", "5"],
            &["--root", "/tmp/r", "run", "--", "true"],
            &["--root=/tmp/r", "run", "--", "true"],
            &["run", "--root", "/tmp/r", "--", "true"],
            &[
                "run",
                "--env",
                "A=1",
                "--env=B=2",
                "--tag",
                "t",
                "--",
                "env",
            ],
            &[
                "run", "--mask", "s3cret", "--mask", "K", "--", "echo", "s3cret",
            ],
            &[
                "run",
                "--allow-read",
                "/a",
                "--allow-read",
                "/b",
                "--",
                "ls",
            ],
            &["run", "--allow-write=/c", "--env-file", "/e", "--", "ls"],
            &[
                "run",
                "--tail-lines",
                "007",
                "--max-bytes",
                "1K",
                "--",
                "seq",
                "9",
            ],
            &["run", "--stdin", "text", "--inherit-env", "--", "cat"],
            &["run", "--stdin-file", "/f", "--no-inherit-env", "--", "cat"],
            &[
                "run",
                "--until",
                "5s",
                "--no-wait",
                "--exit-status",
                "--",
                "true",
            ],
            &["run", "--", "sh", "-c", "echo -- --x"],
            &["run", "--", "--", "-"],
        ] {
            assert!(agreed(words).is_some(), "{words:?}");
        }
    }

    /// Each rule that hands the line to clap, with a line clap accepts
    /// (proving the fast path only declines) or refuses (clap's error).
    #[test]
    fn anything_unusual_is_left_to_clap() {
        for words in [
            &["run", "true"][..],
            &["run", "--"],
            &["run"],
            &["status", "abc"],
            &["--help"],
            &["run", "--help", "--", "true"],
            &["run", "-h"],
            &["run", "--policy", "a", "--policy", "b", "--", "true"],
            &["run", "--forever", "--forever", "--", "true"],
            &["run", "--forever", "--until", "1s", "--", "true"],
            &["run", "--forever", "--no-wait", "--", "true"],
            &["run", "--stdin", "a", "--stdin-file", "/f", "--", "cat"],
            &["run", "--inherit-env", "--no-inherit-env", "--", "true"],
            &["run", "--kill-after", "-1", "--", "true"],
            &["run", "--policy=", "--", "true"],
            &["run", "--policy", "", "--", "true"],
            &["run", "--forever=true", "--", "true"],
            &["run", "--tail-lines", "+5", "--", "true"],
            &["run", "--tail-lines", "many", "--", "true"],
            &["run", "--polic", "x", "--", "true"],
            &["run", "--unknown", "--", "true"],
            &["run", "--policy"],
            &["--root", "/r", "--root", "/s", "run", "--", "true"],
            &["--verbose", "run", "--", "true"],
        ] {
            assert!(parse(os(words)).is_none(), "{words:?} should go to clap");
        }
    }

    #[test]
    fn non_utf8_words_are_left_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let mut words = os(&["run", "--"]);
        words.push(OsString::from_vec(vec![0xff, b'x']));
        assert!(parse(words).is_none());
    }
}
