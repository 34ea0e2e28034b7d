//! The built-in policies, embedded from `policies/` at the crate root so
//! that the binary needs no files on the host.

/// Name and TOML text of each built-in policy.
pub(crate) const BUILTINS: [(&str, &str); 4] = [
    ("default", include_str!("../../policies/default.toml")),
    ("untrusted", include_str!("../../policies/untrusted.toml")),
    ("ci", include_str!("../../policies/ci.toml")),
    ("permissive", include_str!("../../policies/permissive.toml")),
];

/// Names of the built-in policies, `default` first.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

pub(crate) fn builtin_text(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS.iter().copied().find(|(n, _)| *n == name)
}
