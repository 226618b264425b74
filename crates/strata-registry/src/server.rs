//! The node's HTTP server: accepts connections and serves the API on them, within bounds.
//!
//! A client that connects and never finishes its request head, or a keep-alive connection
//! left idle, is closed after [`ServerLimits::idle_timeout`]. At most
//! [`ServerLimits::max_connections`] are open at once; at the limit, a new connection takes
//! the place of the oldest one that has no request in progress (as nginx reuses idle
//! connections), or else of the one whose request has moved no byte (of its body or of its
//! response) for longest, if that is at least the idle timeout. So neither half-open
//! connections nor requests that stall their body (or never read their response) can keep a
//! legitimate client out; a connection is refused only when every open one is moving bytes.
//! A stalled request is not cut off while there is room (a pull waiting for a mirrored blob
//! moves no byte until the blob is in). Accept errors (out of file descriptors) pause
//! accepting briefly instead of stopping the server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// Concurrent requests on one HTTP/2 connection.
const H2_STREAMS: u32 = 32;
/// How long an accept error (such as "too many open files") pauses accepting.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// How long open connections may finish their requests after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Bounds on the connections a node holds.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A connection with no request in progress (one that has not sent its request head yet,
    /// or an idle keep-alive one) is closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ServerLimits {
    /// Connections that fit in `open_files` file descriptors: two per connection (its
    /// socket and a blob or upload file), after a margin for the node's own files.
    pub fn for_open_files(open_files: u64, idle_timeout: Duration) -> Self {
        let usable = open_files.saturating_sub(128) / 2;
        ServerLimits {
            idle_timeout,
            max_connections: usable.clamp(16, 65_536) as usize,
        }
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Slot {
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// Requests in progress on a connection, when it last had none, and when its requests last
/// moved a byte.
#[derive(Debug)]
struct Activity {
    in_progress: AtomicU64,
    /// Milliseconds since the server started at which the last request ended.
    idle_since_ms: AtomicU64,
    /// Milliseconds since the server started at which a request started or moved a byte.
    moved_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Activity {
            in_progress: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            moved_ms: AtomicU64::new(0),
            epoch,
        };
        a.mark_idle();
        a
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn mark_idle(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
    }

    fn moved(&self) {
        self.moved_ms.store(self.now_ms(), Ordering::Release);
    }

    /// How long the connection's requests have moved no byte.
    fn stalled_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.moved_ms.load(Ordering::Acquire)),
        )
    }

    fn busy(&self) -> bool {
        self.in_progress.load(Ordering::Acquire) > 0
    }

    /// When the connection may be closed for idleness, if it has no request in progress.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + timeout)
    }
}

/// Counts a request from its start until its response body is dropped.
#[derive(Debug)]
struct InProgress(Arc<Activity>);

impl InProgress {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_progress.fetch_add(1, Ordering::AcqRel);
        activity.moved();
        InProgress(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.0.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
        }
    }
}

/// A body that records each frame passed through as progress of its connection: a request
/// body (frames received) or a response body (frames handed to the connection), which also
/// keeps its request counted as in progress until it is dropped.
struct Moving<B> {
    inner: B,
    activity: Arc<Activity>,
    _request: Option<InProgress>,
}

impl<B> hyper::body::Body for Moving<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.activity.moved();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

