//! The API over TLS with a test CA the test creates: curl (HTTP/2 and HTTP/1.1) and
//! skopeo with a login, plain HTTP to the TLS port, a certificate replaced on disk, and
//! client certificates (mutual TLS).

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{
    corpus_dir, htpasswd_line, index_digest, missing_containerd_setup, missing_root, missing_tool,
    podman_command, run, with_containerd, write_private, Ca, StrataNode,
};

fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn server_files(dir: &Path, ca: &Ca) -> Files {
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let files = Files {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    write_private(&files.key, &key);
    ca.write(&files.ca);
    files
}

/// A node under `dir` serving TLS from `files`, with `extra` flags.
fn start_tls(dir: &Path, files: &Files, extra: &[&str]) -> StrataNode {
    let mut flags = vec![
        "--tls-cert",
        files.cert.to_str().unwrap(),
        "--tls-key",
        files.key.to_str().unwrap(),
    ];
    flags.extend_from_slice(extra);
    StrataNode::start_with(&dir.join("data"), 0, &flags)
}

#[test]
fn clients_speak_tls_to_the_node_and_a_new_certificate_is_taken_without_a_restart() {
    let test = "clients_speak_tls_to_the_node_and_a_new_certificate_is_taken_without_a_restart";
    if missing_tool(test, "curl") || missing_tool(test, "skopeo") || missing_tool(test, "htpasswd")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("strata test ca");
    let files = server_files(tmp.path(), &ca);
    let users = tmp.path().join("htpasswd");
    write_private(&users, &(htpasswd_line("alice", "alice-tls-pw") + "\n"));
    let node = start_tls(tmp.path(), &files, &["--htpasswd", users.to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{}/v2/", node.port);
    let ca_path = files.ca.to_str().unwrap();
    // HTTP/2 and HTTP/1.1 over TLS, the login checked.
    for version in ["--http2", "--http1.1"] {
        let out = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            version,
            "--cacert",
            ca_path,
            "-u",
            "alice:alice-tls-pw",
            &url,
        ]);
        let said = text(&out);
        let want = if version == "--http2" {
            "2 200"
        } else {
            "1.1 200"
        };
        assert_eq!(said, want, "{version}");
    }
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        ca_path,
        &url,
    ]);
    assert_eq!(text(&out), "401", "no login over TLS");
    // A client that does not trust the CA refuses the node.
    let out = curl(&["-s", "-o", "/dev/null", &url]);
    assert!(!out.status.success());
    // Plain HTTP to the TLS port: told so, in plain HTTP.
    let out = curl(&[
        "-s",
        "-w",
        " %{http_code}",
        &format!("http://127.0.0.1:{}/v2/", node.port),
    ]);
    let said = text(&out);
    assert!(
        said.contains("client sent an HTTP request to an HTTPS server"),
        "{said}"
    );
    assert!(said.ends_with(" 400"), "{said}");

    // skopeo pushes and pulls over TLS with the CA in its cert dir.
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    ca.write(&certs.join("ca.crt"));
    let certs = certs.to_str().unwrap();
    let src = format!("oci:{}:base", corpus_dir().display());
    let dest = format!("docker://{}/tls/base:v1", node.host());
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-cert-dir",
            certs,
            "--dest-creds",
        ])
        .args(["alice:alice-tls-pw", &src, &dest])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo push over tls: {}", text(&out));
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "inspect",
            "--cert-dir",
            certs,
            "--creds",
        ])
        .args(["alice:alice-tls-pw", &dest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect over tls: {}",
        text(&out)
    );

    // A certificate from another CA replaces the files: new connections get it.
    let other = Ca::new("strata test ca 2");
    let (cert, key) = other.issue(&["localhost", "127.0.0.1"]);
    write_private(&files.key, &key);
    std::fs::write(&files.cert, cert).unwrap();
    let other_ca = tmp.path().join("ca2.crt");
    other.write(&other_ca);
    let other_ca = other_ca.to_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            other_ca,
            "-u",
            "alice:alice-tls-pw",
            &url,
        ]);
        if text(&out) == "200" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = curl(&["-s", "-o", "/dev/null", "--cacert", ca_path, &url]);
    assert!(
        !out.status.success(),
        "the old certificate is no longer served"
    );
}

