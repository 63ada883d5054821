//! The systemd user unit that runs the daemon.

use std::path::{Path, PathBuf};

use crate::store::Home;

/// A systemd user unit running the daemon (`KillMode=process`: stopping
/// or restarting the service must not kill the host agents and VMs, which
/// live in its cgroup).
/// `tuning`: the daemon's other flags, passed on as given.
pub fn systemd_unit(
    exe: &Path,
    home: &Home,
    sources: &[PathBuf],
    prune: bool,
    tuning: &[String],
) -> String {
    let srcs: Vec<String> = sources
        .iter()
        .map(|s| {
            match s
                .to_str()
                .filter(|a| crate::reconcile::source::git::is_git(a))
            {
                // `%` starts a systemd specifier.
                Some(git) => format!("-f {}", git.replace('%', "%%")),
                None => {
                    let abs = std::fs::canonicalize(s).unwrap_or_else(|_| s.clone());
                    format!("-f {}", abs.display())
                }
            }
        })
        .collect();
    format!(
        "[Unit]\n\
         Description=limactl apply --watch: keep {home} converged with {srcs}\n\
         Documentation=https://lima-vm.io/\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Environment=LIMA_HOME={home}\n\
         ExecStart={exe} apply --watch{prune} {srcs} {tuning}\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         KillMode=process\n\
         KillSignal=SIGTERM\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        home = home.root.display(),
        exe = exe.display(),
        prune = if prune { " --prune" } else { "" },
        srcs = srcs.join(" "),
        tuning = tuning.join(" "),
    )
}
