//! The consumer-group half of a collection: ListGroups to every broker, FindCoordinator,
//! then per coordinator DescribeGroups and OffsetFetch.
//!
//! Batched where the broker can (FindCoordinator v4+, KIP-699; OffsetFetch v8+, KIP-709):
//! requests then do not grow with the number of groups. Older brokers get one request per
//! group, as Kafka's own admin client does when it downgrades (`CoordinatorStrategy`
//! `batch = false`, `ListConsumerGroupOffsetsHandler` one group per request); the version
//! comes from the ApiVersions negotiation of the connection.

use super::Collector;
use crate::snapshot::{GroupInfo, GroupOffset, LagStatus, MemberInfo, Snapshot};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

/// First FindCoordinator version with `coordinator_keys` (KIP-699).
const FIND_COORDINATOR_BATCHED: i16 = 4;
/// First OffsetFetch version with `groups` (KIP-709).
const OFFSET_FETCH_BATCHED: i16 = 8;

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

impl Collector {
    pub(super) async fn groups(&mut self, snapshot: &mut Snapshot, addresses: &BTreeMap<i32, String>) {
        // ListGroups: every broker lists the groups it coordinates.
        let mut listed: Vec<String> = Vec::new();
        for (broker, addr) in addresses {
            if let Ok((response, _)) =
                self.call(snapshot, "ListGroups", *broker, addr, &ListGroupsRequest::default()).await
            {
                listed.extend(response.groups.iter().map(|g| g.group_id.to_string()));
            }
        }
        listed.retain(|group| self.config.groups.passes(group));
        listed.sort();
        listed.dedup();
        if listed.is_empty() {
            return;
        }
        let Some(by_coordinator) = self.coordinators(snapshot, addresses, &listed).await else { return };
        for (coordinator, groups) in by_coordinator {
            let Some(addr) = addresses.get(&coordinator) else { continue };
            self.describe_and_fetch(snapshot, coordinator, addr, &groups).await;
        }
    }

    /// Groups by coordinator: one batched FindCoordinator through any live broker, or one
    /// per group when that broker is older than v4.
    async fn coordinators(
        &mut self,
        snapshot: &mut Snapshot,
        addresses: &BTreeMap<i32, String>,
        groups: &[String],
    ) -> Option<BTreeMap<i32, Vec<String>>> {
        let (&any, any_addr) = addresses.iter().next()?;
        // ListGroups just opened the connection, unless that broker is down.
        let version = self.version_known::<FindCoordinatorRequest>(any);
        let mut found: Vec<(String, i32, i16)> = Vec::with_capacity(groups.len());
        if version.is_none_or(|v| v >= FIND_COORDINATOR_BATCHED) {
            let keys: Vec<StrBytes> = groups.iter().map(|g| StrBytes::from_string(g.clone())).collect();
            let request = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(keys);
            let (response, _) = self.call(snapshot, "FindCoordinator", any, any_addr, &request).await.ok()?;
            found.extend(response.coordinators.iter().map(|c| (c.key.to_string(), *c.node_id, c.error_code)));
        } else {
            for group in groups {
                let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.clone()));
                if let Ok((response, _)) = self.call(snapshot, "FindCoordinator", any, any_addr, &request).await {
                    found.push((group.clone(), *response.node_id, response.error_code));
                }
            }
        }
        let mut by_coordinator: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (group, node, error_code) in found {
            if error_code == 0 {
                by_coordinator.entry(node).or_default().push(group);
            } else {
                Self::fail(snapshot, "FindCoordinator", &format!("code {error_code}"));
            }
        }
        Some(by_coordinator)
    }

    async fn describe_and_fetch(&mut self, snapshot: &mut Snapshot, coordinator: i32, addr: &str, groups: &[String]) {
        let describe = DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| group_id(g)).collect());
        let Ok((response, _)) = self.call(snapshot, "DescribeGroups", coordinator, addr, &describe).await else {
            return;
        };
        let mut infos: BTreeMap<String, GroupInfo> = BTreeMap::new();
        for group in &response.groups {
            let info = described(group, coordinator);
            infos.insert(info.group.clone(), info);
        }
        // DescribeGroups just succeeded on this connection.
        let version = self.version_known::<OffsetFetchRequest>(coordinator);
        if version.is_none_or(|v| v >= OFFSET_FETCH_BATCHED) {
            // Every group of this coordinator in one request.
            let request_groups = groups
                .iter()
                .map(|g| OffsetFetchRequestGroup::default().with_group_id(group_id(g)).with_topics(None))
                .collect();
            let fetch = OffsetFetchRequest::default().with_groups(request_groups);
            if let Ok((response, _)) = self.call(snapshot, "OffsetFetch", coordinator, addr, &fetch).await {
                for group in &response.groups {
                    let Some(info) = infos.get_mut(group.group_id.as_str()) else { continue };
                    for topic in &group.topics {
                        let partitions =
                            topic.partitions.iter().map(|p| (p.partition_index, p.committed_offset, p.error_code));
                        info.offsets.extend(committed(&topic.name, partitions));
                    }
                }
            }
        } else {
            for group in groups {
                // Topics null: every partition the group committed (v2+).
                let fetch = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None);
                let Ok((response, _)) = self.call(snapshot, "OffsetFetch", coordinator, addr, &fetch).await else {
                    continue;
                };
                let Some(info) = infos.get_mut(group.as_str()) else { continue };
                for topic in &response.topics {
                    let partitions =
                        topic.partitions.iter().map(|p| (p.partition_index, p.committed_offset, p.error_code));
                    info.offsets.extend(committed(&topic.name, partitions));
                }
            }
        }
        snapshot.groups.extend(infos.into_values());
    }
}

/// The committed offsets of one topic: partitions with no commit (-1) or an error get none.
fn committed(topic: &TopicName, partitions: impl Iterator<Item = (i32, i64, i16)>) -> Vec<GroupOffset> {
    partitions
        .filter(|(_, offset, error_code)| *offset >= 0 && *error_code == 0)
        .map(|(partition, committed, _)| GroupOffset {
            topic: topic.to_string(),
            partition,
            committed,
            lag_seconds: None,
            status: LagStatus::Ok,
        })
        .collect()
}

fn described(group: &describe_groups_response::DescribedGroup, coordinator: i32) -> GroupInfo {
    GroupInfo {
        group: group.group_id.to_string(),
        state: group.group_state.to_string(),
        protocol_type: group.protocol_type.to_string(),
        protocol: group.protocol_data.to_string(),
        coordinator,
        members: group.members.len(),
        member_info: group
            .members
            .iter()
            .map(|m| MemberInfo {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
            })
            .collect(),
        offsets: Vec::new(),
        status: LagStatus::Ok,
    }
}