#[test]
fn with_a_client_ca_only_clients_with_its_certificates_get_in() {
    let test = "with_a_client_ca_only_clients_with_its_certificates_get_in";
    if missing_tool(test, "curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("strata test ca");
    let files = server_files(tmp.path(), &ca);
    let clients = Ca::new("strata clients");
    let client_ca = tmp.path().join("clients.crt");
    clients.write(&client_ca);
    let (client_cert, client_key) = clients.issue(&["client.test"]);
    let client_crt = tmp.path().join("client.crt");
    std::fs::write(&client_crt, client_cert).unwrap();
    let client_key_path = tmp.path().join("client.key");
    write_private(&client_key_path, &client_key);
    let (stranger_cert, stranger_key) = Ca::new("someone else").issue(&["stranger.test"]);
    let stranger_crt = tmp.path().join("stranger.crt");
    std::fs::write(&stranger_crt, stranger_cert).unwrap();
    let stranger_key_path = tmp.path().join("stranger.key");
    write_private(&stranger_key_path, &stranger_key);
    let node = start_tls(
        tmp.path(),
        &files,
        &["--tls-client-ca", client_ca.to_str().unwrap()],
    );
    let url = format!("https://127.0.0.1:{}/v2/", node.port);
    let ca_path = files.ca.to_str().unwrap();
    let status = |extra: &[&str]| {
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca_path,
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        text(&curl(&args))
    };
    assert_eq!(
        status(&[
            "--cert",
            client_crt.to_str().unwrap(),
            "--key",
            client_key_path.to_str().unwrap()
        ]),
        "200"
    );
    assert_eq!(status(&[]), "000", "no client certificate: no connection");
    assert_eq!(
        status(&[
            "--cert",
            stranger_crt.to_str().unwrap(),
            "--key",
            stranger_key_path.to_str().unwrap()
        ]),
        "000",
        "a certificate of another CA"
    );
}

#[test]
fn a_key_others_can_read_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("strata test ca");
    let files = server_files(tmp.path(), &ca);
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--tls-cert", files.cert.to_str().unwrap(), "--tls-key"])
        .arg(&files.key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .args(["--tls-cert", files.cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--tls-key"), "{}", text(&out));
}

#[test]
fn podman_and_containerd_sign_in_over_tls() {
    let test = "podman_and_containerd_sign_in_over_tls";
    if missing_tool(test, "skopeo") || missing_tool(test, "htpasswd") {
        return;
    }
    let podman_ok = !missing_tool(test, "podman") && !missing_root(test);
    let ctr_ok = !missing_containerd_setup(test);
    let tmp = tempfile::Builder::new()
        .prefix("tlsc")
        .tempdir_in("/tmp")
        .unwrap();
    let ca = Ca::new("strata test ca");
    let files = server_files(tmp.path(), &ca);
    let users = tmp.path().join("htpasswd");
    write_private(&users, &(htpasswd_line("alice", "alice-tls-pw") + "\n"));
    let node = start_tls(tmp.path(), &files, &["--htpasswd", users.to_str().unwrap()]);
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    ca.write(&certs.join("ca.crt"));
    let certs_s = certs.to_str().unwrap();
    let image = format!("{}/tls/base:v1", node.host());
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-cert-dir",
            certs_s,
            "--dest-creds",
        ])
        .args([
            "alice:alice-tls-pw",
            &format!("oci:{}:base", corpus_dir().display()),
        ])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo push over tls: {}", text(&out));
    let want = index_digest(&corpus_dir(), "base");

    if podman_ok {
        let root = tmp.path().join("root");
        let runroot = tmp.path().join("runroot");
        let authfile = tmp.path().join("auth.json");
        let podman = |args: &[&str], stdin: Option<&str>| {
            let mut c = podman_command(&root, &runroot);
            c.args(args);
            match stdin {
                Some(input) => {
                    use std::io::Write;
                    let mut child = c
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(input.as_bytes())
                        .unwrap();
                    child.wait_with_output().unwrap()
                }
                None => c.output().unwrap(),
            }
        };
        let auth = authfile.to_str().unwrap();
        let login = |password: &str| {
            podman(
                &[
                    "login",
                    "--cert-dir",
                    certs_s,
                    "--authfile",
                    auth,
                    "--username",
                    "alice",
                    "--password-stdin",
                    &node.host(),
                ],
                Some(&format!("{password}\n")),
            )
        };
        let out = login("not-alices-password");
        assert!(!out.status.success(), "podman login with a wrong password");
        let out = login("alice-tls-pw");
        assert!(out.status.success(), "podman login: {}", text(&out));
        let out = podman(
            &["pull", "--cert-dir", certs_s, "--authfile", auth, &image],
            None,
        );
        assert!(out.status.success(), "podman pull: {}", text(&out));
        let out = podman(
            &["image", "inspect", "--format", "{{.Digest}}", &image],
            None,
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
        let copy = format!("{}/tls/copy:v1", node.host());
        let out = podman(&["tag", &image, &copy], None);
        assert!(out.status.success(), "podman tag: {}", text(&out));
        let out = podman(
            &["push", "--cert-dir", certs_s, "--authfile", auth, &copy],
            None,
        );
        assert!(out.status.success(), "podman push: {}", text(&out));
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "inspect",
                "--cert-dir",
                certs_s,
                "--creds",
            ])
            .args(["alice:alice-tls-pw", &format!("docker://{copy}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the image podman pushed: {}",
            text(&out)
        );
    }

    if ctr_ok {
        // containerd trusts the test CA through the hosts.toml of the node's host.
        let hosts = tmp.path().join("hosts");
        let dir = hosts.join(node.host());
        std::fs::create_dir_all(&dir).unwrap();
        let server = format!("https://{}", node.host());
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"{server}\"\n\n[host.\"{server}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                files.ca.display()
            ),
        )
        .unwrap();
        let hosts = hosts.to_str().unwrap().to_string();
        let image = image.clone();
        let want = want.clone();
        with_containerd(tmp.path(), move |sock| {
            let pull = |user: &str| {
                Command::new("ctr")
                    .args(["--address", sock, "images", "pull", "--hosts-dir", &hosts])
                    .args(["--user", user, "--snapshotter", "native", &image])
                    .output()
                    .unwrap()
            };
            let out = pull("alice:wrong");
            assert!(!out.status.success(), "ctr with a wrong password");
            let out = pull("alice:alice-tls-pw");
            assert!(out.status.success(), "ctr pull over tls: {}", text(&out));
            let list = run(Command::new("ctr").args(["--address", sock, "images", "ls"]));
            assert!(
                list.contains(&want),
                "containerd stored another digest: {list}"
            );
        });
    }
}
