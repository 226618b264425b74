//! HTTP handlers: the OCI Distribution API v1.1 over axum.
//!
//! Layer rule: handlers parse requests and render responses; every decision about content
//! belongs to [`crate::services`]. Repository names contain slashes, so `/v2/...` paths are
//! parsed by [`strata_oci::Route`] in one fallback handler rather than by the router.

mod admin;
pub mod auth;
mod blobs;
mod body;
mod error;
mod listing;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use strata_auth::Action;
use strata_oci::Route;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::auth::{Auth, Need};
use crate::metrics::{self, Metrics};
use crate::services::Registry;
pub use error::ApiError;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    /// Authentication and authorization; `None`: every request is served (plain mode).
    pub auth: Option<Arc<Auth>>,
    /// Whether, without sign-in, the API's listener serves the admin routes to anyone
    /// (the library's plain mode) or to no one (a node: they are on its admin listener).
    pub admin_without_sign_in: bool,
}

/// The node's HTTP application: the distribution API, `/metrics` and the admin endpoints,
/// open to every caller.
pub fn app(registry: Registry) -> Router {
    let state = AppState {
        registry,
        metrics: Arc::new(Metrics::new()),
        auth: None,
        admin_without_sign_in: true,
    };
    api_router(&state, Router::new(), Router::new())
}

/// The distribution API with `auth` deciding who may do what (`None`: everyone
/// everything, admin routes included).
pub fn app_with(registry: Registry, auth: Option<Arc<Auth>>) -> Router {
    let state = AppState {
        registry,
        metrics: Arc::new(Metrics::new()),
        auth,
        admin_without_sign_in: true,
    };
    api_router(&state, Router::new(), Router::new())
}

/// Routes a node serves beside the distribution API (its site's).
#[derive(Debug, Default)]
pub struct ExtraRoutes {
    /// Served on the API's listener; they check their callers themselves.
    pub api: Router,
    /// Administrative: on the API's listener for administrators only, and on the admin
    /// listener.
    pub admin: Router,
}

/// A node's two applications.
#[derive(Debug)]
pub struct NodeApps {
    /// The distribution API. The admin routes on it answer administrators when the node
    /// signs callers in, and no one otherwise.
    pub api: Router,
    /// `/metrics` and the admin API for whoever reaches the admin listener (its address
    /// is the access control: loopback or a management network).
    pub admin: Router,
}

/// The applications of a node: `auth` checks every caller of the API (`None`: anyone may
/// pull and push), and the admin routes are never open to anonymous callers of the API's
/// listener.
pub fn node_apps(registry: Registry, auth: Option<Arc<Auth>>, extra: ExtraRoutes) -> NodeApps {
    let state = AppState {
        registry,
        metrics: Arc::new(Metrics::new()),
        auth,
        admin_without_sign_in: false,
    };
    let admin = admin_routes(&state)
        .merge(extra.admin.clone())
        .layer(TraceLayer::new_for_http());
    NodeApps {
        api: api_router(&state, extra.api, extra.admin),
        admin,
    }
}

fn admin_routes(state: &AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/strata/v1/gc", post(admin::gc))
        .route("/strata/v1/convert", post(admin::convert))
        .with_state(state.clone())
}

