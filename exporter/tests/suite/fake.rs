//! An in-test fake Kafka cluster on 127.0.0.1, built on kafka-protocol's `broker` feature
//! (decode requests, encode responses). It exists for what one real noida-db cannot show:
//! several brokers of one cluster (routing per partition leader and per group
//! coordinator), brokers too old for the batched request versions, a broker that accepts
//! and never answers, and a broker that dies at a chosen request. It answers only the
//! APIs the exporter sends, from a fixed description of the cluster, and logs every
//! request it receives (broker, API, version) for the tests to count.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Kafka error codes the fake answers with (`org.apache.kafka.common.protocol.Errors`).
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_COORDINATOR: i16 = 16;
/// Record time the fake gives the record at offset 0.
pub const MAX_TIMESTAMP_MS: i64 = 1_700_000_000_000;

#[derive(Clone)]
pub struct Partition {
    pub topic: &'static str,
    pub index: i32,
    pub leader: i32,
    pub low: i64,
    pub high: i64,
}

#[derive(Clone)]
pub struct Group {
    pub name: String,
    pub coordinator: i32,
    /// (topic, partition, committed offset)
    pub offsets: Vec<(&'static str, i32, i64)>,
}

/// How one fake broker behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behaviour {
    Answer,
    /// Accepts connections, reads requests, never answers (a hung broker).
    Silent,
    /// Answers until this API arrives, then closes every connection and stops listening,
    /// as a killed process does.
    DieOn(ApiKey),
}

#[derive(Clone, Default)]
pub struct Description {
    pub partitions: Vec<Partition>,
    pub groups: Vec<Group>,
    /// Highest version advertised per API (default: everything the codec knows).
    pub max_versions: BTreeMap<i16, i16>,
    /// When set, every connection must authenticate first (see `fake_sasl.rs`).
    pub sasl: Option<crate::fake_sasl::Credentials>,
}

struct Shared {
    description: Description,
    brokers: Vec<(i32, u16)>,
    /// (broker, API key, version) per request received.
    log: Mutex<Vec<(i32, i16, i16)>>,
}

pub struct FakeCluster {
    pub brokers: Vec<(i32, String)>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    pub async fn start(brokers: &[(i32, Behaviour)], description: Description) -> FakeCluster {
        let mut listeners = Vec::new();
        for (id, behaviour) in brokers {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            let port = listener.local_addr().expect("bound").port();
            listeners.push((*id, *behaviour, port, listener));
        }
        let shared = Arc::new(Shared {
            description,
            brokers: listeners.iter().map(|(id, _, port, _)| (*id, *port)).collect(),
            log: Mutex::new(Vec::new()),
        });
        let mut tasks = Vec::new();
        for (id, behaviour, _, listener) in listeners {
            tasks.push(tokio::spawn(accept(id, behaviour, listener, shared.clone())));
        }
        let brokers = shared.brokers.iter().map(|(id, port)| (*id, format!("127.0.0.1:{port}"))).collect();
        FakeCluster { brokers, shared, tasks }
    }

    pub fn bootstrap(&self) -> String {
        self.brokers[0].1.clone()
    }

