//! Policies: what a job may touch and use, from TOML files.
//!
//! Built-ins live in `policies/` (embedded), host policies in a directory
//! (`/etc/agent-exec/policies`), or a file is named by path. [`resolve`]
//! reads one, follows its `extends` chain and validates every file, with
//! errors at `FILE:LINE:COL`. [`Policy::apply_overrides`] merges the
//! command-line sandbox flags, [`Floor::check`] holds the result against
//! the host floor, and [`Policy::expand_paths`] turns path templates into
//! the absolute paths the sandbox opens. The file format is documented at
//! the top of `policies/default.toml`.

mod builtin;
mod error;
mod floor;
mod model;
mod overrides;
mod parse;
mod paths;
mod reader;
mod resolve;
mod sandbox;
mod validate;

#[cfg(test)]
mod tests;

pub use builtin::builtin_names;
pub(crate) use error::line_column;
pub use error::{PolicyError, PolicyErrorKind};
pub use floor::{Floor, FloorError, FloorSubject};
pub use model::{
    CgroupNeed, Enforcement, EnvPolicy, Filesystem, Limits, Namespaces, NetMode, NetModeError,
    Network, OverridePermissions, Policy, PolicySource, Seccomp, SeccompProfile,
};
pub use overrides::{OverrideError, Overrides};
pub use paths::{ExpandError, ExpandedFilesystem, PathVars, PATH_VARS};
pub use resolve::{list, resolve, PolicyListEntry, PolicySources};