impl Table {
    /// Room for one more connection: at the limit the oldest connection with no request in
    /// progress is closed, or else the one stalled longest if it has moved no byte for
    /// `stall`. `false` if every open connection is busy and moving.
    fn make_room(&mut self, max: usize, stall: Duration) -> bool {
        if self.open.len() < max {
            return true;
        }
        let idle = self
            .open
            .iter()
            .find(|(_, s)| !s.activity.busy())
            .map(|(&id, _)| id);
        let stalled = || {
            self.open
                .iter()
                .map(|(&id, s)| (s.activity.stalled_for(), id))
                .filter(|(stalled, _)| *stalled >= stall)
                .max()
                .map(|(_, id)| id)
        };
        match idle.or_else(stalled).and_then(|id| self.open.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until the connection has had no request in progress for `timeout`.
async fn idle_too_long(activity: &Activity, timeout: Duration) {
    loop {
        match activity.idle_deadline(timeout) {
            Some(deadline) if deadline <= Instant::now() => return,
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => tokio::time::sleep(timeout).await,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then give open connections
/// [`SHUTDOWN_GRACE`] to finish.
/// A connection's byte stream: plain TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The stream of an accepted connection: the TCP stream itself, or (with `tls`) the TLS
/// session once its handshake is done. A client that speaks plain HTTP to a TLS port is
/// told so in plain HTTP; `None` once the connection is over.
async fn open_stream(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: std::net::SocketAddr,
) -> Option<Box<dyn Io>> {
    let Some(acceptor) = tls else {
        return Some(Box::new(stream));
    };
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => {}
        _ => return None,
    }
    if !crate::tls::starts_tls(first[0]) {
        use tokio::io::AsyncWriteExt;
        tracing::debug!(%peer, "plain http on the tls port");
        let mut stream = stream;
        let _ = stream.write_all(crate::tls::PLAIN_HTTP_ANSWER).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(tls) => Some(Box::new(tls)),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            None
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let epoch = Instant::now();
    let table = Arc::new(Mutex::new(Table::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    // Streams per HTTP/2 connection, so that a connection costs about as many open files
    // as an HTTP/1 one would for the same requests (hyper's default is 200).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS);
    let mut last_accept_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(error = %e, "accept failed; pausing accepts briefly");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let activity = Arc::new(Activity::new(epoch));
        let close = Arc::new(Notify::new());
        let id = {
            let mut t = lock(&table);
            if !t.make_room(limits.max_connections, limits.idle_timeout) {
                tracing::warn!(%peer, open = t.open.len(), "connection refused: every connection is busy");
                continue;
            }
            let id = t.next;
            t.next += 1;
            t.open.insert(
                id,
                Slot {
                    activity: activity.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let request = InProgress::start(service_activity.clone());
            let app = app.clone();
            let activity = service_activity.clone();
            async move {
                let mut req = req;
                // The client's address, for per-address limits (failed logins).
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(peer));
                let req = req.map(|inner| {
                    Body::new(Moving {
                        inner,
                        activity: activity.clone(),
                        _request: None,
                    })
                });
                let response = match app.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|inner| {
                    Body::new(Moving {
                        inner,
                        activity,
                        _request: Some(request),
                    })
                }))
            }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let table = table.clone();
        let timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let served = async move {
                let Some(io) = open_stream(stream, tls, peer).await else {
                    return;
                };
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            };
            tokio::select! {
                () = served => {}
                () = close.notified() => tracing::debug!(%peer, "connection closed to make room"),
                () = idle_too_long(&activity, timeout) => tracing::debug!(%peer, "idle connection closed"),
            }
            lock(&table).open.remove(&id);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after the shutdown grace period were cut");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(busy: bool, epoch: Instant) -> (Slot, Arc<Notify>) {
        let activity = Arc::new(Activity::new(epoch));
        if busy {
            activity.in_progress.store(1, Ordering::Release);
        }
        let close = Arc::new(Notify::new());
        (
            Slot {
                activity,
                close: close.clone(),
            },
            close,
        )
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let epoch = Instant::now();
        let mut t = Table::default();
        let (busy, _) = slot(true, epoch);
        let (idle, idle_close) = slot(false, epoch);
        t.open.insert(0, busy);
        t.open.insert(1, idle);
        let stall = Duration::from_secs(30);
        assert!(t.make_room(3, stall), "under the limit");
        assert_eq!(t.open.len(), 2);
        assert!(t.make_room(2, stall), "the idle connection gives way");
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), vec![0]);
        tokio::time::timeout(Duration::from_secs(1), idle_close.notified())
            .await
            .expect("the idle connection is told to close");
        assert!(
            !t.make_room(1, stall),
            "a busy connection that moved a byte just now is not closed to make room"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_a_request_stalled_for_the_timeout_makes_room() {
        let epoch = Instant::now();
        let stall = Duration::from_secs(5);
        let mut t = Table::default();
        let (stalled, stalled_close) = slot(true, epoch);
        let stalled_activity = stalled.activity.clone();
        t.open.insert(0, stalled);
        let (moving, _) = slot(true, epoch);
        let moving_activity = moving.activity.clone();
        t.open.insert(1, moving);
        stalled_activity.moved();
        moving_activity.moved();
        tokio::time::advance(Duration::from_secs(4)).await;
        moving_activity.moved();
        assert!(!t.make_room(2, stall), "nobody stalled for 5 s yet");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(t.make_room(2, stall), "stalled 6 s: it gives way");
        assert_eq!(t.open.keys().copied().collect::<Vec<_>>(), vec![1]);
        tokio::time::timeout(Duration::from_secs(1), stalled_close.notified())
            .await
            .expect("the stalled connection is told to close");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_a_request_in_progress() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let timeout = Duration::from_secs(5);
        let request = InProgress::start(activity.clone());
        assert_eq!(activity.idle_deadline(timeout), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        drop(request);
        let deadline = activity.idle_deadline(timeout).expect("idle now");
        assert!(deadline >= Instant::now() + timeout - Duration::from_millis(2));
        tokio::time::timeout(
            timeout + Duration::from_secs(1),
            idle_too_long(&activity, timeout),
        )
        .await
        .expect("closed once idle for the timeout");
    }
}
