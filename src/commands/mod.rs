//! One function per CLI command: validate, act on the store, build the response.

mod errors;
mod extras;
mod host;
mod lifecycle;
mod logs;
mod manage;
mod pipeline;
pub mod request;
mod view;

pub use errors::{config_error, policy_error};
pub use extras::job_id_candidates;
pub(crate) use extras::{absolute, output_match_of};

use std::io::Write;

use serde::Serialize;

use crate::cli::{Cli, Command, PipelineCommand};
use crate::config::Config;
use crate::job::store::Store;
use crate::response::{
    error_response, schema_document, AppError, Const, ErrorCode, SchemaResponse, SchemaType,
    SchemaVersion,
};

/// What a command prints on stdout and the process exit status.
pub struct Reply {
    pub json: serde_json::Value,
    pub exit_code: i32,
}

impl Reply {
    pub fn json<T: Serialize>(value: &T) -> Reply {
        Reply {
            json: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            exit_code: 0,
        }
    }

    /// What the process prints (one line) and its exit code.
    pub fn into_output(self) -> (Vec<u8>, i32) {
        if self.json.is_null() {
            return (Vec::new(), self.exit_code);
        }
        let mut text = serde_json::to_vec(&self.json).unwrap_or_default();
        text.push(b'\n');
        (text, self.exit_code)
    }

    /// Nothing to print: the command printed its answer itself.
    pub fn silent() -> Reply {
        Reply {
            json: serde_json::Value::Null,
            exit_code: 0,
        }
    }

    /// The same answer as YAML (`--yaml`).
    pub fn into_yaml(self) -> (Vec<u8>, i32) {
        if self.json.is_null() {
            return (Vec::new(), self.exit_code);
        }
        match serde_saphyr::to_string(&self.json) {
            Ok(text) => (text.into_bytes(), self.exit_code),
            Err(_) => self.into_output(),
        }
    }

    pub fn error(error: AppError, exit_code: i32) -> Reply {
        Reply {
            json: serde_json::to_value(error_response(error)).unwrap_or(serde_json::Value::Null),
            exit_code,
        }
    }
}

/// `serve`: its one JSON object is printed once it listens; the reply
/// after it stops is empty (nothing more is printed).
fn serve(cli: &Cli, store: &Store, args: &crate::cli::ServeArgs) -> Result<Reply, AppError> {
    crate::frontends::serve::serve(cli.root.clone(), store.root(), args, |started| {
        let line = serde_json::json!({
            "schema_version": "1",
            "ok": true,
            "type": "serve",
            "listening": started.listening.to_string(),
            "token_file": started.token_file,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })?;
    Ok(Reply::silent())
}

/// Runs the parsed command line; every failure becomes an `ok: false` reply.
pub fn dispatch(cli: Cli) -> Reply {
    match execute(cli) {
        Ok(reply) => reply,
        Err(e) => Reply::error(e, 1),
    }
}

fn execute(cli: Cli) -> Result<Reply, AppError> {
    if let Command::Pipeline(PipelineCommand::Validate { file }) = &cli.command {
        // Checking a file needs no job store.
        return pipeline::validate(file);
    }
    if let Command::Schema = cli.command {
        return Ok(Reply::json(&SchemaResponse {
            schema_version: SchemaVersion,
            ok: Const,
            kind: SchemaType::Schema,
            schema_format: "json-schema-2020-12",
            generated_at: crate::timefmt::rfc3339(crate::timefmt::now_ms()),
            schema: schema_document(),
        }));
    }
    // Host-level commands need no job store.
    match &cli.command {
        Command::Policy(p) => return host::policy(p),
        Command::Doctor => return Ok(host::doctor()),
        Command::InstallSkills(a) => return extras::install_skills(a),
        Command::Completions { shell } => return extras::completions(shell),
        _ => {}
    }
    let mut store = Store::open(Store::default_root(cli.root.as_deref()))?;
    crate::diag!(1, "job store: {}", store.root().display());
    let launches = matches!(
        cli.command,
        Command::Run(_)
            | Command::Start(_)
            | Command::Restart(_)
            | Command::Pipeline(PipelineCommand::Run(_))
    );
    if launches {
        let config = Config::load().map_err(config_error)?;
        crate::diag!(
            1,
            "config: {}",
            Config::path().map_or("none".into(), |p| p.display().to_string())
        );
        if config.gc.auto {
            store.collect_after_jobs(config.gc.retention().map_err(AppError::invalid)?);
        }
    }
    match &cli.command {
        Command::Run(a) => lifecycle::run(&store, a),
        Command::Create(a) => lifecycle::create(&store, a),
        Command::Start(a) => lifecycle::start(&store, a),
        Command::Restart(a) => lifecycle::restart(&store, a),
        Command::Status(a) => lifecycle::status(&store, a),
        Command::Wait(a) => lifecycle::wait(&store, a),
        Command::Kill(a) => lifecycle::kill(&store, a),
        Command::Tail(a) => logs::tail(&store, a),
        Command::List(a) => manage::list(&store, a, false),
        Command::Ps(a) => manage::list(&store, a, true),
        Command::Delete(a) => manage::delete(&store, a),
        Command::Gc(a) => manage::gc(&store, a),
        Command::Pipeline(PipelineCommand::Run(a)) => pipeline::run(&store, a),
        Command::Serve(a) => serve(&cli, &store, a),
        Command::Tag(crate::cli::TagCommand::Set { job_id, tag }) => {
            extras::tag_set(&store, job_id, tag)
        }
        Command::Notify(crate::cli::NotifyCommand::Set {
            job_id,
            command,
            file,
            output_match,
            clear,
        }) => extras::notify_set(
            &store,
            job_id,
            command.as_deref(),
            file.as_deref(),
            output_match,
            *clear,
        ),
        Command::Schema
        | Command::Policy(_)
        | Command::Doctor
        | Command::Mcp
        | Command::InstallSkills(_)
        | Command::Completions { .. }
        | Command::Pipeline(PipelineCommand::Validate { .. }) => Err(AppError::new(
            ErrorCode::Internal,
            "this command is dispatched before the store is opened",
        )),
    }
}
