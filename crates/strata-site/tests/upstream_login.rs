//! A private upstream: the mirror logs in with the login it was given, by the bearer token
//! flow (a token asked for with the login, as Docker Hub and Harbor want) or by basic auth
//! (the CNCF registry with htpasswd), and reuses what worked instead of paying a 401 and a
//! token round trip for every blob. Without the login, or with a wrong one, it gets a clear
//! error that never holds the password.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::{Upstream, UpstreamBlob};
use strata_site::{Credentials, HttpUpstream, Login, UpstreamRoute};

const USER: &str = "alice";
const PASSWORD: &str = "pw-7f3c9e-never-printed";
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Bearer,
    Basic,
}

#[derive(Default)]
struct Counts {
    /// Answers 401 sent by the registry API.
    challenges: usize,
    /// Tokens handed out, by token: the repository it is for.
    tokens: HashMap<String, String>,
    /// Token requests refused (no or a wrong login).
    token_refusals: usize,
}

#[derive(Clone)]
struct Private {
    scheme: Scheme,
    realm: String,
    counts: Arc<Mutex<Counts>>,
}

fn basic_ok(headers: &HeaderMap) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"))
}

async fn token(
    State(p): State<Private>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut counts = p.counts.lock().unwrap();
    if !basic_ok(&headers) {
        counts.token_refusals += 1;
        return (StatusCode::UNAUTHORIZED, "login needed").into_response();
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    let repo = scope
        .strip_prefix("repository:")
        .and_then(|s| s.strip_suffix(":pull"))
        .unwrap_or_default()
        .to_string();
    let token = format!("tok-{}", counts.tokens.len());
    counts.tokens.insert(token.clone(), repo);
    axum::Json(serde_json::json!({ "token": token, "expires_in": 300 })).into_response()
}

async fn api(State(p): State<Private>, Path(rest): Path<String>, headers: HeaderMap) -> Response {
    let (repo, kind) = ["/manifests/", "/blobs/"]
        .iter()
        .find_map(|k| rest.rsplit_once(k).map(|(r, _)| (r.to_string(), *k)))
        .unwrap();
    let mut counts = p.counts.lock().unwrap();
    let allowed = match p.scheme {
        Scheme::Basic => basic_ok(&headers),
        Scheme::Bearer => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| counts.tokens.get(t) == Some(&repo)),
    };
    if !allowed {
        counts.challenges += 1;
        let challenge = match p.scheme {
            Scheme::Basic => "Basic realm=\"private\"".to_string(),
            Scheme::Bearer => format!(
                "Bearer realm=\"{}\",service=\"private\",scope=\"repository:{repo}:pull\"",
                p.realm
            ),
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        )
            .into_response();
    }
    if kind == "/manifests/" {
        (
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            MANIFEST,
        )
            .into_response()
    } else {
        format!("blob of {repo}").into_response()
    }
}

async fn private(scheme: Scheme) -> (String, Arc<Mutex<Counts>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(Mutex::new(Counts::default()));
    let state = Private {
        scheme,
        realm: format!("{url}/token"),
        counts: counts.clone(),
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .route("/v2/{*rest}", axum::routing::get(api))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, counts)
}

fn upstream(url: &str, login: Option<Login>) -> HttpUpstream {
    let mut credentials = Credentials::none();
    if let Some(l) = login {
        credentials.insert(url, l);
    }
    HttpUpstream::new(vec![UpstreamRoute {
        namespace: None,
        url: url.to_string(),
    }])
    .with_credentials(credentials)
}

async fn read_blob(up: &HttpUpstream, repo: &RepoName, n: u8) -> Vec<u8> {
    let digest = Digest::sha256(&[n]);
    match up.blob(repo, &digest).await.unwrap().unwrap() {
        UpstreamBlob::Stream { mut body, .. } => {
            use futures_util::StreamExt;
            let mut v = Vec::new();
            while let Some(b) = body.next().await {
                v.extend_from_slice(&b.unwrap());
            }
            v
        }
        UpstreamBlob::Filling(_) => panic!("a plain upstream streams"),
    }
}

