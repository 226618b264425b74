//! The registries under test: a `strata serve` and a CNCF `docker-registry`, each in its own
//! temporary directory on loopback, over plain HTTP or TLS with a certificate of a CA the
//! bench makes ([`Tls`]).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A registry process under test.
#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub host: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    child: Child,
    _dir: tempfile::TempDir,
}

/// A CA and a certificate it signed for `127.0.0.1`, written to a directory of their own
/// (`ca.crt` there is what skopeo's `--dest-cert-dir` reads; the server's files are in
/// `server/`).
#[derive(Debug)]
pub struct Tls {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Tls {
    pub fn new(scratch: &Path) -> Result<Tls> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "strata-bench ca");
        let ca_key = KeyPair::generate()?;
        let ca = params.self_signed(&ca_key)?;
        let server_key = KeyPair::generate()?;
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(
            &server_key,
            &ca,
            &ca_key,
        )?;
        let dir = tempfile::tempdir_in(scratch)?;
        std::fs::write(dir.path().join("ca.crt"), ca.pem())?;
        // The server's files apart: skopeo takes every *.key beside ca.crt for a client's.
        std::fs::create_dir(dir.path().join("server"))?;
        std::fs::write(dir.path().join("server/server.crt"), server.pem())?;
        let key = dir.path().join("server/server.key");
        std::fs::write(&key, server_key.serialize_pem())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        Ok(Tls {
            dir,
            ca_pem: ca.pem(),
        })
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server/server.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server/server.key")
    }

    /// An HTTP client that trusts the CA.
    pub fn client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .build()?)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.host)
    }
}

/// The `strata` binary built beside this one.
pub fn strata_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("strata");
    if !bin.exists() {
        bail!(
            "{} not found: build it with cargo build --release -p strata",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn start_strata(scratch: &Path, tls: Option<&Tls>) -> Result<Target> {
    let dir = tempfile::tempdir_in(scratch)?;
    let mut cmd = Command::new(strata_binary()?);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    if let Some(t) = tls {
        cmd.arg("--tls-cert")
            .arg(t.cert())
            .arg("--tls-key")
            .arg(t.key());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut child = cmd
        .env("STRATA_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start strata")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let host = line
        .trim()
        .strip_prefix(&format!("strata listening on {scheme}://"))
        .with_context(|| format!("strata did not start: {line:?}"))?
        .to_string();
    Ok(Target {
        name: "strata",
        host,
        scheme,
        child,
        _dir: dir,
    })
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn start_cncf(scratch: &Path, tls: Option<&Tls>) -> Result<Target> {
    let dir = tempfile::tempdir_in(scratch)?;
    let port = free_port()?;
    let config = dir.path().join("config.yml");
    let tls_config = match tls {
        Some(t) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            t.cert().display(),
            t.key().display()
        ),
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_config}",
            dir.path().join("data").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start docker-registry (apt-get install docker-registry)")?;
    let host = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&host).is_err() {
        if Instant::now() > deadline {
            bail!("docker-registry did not start on {host}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Target {
        name: "cncf",
        host,
        scheme: if tls.is_some() { "https" } else { "http" },
        child,
        _dir: dir,
    })
}
