//! Processes of the harness: the workspace's own binaries located, servers spawned with per-server log files, log tails for failure reports, free ports, and the watchdog that guarantees no server outlives the test process.
//!
//! The watchdog is a tiny `sh` loop whose stdin is a pipe held by the test
//! process. Each server's pid is written to that pipe as soon as it is spawned.
//! When the test process goes away for *any* reason — normal exit, panic,
//! SIGKILL — the kernel closes the pipe, `read` sees EOF, and the watchdog
//! kills every pid it was given and then removes the temp dir. This is what
//! makes a `static` control plane (whose `Drop` never runs) safe, and it needs
//! no `unsafe` (no `prctl(PR_SET_PDEATHSIG)`). Rust creates pipes with
//! `O_CLOEXEC`, so no other child inherits the write end and delays the EOF.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Kills the pids read from stdin once stdin closes, then deletes `$1`.
/// SIGKILL straight away: the data is throwaway and a graceful apiserver
/// shutdown would only slow teardown. Zombies (reaped later by a still-living
/// test process) still answer `kill -0`, hence the bounded wait.
const WATCHDOG_SCRIPT: &str = r#"
dir=$1
pids=
while read -r pid; do pids="$pid $pids"; done
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
i=0
for p in $pids; do
  while kill -0 "$p" 2>/dev/null && [ "$i" -lt 50 ]; do i=$((i+1)); sleep 0.1; done
done
rm -rf "$dir"
"#;

/// See the module docs. Dropping it (or [`Watchdog::release`]) closes the
/// pipe, which triggers the kill-and-clean-up.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog that will remove `dir` when it fires.
    pub(crate) fn spawn(dir: &Path) -> anyhow::Result<Watchdog> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("dittofs-testenv-watchdog")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn the watchdog (sh)")?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// Hands a pid to the watchdog: it will be killed if we die.
    pub(crate) fn adopt(&mut self, pid: u32) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("watchdog already released")?;
        writeln!(stdin, "{pid}").and_then(|()| stdin.flush()).context("write to the watchdog")
    }

    /// Closes the pipe and waits (bounded) for the watchdog to finish its
    /// clean-up. Call after the servers are reaped so it does not wait on zombies.
    pub(crate) fn release(&mut self) {
        drop(self.stdin.take());
        wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.release();
    }
}

/// One running server with its log file.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) name: &'static str,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Server {
    /// Spawns `bin args…` with stdout and stderr appended to `log`, stdin
    /// closed, and registers it with the watchdog before returning.
    pub(crate) fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        watchdog: &mut Watchdog,
    ) -> anyhow::Result<Server> {
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        if let Err(e) = watchdog.adopt(child.id()) {
            // Without the watchdog nothing would stop this server if we crash.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Server { name, log, child })
    }

    /// `Some(description)` if the process has already exited: a server that
    /// dies during start-up should fail the start at once, not at the timeout.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills and reaps the process.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        wait_bounded(&mut self.child, Duration::from_secs(10));
    }

    /// The last `lines` lines of the log, headed by the server name and path.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        format!("==> {} ({}) <==\n{}", self.name, self.log.display(), tail(&self.log, lines))
    }
}

/// Polls `child` until it exits or `limit` passes (a wedged process must not
/// hang teardown forever).
fn wait_bounded(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

/// Last `lines` lines of a file; reads at most the final 64 KiB because
/// apiserver logs can be large and only the end explains a failure.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = all[start..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("(cannot read log: {e})\n"),
    }
}

/// A binary of this workspace: `$<NAME>_BIN` if set (`dittofs-agent` → `DITTOFS_AGENT_BIN`, e.g. a release
/// build), else the one built next to the running executable (`cargo build --bins`): test binaries live in
/// `target/<profile>/deps`, other binaries in `target/<profile>`.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(bin) = std::env::var_os(&var).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        anyhow::ensure!(bin.is_file(), "{var}={} is not a file", bin.display());
        return Ok(bin);
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
        .with_context(|| format!("{name} not found next to {}: run `cargo build --bins` (or set {var})", exe.display()))
}

/// `$<env>` if set, else tool `name` of the testenv cache, where `scripts/testenv/<name>.sh` builds it (`build`
/// says how long that takes); fails with how to build it. The script only computes the path here (no build, no
/// network).
pub fn cached_tool(name: &str, env: &str, build: &str) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env).filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned();
    let script = root.join(format!("scripts/testenv/{name}.sh"));
    let out =
        Command::new(&script).arg("--print-bin-dir").output().with_context(|| format!("run {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "{name}.sh --print-bin-dir: {}", String::from_utf8_lossy(&out.stderr));
    let bin = PathBuf::from(String::from_utf8(out.stdout)?.trim()).join(name);
    anyhow::ensure!(
        bin.is_file(),
        "{name} not found at {}: build it once with scripts/testenv/{name}.sh ({build}), run `make test`, or set ${env}",
        bin.display()
    );
    Ok(bin)
}

/// A loopback port that was free a moment ago. The listener is dropped before
/// the server binds it, so another process could grab it in between; on a
/// test machine that race is rare enough that a failed start is acceptable.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2), "c\nd\n");
        assert_eq!(tail(&path, 10), "a\nb\nc\nd\n");
        assert!(tail(&dir.path().join("missing"), 3).starts_with("(cannot read log"));
    }

    /// Closing the pipe must kill adopted processes and remove the directory.
    #[test]
    fn watchdog_kills_adopted_and_cleans_dir() {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut watchdog = Watchdog::spawn(&dir).unwrap();
        let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
        watchdog.adopt(sleeper.id()).unwrap();
        drop(watchdog.stdin.take());
        // Reap the killed sleeper as the real teardown does, so the watchdog
        // does not see a zombie.
        let status = sleeper.wait().unwrap();
        assert!(!status.success());
        watchdog.release();
        assert!(!dir.exists(), "watchdog should remove {}", dir.display());
    }
}
