//! `--metrics-listen`: `GET /metrics` on a thread of its own with its own
//! current-thread runtime (daemon mode runs its runs synchronously), until
//! the daemon's stop request or [`Server::stop`].
//!
//! A minimal HTTP/1.1 responder: the request head is read up to 8 KiB
//! within 10 s; `GET` or `HEAD` `/metrics` is answered with the last
//! exposition ([`super::Latest`]), another path with 404, another method
//! with 405, anything else with 400 (431 when the head is too long); every
//! connection is closed after one answer. At most 16 connections are
//! served at a time; more are closed at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Latest};
use crate::daemon::Shutdown;

/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to write the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
/// After the answer, unread input is drained this long, up to this much.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--metrics-listen {addr}: cannot listen: {error}")]
    Bind { addr: SocketAddr, error: io::Error },
    #[error("cannot start the metrics server thread: {0}")]
    Thread(io::Error),
}

/// The running server; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` now (so that a port in use fails at start-up) and
    /// serves `latest` until `shutdown` is requested or the server stops.
    pub fn start(
        addr: SocketAddr,
        latest: Latest,
        shutdown: &Shutdown,
    ) -> Result<Server, ServeError> {
        let bind_err = |error| ServeError::Bind { addr, error };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let stop = shutdown.token().child_token();
        let token = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || run(listener, latest, token))
            .map_err(ServeError::Thread)?;
        tracing::info!("serving metrics on http://{local}/metrics");
        Ok(Server {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, drops the connections in progress, and waits for the
    /// thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(listener: std::net::TcpListener, latest: Latest, stop: CancellationToken) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("metrics server: cannot start its runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics server: {e}");
                return;
            }
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => break,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!("metrics server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let latest = latest.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    r = answer(stream, &latest) => {
                        if let Err(e) = r {
                            tracing::debug!("metrics server: {e}");
                        }
                    }
                    _ = stop.cancelled() => {}
                }
                drop(permit);
            });
        }
        tracing::debug!("metrics server stopped");
    });
}

/// What the request head asks, as far as we care.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound,
    WrongMethod,
    Bad,
    TooLarge,
}

/// Reads one request head (capped) and answers it.
async fn answer(mut stream: TcpStream, latest: &Latest) -> io::Result<()> {
    let request = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let reply = match request {
        Request::Metrics { head_only } => {
            let body = latest.get();
            response(
                "200 OK",
                CONTENT_TYPE,
                "",
                if head_only { "" } else { &body },
                body.len(),
            )
        }
        Request::NotFound => plain("404 Not Found", "", "not found: try /metrics\n"),
        Request::WrongMethod => plain(
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "only GET and HEAD\n",
        ),
        Request::Bad => plain("400 Bad Request", "", "bad request\n"),
        Request::TooLarge => plain(
            "431 Request Header Fields Too Large",
            "",
            "request head too large\n",
        ),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))?;
    // What the client still sends is read and dropped for a moment: closing
    // with unread input would reset the connection, and the client could
    // lose the answer.
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

fn plain(status: &str, extra: &str, body: &str) -> String {
    response(status, "text/plain; charset=utf-8", extra, body, body.len())
}

fn response(status: &str, content_type: &str, extra: &str, body: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n{body}"
    )
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Request> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            return Ok(parse(&head[..end]));
        }
        if head.len() >= MAX_HEAD {
            return Ok(Request::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // The client closed before a whole head: answer what we have.
            return Ok(if head.is_empty() {
                Request::Bad
            } else {
                parse(&head)
            });
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends (before the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line decides: `METHOD TARGET HTTP/1.x`.
fn parse(head: &[u8]) -> Request {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Bad;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Request::Bad;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Request::Metrics {
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", _) => Request::NotFound,
        _ => Request::WrongMethod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_decides() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.0"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(p("GET / HTTP/1.1"), Request::NotFound);
        assert_eq!(p("POST /metrics HTTP/1.1"), Request::WrongMethod);
        assert_eq!(p("GET /metrics"), Request::Bad);
        assert_eq!(p("GET metrics HTTP/1.1"), Request::Bad);
        assert_eq!(p("\u{ff}"), Request::Bad);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_latest_exposition_until_stopped() {
        let latest = Latest::default();
        latest.set("up 1\n");
        let shutdown = Shutdown::new();
        let server =
            Server::start("127.0.0.1:0".parse().unwrap(), latest.clone(), &shutdown).unwrap();
        let addr = server.local_addr();
        let r = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nContent-Length: 5\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nup 1\n"), "{r}");
        latest.set("up 2\n");
        assert!(
            ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n")
                .await
                .ends_with("up 2\n")
        );
        let r = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{r}"
        );
        assert!(
            ask(addr, b"GET /x HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404 ")
        );
        let r = ask(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
            "{r}"
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 20_000));
        let r = ask(addr, &big).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        // The daemon's stop request ends it.
        shutdown.request();
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