    /// Requests of `api` that `broker` received, with their versions.
    pub fn received(&self, broker: i32, api: ApiKey) -> Vec<i16> {
        let log = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().filter(|(b, key, _)| *b == broker && *key == api as i16).map(|(_, _, v)| *v).collect()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept(id: i32, behaviour: Behaviour, listener: TcpListener, shared: Arc<Shared>) {
    let dead = Arc::new(AtomicBool::new(false));
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { return };
                connections.push(tokio::spawn(serve(id, behaviour, stream, shared.clone(), dead.clone())));
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        if dead.load(Ordering::SeqCst) {
            // The process is gone: no listener, no connections.
            for connection in &connections {
                connection.abort();
            }
            return;
        }
    }
}

async fn serve(id: i32, behaviour: Behaviour, mut stream: TcpStream, shared: Arc<Shared>, dead: Arc<AtomicBool>) {
    let mut sasl = shared.description.sasl.clone().map(crate::fake_sasl::Session::new);
    loop {
        let Ok(length) = stream.read_i32().await else { return };
        let mut body = vec![0u8; length.max(0) as usize];
        if stream.read_exact(&mut body).await.is_err() || dead.load(Ordering::SeqCst) {
            return;
        }
        let mut body = Bytes::from(body);
        let (key, version) = (i16::from_be_bytes([body[0], body[1]]), i16::from_be_bytes([body[2], body[3]]));
        let Ok(api) = ApiKey::try_from(key) else { return };
        shared.log.lock().unwrap_or_else(|e| e.into_inner()).push((id, key, version));
        match behaviour {
            Behaviour::Silent => continue,
            Behaviour::DieOn(fatal) if fatal == api => {
                dead.store(true, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
        let Ok(header) = RequestHeader::decode(&mut body, api.request_header_version(version)) else { return };
        let response = match &mut sasl {
            Some(session) if !session.authenticated() => match api {
                ApiKey::ApiVersions => answer(&shared, id, api, version, &mut body),
                ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => session.handle(api, version, &mut body),
                // Kafka closes a connection that skips authentication.
                _ => None,
            },
            _ => answer(&shared, id, api, version, &mut body),
        };
        let Some(response) = response else { return };
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        let header = ResponseHeader::default().with_correlation_id(header.correlation_id);
        if header.encode(&mut frame, api.response_header_version(version)).is_err() {
            return;
        }
        frame.extend_from_slice(&response);
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

pub fn encoded<M: Encodable>(message: M, version: i16) -> Option<Bytes> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version).ok()?;
    Some(out.freeze())
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The response body to one request, `None` for an API the fake does not speak.
fn answer(shared: &Shared, id: i32, api: ApiKey, version: i16, body: &mut Bytes) -> Option<Bytes> {
    let d = &shared.description;
    match api {
        ApiKey::ApiVersions => encoded(api_versions(d), version),
        ApiKey::Metadata => encoded(metadata(shared), version),
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(body, version).ok()?;
            encoded(list_offsets(d, id, &request), version)
        }
        ApiKey::ListGroups => {
            let groups = d.groups.iter().filter(|g| g.coordinator == id).map(|g| {
                list_groups_response::ListedGroup::default()
                    .with_group_id(GroupId(text(&g.name)))
                    .with_protocol_type(text("consumer"))
                    .with_group_state(text("Empty"))
            });
            encoded(ListGroupsResponse::default().with_groups(groups.collect()), version)
        }
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::decode(body, version).ok()?;
            encoded(find_coordinator(shared, &request, version), version)
        }
        ApiKey::DescribeGroups => {
            let request = DescribeGroupsRequest::decode(body, version).ok()?;
            let groups = request.groups.iter().map(|name| {
                let mine = d.groups.iter().any(|g| g.name == name.as_str() && g.coordinator == id);
                describe_groups_response::DescribedGroup::default()
                    .with_group_id(name.clone())
                    .with_error_code(if mine { 0 } else { NOT_COORDINATOR })
                    .with_group_state(text("Empty"))
                    .with_protocol_type(text("consumer"))
            });
            encoded(DescribeGroupsResponse::default().with_groups(groups.collect()), version)
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::decode(body, version).ok()?;
            encoded(offset_fetch(d, id, &request, version), version)
        }
        _ => None,
    }
}

fn api_versions(d: &Description) -> ApiVersionsResponse {
    let ranges = [
        (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
        (ApiKey::Metadata, MetadataRequest::VERSIONS),
        (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
        (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
        (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
        (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
        (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
        (ApiKey::SaslHandshake, SaslHandshakeRequest::VERSIONS),
        (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
    ];
    let keys = ranges.iter().map(|(key, range)| {
        let max = d.max_versions.get(&(*key as i16)).copied().unwrap_or(range.max);
        api_versions_response::ApiVersion::default()
            .with_api_key(*key as i16)
            .with_min_version(range.min)
            .with_max_version(max)
    });
    ApiVersionsResponse::default().with_api_keys(keys.collect())
}

fn metadata(shared: &Shared) -> MetadataResponse {
    let brokers = shared.brokers.iter().map(|(id, port)| {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(*id))
            .with_host(text("127.0.0.1"))
            .with_port(i32::from(*port))
    });
    let mut topics: BTreeMap<&str, Vec<MetadataResponsePartition>> = BTreeMap::new();
    for p in &shared.description.partitions {
        topics.entry(p.topic).or_default().push(
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(vec![BrokerId(p.leader)])
                .with_isr_nodes(vec![BrokerId(p.leader)]),
        );
    }
    let topics = topics.into_iter().map(|(name, partitions)| {
        MetadataResponseTopic::default().with_name(Some(TopicName(text(name)))).with_partitions(partitions)
    });
    MetadataResponse::default()
        .with_brokers(brokers.collect())
        .with_cluster_id(Some(text("fake")))
        .with_controller_id(BrokerId(shared.brokers[0].0))
        .with_topics(topics.collect())
}

fn list_offsets(d: &Description, id: i32, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|asked| {
            let found =
                d.partitions.iter().find(|p| p.topic == topic.name.as_str() && p.index == asked.partition_index);
            let answer = ListOffsetsPartitionResponse::default().with_partition_index(asked.partition_index);
            match found {
                // -3 (max timestamp, KIP-734): the newest record, stamped MAX_TIMESTAMP_MS + offset.
                Some(p) if p.leader == id && asked.timestamp == -3 && p.high > p.low => {
                    answer.with_timestamp(MAX_TIMESTAMP_MS + p.high - 1).with_offset(p.high - 1)
                }
                Some(p) if p.leader == id && asked.timestamp == -3 => answer.with_timestamp(-1).with_offset(-1),
                Some(p) if p.leader == id => {
                    answer.with_timestamp(-1).with_offset(if asked.timestamp == -2 { p.low } else { p.high })
                }
                _ => answer.with_error_code(NOT_LEADER_OR_FOLLOWER),
            }
        });
        ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions.collect())
    });
    ListOffsetsResponse::default().with_topics(topics.collect())
}

fn find_coordinator(shared: &Shared, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let coordinator_of = |key: &str| {
        let id =
            shared.description.groups.iter().find(|g| g.name == key).map_or(shared.brokers[0].0, |g| g.coordinator);
        let port = shared.brokers.iter().find(|(b, _)| *b == id).map_or(0, |(_, p)| i32::from(*p));
        (id, port)
    };
    if version < 4 {
        let (id, port) = coordinator_of(request.key.as_str());
        return FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(text("127.0.0.1"))
            .with_port(port);
    }
    let coordinators = request.coordinator_keys.iter().map(|key| {
        let (id, port) = coordinator_of(key.as_str());
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(id))
            .with_host(text("127.0.0.1"))
            .with_port(port)
    });
    FindCoordinatorResponse::default().with_coordinators(coordinators.collect())
}

/// A group's committed offsets by topic, or `None` when `id` does not coordinate it.
fn committed(d: &Description, id: i32, group: &str) -> Option<BTreeMap<&'static str, Vec<(i32, i64)>>> {
    let group = d.groups.iter().find(|g| g.name == group && g.coordinator == id)?;
    let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (topic, partition, offset) in &group.offsets {
        topics.entry(topic).or_default().push((*partition, *offset));
    }
    Some(topics)
}

fn offset_fetch(d: &Description, id: i32, request: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version < 8 {
        let Some(topics) = committed(d, id, request.group_id.as_str()) else {
            return OffsetFetchResponse::default().with_error_code(NOT_COORDINATOR);
        };
        let topics = topics.into_iter().map(|(name, partitions)| {
            let partitions = partitions.into_iter().map(|(index, offset)| {
                OffsetFetchResponsePartition::default().with_partition_index(index).with_committed_offset(offset)
            });
            OffsetFetchResponseTopic::default().with_name(TopicName(text(name))).with_partitions(partitions.collect())
        });
        return OffsetFetchResponse::default().with_topics(topics.collect());
    }
    let groups = request.groups.iter().map(|asked| {
        let answer = OffsetFetchResponseGroup::default().with_group_id(asked.group_id.clone());
        let Some(topics) = committed(d, id, asked.group_id.as_str()) else {
            return answer.with_error_code(NOT_COORDINATOR);
        };
        let topics = topics.into_iter().map(|(name, partitions)| {
            let partitions = partitions.into_iter().map(|(index, offset)| {
                OffsetFetchResponsePartitions::default().with_partition_index(index).with_committed_offset(offset)
            });
            OffsetFetchResponseTopics::default().with_name(TopicName(text(name))).with_partitions(partitions.collect())
        });
        answer.with_topics(topics.collect())
    });
    OffsetFetchResponse::default().with_groups(groups.collect())
}
