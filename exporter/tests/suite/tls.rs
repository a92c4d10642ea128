//! TLS against the real noida-db behind the in-test TLS-terminating proxy (`tls_proxy.rs`;
//! noida-db speaks only plaintext): trust from a CA file, hostname verification, mTLS,
//! and the explicit insecure switch with its warning.

use crate::broker::{admin, create_topic, produce, Broker};
use crate::faults::collector;
use crate::http::get_ok;
use crate::tls_proxy::{Ca, TlsProxy};
use std::process::{Command, Stdio};
use std::time::Duration;
use trial_exporter::snapshot::Snapshot;
use trial_exporter::tls::RawTls;

async fn collect_through(proxy: &TlsProxy, tls: RawTls) -> Snapshot {
    let mut collector = collector(&proxy.addr, Duration::from_secs(2));
    collector.config.security.tls = Some(tls.resolve().expect("a valid TLS config"));
    collector.collect().await
}

async fn broker_with_records() -> Broker {
    let broker = Broker::start();
    let mut client = admin(&broker.addr).await;
    create_topic(&mut client, "secure", 1).await;
    produce(&mut client, "secure", 0, 6).await;
    broker
}

fn tls_failed(snapshot: &Snapshot) -> bool {
    !snapshot.up && snapshot.errors.contains_key(&("Metadata".to_string(), "tls".to_string()))
}

// Shows TLS with a CA file reaches the broker and gets its numbers, and that hostnames are
// verified: a certificate for another name is refused unless `server_name` names it, and
// a certificate from an unknown CA is refused (RFC 6125 name checks, as rustls does them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_and_hostname_verification() {
    let broker = broker_with_records().await;
    let ca = Ca::new("hostname");
    let for_ip = TlsProxy::start(&broker.addr, &ca.issue("ip", &["127.0.0.1"]), None).await;
    let trust = RawTls { ca_file: Some(ca.file()), ..RawTls::default() };
    let snapshot = collect_through(&for_ip, trust.clone()).await;
    assert!(snapshot.up, "{:?}", snapshot.errors);
    assert_eq!(snapshot.partition("secure", 0).and_then(|p| p.high_watermark), Some(6));

    let for_name = TlsProxy::start(&broker.addr, &ca.issue("name", &["kafka.test"]), None).await;
    assert!(tls_failed(&collect_through(&for_name, trust.clone()).await), "127.0.0.1 is not kafka.test");
    let named = RawTls { server_name: Some("kafka.test".into()), ..trust.clone() };
    assert!(collect_through(&for_name, named).await.up, "verified against the configured name");

    let stranger = Ca::new("stranger");
    let other = RawTls { ca_file: Some(stranger.file()), ..RawTls::default() };
    assert!(tls_failed(&collect_through(&for_ip, other).await), "unknown CA");
}

// Shows mTLS: a proxy that requires a client certificate from its CA gives no data to an
// exporter without one, and the numbers to one with `cert_file`/`key_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_needs_the_client_certificate() {
    let broker = broker_with_records().await;
    let ca = Ca::new("mtls");
    let proxy = TlsProxy::start(&broker.addr, &ca.issue("server", &["127.0.0.1"]), Some(&ca)).await;
    let trust = RawTls { ca_file: Some(ca.file()), ..RawTls::default() };
    let without = collect_through(&proxy, trust.clone()).await;
    assert!(!without.up && without.brokers.is_empty(), "{:?}", without.errors);
    let client = ca.issue("client", &["exporter.test"]);
    let with = RawTls { cert_file: Some(client.cert_file), key_file: Some(client.key_file), ..trust };
    let snapshot = collect_through(&proxy, with).await;
    assert!(snapshot.up, "{:?}", snapshot.errors);
    assert_eq!(snapshot.partition("secure", 0).and_then(|p| p.high_watermark), Some(6));
}

// Shows `--tls-insecure-skip-verify` accepts a certificate no CA vouches for, for another
// name, and that the binary warns about it on stderr (issue 2: "an explicit insecure
// switch that logs a warning").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_switch_works_and_warns() {
    let broker = broker_with_records().await;
    let proxy = TlsProxy::start(&broker.addr, &Ca::new("insecure").issue("server", &["elsewhere.test"]), None).await;
    let listen = format!("127.0.0.1:{}", crate::broker::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .args(["--bootstrap-servers", &proxy.addr, "--listen", &listen, "--interval", "1"])
        .args(["--tls", "--tls-insecure-skip-verify"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exporter starts");
    let mut page = None;
    for _ in 0..100 {
        if let Some(body) = get_ok(&listen, "/metrics").filter(|b| b.contains("kafka_exporter_up{cluster=\"kafka\"} 1"))
        {
            page = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("exporter output");
    let page = page.expect("up through the unverified TLS connection");
    assert!(
        page.contains("kafka_partition_high_watermark{cluster=\"kafka\",partition=\"0\",topic=\"secure\"} 6"),
        "{page}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARNING") && stderr.contains("verification is off"), "{stderr}");
}
