//! SASL against the in-test SASL server of the fake cluster (`fake_sasl.rs`; noida-db has
//! no SASL): every mechanism authenticates, a wrong password is refused, and the password
//! shows nowhere — not in errors, Debug output, metrics or the binary's output.

use crate::fake::{Behaviour, Description, FakeCluster, Partition};
use crate::fake_sasl::Credentials;
use crate::faults::collector;
use crate::http::get_ok;
use kafka_protocol::messages::ApiKey;
use std::process::{Command, Stdio};
use std::time::Duration;
use trial_exporter::client::{Connection, Security};
use trial_exporter::render::render;
use trial_exporter::sasl::{Mechanism, SaslConfig, Secret};

const WRONG: &str = "wr0ng-pa55word-never-shown";

fn cluster(mechanism: &'static str, echo_on_failure: bool) -> Description {
    Description {
        partitions: vec![Partition { topic: "t", index: 0, leader: 1, low: 0, high: 8 }],
        sasl: Some(Credentials { mechanism, username: "exporter", password: "right-password", echo_on_failure }),
        ..Description::default()
    }
}

fn security(mechanism: Mechanism, password: &str) -> Security {
    let sasl = SaslConfig { mechanism, username: "exporter".into(), password: Secret::new(password.into()) };
    Security { sasl: Some(sasl), tls: None }
}

// Shows PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 each authenticate (SaslHandshake v1, then
// one SaslAuthenticate for PLAIN and two for SCRAM, KIP-152/KIP-84) and the collection is
// up; without SASL the broker closes the connection and up is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mechanism_authenticates() {
    for (mechanism, name, rounds) in [
        (Mechanism::Plain, "PLAIN", 1),
        (Mechanism::ScramSha256, "SCRAM-SHA-256", 2),
        (Mechanism::ScramSha512, "SCRAM-SHA-512", 2),
    ] {
        let fake = FakeCluster::start(&[(1, Behaviour::Answer)], cluster(name, false)).await;
        let mut collector = collector(&fake.bootstrap(), Duration::from_secs(2));
        collector.config.security = security(mechanism, "right-password");
        let snapshot = collector.collect().await;
        assert!(snapshot.up, "{name}: {:?}", snapshot.errors);
        assert_eq!(snapshot.partition("t", 0).and_then(|p| p.high_watermark), Some(8), "{name}");
        let handshakes = fake.received(1, ApiKey::SaslHandshake);
        assert!(!handshakes.is_empty() && handshakes.iter().all(|v| *v == 1), "{name}: {handshakes:?}");
        assert_eq!(fake.received(1, ApiKey::SaslAuthenticate).len(), rounds * handshakes.len(), "{name}");
        let snapshot = crate::faults::collector(&fake.bootstrap(), Duration::from_secs(2)).collect().await;
        assert!(!snapshot.up, "{name}: no SASL, no data");
    }
}

// Shows a wrong password gives up=0 and errors{error="auth"}, and the password appears in
// no error text, no Debug output and no metric — even when the broker quotes what it
// received in its error message (the client blanks the password out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_never_shown() {
    for (mechanism, name) in [(Mechanism::Plain, "PLAIN"), (Mechanism::ScramSha512, "SCRAM-SHA-512")] {
        let fake = FakeCluster::start(&[(1, Behaviour::Answer)], cluster(name, true)).await;
        let error = Connection::connect_secured(&fake.bootstrap(), Duration::from_secs(2), &security(mechanism, WRONG))
            .await
            .err()
            .expect("a wrong password is refused");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("authentication failed"), "{shown}");
        assert!(!shown.contains(WRONG), "{name}: {shown}");
        let mut collector = collector(&fake.bootstrap(), Duration::from_secs(2));
        collector.config.security = security(mechanism, WRONG);
        let snapshot = collector.collect().await;
        assert!(!snapshot.up);
        assert!(snapshot.errors.contains_key(&("Metadata".to_string(), "auth".to_string())), "{:?}", snapshot.errors);
        let debug = format!("{:?} {:?}", collector.config, snapshot);
        let page = render(&[snapshot], &Default::default());
        assert!(!debug.contains(WRONG) && !page.contains(WRONG), "{name}");
    }
}

// Shows the binary reads the password from an environment variable it is named by, and
// with a wrong one serves up=0 and an auth error count, while neither its output nor
// /metrics carries the password (issue 2: secrets never in logs, errors or metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_the_password_out_of_output_and_metrics() {
    let fake = FakeCluster::start(&[(1, Behaviour::Answer)], cluster("SCRAM-SHA-256", true)).await;
    let listen = format!("127.0.0.1:{}", crate::broker::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_kafka-trial-exporter"))
        .args(["--bootstrap-servers", &fake.bootstrap(), "--listen", &listen, "--interval", "1"])
        .args(["--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "exporter"])
        .args(["--sasl-password-env", "EXPORTER_TEST_PASSWORD"])
        .env("EXPORTER_TEST_PASSWORD", WRONG)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exporter starts");
    let mut page = None;
    for _ in 0..100 {
        if let Some(body) = get_ok(&listen, "/metrics") {
            page = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let output = child.wait_with_output().expect("exporter output");
    let page = page.expect("/metrics served");
    assert!(page.contains("kafka_exporter_up{cluster=\"kafka\"} 0\n"), "{page}");
    assert!(page.contains("error=\"auth\""), "{page}");
    assert!(!page.contains(WRONG));
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!printed.contains(WRONG), "{printed}");
}
