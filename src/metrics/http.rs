//! The metrics listener: plain HTTP/1.x on `[daemon] metrics_address`, one route, `GET` or
//! `HEAD /metrics` (a query string is ignored), answered with the exposition text and the
//! connection closed. Any other path is 404, any other method 405, a malformed or oversized
//! request 400. At most [`MAX_CONNECTIONS`] at once, each given [`REQUEST_TIMEOUT`] to send its
//! request; no TLS and no authentication: bind it to loopback or a management network.
//!
//! Runs on its own thread with a current-thread tokio runtime, like the control socket; it
//! reaches the reactors only through [`crate::metrics::scrape::gather`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::iscsi::server::Server;
use crate::metrics::exposition::{render, CONTENT_TYPE};
use crate::metrics::scrape::gather;

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest request head (request line and headers) accepted.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("daemon.metrics_address {addr}: {source} (set another address, or \"off\")")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The thread or its runtime could not be started.
    #[error("metrics endpoint thread: {0}")]
    Thread(std::io::Error),
}

/// Binds `addr` and serves the metrics of `server` there on a new thread, for the life of the
/// process. Returns the bound address (the real port when 0 was asked for).
pub fn start(server: Arc<Server>, addr: SocketAddr) -> Result<SocketAddr, MetricsError> {
    let bind_error = |source| MetricsError::Bind { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    std_listener.set_nonblocking(true).map_err(bind_error)?;
    let bound = std_listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MetricsError::Thread)?;
    std::thread::Builder::new()
        .name("ringsan-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, %bound, "metrics listener");
                        return;
                    }
                };
                accept_loop(server, listener).await;
            })
        })
        .map_err(MetricsError::Thread)?;
    Ok(bound)
}

async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many metrics connections: closed");
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&server, stream).await {
                tracing::debug!(%peer, error = %e, "metrics connection");
            }
            drop(slot);
        });
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`head`: `HEAD /metrics`, headers only).
    Metrics {
        /// Whether the body is left out.
        head: bool,
    },
    /// Another path.
    NotFound,
    /// `/metrics` with a method other than GET or HEAD.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Routes a request by its head (request line, then headers, which are ignored).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (path, method) {
        ("/metrics", "GET") => Route::Metrics { head: false },
        ("/metrics", "HEAD") => Route::Metrics { head: true },
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Reads the request head: up to the blank line, at most [`MAX_REQUEST_BYTES`]. `None` when
/// the client closed first or sent too much.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() >= MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

async fn serve(server: &Arc<Server>, mut stream: TcpStream) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let route = head.as_deref().map_or(Route::BadRequest, route);
    let (status, extra, content_type, body, head_only) = match route {
        Route::Metrics { head } => {
            let text = render(&gather(server).await);
            ("200 OK", "", CONTENT_TYPE, text, head)
        }
        Route::NotFound => (
            "404 Not Found",
            "",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_string(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
        ),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_route_two_methods() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(
            route(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metrics/ HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }
}
