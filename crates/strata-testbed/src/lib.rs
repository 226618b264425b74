//! A site on one machine, for tests and benchmarks: network namespaces joined by a bridge,
//! an upstream host whose uplink is limited with `tc` `tbf`, and the processes of each host
//! (registries, strata nodes, containerd, clients) started inside its own namespace.
//!
//! Rules it keeps: nothing is ever sent to a namespace address from the root namespace
//! (every command of a host runs through `ip netns exec`), and everything it made (processes,
//! namespaces, interfaces) is removed when the [`Testbed`] is dropped, also when a test
//! panics; a [`Teardown`] handle lets a signal handler do the same on Ctrl-C.
//!
//! Needs root, `ip` and `tc` (iproute2).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where a node the testbed starts serves its admin API: the host's own loopback (its
/// namespace's), reached by commands run in that host.
pub const ADMIN_LISTEN: &str = "127.0.0.1:5001";

/// What can go wrong building or driving a testbed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unexpected output of {command}: {output:?}")]
    Output { command: String, output: String },
}

pub type Result<T> = std::result::Result<T, Error>;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; its stdout, or an error holding its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        command: describe(cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Failed {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One host of the testbed: its namespace, its address on the LAN and its interface there.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
    pub dev: String,
}

impl Host {
    /// `program`, to be run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs `program args` here; its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Bytes sent out of this host's LAN interface so far.
    pub fn tx_bytes(&self) -> Result<u64> {
        self.counter("tx_bytes")
    }

    /// Bytes received on this host's LAN interface so far.
    pub fn rx_bytes(&self) -> Result<u64> {
        self.counter("rx_bytes")
    }

    fn counter(&self, name: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.dev);
        let text = self.run("cat", &[&path])?;
        text.trim().parse().map_err(|_| Error::Output {
            command: format!("cat {path}"),
            output: text,
        })
    }

    /// `GET url` from inside this host: (status, body); status 0 when nothing answered.
    pub fn curl(&self, url: &str) -> (u16, String) {
        self.curl_with(url, &[])
    }

    /// `GET url` with `headers` (`Name: value`) from inside this host.
    pub fn curl_with(&self, url: &str, headers: &[String]) -> (u16, String) {
        let mut cmd = self.command("curl");
        cmd.args(["-s", "-m", "10", "-w", "\n%{http_code}"]);
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        let Ok(out) = cmd.arg(url).output() else {
            return (0, String::new());
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Waits until `url` answers 200 from inside this host.
    pub fn wait_http(&self, url: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.curl(url).0 != 200 {
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "{url} did not answer within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Inner {
    namespaces: Vec<String>,
    children: Vec<Option<Child>>,
    done: bool,
}

impl Inner {
    fn teardown(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Hosts first, the LAN (which holds the bridge) last.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A handle that removes the testbed it came from (processes, then namespaces); for signal
/// handlers. Running it twice, or after the testbed was dropped, does nothing.
#[derive(Debug, Clone)]
pub struct Teardown(Arc<Mutex<Inner>>);

impl Teardown {
    pub fn run(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .teardown();
    }
}

/// A testbed: a LAN namespace holding a bridge, and hosts attached to it by veth pairs, on
/// 10.77.0.0/24 (the first host at .1, the others at .11, .12, ...).
#[derive(Debug)]
pub struct Testbed {
    inner: Arc<Mutex<Inner>>,
    pub hosts: Vec<Host>,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Testbed {
    /// Builds the LAN and one host per name. Names of namespaces and interfaces carry this
    /// process's id, so testbeds of different processes never meet.
    pub fn new(names: &[&str]) -> Result<Testbed> {
        if names.len() > 240 {
            return Err(Error::Invalid(format!(
                "{} hosts do not fit the testbed's /24",
                names.len()
            )));
        }
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 100;
        let tag = format!("s{}x{seq}", std::process::id() % 100_000);
        let lan = format!("{tag}-lan");
        let bed = Testbed {
            inner: Arc::new(Mutex::new(Inner::default())),
            hosts: Vec::new(),
        };
        let ip = |args: &[&str]| run(Command::new("ip").args(args)).map(drop);
        bed.lock().namespaces.push(lan.clone());
        ip(&["netns", "add", &lan])?;
        ip(&["-n", &lan, "link", "set", "lo", "up"])?;
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan, "link", "set", "br0", "up"])?;
        let mut bed = bed;
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{tag}-{name}");
            let addr = if i == 0 {
                "10.77.0.1".to_string()
            } else {
                format!("10.77.0.{}", 10 + i)
            };
            let (inner, outer) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            bed.lock().namespaces.push(ns.clone());
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "netns", &lan])?;
            let cidr = format!("{addr}/24");
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &lan, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &lan, "link", "set", &outer, "up"])?;
            bed.hosts.push(Host {
                ns,
                ip: addr,
                dev: inner,
            });
        }
        Ok(bed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that tears this testbed down from elsewhere (a Ctrl-C handler).
    pub fn teardown_handle(&self) -> Teardown {
        Teardown(self.inner.clone())
    }

    /// Limits what `host` sends to `mbit` Mbit/s (`tc` `tbf` on its LAN interface).
    pub fn limit(&self, host: &Host, mbit: u32) -> Result<()> {
        host.run(
            "tc",
            &[
                "qdisc",
                "replace",
                "dev",
                &host.dev,
                "root",
                "tbf",
                "rate",
                &format!("{mbit}mbit"),
                "burst",
                "64kb",
                "latency",
                "400ms",
            ],
        )
        .map(drop)
    }

    /// Keeps a process started inside a namespace, to be killed at teardown; its index for
    /// [`Testbed::kill`].
    pub fn keep(&self, child: Child) -> usize {
        let mut inner = self.lock();
        inner.children.push(Some(child));
        inner.children.len() - 1
    }

    /// Kills (SIGKILL) and reaps process `index`.
    pub fn kill(&self, index: usize) {
        if let Some(Some(mut c)) = self.lock().children.get_mut(index).map(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts `cmd` (built with [`Host::command`]) with its output appended to `log`.
    pub fn spawn_logged(&self, mut cmd: Command, log: &Path) -> Result<usize> {
        let file = std::fs::File::create(log).map_err(io(format!("create {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("clone {}", log.display())))?;
        let child = cmd
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: describe(&cmd),
                source,
            })?;
        Ok(self.keep(child))
    }

    /// Starts the CNCF registry (`docker-registry`) in `host` on port 5000, storing under
    /// `dir`; returns once it answers.
    pub fn start_registry(&self, host: &Host, dir: &Path) -> Result<usize> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}:5000\n",
                dir.join("data").display(),
                host.ip
            ),
        )
        .map_err(io(format!("write {}", config.display())))?;
        let mut cmd = host.command("docker-registry");
        cmd.arg("serve").arg(&config);
        let index = self.spawn_logged(cmd, &dir.join("registry.log"))?;
        host.wait_http(
            &format!("http://{}:5000/v2/", host.ip),
            Duration::from_secs(30),
        )?;
        Ok(index)
    }

    /// Starts `binary serve` (a strata node) in `host` on port 5000 (its admin API on the
    /// host's loopback, [`ADMIN_LISTEN`]) with data under
    /// `dir/node-IP` and the `extra` flags; returns its index and its log file once it
    /// answers.
    pub fn start_node(
        &self,
        host: &Host,
        binary: &Path,
        dir: &Path,
        extra: &[&str],
    ) -> Result<(usize, PathBuf)> {
        let log = dir.join(format!("node-{}.log", host.ip));
        let mut cmd = host.command(binary);
        cmd.args(["serve", "--listen", &format!("{}:5000", host.ip)])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{}", host.ip)))
            .args(extra);
        // The admin API (`/metrics`, site status) on the host's own loopback.
        let admin = !extra.contains(&"--admin-listen");
        if admin {
            cmd.args(["--admin-listen", ADMIN_LISTEN]);
        }
        cmd
            // The caller's log filter when it set one (to debug a run), else info.
            .env(
                "STRATA_LOG",
                std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".into()),
            );
        let index = self.spawn_logged(cmd, &log)?;
        // The admin listener answers once the node serves (its API may ask for a login or
        // speak TLS).
        let ready = if admin {
            format!("http://{ADMIN_LISTEN}/metrics")
        } else {
            format!("http://{}:5000/v2/", host.ip)
        };
        host.wait_http(&ready, Duration::from_secs(30))?;
        Ok((index, log))
    }

    /// Starts a containerd of its own in `host` (root, state and socket under `dir`, the CRI
    /// plugin off); returns its socket once it exists.
    pub fn start_containerd(&self, host: &Host, dir: &Path) -> Result<String> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let (config, sock) = containerd_config(dir)?;
        let mut cmd = host.command("containerd");
        cmd.arg("--config").arg(&config);
        // STRATA_CONTAINERD_LOG=debug explains a slow pull.
        if let Ok(level) = std::env::var("STRATA_CONTAINERD_LOG") {
            cmd.args(["--log-level", &level]);
        }
        self.spawn_logged(cmd, &dir.join("containerd.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "containerd socket {} did not appear within 30 s",
                    sock.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sock.to_string_lossy().into_owned())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.lock().teardown();
    }
}

/// Writes the configuration of a containerd of its own under `dir` (root, state and socket
/// there; the CRI plugin disabled): its path, and the socket's.
pub fn containerd_config(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let sock = dir.join("c.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            dir.join("root").display(),
            dir.join("state").display(),
            sock.display()
        ),
    )
    .map_err(io(format!("write {}", config.display())))?;
    Ok((config, sock))
}

/// Why a testbed cannot be built here (not root, or a tool missing), or `None`.
pub fn unavailable() -> Option<String> {
    if !run(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0") {
        return Some("needs root (network namespaces)".into());
    }
    for tool in ["ip", "tc"] {
        if Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(format!("needs {tool} (iproute2)"));
        }
    }
    None
}
