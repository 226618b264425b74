//! End-to-end harness: start the real `strata` binary, find real clients, skip loudly.

#![allow(dead_code, clippy::unwrap_used)]

pub mod http;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A running `strata serve` process.
pub struct StrataNode {
    pub child: Child,
    pub port: u16,
    /// The admin listener's port (`/metrics`, `/strata/v1/...`; on loopback).
    pub admin_port: Option<u16>,
    pub data_dir: PathBuf,
}

impl StrataNode {
    /// Start a node on a port the kernel picks.
    pub fn start(data_dir: &Path) -> StrataNode {
        Self::start_on(data_dir, 0)
    }

    /// Start a node on `port` (0: any); returns once it announced its address.
    pub fn start_on(data_dir: &Path, port: u16) -> StrataNode {
        Self::start_with(data_dir, port, &[])
    }

    /// Start a node with extra `serve` flags.
    pub fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> StrataNode {
        Self::start_under(&[], data_dir, port, extra)
    }

    /// Start a node that logs everything down to debug (a test then searches the log).
    pub fn start_logging(data_dir: &Path, port: u16, extra: &[&str]) -> StrataNode {
        Self::start_logged(&[], data_dir, port, extra, "debug")
    }

    /// Start a node through a wrapper command (`prefix` then the binary), e.g. `prlimit`.
    pub fn start_under(prefix: &[&str], data_dir: &Path, port: u16, extra: &[&str]) -> StrataNode {
        Self::start_logged(prefix, data_dir, port, extra, "warn")
    }

    fn start_logged(
        prefix: &[&str],
        data_dir: &Path,
        port: u16,
        extra: &[&str],
        level: &str,
    ) -> StrataNode {
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_strata"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_strata")),
        };
        // The admin API on a loopback port of its own, unless the test sets it.
        let admin = !extra.contains(&"--admin-listen");
        let mut child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .args(if admin {
                &["--admin-listen", "127.0.0.1:0"][..]
            } else {
                &[]
            })
            .env("STRATA_LOG", level)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let mut admin_line = String::new();
        if admin {
            out.read_line(&mut admin_line).unwrap();
        }
        // The node prints nothing more: the pipe may close.
        drop(out);
        let admin_port = admin_line
            .trim()
            .strip_prefix("strata admin listening on http://")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "node did not start: {:?}; log: {}",
                    line,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            });
        StrataNode {
            child,
            port,
            admin_port,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `path` on the node's admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        let port = self.admin_port.expect("the node has an admin listener");
        format!("http://127.0.0.1:{port}{path}")
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.data_dir.clone()
    }

    /// Peak resident set size of the node, in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }
}

impl Drop for StrataNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Whether a missing prerequisite may skip a test. CI sets STRATA_REQUIRE_TOOLS=1, which
/// turns every skip into a failure so a green run cannot hide an untested client.
fn skip(test: &str, why: &str) -> bool {
    if std::env::var("STRATA_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{test}: required prerequisite missing: {why}");
    }
    eprintln!("SKIPPED: {test}: {why}");
    true
}

/// `true` (after printing why) when the test must be skipped for a missing tool.
pub fn missing_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    !found
        && skip(
            test,
            &format!("{tool} is not installed (run scripts/install-test-deps)"),
        )
}

pub fn is_root() -> bool {
    proc_status_kib_or_zero("Uid:") == 0
}

fn proc_status_kib_or_zero(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// `true` (after printing why) when the test needs root and does not have it.
pub fn missing_root(test: &str) -> bool {
    !is_root() && skip(test, "needs root")
}

/// `true` (after printing why) when a containerd pull test cannot run: it pushes with
/// skopeo and runs its own containerd (root) driven by `ctr`.
pub fn missing_containerd_setup(test: &str) -> bool {
    missing_tool(test, "skopeo")
        || missing_tool(test, "containerd")
        || missing_tool(test, "ctr")
        || missing_root(test)
}

/// The shared image corpus (`../shared/images/oci` beside the project root).
pub fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("STRATA_CORPUS") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/oci")
}

/// Tags of the corpus images.
pub fn corpus_tags() -> Vec<String> {
    strata_oci::Layout::open(corpus_dir())
        .and_then(|l| l.tags())
        .unwrap()
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// Run a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- real clients, shared by the client and file-level tests ----

pub fn index_digest(layout: &Path, tag: &str) -> String {
    strata_oci::Layout::open(layout)
        .and_then(|l| l.resolve(tag))
        .unwrap_or_else(|e| panic!("tag {tag}: {e}"))
        .to_string()
}

/// The image manifest tagged `tag` in an OCI layout (the first, for an index).
pub fn layout_image(layout: &Path, tag: &str) -> strata_oci::LayoutImage {
    let oci = strata_oci::Layout::open(layout).unwrap();
    oci.images()
        .unwrap()
        .into_iter()
        .find(|i| i.name == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {}", layout.display()))
}

pub fn blob_names(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args))
}

