//! A node with sign-in and an access policy, driven by real clients (skopeo, curl).

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{corpus_dir, missing_tool, StrataNode};

/// The example policy of `deploy/`.
const POLICY: &str = include_str!("../../../deploy/access-policy.toml");

const USERS: [(&str, &str); 3] = [
    ("alice", "alice-secret-1"),
    ("carol", "carol-secret-2"),
    ("admin", "admin-secret-3"),
];

fn write_users(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (user, password) in USERS {
        text.push_str(&support::htpasswd_line(user, password));
        text.push('\n');
    }
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap()
}

/// skopeo pushes the corpus image `base` to `repo` on `node` as `creds` (`USER:PASSWORD`).
fn push(node: &StrataNode, creds: &str, repo: &str) -> Output {
    let src = format!("oci:{}:base", corpus_dir().display());
    let dest = format!("docker://{}/{repo}:v1", node.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &src,
        &dest,
    ])
}

/// skopeo inspects `repo` on `node` as `creds`, or without credentials.
fn inspect(node: &StrataNode, creds: Option<&str>, repo: &str) -> Output {
    let dest = format!("docker://{}/{repo}:v1", node.host());
    match creds {
        Some(c) => skopeo(&["inspect", "--tls-verify=false", "--creds", c, &dest]),
        None => skopeo(&["inspect", "--tls-verify=false", &dest]),
    }
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn curl_status(url: &str, user: Option<&str>) -> String {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    String::from_utf8(c.arg(url).output().unwrap().stdout).unwrap()
}

#[test]
fn skopeo_signs_in_and_each_user_gets_what_the_policy_says() {
    let test = "skopeo_signs_in_and_each_user_gets_what_the_policy_says";
    if missing_tool(test, "skopeo") || missing_tool(test, "htpasswd") || missing_tool(test, "curl")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let users = write_users(tmp.path());
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let node = StrataNode::start_logging(
        &tmp.path().join("data"),
        0,
        &[
            "--htpasswd",
            users.to_str().unwrap(),
            "--access-policy",
            policy.to_str().unwrap(),
            "--admin-users",
            "admin",
        ],
    );
    let dest = |repo: &str| format!("docker://{}/{repo}:v1", node.host());
    let creds = |i: usize| format!("{}:{}", USERS[i].0, USERS[i].1);

    // alice pushes under team/.
    let out = push(&node, &creds(0), "team/app");
    assert!(out.status.success(), "alice's push: {}", said(&out));
    // A wrong password, and no password: refused.
    let out = push(&node, "alice:not-her-password", "team/app2");
    assert!(!out.status.success());
    assert!(
        said(&out).contains("401") || said(&out).to_lowercase().contains("unauthorized"),
        "{}",
        said(&out)
    );
    let out = inspect(&node, None, "team/app");
    assert!(!out.status.success(), "anonymous inspect: {}", said(&out));
    // carol may read team/readonly only, and push nowhere.
    let out = push(&node, &creds(1), "team/readonly");
    assert!(!out.status.success(), "carol pushed: {}", said(&out));
    assert!(
        said(&out).to_lowercase().contains("denied"),
        "{}",
        said(&out)
    );
    let out = push(&node, &creds(2), "team/readonly");
    assert!(out.status.success(), "admin's push: {}", said(&out));
    let out = inspect(&node, Some(&creds(1)), "team/readonly");
    assert!(
        out.status.success(),
        "carol reads team/readonly: {}",
        said(&out)
    );
    let out = inspect(&node, Some(&creds(1)), "team/app");
    assert!(!out.status.success(), "carol read team/app: {}", said(&out));
    // alice pulls what she pushed.
    let pulled = tmp.path().join("pulled");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(0),
        &dest("team/app"),
        &format!("oci:{}:base", pulled.display()),
    ]);
    assert!(out.status.success(), "alice's pull: {}", said(&out));

    // Admin endpoints: administrators only.
    assert_eq!(curl_status(&node.url("/metrics"), None), "401");
    assert_eq!(curl_status(&node.url("/metrics"), Some(&creds(0))), "403");
    assert_eq!(curl_status(&node.url("/metrics"), Some(&creds(2))), "200");

    // No password reaches the log.
    let log = std::fs::read_to_string(node.data_dir.with_extension("log")).unwrap();
    for (_, password) in USERS {
        assert!(!log.contains(password), "a password in the log");
    }
    assert!(!log.contains("not-her-password"));
}

