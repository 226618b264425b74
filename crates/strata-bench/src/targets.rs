//! The registries under test: a `strata serve` and a CNCF `docker-registry`, each in its own
//! temporary directory on loopback.

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
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
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

pub fn start_strata(scratch: &Path) -> Result<Target> {
    let dir = tempfile::tempdir_in(scratch)?;
    let mut child = Command::new(strata_binary()?)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("STRATA_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start strata")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let host = line
        .trim()
        .strip_prefix("strata listening on http://")
        .with_context(|| format!("strata did not start: {line:?}"))?
        .to_string();
    Ok(Target {
        name: "strata",
        host,
        child,
        _dir: dir,
    })
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn start_cncf(scratch: &Path) -> Result<Target> {
    let dir = tempfile::tempdir_in(scratch)?;
    let port = free_port()?;
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
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
        child,
        _dir: dir,
    })
}
