//! `/metrics` (Prometheus), `/healthz` and `/readyz` on `DOCLINK_HTTP_ADDR`.
//!
//! A deliberately tiny HTTP/1.1 responder: three GET endpoints for a scraper and a
//! load balancer do not justify a web framework in the binary.

use crate::worker::Stats;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Binds `addr` (so a bad address fails start-up) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let (mut socket, _) = tokio::select! {
                accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                _ = shutdown.cancelled() => return,
            };
            let metrics = metrics.clone();
            let stats = stats.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 2048];
                let read = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    socket.read(&mut buffer),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buffer[..read]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, content_type, body) = respond(path, &metrics, &stats, &shutdown);
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    }))
}

fn respond(
    path: &str,
    metrics: &PrometheusHandle,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" => {
            if stats.account_blocked.load(Ordering::SeqCst) {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready: SES account cannot send\n".into(),
                )
            } else if shutdown.is_cancelled() {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready: shutting down\n".into(),
                )
            } else {
                ("200 OK", "text/plain", "ready\n".into())
            }
        }
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}