#[test]
fn a_node_refuses_to_start_on_a_users_file_others_can_read_or_a_broken_policy() {
    let test = "a_node_refuses_to_start_on_a_users_file_others_can_read_or_a_broken_policy";
    if missing_tool(test, "htpasswd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let users = write_users(tmp.path());
    let start = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join("data"))
            .args(extra)
            .output()
            .unwrap()
    };
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = start(&["--htpasswd", users.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(said(&out).contains("chmod 600"), "{}", said(&out));
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nrepositories = [\"x\"]\nusers = [\"a\"]\nallow = [\"read\"]\n",
    )
    .unwrap();
    let out = start(&[
        "--htpasswd",
        users.to_str().unwrap(),
        "--access-policy",
        policy.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(said(&out).contains("unknown action"), "{}", said(&out));
    // Hashes are never shown in an error.
    let out = start(&[
        "--htpasswd",
        users.to_str().unwrap(),
        "--token-key",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    assert!(!said(&out).contains("$2y$"), "{}", said(&out));
}

#[test]
fn skopeo_follows_the_token_flow_of_the_node_s_own_endpoint() {
    let test = "skopeo_follows_the_token_flow_of_the_node_s_own_endpoint";
    if missing_tool(test, "skopeo") || missing_tool(test, "htpasswd") || missing_tool(test, "curl")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let users = write_users(tmp.path());
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let key = tmp.path().join("token.pem");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The realm names the node's own address, so the port is chosen first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let realm = format!("http://127.0.0.1:{port}/strata/v1/token");
    let node = StrataNode::start_logging(
        &tmp.path().join("data"),
        port,
        &[
            "--htpasswd",
            users.to_str().unwrap(),
            "--access-policy",
            policy.to_str().unwrap(),
            "--token-realm",
            &realm,
            "--token-service",
            "strata-test",
            "--token-key",
            key.to_str().unwrap(),
            "--admin-users",
            "admin",
            "--log-format",
            "json",
        ],
    );
    // A challenge names the realm and the scope.
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .arg(node.url("/v2/team/app/manifests/v1"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains(&format!("bearer realm=\"{realm}\"")),
        "{head}"
    );
    assert!(
        head.contains("scope=\"repository:team/app:pull\""),
        "{head}"
    );

    let creds = |i: usize| format!("{}:{}", USERS[i].0, USERS[i].1);
    let out = push(&node, &creds(0), "team/app");
    assert!(
        out.status.success(),
        "alice's push with a token: {}",
        said(&out)
    );
    let out = push(&node, &creds(1), "team/app");
    assert!(
        !out.status.success(),
        "carol's token does not carry push: {}",
        said(&out)
    );
    let out = inspect(&node, Some(&creds(0)), "team/app");
    assert!(
        out.status.success(),
        "alice's pull with a token: {}",
        said(&out)
    );
    let out = inspect(&node, Some("alice:wrong"), "team/app");
    assert!(!out.status.success(), "no token for a wrong password");

    // Tokens as curl gets them (GET with a login, and OAuth2's POST form), used well and
    // badly; every answer's body is kept to be searched.
    let curl = |args: &[&str]| -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let mut bodies = Vec::new();
    let scope = "service=strata-test&scope=repository:team/app:pull,push";
    let (code, body) = curl(&[
        "-u",
        &creds(0),
        &node.url(&format!("/strata/v1/token?{scope}")),
    ]);
    assert_eq!(code, "200", "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = got["token"].as_str().unwrap().to_string();
    let form = format!(
        "grant_type=password&username=alice&password={}&{scope}",
        USERS[0].1
    );
    let (code, body) = curl(&["-d", &form, &node.url("/strata/v1/token")]);
    assert_eq!(code, "200", "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let posted = got["access_token"].as_str().unwrap().to_string();
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let (code, _) = curl(&["-H", &bearer(&token), &node.url("/v2/team/app/tags/list")]);
    assert_eq!(code, "200");
    let (code, _) = curl(&["-H", &bearer(&posted), &node.url("/v2/team/app/tags/list")]);
    assert_eq!(code, "200");
    // A token for one repository on another: 403 DENIED; an altered one: 401.
    let (code, body) = curl(&["-H", &bearer(&token), &node.url("/v2/team/other/tags/list")]);
    assert_eq!(code, "403", "{body}");
    bodies.push(body);
    let altered = format!("{}x", &token[..token.len() - 1]);
    let (code, body) = curl(&["-H", &bearer(&altered), &node.url("/v2/team/app/tags/list")]);
    assert_eq!(code, "401", "{body}");
    bodies.push(body);
    for bad in [
        format!("-uwrong:{}", USERS[0].1),
        format!("-ualice:{}x", USERS[0].1),
    ] {
        let (code, body) = curl(&[&bad, &node.url(&format!("/strata/v1/token?{scope}"))]);
        assert_eq!(code, "401", "{body}");
        bodies.push(body);
    }
    let (code, body) = curl(&[
        "-d",
        &format!(
            "grant_type=password&username=alice&password={}x",
            USERS[0].1
        ),
        &node.url("/strata/v1/token"),
    ]);
    assert_eq!(code, "401", "{body}");
    bodies.push(body);
    // /metrics: on the admin listener, and on the API's for the administrator.
    let (code, metrics) = curl(&[&node.admin_url("/metrics")]);
    assert_eq!(code, "200");
    let (code, metrics_api) = curl(&["-u", &creds(2), &node.url("/metrics")]);
    assert_eq!(code, "200");
    let (code, body) = curl(&["-H", &bearer(&token), &node.url("/metrics")]);
    assert_eq!(code, "403", "a token is no administrator: {body}");
    bodies.push(body);

    // The JSON log, the metrics and every error body hold no password and no token.
    let log = std::fs::read_to_string(node.data_dir.with_extension("log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 20, "the debug log is written");
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }
    for (what, text) in [
        ("log", &log),
        ("metrics", &metrics),
        ("metrics via the API", &metrics_api),
    ]
    .into_iter()
    .chain(bodies.iter().map(|b| ("an error body", b)))
    {
        for (_, password) in USERS {
            assert!(!text.contains(password), "a password in {what}");
        }
        for t in [&token, &posted, &altered] {
            assert!(!text.contains(t.as_str()), "a token in {what}");
        }
        assert!(!text.contains("eyJ"), "a token's start in {what}");
    }
}