/// Push every corpus image to the node and pull it back: manifests and blobs identical.
pub fn push_corpus(node: &StrataNode) {
    let corpus = corpus_dir();
    for tag in corpus_tags() {
        let src = format!("oci:{}:{tag}", corpus.display());
        let dst = format!("docker://{}/corpus/{tag}:v1", node.host());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    }
}

pub fn wait_for_socket(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd socket {} never appeared",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// skopeo pulls every corpus image from `node` into the OCI layout `out`: manifest digests,
/// the blob set and every blob's content must equal the corpus.
pub fn pull_corpus_and_check(node: &StrataNode, out: &Path) {
    let corpus = corpus_dir();
    for tag in corpus_tags() {
        let remote = format!("docker://{}/corpus/{tag}:v1", node.host());
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &remote,
            &format!("oci:{}:{tag}", out.display()),
        ]);
        assert_eq!(
            index_digest(out, &tag),
            index_digest(&corpus, &tag),
            "{tag}: pulled manifest digest differs"
        );
    }
    let pulled = blob_names(out);
    assert_eq!(
        pulled,
        blob_names(&corpus),
        "every blob came back under its own digest"
    );
    for name in &pulled {
        let bytes = std::fs::read(out.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(
            strata_oci::Digest::sha256(&bytes).hex(),
            *name,
            "blob content matches its digest"
        );
    }
}

/// Runs `f` with the socket path of a containerd daemon of its own (root, state and socket
/// under `dir`, CRI plugin disabled), stopping the daemon afterwards even if `f` panics.
pub fn with_containerd(dir: &Path, f: impl FnOnce(&str) + std::panic::UnwindSafe) {
    let (config, sock) = strata_testbed::containerd_config(dir).unwrap();
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_socket(&sock);
    let sock_s = sock.to_string_lossy().into_owned();
    let result = std::panic::catch_unwind(|| f(&sock_s));
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `ctr images pull` of corpus image `tag` from `node`; checks containerd stored its digest.
pub fn ctr_pull(sock: &str, node: &StrataNode, tag: &str) {
    let image = format!("{}/corpus/{tag}:v1", node.host());
    run(Command::new("ctr").args([
        "--address",
        sock,
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &image,
    ]));
    let list = run(Command::new("ctr").args(["--address", sock, "images", "ls"]));
    assert!(
        list.lines().any(|l| l.starts_with(&image)),
        "{image} not listed: {list}"
    );
    let want = index_digest(&corpus_dir(), tag);
    assert!(
        list.contains(&want),
        "{tag}: containerd stored another digest: {list}"
    );
}

/// A tmpfs of a few MiB, unmounted on drop.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(mib: usize) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

pub fn used_bytes(path: &std::path::Path) -> u64 {
    let out = run(Command::new("df").args(["--output=used", "-B1"]).arg(path));
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// A CNCF registry (`docker-registry`) on loopback, its access log in a file, stopped on
/// drop: the upstream of mirror tests.
pub struct CncfRegistry {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl CncfRegistry {
    pub fn start() -> CncfRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let child = Self::spawn(&config, &log, port);
        CncfRegistry {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Runs `docker-registry serve CONFIG`, its output appended to `log`, until it listens.
    fn spawn(config: &Path, log: &Path, port: u16) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Stops it and starts it again, same port and storage, asking every request for a
    /// login (`htpasswd` basic auth with one user).
    pub fn restart_with_login(&mut self, user: &str, password: &str) {
        self.stop();
        let htpasswd = self._dir.path().join("htpasswd");
        std::fs::write(&htpasswd, htpasswd_line(user, password) + "\n").unwrap();
        let config = self._dir.path().join("config.yml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
            htpasswd.display()
        ));
        std::fs::write(&config, text).unwrap();
        self.child = Self::spawn(&config, &self.log, self.port);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its storage root.
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// Successful `GET`s of blob `digest` in the access log (HEAD requests not counted).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest} ")))
            .filter(|l| l.contains("\" 200 ") || l.contains("\" 307 "))
            .count()
    }

    /// Stop it (the uplink goes down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CncfRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// podman with its storage under `root` and `runroot` (vfs, no systemd), as tests run it.
pub fn podman_command(root: &Path, runroot: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(root)
        .arg("--runroot")
        .arg(runroot)
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    c
}

/// `user`'s htpasswd line (bcrypt), as `htpasswd -Bbn` writes it, without its newline.
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// A certificate authority a test makes.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names` signed by this CA: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }
}

/// Writes a secret's file, mode 0600.
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
