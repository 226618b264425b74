//! A site on one machine: network namespaces joined by a bridge, each node's processes (and
//! its clients) run inside its own namespace. Everything is removed on drop, also when the
//! test fails. Nothing is ever sent to a namespace address from the root namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::run;

/// One namespace of the testbed: its name and address on the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
    /// Its interface on the LAN.
    pub dev: String,
}

impl Host {
    /// A command run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Runs `program args` here, panicking with its output if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        run(self.command(program).args(args))
    }

    /// Bytes sent out of this namespace's LAN interface so far.
    pub fn tx_bytes(&self) -> u64 {
        self.run(
            "cat",
            &[&format!("/sys/class/net/{}/statistics/tx_bytes", self.dev)],
        )
        .trim()
        .parse()
        .unwrap()
    }

    /// `GET url` from inside this namespace: (status, body).
    pub fn curl(&self, url: &str) -> (u16, String) {
        let out = self
            .command("curl")
            .args(["-s", "-m", "10", "-w", "\n%{http_code}", url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

/// The testbed: a LAN namespace holding the bridge, and hosts attached to it.
pub struct Testbed {
    lan: String,
    pub hosts: Vec<Host>,
    children: Vec<Child>,
}

impl Testbed {
    /// `names.len()` hosts on 10.77.0.0/24 (the first at .1, then .11, .12, ...).
    pub fn new(names: &[&str]) -> Testbed {
        let tag = format!("st{}", std::process::id() % 100_000);
        let lan = format!("{tag}-lan");
        let mut bed = Testbed {
            lan: lan.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
        };
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", &lan]);
        ip(&["-n", &lan, "link", "set", "lo", "up"]);
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{tag}-{name}");
            let addr = if i == 0 {
                "10.77.0.1".to_string()
            } else {
                format!("10.77.0.{}", 10 + i)
            };
            let (inner, outer) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            ip(&["netns", "add", &ns]);
            bed.hosts.push(Host {
                ns: ns.clone(),
                ip: addr.clone(),
                dev: inner.clone(),
            });
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &lan]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &lan, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &lan, "link", "set", &outer, "up"]);
        }
        bed
    }

    /// Limits what `host` sends to `mbit` Mbit/s (`tc` `tbf`).
    pub fn limit(&self, host: &Host, mbit: u32) {
        host.run(
            "tc",
            &[
                "qdisc",
                "add",
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
        );
    }

    /// Keeps a process started inside a namespace, to be killed on drop.
    pub fn keep(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn kill(&mut self, index: usize) {
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    /// Starts the CNCF registry in `host`, storing under `dir`, on port 5000.
    pub fn start_registry(&mut self, host: &Host, dir: &Path) {
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}:5000\n",
                dir.join("data").display(),
                host.ip
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = host
            .command("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.keep(child);
        self.wait_http(host, &format!("http://{}:5000/v2/", host.ip));
    }

    /// Starts a strata node in `host` on port 5000 with `extra` flags; returns its index
    /// for [`Testbed::kill`] and its log file.
    pub fn start_node(&mut self, host: &Host, dir: &Path, extra: &[&str]) -> (usize, PathBuf) {
        let data = dir.join(format!("node-{}", host.ip));
        let log_path = dir.join(format!("node-{}.log", host.ip));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = host
            .command(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--listen", &format!("{}:5000", host.ip)])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let index = self.keep(child);
        self.wait_http(host, &format!("http://{}:5000/v2/", host.ip));
        (index, log_path)
    }

    fn wait_http(&self, host: &Host, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while host.curl(url).0 != 200 {
            assert!(Instant::now() < deadline, "{url} did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.lan])
            .status();
    }
}
