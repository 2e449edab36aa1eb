//! Accepting connections: the connection cap, the header and body timeouts, and who the
//! client is.
//!
//! The server drives hyper's HTTP/1 connections itself (rather than `axum::serve`) because
//! every limit here lives below the router: a client that sends one header line every few
//! seconds never becomes a request, so no middleware could time it out, and a connection
//! over the cap must be refused before it costs more than a file descriptor.
//!
//! - **Connection cap** (`http.max_connections`): each accepted connection holds a permit
//!   for as long as its socket lives, WebSocket sessions included (the permit travels with
//!   the socket through the upgrade). Over the cap, the client gets a
//!   `503 too_many_connections` and the socket is closed.
//! - **Header timeout** (`http.header_read_timeout_ms`): hyper's own; the clock starts when
//!   the connection opens or the previous response ends, so it also closes idle kept-alive
//!   connections.
//! - **Body timeout** (`http.body_read_timeout_ms`): the body must arrive within this time
//!   of the head, plus a second per `http.body_min_bytes_per_sec` received, so an upload at
//!   a fair rate may take as long as it needs while a body that drips in a byte at a time
//!   fails as `408 body_timeout`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::config::HttpConfig;

/// The peer a request came over (the proxy, when there is one); see [`client_ip`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serve `app` on `listener` until `shutdown` resolves; then stop accepting, let every
/// connection finish its request in flight, and return once all have closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    http: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(http.max_connections.max(1)));
    let header_timeout = Duration::from_millis(http.header_read_timeout_ms.max(1));
    let body_timeout = BodyDeadline {
        base: Duration::from_millis(http.body_read_timeout_ms.max(1)),
        min_bytes_per_sec: http.body_min_bytes_per_sec.max(1),
    };
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small frames (acks, events) must leave at once: with Nagle's algorithm an ack
        // waits for the client's delayed TCP ACK, which showed as latency equal to the
        // client's send interval (20-40 ms) under a steady load.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: at the connection cap");
            tokio::spawn(refuse(tcp));
            continue;
        };
        let connection = Connection {
            io: Counted {
                tcp: Some(tcp),
                permit: Some(permit),
            },
            peer,
            app: app.clone(),
            header_timeout,
            body_timeout,
        };
        connections.spawn(connection.run(stopping.clone()));
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

struct Connection {
    io: Counted,
    peer: SocketAddr,
    app: axum::Router,
    header_timeout: Duration,
    body_timeout: BodyDeadline,
}

/// How long a body may take: `base`, plus a second per `min_bytes_per_sec` received.
#[derive(Debug, Clone, Copy)]
struct BodyDeadline {
    base: Duration,
    min_bytes_per_sec: u64,
}

impl Connection {
    async fn run(self, mut stopping: watch::Receiver<bool>) {
        let Self {
            io,
            peer,
            app,
            header_timeout,
            body_timeout,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request =
                request.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
            request.extensions_mut().insert(PeerAddr(peer));
            app.clone().oneshot(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(err) = result {
            // Timeouts and clients that went away: routine, and the client's doing.
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    }
}

/// Answer a connection over the cap with a `503` and close it. Bounded in time, so refused
/// clients cannot pile these up either.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str = r#"{"code":"too_many_connections","message":"the server has too many open connections; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        // Read what the client already sent until it closes: closing with unread bytes
        // would reset the connection and could discard our answer before it is read.
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A socket that holds its connection permit until it is closed, wherever it goes (into a
/// WebSocket session after an upgrade, too), and closes *lingering*.
///
/// Lingering: when the server ends a connection while the client is still sending (a body
/// over the limit, a WebSocket frame over `max_frame_bytes`), closing a socket with unread
/// bytes makes the kernel send a reset, and a reset makes the client's kernel discard what
/// it had not read yet: the `413` or the `1009` close frame that explains why. So on drop
/// the socket half-closes (the client sees the end of our answer), then reads and discards
/// what the client still sends until it closes too, for at most [`LINGER`].
struct Counted {
    tcp: Option<TcpStream>,
    permit: Option<OwnedSemaphorePermit>,
}

/// Longest a closed connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

impl Counted {
    fn tcp(&mut self) -> std::io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let (Some(mut tcp), permit) = (self.tcp.take(), self.permit.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                let _ = tcp.shutdown().await;
                let mut sink = [0u8; 4096];
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            drop(permit);
        });
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => Pin::new(tcp).poll_flush(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(TcpStream::is_write_vectored)
    }
}

/// The body did not arrive within `http.body_read_timeout_ms` of the request's head.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that fails once its deadline passes: a total that grows only with the
/// bytes received, so a body dripping in a byte at a time fails too.
struct DeadlineBody {
    inner: Incoming,
    policy: BodyDeadline,
    started: tokio::time::Instant,
    received: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, policy: BodyDeadline) -> Self {
        let started = tokio::time::Instant::now();
        Self {
            inner,
            policy,
            started,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + policy.base)),
        }
    }

    /// Data arrived: the allowance grows with it.
    fn credit(&mut self, bytes: usize) {
        self.received += bytes as u64;
        let earned =
            Duration::from_secs_f64(self.received as f64 / self.policy.min_bytes_per_sec as f64);
        let until = self.started + self.policy.base + earned;
        self.deadline.as_mut().reset(until);
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len();
                    self.credit(len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(BodyTimedOut.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (or anything it wraps) is a [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// rightmost address in `client_address_header` that is not itself a trusted proxy (a
/// client can prepend anything to `X-Forwarded-For`, but each proxy appends the address it
/// saw, so only the right end can be believed).
pub fn client_ip(peer: Option<PeerAddr>, headers: &HeaderMap, http: &HttpConfig) -> IpAddr {
    let Some(PeerAddr(peer)) = peer else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let peer = peer.ip();
    if !http.trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all(http.client_address_header.as_str())
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !http.trusted_proxies.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_trusted_proxy_may_name_the_client() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let http = HttpConfig {
            trusted_proxies: vec![proxy],
            ..HttpConfig::default()
        };
        let from = |ip: IpAddr| Some(PeerAddr(SocketAddr::new(ip, 5000)));
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        // Straight from a client: the header is the client's own claim, ignored.
        assert_eq!(client_ip(from(client), &headers("1.2.3.4"), &http), client);
        // Through the proxy: the rightmost untrusted address, whatever the client prepended.
        assert_eq!(
            client_ip(from(proxy), &headers("1.2.3.4, 203.0.113.9"), &http),
            client
        );
        assert_eq!(
            client_ip(from(proxy), &headers("203.0.113.9, 10.0.0.1"), &http),
            client
        );
        // A proxy that sent nothing usable: the proxy itself.
        assert_eq!(client_ip(from(proxy), &headers("junk"), &http), proxy);
    }
}
