//! The HTTP side: `/metrics` serves the latest rendered page and never waits on Kafka;
//! `/healthz` says the process is alive; `/readyz` says a first collection is done.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::RwLock;

/// The page `/metrics` serves; `None` until the first collection finished.
pub type Latest = Arc<RwLock<Option<String>>>;

/// Bound on connections served at once.
pub const CONNECTIONS_MAX: usize = 256;

pub async fn serve(listener: TcpListener, latest: Latest) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = slots.clone().acquire_owned().await else { return Ok(()) };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, latest.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}

async fn respond(request: Request<Incoming>, latest: Latest) -> Result<Response<Full<Bytes>>, Infallible> {
    let page = latest.read().await.clone();
    let (status, content_type, body) = match (request.uri().path(), page) {
        ("/metrics", Some(page)) => (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", page),
        ("/metrics", None) => {
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no collection finished yet\n".to_string())
        }
        ("/healthz", _) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        ("/readyz", Some(_)) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        ("/readyz", None) => {
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "waiting for the first collection\n".to_string())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz or /readyz\n".to_string()),
    };
    let response =
        Response::builder().status(status).header("content-type", content_type).body(Full::new(Bytes::from(body)));
    // The builder only fails on invalid header values, and these are constants.
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
