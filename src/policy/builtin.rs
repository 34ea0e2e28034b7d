//! The built-in policies, embedded from `policies/` at the crate root so
//! that the binary needs no files on the host.

/// A built-in: name and TOML text.
pub(crate) struct Builtin {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            text: include_str!(concat!("../../policies/", $name, ".toml")),
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