fn api_router(state: &AppState, extra_api: Router, extra_admin: Router) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let admin = admin_routes(state)
        .merge(extra_admin)
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_only));
    Router::new()
        .route("/strata/v1/token", get(token).post(token_form))
        .fallback(dispatch)
        .with_state(state.clone())
        .merge(admin)
        .merge(extra_api)
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Result<Query, ApiError> {
    serde_urlencoded::from_str(q.unwrap_or("")).map_err(|e| {
        ApiError::new(
            strata_oci::ErrorCode::Unsupported,
            format!("invalid query string: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Build a response with a status, headers and body.
fn respond(status: StatusCode, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    resp
}

/// Lets only administrators through when the node authenticates.
async fn admin_only(State(st): State<AppState>, req: Request, next: middleware::Next) -> Response {
    match &st.auth {
        None if st.admin_without_sign_in => {}
        None => {
            return ApiError::new(
                strata_oci::ErrorCode::Denied,
                "the admin api is served on --admin-listen, or here to --admin-users once \
                 --htpasswd signs callers in",
            )
            .into_response()
        }
        Some(auth) => {
            let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
            let checked = match auth.authenticate(req.headers(), peer).await {
                Ok(who) => auth.authorize(&who, Need::Admin),
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                return e.into_response();
            }
        }
    }
    next.run(req).await
}

/// The node's token endpoint.
async fn token(State(st): State<AppState>, req: Request) -> Response {
    match &st.auth {
        Some(auth) => {
            auth.token(
                req.headers(),
                req.uri().query(),
                req.extensions().get::<ConnectInfo<SocketAddr>>(),
            )
            .await
        }
        None => ApiError::unsupported()
            .with_status(StatusCode::NOT_FOUND)
            .into_response(),
    }
}

/// The node's token endpoint, OAuth2's way (a form with a password grant).
async fn token_form(State(st): State<AppState>, req: Request) -> Response {
    let Some(auth) = &st.auth else {
        return ApiError::unsupported()
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().cloned();
    let Ok(form) = axum::body::to_bytes(req.into_body(), 64 << 10).await else {
        return ApiError::new(
            strata_oci::ErrorCode::Unsupported,
            "token request too large",
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .into_response();
    };
    auth.token_form(&form, peer.as_ref()).await
}

/// What a request on `route` with `method` needs of its caller.
fn need<'a>(method: &Method, route: &'a Route) -> Need<'a> {
    match route {
        Route::Base => Need::Base,
        Route::Catalog => Need::Listing,
        Route::Tags(n) | Route::Referrers(n, _) => Need::Repo(n.as_str(), Action::Pull),
        Route::Manifest(n, _) | Route::Blob(n, _) => {
            let action = if method == Method::DELETE {
                Action::Delete
            } else if method == Method::PUT {
                Action::Push
            } else {
                Action::Pull
            };
            Need::Repo(n.as_str(), action)
        }
        Route::UploadStart(n) | Route::Upload(n, _) => Need::Repo(n.as_str(), Action::Push),
    }
}

async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    match route(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(st: AppState, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let route = match parts.extensions.remove::<metrics::ParsedRoute>() {
        Some(parsed) => parsed.0?,
        None => Route::parse(parts.uri.path())?,
    };
    let mut q = parse_query(parts.uri.query())?;
    // A mirror's namespace (`?ns=docker.io`, as containerd sends it) names the repository
    // as the node stores it: permissions are decided on that name, not the client's.
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    let route = match (route, q.get("ns").map(String::as_str).filter(|_| reads)) {
        (Route::Manifest(n, r), ns @ Some(_)) => {
            Route::Manifest(st.registry.name_in_namespace(ns, n), r)
        }
        (Route::Blob(n, d), ns @ Some(_)) => Route::Blob(st.registry.name_in_namespace(ns, n), d),
        (route, _) => route,
    };
    let who = match &st.auth {
        Some(auth) => {
            let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
            let who = auth.authenticate(&parts.headers, peer).await?;
            auth.authorize(&who, need(&parts.method, &route))?;
            // A mount from a repository the caller may not pull from is an upload like
            // any other (the registry may decline a mount).
            if let (Route::UploadStart(_), Some(from)) = (&route, q.get("from")) {
                if !auth.allowed(&who, from).contains(Action::Pull) {
                    q.remove("mount");
                    q.remove("from");
                }
            }
            Some(who)
        }
        None => None,
    };
    let h = &parts.headers;
    let head = parts.method == Method::HEAD;
    match (parts.method.clone(), route) {
        (Method::GET | Method::HEAD, Route::Base) => Ok(respond(
            StatusCode::OK,
            &[("content-type", "application/json".into())],
            Body::from("{}"),
        )),
        (Method::GET, Route::Catalog) => {
            let visible = |repo: &str| match (&st.auth, &who) {
                (Some(auth), Some(who)) => !auth.allowed(who, repo).is_empty(),
                _ => true,
            };
            listing::catalog(&st, &q, &visible)
        }
        (Method::GET, Route::Tags(n)) => listing::tags(&st, &n, &q),
        (Method::GET, Route::Referrers(n, d)) => listing::referrers(&st, &n, &d, &q),
        (Method::GET | Method::HEAD, Route::Manifest(n, r)) => {
            manifests::get(&st, &n, &r, head).await
        }
        (Method::PUT, Route::Manifest(n, r)) => {
            manifests::put(&st, &n, &r, parts.uri.query(), h, body).await
        }
        (Method::DELETE, Route::Manifest(n, r)) => manifests::delete(&st, &n, &r).await,
        (Method::GET | Method::HEAD, Route::Blob(n, d)) => blobs::get(&st, &n, &d, h, head).await,
        (Method::DELETE, Route::Blob(n, d)) => blobs::delete(&st, &n, &d).await,
        (Method::POST, Route::UploadStart(n)) => uploads::start(&st, &n, &q, body).await,
        (Method::GET, Route::Upload(n, id)) => uploads::status(&st, &n, &id).await,
        (Method::PATCH, Route::Upload(n, id)) => uploads::patch(&st, &n, &id, h, body).await,
        (Method::PUT, Route::Upload(n, id)) => uploads::put(&st, &n, &id, &q, h, body).await,
        (Method::DELETE, Route::Upload(n, id)) => uploads::cancel(&st, &n, &id).await,
        _ => Err(ApiError::unsupported()),
    }
}
