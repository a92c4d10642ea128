//! A minimal HTTP GET for the tests (the exporter's /metrics, Prometheus's query API).

use std::io::{Read, Write};
use std::time::Duration;

/// Status and body of `GET path`; `None` when nothing answers. HTTP/1.0, so the body ends
/// where the connection closes: no chunked framing to undo (the exporter streams /metrics).
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The body of `GET path` when it answers 200.
pub fn get_ok(addr: &str, path: &str) -> Option<String> {
    get(addr, path).and_then(|(status, body)| (status == 200).then_some(body))
}
