//! Authentication and per-repository permissions, in process: Basic logins from htpasswd
//! users, the policy's rules, the token flow (the node's own endpoint and its tokens),
//! failed-login limits, the catalog as each caller sees it, and admin endpoints.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use common::Resp;
use strata_auth::token::{Algorithm, Issuer, Verifier};
use strata_auth::{Policy, Users};
use strata_oci::Digest;
use strata_registry::http::auth::{Auth, Tokens, MAX_FAILURES};
use strata_registry::Registry;
use strata_store::{MemBlobStore, MemMetaStore};

/// The example policy of `deploy/`.
const POLICY: &str = include_str!("../../../deploy/access-policy.toml");

const SERVICE: &str = "strata-test";

struct Node {
    app: axum::Router,
    public_key: String,
}

fn users() -> Users {
    let mut text = String::new();
    for (user, password) in [
        ("alice", "alice-pw"),
        ("carol", "carol-pw"),
        ("admin", "admin-pw"),
    ] {
        text.push_str(&format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()));
    }
    Users::parse(&text, [3; 32], Duration::from_secs(60)).unwrap()
}

fn node(with_tokens: bool) -> Node {
    let registry = Registry::new(Arc::new(MemBlobStore::new()), Arc::new(MemMetaStore::new()));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public_key = key.public_key_pem();
    let tokens = with_tokens.then(|| {
        let issuer = Issuer::es256(key.serialize_pem().as_bytes(), "strata", SERVICE, 300).unwrap();
        let mut verifier = Verifier::new(SERVICE);
        verifier
            .trust("strata", Algorithm::ES256, public_key.as_bytes())
            .unwrap();
        Tokens {
            realm: "https://node.test/strata/v1/token".into(),
            service: SERVICE.into(),
            issuer: Some(issuer),
            verifier,
        }
    });
    let auth = Auth::new(
        Some(users()),
        Policy::from_toml(POLICY).unwrap(),
        tokens,
        ["admin".to_string()].into(),
    );
    Node {
        app: strata_registry::http::app_with(registry, Some(Arc::new(auth))),
        public_key,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Node {
    async fn send_from(
        &self,
        from: &str,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if method == "PUT" && uri.contains("/manifests/") {
            req = req.header("content-type", common::OCI_MANIFEST);
        }
        let mut req = req.body(Body::from(body)).unwrap();
        let peer: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        common::call(&self.app, req).await
    }

    async fn send(&self, method: &str, uri: &str, auth: Option<&str>, body: Vec<u8>) -> Resp {
        self.send_from("10.0.0.1", method, uri, auth, body).await
    }

    /// Pushes a small blob with a monolithic POST+PUT; the final status.
    async fn push_blob(&self, repo: &str, data: &[u8], auth: Option<&str>) -> StatusCode {
        let start = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                auth,
                Vec::new(),
            )
            .await;
        if start.status != StatusCode::ACCEPTED {
            return start.status;
        }
        let location = start.header("location").unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let uri = format!("{location}{sep}digest={}", Digest::sha256(data));
        self.send("PUT", &uri, auth, data.to_vec()).await.status
    }

    async fn push_image(&self, repo: &str, auth: &str) {
        let config = b"{}";
        assert_eq!(
            self.push_blob(repo, config, Some(auth)).await,
            StatusCode::CREATED
        );
        let m = common::image_manifest(&Digest::sha256(config), config.len(), &[], None, None);
        let r = self
            .send("PUT", &format!("/v2/{repo}/manifests/v1"), Some(auth), m)
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn basic_logins_and_the_policy_decide_every_request() {
    let n = node(false);
    // Anonymous: challenged, nothing served.
    let r = n.send("GET", "/v2/", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"strata\""));
    assert_eq!(r.code(), "UNAUTHORIZED");
    let alice = basic("alice", "alice-pw");
    let carol = basic("carol", "carol-pw");
    let admin = basic("admin", "admin-pw");
    assert_eq!(
        n.send("GET", "/v2/", Some(&alice), Vec::new()).await.status,
        StatusCode::OK
    );
    // A wrong password: 401, and the password is nowhere in the answer.
    let r = n
        .send(
            "GET",
            "/v2/",
            Some(&basic("alice", "guessed-pw")),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("guessed-pw"));

    n.push_image("team/app", &alice).await;
    n.push_image("team/readonly", &admin).await;
    n.push_image("other/app", &admin).await;
    n.push_image("public/base", &admin).await;

    // alice: pull and push under team/, nothing elsewhere, no delete.
    assert_eq!(
        n.send(
            "GET",
            "/v2/team/readonly/manifests/v1",
            Some(&alice),
            Vec::new()
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = n
        .send(
            "GET",
            "/v2/other/app/manifests/v1",
            Some(&alice),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    assert_eq!(
        n.push_blob("other/app", b"x", Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    let r = n
        .send(
            "DELETE",
            "/v2/team/app/manifests/v1",
            Some(&alice),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // carol: read-only on one repository; her push changes nothing.
    assert_eq!(
        n.send(
            "GET",
            "/v2/team/readonly/manifests/v1",
            Some(&carol),
            Vec::new()
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        n.push_blob("team/readonly", b"carol's", Some(&carol)).await,
        StatusCode::FORBIDDEN
    );
    let r = n
        .send(
            "PUT",
            "/v2/team/readonly/manifests/v2",
            Some(&carol),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = n
        .send(
            "GET",
            "/v2/team/readonly/tags/list",
            Some(&admin),
            Vec::new(),
        )
        .await;
    assert_eq!(
        r.json()["tags"],
        serde_json::json!(["v1"]),
        "nothing pushed"
    );
    assert_eq!(
        n.send("GET", "/v2/team/app/manifests/v1", Some(&carol), Vec::new())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Anonymous on a repository: challenged with the scope a token would need.
    let r = n
        .send("GET", "/v2/public/base/manifests/v1", None, Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The catalog shows each caller only what it may use.
    let catalog = |who: String| {
        let n = &n;
        async move {
            let r = n.send("GET", "/v2/_catalog", Some(&who), Vec::new()).await;
            assert_eq!(r.status, StatusCode::OK);
            r.json()["repositories"].clone()
        }
    };
    assert_eq!(
        catalog(alice.clone()).await,
        serde_json::json!(["public/base", "team/app", "team/readonly"])
    );
    assert_eq!(
        catalog(carol.clone()).await,
        serde_json::json!(["public/base", "team/readonly"])
    );
    assert_eq!(
        catalog(admin.clone()).await,
        serde_json::json!(["other/app", "public/base", "team/app", "team/readonly"])
    );
    // Paginated, the pages hold only visible names too.
    let r = n
        .send("GET", "/v2/_catalog?n=1", Some(&carol), Vec::new())
        .await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["public/base"]));
    assert!(r.header("link").unwrap().contains("last=public%2Fbase"));
    let r = n
        .send(
            "GET",
            "/v2/_catalog?n=1&last=public%2Fbase",
            Some(&carol),
            Vec::new(),
        )
        .await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["team/readonly"])
    );

    // A mount from a repository alice may not read is an ordinary upload (202), never a
    // copy of that repository's blob (201).
    let config = Digest::sha256(b"{}");
    let r = n
        .send(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?mount={config}&from=other/app"),
            Some(&alice),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = n
        .send(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?mount={config}&from=team/readonly"),
            Some(&alice),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "a mount she may read from");

    // Admin endpoints: administrators only.
    let r = n.send("GET", "/metrics", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = n.send("GET", "/metrics", Some(&alice), Vec::new()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = n.send("GET", "/metrics", Some(&admin), Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = n
        .send("POST", "/strata/v1/gc", Some(&carol), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn malformed_credentials_are_refused_clearly() {
    let n = node(false);
    for header in [
        "Basic !!!not-base64",
        "Basic",
        "Bearer",
        "Digest username=alice",
        &format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("no-colon")
        ),
        "Bearer some.token.here",
    ] {
        let r = n.send("GET", "/v2/", Some(header), Vec::new()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(r.code(), "UNAUTHORIZED", "{header:?}");
        assert!(r.header("www-authenticate").is_some());
    }
}

#[tokio::test]
async fn a_burst_of_failed_logins_pauses_that_address_only() {
    let n = node(false);
    let wrong = basic("alice", "wrong");
    for _ in 0..MAX_FAILURES {
        let r = n
            .send_from("10.9.9.9", "GET", "/v2/", Some(&wrong), Vec::new())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits, from that address.
    let right = basic("alice", "alice-pw");
    let r = n
        .send_from("10.9.9.9", "GET", "/v2/", Some(&right), Vec::new())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
    );
    assert!(r.header("retry-after").is_some());
    let r = n
        .send_from("10.9.9.10", "GET", "/v2/", Some(&right), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK, "another address is not paused");
}

#[tokio::test]
async fn tokens_carry_exactly_the_scopes_the_caller_may_have() {
    let n = node(true);
    let alice = basic("alice", "alice-pw");
    let admin = basic("admin", "admin-pw");
    // The challenge sends clients to the token endpoint with the scope they need.
    let r = n
        .send("GET", "/v2/team/app/manifests/v1", None, Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"https://node.test/strata/v1/token\",service=\"strata-test\",scope=\"repository:team/app:pull\""
        )
    );
    let token = |who: String, scope: &'static str| {
        let n = &n;
        async move {
            let r = n
                .send(
                    "GET",
                    &format!("/strata/v1/token?service={SERVICE}&scope={scope}"),
                    Some(&who),
                    Vec::new(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            format!("Bearer {}", r.json()["token"].as_str().unwrap())
        }
    };
    let admin_all = token(admin.clone(), "repository:team/app:pull,push,delete").await;
    n.push_image("team/app", &admin_all).await;
    let admin_other = token(admin.clone(), "repository:other/app:pull,push").await;
    n.push_image("other/app", &admin_other).await;

    // alice asks for pull, push and delete on team/app: she gets pull and push.
    let t = token(alice.clone(), "repository:team/app:pull,push,delete").await;
    assert_eq!(
        n.send("GET", "/v2/team/app/manifests/v1", Some(&t), Vec::new())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        n.push_blob("team/app", b"alice's", Some(&t)).await,
        StatusCode::CREATED
    );
    let r = n
        .send("DELETE", "/v2/team/app/manifests/v1", Some(&t), Vec::new())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    // A token for one repository used on another.
    let r = n
        .send("GET", "/v2/other/app/manifests/v1", Some(&t), Vec::new())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    // Asking for what she may not have gets a token that grants nothing there.
    let t = token(alice.clone(), "repository:other/app:pull").await;
    let r = n
        .send("GET", "/v2/other/app/manifests/v1", Some(&t), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong password gets no token.
    let r = n
        .send(
            "GET",
            &format!("/strata/v1/token?service={SERVICE}&scope=repository:team/app:pull"),
            Some(&basic("alice", "nope")),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // OAuth2's way (containerd's first try): a form with a password grant; the token
    // grants what the policy allows of the scopes asked for, and works.
    let form = |grant: &str, password: &str| {
        format!(
            "grant_type={grant}&username=alice&password={password}&service={SERVICE}\
             &client_id=containerd&scope=repository%3Ateam%2Fapp%3Apull%2Cpush\
             &scope=repository%3Aother%2Fx%3Apull"
        )
        .into_bytes()
    };
    let r = n
        .send(
            "POST",
            "/strata/v1/token",
            None,
            form("password", "alice-pw"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["scope"], "repository:team/app:pull,push");
    let posted = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    assert_eq!(
        n.push_blob("team/app", b"via a posted token", Some(&posted))
            .await,
        StatusCode::CREATED
    );
    let r = n
        .send("POST", "/strata/v1/token", None, form("password", "nope"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&r.body).contains("nope"));
    let r = n
        .send(
            "POST",
            "/strata/v1/token",
            None,
            form("refresh_token", "alice-pw"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    // Forged and expired tokens: 401.
    let forger_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forger = Issuer::es256(
        forger_key.serialize_pem().as_bytes(),
        "strata",
        SERVICE,
        300,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let scope = strata_auth::Scope::parse("repository:team/app:pull").unwrap();
    let forged = forger.issue("alice", &[scope], now, "x").unwrap();
    let r = n
        .send(
            "GET",
            "/v2/team/app/manifests/v1",
            Some(&format!("Bearer {forged}")),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert!(n.public_key.contains("PUBLIC KEY"));
    let r = n
        .send(
            "GET",
            "/v2/team/app/manifests/v1",
            Some(&format!("Bearer {forged}x")),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The node's own key, but long expired.
    let t = token(alice.clone(), "repository:team/app:pull").await;
    let claims = t.split('.').nth(1).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut c: serde_json::Value = serde_json::from_slice(&b64.decode(claims).unwrap()).unwrap();
    c["exp"] = serde_json::json!(now - 3600);
    let parts: Vec<&str> = t.split('.').collect();
    let altered = format!("{}.{}.{}", parts[0], b64.encode(c.to_string()), parts[2]);
    let r = n
        .send(
            "GET",
            "/v2/team/app/manifests/v1",
            Some(&altered),
            Vec::new(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "an altered expiry breaks the signature"
    );
}
