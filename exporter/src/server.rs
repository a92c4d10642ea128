//! The HTTP side: `/metrics` renders the latest snapshots and never waits on Kafka (from
//! the first collection on, even a failed one: `kafka_exporter_up 0` is news); `/healthz`
//! says the process is alive; `/readyz` says every cluster has answered at least once.
//!
//! The page is rendered per scrape from the latest snapshots and streamed in chunks
//! (chunked transfer encoding), so a 43 MiB page of 400,000 series never sits whole in
//! memory; only the snapshots (plain data) are kept between scrapes.

use crate::render::{write_page, CHUNK_BYTES};
use crate::snapshot::Snapshot;
use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, RwLock, Semaphore};

/// What `/metrics` serves: the latest snapshot of every cluster and the static labels.
pub struct Scrape {
    pub snapshots: Vec<Arc<Snapshot>>,
    pub labels: Arc<BTreeMap<String, String>>,
    /// Every cluster has answered Metadata at least once since the start.
    pub ready: bool,
}

/// `None` until every cluster was collected once.
pub type Latest = Arc<RwLock<Option<Arc<Scrape>>>>;

/// Bound on connections served at once.
pub const CONNECTIONS_MAX: usize = 256;
/// Bound on pages rendered at once (each is CPU work of tens of milliseconds).
pub const RENDERS_MAX: usize = 2;
/// Chunks rendered ahead of a slow reader, per scrape.
pub const CHUNKS_AHEAD_MAX: usize = 4;
/// A reader that takes longer than this for one chunk is dropped, so a stalled scraper
/// cannot hold a render slot.
pub const CHUNK_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn serve(listener: TcpListener, latest: Latest) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let renders = Arc::new(Semaphore::new(RENDERS_MAX));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = slots.clone().acquire_owned().await else { return Ok(()) };
        let (latest, renders) = (latest.clone(), renders.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, latest.clone(), renders.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    latest: Latest,
    renders: Arc<Semaphore>,
) -> Result<Response<PageBody>, Infallible> {
    let scrape = latest.read().await.clone();
    let text = |status, body: &'static str| (status, "text/plain", PageBody::Full(Full::new(Bytes::from(body))));
    let (status, content_type, body) = match (request.uri().path(), scrape) {
        ("/metrics", Some(scrape)) => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", stream_page(scrape, renders).await)
        }
        ("/metrics", None) => text(StatusCode::SERVICE_UNAVAILABLE, "no collection finished yet\n"),
        ("/healthz", _) => text(StatusCode::OK, "ok\n"),
        ("/readyz", Some(scrape)) if scrape.ready => text(StatusCode::OK, "ready\n"),
        ("/readyz", _) => text(StatusCode::SERVICE_UNAVAILABLE, "waiting for every cluster to answer once\n"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n"),
    };
    let response = Response::builder().status(status).header("content-type", content_type).body(body);
    // The builder only fails on invalid header values, and these are constants.
    Ok(response.unwrap_or_else(|_| Response::new(PageBody::Full(Full::new(Bytes::new())))))
}

/// Renders on the blocking pool, handing chunks to the response as they fill.
async fn stream_page(scrape: Arc<Scrape>, renders: Arc<Semaphore>) -> PageBody {
    let (sender, receiver) = mpsc::channel::<Bytes>(CHUNKS_AHEAD_MAX);
    // The semaphore is never closed, so acquiring only waits.
    let permit = renders.acquire_owned().await.ok();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut gone = false;
        write_page(&scrape.snapshots, &scrape.labels, CHUNK_BYTES, &mut |chunk| {
            // A reader that hung up or stalled gets nothing more; the render then runs to
            // its end without sending (tens of milliseconds) and frees its slot.
            if !gone {
                let send = tokio::time::timeout(CHUNK_SEND_TIMEOUT, sender.send(Bytes::from(chunk)));
                gone = !matches!(runtime.block_on(send), Ok(Ok(())));
            }
        });
        drop(permit);
    });
    PageBody::Chunks(receiver)
}

/// A response body: a short constant text, or a page arriving in chunks.
pub enum PageBody {
    Full(Full<Bytes>),
    Chunks(mpsc::Receiver<Bytes>),
}

