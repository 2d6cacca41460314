//! The runner's HTTP/1 server, hardened as API Gateway is in front of the functions in the cloud:
//! every wait on a client has an end, the connections a client can hold are capped, running out
//! of file descriptors slows the accept loop down instead of spinning it, and a request whose
//! framing could be read two ways is refused.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// What a client may hold of the runner, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For the request line and the headers, and for the next request of a connection that
    /// stays open between requests: past it, the connection is closed.
    pub headers: Duration,
    /// For the whole body, once the headers are in: past it, the request is answered 400 and
    /// the connection closed. So a request takes at most `headers` and `body` to arrive.
    pub body: Duration,
    /// The slowest a body may arrive, in bytes per second on average once its first second is
    /// over: a body that falls behind is cut as one that stalls is. One byte every 8 s is cut
    /// after a second or two, not after `body`.
    pub min_body_rate: u64,
    /// How long a response may wait for a client that does not read it (its socket full):
    /// past it, the connection is dropped.
    pub write_stall: Duration,
    /// Connections open at once (`PRIMER_MAX_CONNECTIONS`); further clients wait in the
    /// kernel's queue until one closes. By default below the process's file descriptor limit,
    /// so accepting does not run out of them.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            headers: Duration::from_secs(10),
            body: Duration::from_secs(10),
            min_body_rate: 1024,
            write_stall: Duration::from_secs(30),
            max_connections: std::env::var("PRIMER_MAX_CONNECTIONS")
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(connections_within_the_descriptor_limit),
        }
    }
}

/// Connections the process can hold open with file descriptors to spare for the database,
/// the model, the store and the log: the soft `RLIMIT_NOFILE` less 128, between 16 and 4,096.
fn connections_within_the_descriptor_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
    // SAFETY: getrlimit writes the limit into the struct it is given, nothing else.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if known { limit.rlim_cur } else { 1024 };
    usize::try_from(soft.saturating_sub(128)).unwrap_or(4096).clamp(16, 4096)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight finish.
///
/// A header line with whitespace before its colon, an obsolete line fold, or a control byte is
/// a 400 and the connection closes (RFC 9112): such a line is never dropped, since a dropped
/// `Transfer-Encoding` or `Content-Length` would frame the body as another request. That 400
/// comes from the HTTP parser, with no JSON body: nothing of the request can be trusted enough
/// to answer it in the contract's shape.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut failures = AcceptFailures::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: past the cap, clients wait in the listen queue, holding no descriptor.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    failures.succeeded();
                    accepted
                }
                Err(e) => {
                    let pause = failures.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a streamed reply's small events wait for the reader's delayed ACK
        // of the one before (Nagle): tens of milliseconds per fragment.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // What `into_make_service_with_connect_info` would add: the per-IP limits read it.
            request.extensions_mut().insert(ConnectInfo(peer));
            let request = request.map(|body| Body::new(TimelyBody::new(body, limits)));
            app.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.headers)
            // The parser's strict default: an invalid header line fails the request.
            .ignore_invalid_headers(false)
            .serve_connection(TokioIo::new(WriteStallLimit::new(stream, limits.write_stall)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// The accept loop's failures: running out of file descriptors or memory makes it wait, longer
/// each time in a row (up to a second), instead of spinning on a call that fails at once; and
/// it logs the first failure and then at most one line every [`LOG_EVERY`] with how many
/// followed, instead of a line per failure.
#[derive(Debug, Default)]
struct AcceptFailures {
    in_a_row: u32,
    last_logged: Option<Instant>,
    unlogged: u64,
}

/// At most one line about failed accepts per this much time.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptFailures {
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Notes a failed accept; how long to wait before the next one.
    fn failed(&mut self, e: &io::Error) -> Duration {
        let out_of_resources =
            matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
        let now = Instant::now();
        if self.last_logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            tracing::warn!(
                error = %e,
                more_since_the_last_line = self.unlogged,
                "accepting a connection failed"
            );
            (self.last_logged, self.unlogged) = (Some(now), 0);
        } else {
            self.unlogged += 1;
        }
        if !out_of_resources {
            // A connection that failed on its own (reset before it was accepted): take the next.
            return Duration::ZERO;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        (Duration::from_millis(10) * 2u32.saturating_pow(self.in_a_row - 1)).min(Duration::from_secs(1))
    }
}

/// A request body that must arrive by a deadline and at a minimum rate (see
/// [`ConnectionLimits`]); one that does not fails, which the handlers answer with a 400.
struct TimelyBody {
    inner: Incoming,
    /// When the headers were in.
    started: Instant,
    received: u64,
    deadline: Instant,
    min_rate: u64,
    timer: Pin<Box<Sleep>>,
}

/// The time a body has before its rate counts.
const RATE_GRACE: Duration = Duration::from_secs(1);

impl TimelyBody {
    fn new(inner: Incoming, limits: ConnectionLimits) -> Self {
        let started = Instant::now();
        let deadline = started + limits.body;
        Self {
            inner,
            started,
            received: 0,
            deadline,
            min_rate: limits.min_body_rate,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// When the bytes received so far stop being enough for the minimum rate, or the deadline,
    /// whichever comes first.
    fn due(&self) -> Instant {
        if self.min_rate == 0 {
            return self.deadline;
        }
        let enough_until = RATE_GRACE + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        (self.started + enough_until).min(self.deadline)
    }
}

impl http_body::Body for TimelyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = self.due();
                self.timer.as_mut().reset(due);
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the request body did not arrive in time ({} bytes in {:.1} s)",
                            self.received,
                            self.started.elapsed().as_secs_f64()
                        ),
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has read nothing for `limit`: a client that
/// asks and never reads cannot hold a connection (and a task) for ever.
struct WriteStallLimit {
    stream: TcpStream,
    limit: Duration,
    /// Set while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteStallLimit {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self { stream, limit, stalled: None }
    }

    /// `Pending` from the socket: start (or keep) the clock; an error once it ran out.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the response for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteStallLimit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteStallLimit {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.waiting(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.waiting(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => self.waiting(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_backs_off_and_logs_little() {
        let mut failures = AcceptFailures::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<Duration> = (0..10).map(|_| failures.failed(&emfile)).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(pauses[9], Duration::from_secs(1), "capped");
        assert_eq!(failures.unlogged, 9, "one line for ten failures in a row");
        failures.succeeded();
        assert_eq!(failures.failed(&emfile), Duration::from_millis(10), "a success starts over");
        let reset = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(failures.failed(&reset), Duration::ZERO, "one client's failure is no reason to wait");
    }
}
