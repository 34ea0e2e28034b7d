//! Settings that are valid one by one but impossible together. Checked on
//! the merged policy after each file of an `extends` chain, so that the
//! error points at the file (and line) that introduced the contradiction.

use super::error::{PolicyError, PolicyErrorKind};
use super::model::{NetMode, Policy, SeccompProfile};
use super::parse::Spans;
use super::reader::Doc;

/// A contradiction: the fields involved (the first one the current file
/// set is where the error points) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub fields: Vec<&'static str>,
    pub message: String,
}

fn conflict(fields: &[&'static str], message: impl Into<String>) -> Option<Conflict> {
    Some(Conflict {
        fields: fields.to_vec(),
        message: message.into(),
    })
}

/// The first contradiction in `p`, if any.
pub(crate) fn find_conflict(p: &Policy) -> Option<Conflict> {
    let ns = &p.namespaces;
    if ns.pid && !ns.mount {
        return conflict(
            &["namespaces.pid", "namespaces.mount"],
            "namespaces.pid = true needs namespaces.mount = true: a new pid namespace needs a fresh /proc, mounted in the job's own mount namespace",
        );
    }
    if !p.filesystem.tmpfs.is_empty() && !ns.mount {
        return conflict(
            &["filesystem.tmpfs", "namespaces.mount"],
            "filesystem.tmpfs needs namespaces.mount = true: without a mount namespace the tmpfs would be mounted on the host",
        );
    }
    for (field, set) in [
        ("filesystem.deny", !p.filesystem.deny.is_empty()),
        ("filesystem.read_only", !p.filesystem.read_only.is_empty()),
    ] {
        if set && !ns.mount {
            return conflict(
                &[field, "namespaces.mount"],
                "filesystem.deny and filesystem.read_only need namespaces.mount = true: they are mounts in the job's own view of the filesystem (set them to [] for a job without one)",
            );
        }
    }
    if ns.hostname.is_some() && !ns.uts {
        return conflict(
            &["namespaces.hostname", "namespaces.uts"],
            "namespaces.hostname needs namespaces.uts = true: without a UTS namespace it would rename the host",
        );
    }
    if p.network.mode == NetMode::None {
        for (field, set) in [
            ("network.connect_ports", p.network.connect_ports.is_some()),
            ("network.bind_ports", p.network.bind_ports.is_some()),
        ] {
            if set {
                return conflict(
                    &[field, "network.mode"],
                    format!("{field} has no effect with network.mode = \"none\" (no network at all); remove it or use mode \"loopback\" or \"host\""),
                );
            }
        }
    }
    if !p.filesystem.landlock {
        for (field, empty) in [
            ("filesystem.read", p.filesystem.read.is_empty()),
            ("filesystem.write", p.filesystem.write.is_empty()),
            ("filesystem.exec", p.filesystem.exec.is_empty()),
        ] {
            if !empty {
                return conflict(
                    &[field, "filesystem.landlock"],
                    format!("{field} lists paths, but filesystem.landlock = false leaves the whole filesystem open; remove the list or set landlock = true"),
                );
            }
        }
    }
    if p.seccomp.profile == SeccompProfile::None && !p.seccomp.deny.is_empty() {
        return conflict(
            &["seccomp.deny", "seccomp.profile"],
            "seccomp.deny needs a filter, but seccomp.profile = \"none\" installs none; use profile \"default\" or remove deny",
        );
    }
    None
}

/// Checks `p` (just merged with `spans`' file) and reports a contradiction
/// at the first involved field that this file set.
pub(crate) fn validate(p: &Policy, doc: &Doc<'_>, spans: &Spans) -> Result<(), PolicyError> {
    let Some(c) = find_conflict(p) else {
        return Ok(());
    };
    let located = c
        .fields
        .iter()
        .find_map(|f| spans.get(*f).map(|span| (*f, span)));
    Err(match located {
        Some((field, span)) => doc.error(span, field, PolicyErrorKind::Conflict, c.message),
        None => {
            let mut e = PolicyError::unpositioned(doc.name, PolicyErrorKind::Conflict, c.message);
            e.field = c.fields.first().copied().unwrap_or_default().to_string();
            e
        }
    })
}