impl Body for PageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            PageBody::Full(full) => Pin::new(full).poll_frame(cx),
            PageBody::Chunks(receiver) => receiver.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PageBody::Full(full) => full.size_hint(),
            PageBody::Chunks(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{GroupInfo, GroupOffset, LagStatus, PartitionInfo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn wide_snapshot() -> Snapshot {
        let partitions = (0..50)
            .map(|p| PartitionInfo {
                topic: "t".into(),
                partition: p,
                high_watermark: Some(9),
                low_watermark: Some(0),
                ..PartitionInfo::default()
            })
            .collect();
        let offset = |p| GroupOffset {
            topic: "t".into(),
            partition: p,
            committed: 4,
            lag_seconds: Some(1.5),
            status: LagStatus::Ok,
        };
        let groups = (0..100)
            .map(|g| GroupInfo {
                group: format!("g{g}"),
                offsets: (0..50).map(offset).collect(),
                ..GroupInfo::default()
            })
            .collect();
        Snapshot { cluster: "c".into(), up: true, partitions, groups, ..Snapshot::default() }
    }

    /// Undoes chunked transfer encoding (RFC 9112 §7.1).
    fn dechunk(mut body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else { return out };
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap_or("0").trim(), 16).unwrap_or(0);
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body = &body[line_end + 2 + size + 2..];
        }
    }

    // Shows /metrics streams a page of many chunks (chunked transfer encoding, RFC 9112
    // §7.1) whose bytes equal the one-piece render, and /readyz flips once a scrape exists
    // (issue 2, "/metrics serves the latest snapshot").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_stream_equals_the_rendered_page() {
        let latest: Latest = Arc::new(RwLock::new(None));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(serve(listener, latest.clone()));
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("server listens");
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("request sent");
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.expect("response read");
            response
        };
        assert!(get("/readyz").await.starts_with(b"HTTP/1.1 503"));
        let snapshot = wide_snapshot();
        let expected = crate::render::render(std::slice::from_ref(&snapshot), &BTreeMap::new());
        assert!(expected.len() > 4 * CHUNK_BYTES, "the page spans several chunks: {} bytes", expected.len());
        let scrape = Scrape { snapshots: vec![Arc::new(snapshot)], labels: Arc::new(BTreeMap::new()), ready: true };
        *latest.write().await = Some(Arc::new(scrape));
        assert!(get("/readyz").await.starts_with(b"HTTP/1.1 200"));
        let response = get("/metrics").await;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"), "{head}");
        assert_eq!(dechunk(&response[split + 4..]), expected.as_bytes());
    }

    fn page_snapshot(groups: usize) -> Snapshot {
        let mut snapshot = wide_snapshot();
        let offsets = snapshot.groups[0].offsets.clone();
        snapshot.groups = (0..groups)
            .map(|g| GroupInfo { group: format!("group-{g}"), offsets: offsets.clone(), ..GroupInfo::default() })
            .collect();
        snapshot
    }

    // Shows a scraper that stops reading cannot hold a render slot for long: with
    // RENDERS_MAX readers stalled mid-page (a page far larger than the socket buffers),
    // another scrape still gets its whole page once the stalled sends time out
    // (CHUNK_SEND_TIMEOUT), rather than waiting forever (TIGER_STYLE: a limit on
    // everything).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_readers_do_not_block_scrapes() {
        let snapshot = page_snapshot(1_000);
        let expected = crate::render::render(std::slice::from_ref(&snapshot), &BTreeMap::new()).len();
        assert!(expected > 16 << 20, "the page must outgrow the socket buffers: {expected} bytes");
        let scrape = Scrape { snapshots: vec![Arc::new(snapshot)], labels: Arc::new(BTreeMap::new()), ready: true };
        let latest: Latest = Arc::new(RwLock::new(Some(Arc::new(scrape))));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(serve(listener, latest));
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut stalled = Vec::new();
        for _ in 0..RENDERS_MAX {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("server listens");
            stream.write_all(request).await.expect("request sent");
            // The head comes once this scrape holds a render slot; then it stops reading.
            let mut head = [0u8; 1024];
            stream.read_exact(&mut head).await.expect("the page starts");
            stalled.push(stream);
        }
        let whole = tokio::time::timeout(CHUNK_SEND_TIMEOUT * 3, async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("server listens");
            stream.write_all(request).await.expect("request sent");
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.expect("response read");
            response
        })
        .await
        .expect("a scrape got through while others stalled");
        let split = whole.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
        assert_eq!(dechunk(&whole[split + 4..]).len(), expected);
        drop(stalled);
    }
}