#[tokio::test]
async fn a_token_is_asked_for_with_the_login_once_per_repository_and_reused() {
    let (url, counts) = private(Scheme::Bearer).await;
    let up = upstream(&url, Some(Login::new(USER, PASSWORD)));
    let app: RepoName = "team/app".parse().unwrap();
    let tag: Reference = "v1".parse().unwrap();

    let m = up.manifest(&app, &tag).await.unwrap().unwrap();
    assert_eq!(&m.bytes[..], MANIFEST.as_bytes());
    for n in 0..5 {
        assert_eq!(read_blob(&up, &app, n).await, b"blob of team/app");
    }
    {
        let c = counts.lock().unwrap();
        assert_eq!(
            c.tokens.len(),
            1,
            "one token for six requests to one repository"
        );
        assert_eq!(c.challenges, 1, "one 401, on the first request");
    }
    // Another repository needs its own scope: one more token, then reused too.
    let db: RepoName = "team/db".parse().unwrap();
    for n in 0..3 {
        assert_eq!(read_blob(&up, &db, n).await, b"blob of team/db");
    }
    assert_eq!(
        up.blob_size(&db, &Digest::sha256(&[9])).await.unwrap(),
        Some(15)
    );
    {
        let c = counts.lock().unwrap();
        assert_eq!(c.tokens.len(), 2);
        assert_eq!(c.challenges, 2);
    }
    // The registry revokes every token: the next request is refused once, a new token is
    // asked for, and the pull goes on.
    counts.lock().unwrap().tokens.clear();
    assert_eq!(read_blob(&up, &app, 7).await, b"blob of team/app");
    let c = counts.lock().unwrap();
    assert_eq!(
        c.tokens.len(),
        1,
        "a fresh token after the old one was refused"
    );
    assert_eq!(c.challenges, 3);
    assert_eq!(c.token_refusals, 0);
}

#[tokio::test]
async fn a_basic_login_is_sent_from_the_second_request_on() {
    let (url, counts) = private(Scheme::Basic).await;
    let up = upstream(&url, Some(Login::new(USER, PASSWORD)));
    let app: RepoName = "team/app".parse().unwrap();
    assert!(up
        .manifest(&app, &"v1".parse().unwrap())
        .await
        .unwrap()
        .is_some());
    for n in 0..4 {
        assert_eq!(read_blob(&up, &app, n).await, b"blob of team/app");
    }
    assert_eq!(counts.lock().unwrap().challenges, 1);
}

#[tokio::test]
async fn without_the_login_or_with_a_wrong_one_the_error_is_clear_and_holds_no_password() {
    for scheme in [Scheme::Bearer, Scheme::Basic] {
        let (url, counts) = private(scheme).await;
        let app: RepoName = "team/app".parse().unwrap();
        let tag: Reference = "v1".parse().unwrap();
        let wrong = "wrong-pw-51d2a0";
        for login in [None, Some(Login::new(USER, wrong))] {
            let up = upstream(&url, login.clone());
            let e = up.manifest(&app, &tag).await.unwrap_err().0;
            assert!(
                e.contains("401") || e.contains("refused a token"),
                "a refusal the user can read: {e}"
            );
            assert!(!e.contains(wrong) && !e.contains(PASSWORD), "{e}");
            let debug = format!("{up:?}");
            assert!(
                !debug.contains(wrong) && !debug.contains(PASSWORD),
                "{debug}"
            );
            // Nothing that failed is remembered: a second try fails the same way.
            assert!(up.manifest(&app, &tag).await.is_err());
        }
        if scheme == Scheme::Bearer {
            assert!(counts.lock().unwrap().token_refusals >= 4);
        }
    }
}

#[tokio::test]
async fn a_login_is_sent_only_to_its_own_host() {
    // Two private registries; the mirror holds a login for the first only.
    let (first, _) = private(Scheme::Basic).await;
    let (second, second_counts) = private(Scheme::Basic).await;
    let mut credentials = Credentials::none();
    credentials.insert(&first, Login::new(USER, PASSWORD));
    let up = HttpUpstream::new(vec![
        format!("one={first}").parse().unwrap(),
        format!("two={second}").parse().unwrap(),
    ])
    .with_credentials(credentials);
    let tag: Reference = "v1".parse().unwrap();
    assert!(up
        .manifest(&"one/team/app".parse().unwrap(), &tag)
        .await
        .unwrap()
        .is_some());
    let e = up
        .manifest(&"two/team/app".parse().unwrap(), &tag)
        .await
        .unwrap_err();
    assert!(e.0.contains("401"), "{}", e.0);
    assert_eq!(second_counts.lock().unwrap().challenges, 1);
}
