//! The built-in policies, embedded from `policies/` at the crate root so
//! that the binary needs no files on the host.
//!
//! Each is embedded twice: its TOML text, which `policy show` and error
//! messages refer to, and its resolved form (`resolved/NAME.json`: the
//! `extends` chain merged and validated). Resolving the TOML took 0.15 ms
//! (`permissive`) to 0.3 ms (`default`) of every launch; reading the JSON
//! takes a fraction of that. A test resolves every TOML text and fails
//! unless the JSON is exactly what it gives (`AGENT_EXEC_BLESS=1` rewrites
//! the files).

use super::model::Policy;

/// A built-in: name, TOML text, resolved form.
pub(crate) struct Builtin {
    pub name: &'static str,
    pub text: &'static str,
    pub resolved: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            text: include_str!(concat!("../../policies/", $name, ".toml")),
            resolved: include_str!(concat!("resolved/", $name, ".json")),
        }
    };
}

pub(crate) const BUILTINS: [Builtin; 4] = [
    builtin!("default"),
    builtin!("untrusted"),
    builtin!("ci"),
    builtin!("permissive"),
];

/// Names of the built-in policies, `default` first.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

pub(crate) fn builtin_text(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS
        .iter()
        .find(|b| b.name == name)
        .map(|b| (b.name, b.text))
}

/// The resolved form of a built-in; `None` if it does not read back (the
/// caller then resolves the TOML).
pub(crate) fn builtin_resolved(name: &str) -> Option<Policy> {
    let builtin = BUILTINS.iter().find(|b| b.name == name)?;
    serde_json::from_str(builtin.resolved).ok()
}
