//! `/metrics` (Prometheus), `/healthz` and `/readyz` on `DOCLINK_HTTP_ADDR`.
//!
//! A deliberately tiny HTTP/1.1 responder: three GET endpoints for a scraper and a
//! load balancer do not justify a web framework in the binary. It serves until the
//! process is about to exit, through the shutdown grace period, so a load balancer
//! sees `/readyz` turn 503 instead of a refused connection.
//!
//! It cannot be used to exhaust the daemon: at most [`MAX_CONNECTIONS`] connections
//! are open at once (more wait in the kernel's listen backlog, holding none of the
//! process's file descriptors), a client has [`READ_TIMEOUT`] to send its request
//! and [`EXCHANGE_TIMEOUT`] for the whole exchange.

use crate::stats::Stats;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once. A scraper and a load balancer need a few.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one exchange may take in all, reading the response included.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the process-wide metrics recorder; returns the handle that renders it.
pub fn install_metrics() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .expect("static buckets are valid")
        .install_recorder()
        .expect("the metrics recorder is installed once")
}

/// The running server; [`HttpServer::stop`] ends it.
pub struct HttpServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds `addr` (so a bad address fails start-up) and serves until stopped.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    stats: Arc<Stats>,
) -> std::io::Result<HttpServer> {
    let listener = TcpListener::bind(addr).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        listener,
        stop.clone(),
        MAX_CONNECTIONS,
        move |socket| answer(socket, metrics.clone(), stats.clone()),
    ));
    Ok(HttpServer { stop, task })
}

/// Something that accepts connections (a TCP listener; a fake in tests).
pub trait Acceptor: Send + 'static {
    type Connection: Send + 'static;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Connection>> + Send;
}

impl Acceptor for TcpListener {
    type Connection = TcpStream;
    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(socket, _)| socket)
    }
}

/// Accepts until `stop`, with at most `max` connections being handled at once: the
/// next is accepted only when one has ended. An accept error (out of file
/// descriptors, say) backs off, from 10 ms up to 1 s, instead of spinning on a
/// listener that keeps failing.
async fn accept_loop<A, F, Fut>(mut acceptor: A, stop: CancellationToken, max: usize, handler: F)
where
    A: Acceptor,
    F: Fn(A::Connection) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::from_millis(10);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = acceptor.accept() => accepted,
        };
        match accepted {
            Ok(connection) => {
                pause = Duration::from_millis(10);
                let handled = handler(connection);
                tokio::spawn(async move {
                    handled.await;
                    drop(slot);
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "the HTTP endpoint cannot accept connections");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    socket: S,
    metrics: PrometheusHandle,
    stats: Arc<Stats>,
) {
    // Whatever the client does, the connection ends within the exchange timeout.
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(socket, metrics, stats)).await;
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    metrics: PrometheusHandle,
    stats: Arc<Stats>,
) {
    let mut buffer = [0u8; 2048];
    let read = match tokio::time::timeout(READ_TIMEOUT, socket.read(&mut buffer)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buffer[..read]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = respond(path, &metrics, &stats);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn respond(
    path: &str,
    metrics: &PrometheusHandle,
    stats: &Stats,
) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" => match stats.health.not_ready_reason() {
            Some(reason) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {reason}\n"),
            ),
            None => ("200 OK", "text/plain", "ready\n".into()),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An acceptor whose every accept fails at once, as with EMFILE. After 1,000
    /// calls it stops the loop, so a spinning loop ends instead of hanging the test.
    struct Failing {
        calls: Arc<AtomicUsize>,
        stop: CancellationToken,
    }

    impl Acceptor for Failing {
        type Connection = ();
        async fn accept(&mut self) -> std::io::Result<()> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= 1_000 {
                self.stop.cancel();
            }
            Err(std::io::Error::from_raw_os_error(24))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let calls = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let acceptor = Failing {
            calls: calls.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(accept_loop(acceptor, stop.clone(), 4, |_| async {}));
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.cancel();
        task.await.unwrap();
        let calls = calls.load(Ordering::SeqCst);
        // 10 ms doubling to 1 s: about 16 tries in 10 s, never hundreds.
        assert!((5..40).contains(&calls), "{calls} accept calls in 10 s");
    }

    /// An acceptor that hands out a connection at every call and counts the calls;
    /// after `limit` calls it stops the loop.
    struct Eager {
        calls: Arc<AtomicUsize>,
        limit: usize,
        stop: CancellationToken,
    }

    impl Acceptor for Eager {
        type Connection = ();
        async fn accept(&mut self) -> std::io::Result<()> {
            if self.calls.fetch_add(1, Ordering::SeqCst) + 1 >= self.limit {
                self.stop.cancel();
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_cap_of_connections_are_held() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let release = CancellationToken::new();
        let stop = CancellationToken::new();
        let handler = {
            let (open, release) = (open.clone(), release.clone());
            move |()| {
                let (open, release) = (open.clone(), release.clone());
                async move {
                    open.fetch_add(1, Ordering::SeqCst);
                    // An idle client: it holds its connection until released.
                    release.cancelled().await;
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        };
        let acceptor = Eager {
            calls: accepted.clone(),
            limit: 3 * MAX_CONNECTIONS,
            stop: stop.clone(),
        };
        let task = tokio::spawn(accept_loop(
            acceptor,
            stop.clone(),
            MAX_CONNECTIONS,
            handler,
        ));
        // With time paused, this returns only once every task is idle: the loop
        // is then waiting for a free slot, not accepting.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(open.load(Ordering::SeqCst), MAX_CONNECTIONS);
        assert_eq!(accepted.load(Ordering::SeqCst), MAX_CONNECTIONS);
        // Once they end, new connections are accepted again (until the acceptor
        // stops the loop).
        release.cancel();
        task.await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3 * MAX_CONNECTIONS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_dropped_after_the_read_timeout() {
        let (client, server) = tokio::io::duplex(4096);
        let metrics = PrometheusBuilder::new().build_recorder().handle();
        let stats = Arc::new(Stats::new());
        let started = tokio::time::Instant::now();
        answer(server, metrics, stats).await;
        assert!(started.elapsed() <= Duration::from_secs(1));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_the_answer_is_dropped_after_the_exchange_timeout() {
        // A 32-byte pipe: the request fits, the answer cannot be written in full
        // while the client reads nothing.
        let (mut client, server) = tokio::io::duplex(32);
        client
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .ok();
        let metrics = PrometheusBuilder::new().build_recorder().handle();
        let stats = Arc::new(Stats::new());
        let started = tokio::time::Instant::now();
        tokio::time::timeout(2 * EXCHANGE_TIMEOUT, answer(server, metrics, stats))
            .await
            .expect("the connection was dropped");
        assert_eq!(started.elapsed(), EXCHANGE_TIMEOUT);
        drop(client);
    }
}
