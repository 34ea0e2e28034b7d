//! tag set, install-skills, completions: what tumf/agent-exec's users have
//! besides the lifecycle.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::Reply;
use crate::cli::InstallSkillsArgs;
use crate::job::store::Store;
use crate::response::{
    AppError, Const, DoneResponse, DoneType, ErrorCode, SchemaVersion, TagSetResponse, TagSetType,
};

/// The skill file: how an agent should use agent-exec.
const SKILL: &str = include_str!("skills/SKILL.md");

/// `tag set`: the job's tags become exactly these.
pub fn tag_set(store: &Store, job_id: &str, tags: &[String]) -> Result<Reply, AppError> {
    for t in tags {
        crate::job::define::check_tag(t).map_err(|e| AppError::invalid(e.to_string()))?;
    }
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    let id = store.resolve(job_id)?;
    store.set_tags(&id, tags.clone())?;
    Ok(Reply::json(&TagSetResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: TagSetType::TagSet,
        job_id: id,
        tags,
    }))
}

/// `notify set`: given sinks replace, others stay; `--clear` removes all.
pub fn notify_set(
    store: &Store,
    job_id: &str,
    command: Option<&str>,
    file: Option<&std::path::Path>,
    output_match: &crate::cli::OutputMatchArgs,
    clear: bool,
) -> Result<Reply, AppError> {
    use crate::supervisor::notify;
    let id = store.resolve(job_id)?;
    let mut sinks = if clear {
        notify::Sinks::default()
    } else {
        notify::get(store, &id)
    };
    if let Some(c) = command {
        sinks.notify_command = (!c.trim().is_empty()).then(|| c.to_string());
    }
    if let Some(f) = file {
        sinks.notify_file = Some(absolute(f)?);
    }
    if let Some(m) = output_match_of(output_match)? {
        sinks.on_output_match = Some(m);
    }
    notify::set(store, &id, &sinks)?;
    Ok(Reply::json(&crate::response::NotifySetResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: crate::response::NotifySetType::NotifySet,
        job_id: id,
        notification: serde_json::to_value(&sinks).unwrap_or_default(),
    }))
}

/// The `--output-*` flags, checked; `None` without `--output-pattern`.
pub fn output_match_of(
    args: &crate::cli::OutputMatchArgs,
) -> Result<Option<crate::supervisor::notify::OutputMatch>, AppError> {
    let Some(pattern) = &args.output_pattern else {
        return Ok(None);
    };
    let m = crate::supervisor::notify::OutputMatch {
        pattern: pattern.clone(),
        match_type: args
            .output_match_type
            .clone()
            .unwrap_or_else(|| "contains".into()),
        stream: args
            .output_stream
            .clone()
            .unwrap_or_else(|| "either".into()),
        command: args.output_command.clone(),
        file: args.output_file.as_deref().map(absolute).transpose()?,
    };
    m.check().map_err(AppError::invalid)?;
    Ok(Some(m))
}

/// A sink file as the supervisor will find it (it runs in `/`).
pub fn absolute(path: &std::path::Path) -> Result<String, AppError> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| AppError::invalid(format!("the current directory: {e}")))?
            .join(path)
    };
    Ok(full.to_string_lossy().into_owned())
}

/// `install-skills`: `SKILL.md` under `.agents/skills/agent-exec/` (or
/// `.claude/skills/…`) of the current directory, or of the home with
/// `--global`. An existing file is replaced: the skill follows the binary.
pub fn install_skills(args: &InstallSkillsArgs) -> Result<Reply, AppError> {
    let base = if args.global {
        crate::job::store::caller_home()
            .ok_or_else(|| AppError::invalid("--global: the home directory is unknown"))?
    } else {
        std::env::current_dir()
            .map_err(|e| AppError::invalid(format!("the current directory: {e}")))?
    };
    let dir: PathBuf = base
        .join(if args.claude { ".claude" } else { ".agents" })
        .join("skills/agent-exec");
    let io = |what: &str, e: std::io::Error| {
        AppError::new(ErrorCode::IoError, format!("cannot {what}: {e}"))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&format!("make {}", dir.display()), e))?;
    let path = dir.join("SKILL.md");
    let tmp = dir.join(".SKILL.md.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(SKILL.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| io(&format!("write {}", path.display()), e))?;
    Ok(Reply::json(&DoneResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: DoneType::InstallSkills,
        paths: vec![path.to_string_lossy().into_owned()],
    }))
}

/// `completions SHELL`: the shell's registration script, printed as is
/// (the one answer that is not JSON: it is meant for `source <(…)`). The
/// script calls agent-exec back while completing, so job ids come from
/// the store as it is then.
pub fn completions(shell: &str) -> Result<Reply, AppError> {
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(shell)
        .filter(|_| matches!(shell, "bash" | "zsh" | "fish" | "powershell"))
        .ok_or_else(|| {
            AppError::invalid(format!("{shell:?}: expected bash, zsh, fish or powershell"))
        })?;
    let mut script = Vec::new();
    completer
        .write_registration(
            "COMPLETE",
            "agent-exec",
            "agent-exec",
            "agent-exec",
            &mut script,
        )
        .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&script);
    let _ = out.flush();
    Ok(Reply::silent())
}

/// Job ids for the shells' completion: the newest jobs of the store, each
/// with its state and command as help.
pub fn job_id_candidates() -> Vec<clap_complete::CompletionCandidate> {
    let root = Store::default_root(None);
    let Ok(store) = Store::open_existing(root) else {
        return Vec::new();
    };
    let Ok(index) = store.index_for_reading() else {
        return Vec::new();
    };
    let filter = crate::job::index::Filter {
        state: None,
        cwd: None,
    };
    index
        .page(&filter, None, 200)
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let help = format!("{} {}", row.state.as_str(), row.argv.join(" "));
            clap_complete::CompletionCandidate::new(row.id).help(Some(help.into()))
        })
        .collect()
}
