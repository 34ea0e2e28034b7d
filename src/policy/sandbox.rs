//! The policy → sandbox translation: what a resolved policy, with the
//! job's paths expanded, asks the sandbox to build.

use std::path::PathBuf;

use super::model::Policy;
use super::paths::ExpandedFilesystem;
use crate::sandbox::SandboxSpec;

impl Policy {
    /// The sandbox of one job: this policy (overrides merged, floor
    /// checked), its filesystem expanded for the job (`fs`), and the job's
    /// private directories.
    pub fn sandbox_spec(
        &self,
        fs: ExpandedFilesystem,
        tmpdir: PathBuf,
        files: PathBuf,
    ) -> SandboxSpec {
        let ns = &self.namespaces;
        SandboxSpec {
            enforcement: self.enforcement,
            cgroup: self.cgroup,
            user_ns: ns.user,
            pid_ns: ns.pid,
            mount_ns: ns.mount,
            ipc_ns: ns.ipc,
            uts_ns: ns.uts,
            cgroup_ns: ns.cgroup,
            hostname: ns.hostname.clone(),
            landlock: fs.landlock,
            read: fs.read,
            write: fs.write,
            exec: fs.exec,
            tmpfs: fs.tmpfs,
            deny: fs.deny,
            read_only: fs.read_only,
            links: Vec::new(),
            own_trees: Vec::new(),
            ungranted: Vec::new(),
            store: PathBuf::new(),
            network: self.network.mode,
            connect_ports: self.network.connect_ports.clone(),
            bind_ports: self.network.bind_ports.clone(),
            proxy: (self.network.mode == crate::sandbox::NetMode::Proxy).then(|| {
                crate::sandbox::ProxyRules {
                    allow_domains: self.network.allow_domains.clone(),
                    deny_domains: self.network.deny_domains.clone(),
                    hosts: self.network.hosts.clone(),
                    ports: self.network.connect_ports.clone(),
                    added_domains: self.network.added_domains.clone(),
                }
            }),
            seccomp: self.seccomp.profile,
            seccomp_deny: self.seccomp.deny.clone(),
            disk: self.limits.disk,
            file_size: self.limits.file_size,
            open_files: self.limits.open_files,
            env_inherit: self.env.inherit,
            env_allow: self.env.allow.clone(),
            env_set: self.env.set.clone(),
            tmpdir,
            files,
        }
    }
}
