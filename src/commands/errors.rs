//! Each layer's error, turned into the JSON error a caller sees: the only
//! place where a store, definition or launch failure gets its stable code.

use crate::job::define::DefineError;
use crate::job::store::StoreError;
use crate::policy::PolicyError;
use crate::response::{AppError, ErrorCode, Location};
use crate::supervisor::SpawnError;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        let message = e.to_string();
        match e {
            StoreError::NotFound { .. } => AppError::new(ErrorCode::JobNotFound, message),
            StoreError::Ambiguous { candidates, .. } => {
                let mut err = AppError::new(ErrorCode::AmbiguousJobId, message);
                err.candidates = Some(candidates);
                err
            }
            StoreError::AlreadyStarted { id } => {
                AppError::new(ErrorCode::InvalidState, message).with_job(&id)
            }
            StoreError::Corrupt { .. } => AppError::new(ErrorCode::IoError, message),
            StoreError::Unsafe { .. } => AppError::new(ErrorCode::StoreUnavailable, message),
            StoreError::Io { ref source, .. } => {
                let (code, hint) = match source.raw_os_error() {
                    Some(libc::ENOSPC | libc::EDQUOT) => (
                        ErrorCode::StoreFull,
                        " (the disk holding the job store is full; free space or run `agent-exec gc`)",
                    ),
                    Some(libc::EROFS | libc::EACCES | libc::EPERM) => (
                        ErrorCode::StoreUnavailable,
                        " (the job store is not writable; pick another with --root or AGENT_EXEC_ROOT)",
                    ),
                    _ => (ErrorCode::IoError, ""),
                };
                AppError::new(code, format!("{message}{hint}"))
            }
        }
    }
}

impl From<DefineError> for AppError {
    fn from(e: DefineError) -> AppError {
        match e {
            DefineError::Invalid(m) => AppError::invalid(m),
            DefineError::OverrideForbidden(m) => AppError::new(ErrorCode::OverrideForbidden, m),
            DefineError::Floor(m) => AppError::new(ErrorCode::FloorViolation, m),
            DefineError::Policy(e) => policy_error(e),
        }
    }
}

impl From<SpawnError> for AppError {
    fn from(e: SpawnError) -> AppError {
        AppError::new(ErrorCode::LaunchFailed, e.to_string())
    }
}

/// A policy or floor file problem, with its position when it has one.
pub fn policy_error(e: PolicyError) -> AppError {
    let mut err = AppError::new(ErrorCode::PolicyError, e.to_string());
    if e.line > 0 {
        err.location = Some(Location {
            file: e.file.clone(),
            line: e.line as usize,
            column: e.column as usize,
            field: (!e.field.is_empty()).then(|| e.field.clone()),
        });
    }
    err
}

/// A config file that cannot be used, with its position when it has one.
pub fn config_error(e: crate::config::ConfigError) -> AppError {
    let mut err = AppError::invalid(format!("config: {e}"));
    if e.line > 0 {
        err.location = Some(Location {
            file: e.file.to_string_lossy().into_owned(),
            line: e.line as usize,
            column: e.column as usize,
            field: None,
        });
    }
    err
}
