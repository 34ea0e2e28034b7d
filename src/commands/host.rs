//! policy list / show / check and doctor: questions about the host, not about jobs.

use super::errors::policy_error;
use super::Reply;
use crate::cli::PolicyCommand;
use crate::doctor::report::diagnose;
use crate::policy::{self, PolicySources};
use crate::response::{
    AppError, Const, DoctorResponse, DoctorType, PolicyListResponse, PolicyListType,
    PolicyResponse, PolicyType, SchemaVersion,
};

pub fn policy(cmd: &PolicyCommand) -> Result<Reply, AppError> {
    let sources = PolicySources::from_env();
    match cmd {
        PolicyCommand::List => Ok(Reply::json(&PolicyListResponse {
            schema_version: SchemaVersion,
            ok: Const,
            kind: PolicyListType::PolicyList,
            host_dir: sources.host_dir.display().to_string(),
            policies: policy::list(&sources).map_err(policy_error)?,
        })),
        PolicyCommand::Show { name } => Ok(Reply::json(&PolicyResponse {
            schema_version: SchemaVersion,
            ok: Const,
            kind: PolicyType::Policy,
            file: None,
            valid: None,
            policy: policy::resolve(name, &sources).map_err(policy_error)?,
        })),
        PolicyCommand::Check { file } => {
            // A bare name would resolve to a built-in: `check` is about files.
            let path = if file.is_absolute() || file.to_string_lossy().contains('/') {
                file.clone()
            } else {
                std::path::Path::new(".").join(file)
            };
            let checked =
                policy::resolve(&path.to_string_lossy(), &sources).map_err(policy_error)?;
            Ok(Reply::json(&PolicyResponse {
                schema_version: SchemaVersion,
                ok: Const,
                kind: PolicyType::PolicyCheck,
                file: Some(file.display().to_string()),
                valid: Some(true),
                policy: checked,
            }))
        }
    }
}

/// Exit 0 when the default policy can be fully enforced here, 1 otherwise.
pub fn doctor() -> Reply {
    let report = diagnose(&PolicySources::from_env());
    let ok = report.default_enforceable;
    let mut reply = Reply::json(&DoctorResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: DoctorType::Doctor,
        report,
    });
    if !ok {
        reply.exit_code = 1;
    }
    reply
}
