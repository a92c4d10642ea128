//! The group checkers: pure functions over one [`GroupHistory`], each counting the
//! violations of one [`GroupProperty`](super::GroupProperty) with readable examples that
//! name the records and the events that led to them.

use super::history::{describe, Committer, ExpectedRecord, GroupEvent, GroupHistory};
use super::replay::Members;
use super::GroupPropertyResult;
use std::collections::{BTreeMap, BTreeSet};
use trial_model::tpmap::TpMap;
use trial_model::{NodeId, Offset, TopicPartition};

/// Processings of one record kept for its example (the count goes on past them).
const PROCESSINGS_SHOWN_MAX: usize = 4;

/// How often one record (position and write) was processed, and the first processings.
#[derive(Default)]
struct Seen {
    count: u64,
    indices: Vec<usize>,
}

/// at-least-once (every owed record processed) and at-most-once (no record processed
/// twice), as Kafka's consumer javadoc defines them. Returns how many processings there were.
pub(super) fn processing(
    history: &GroupHistory,
    expected: &[ExpectedRecord],
    at_least_once: &mut GroupPropertyResult,
    at_most_once: &mut GroupPropertyResult,
) -> u64 {
    // Every processing as (record, event index), per partition, sorted: a record's
    // processings are then one run, in event order, and the owed records never
    // processed are those not in the lists. (A map with one entry per record cost a
    // tenth of a benchmark run.) A partition's processings come in offset order but for
    // what is processed again, so a stable sort (which finds the runs) orders each in
    // about one pass and keeps event order among a record's processings. (One sort of
    // all of them together cost 3 % of a benchmark run.)
    let mut by_partition: TpMap<Vec<(ExpectedRecord, usize)>> = TpMap::new();
    for (index, (_, event)) in history.events.iter().enumerate() {
        if let GroupEvent::Processed { tp, offset, write, .. } = event {
            by_partition.get_or_default(*tp).push((ExpectedRecord { tp: *tp, offset: *offset, write: *write }, index));
        }
    }
    for list in by_partition.values_mut() {
        list.sort_by_key(|(r, _)| (r.offset, r.write));
    }
    let processed = by_partition.values().map(|list| list.len() as u64).sum();
    // `expected` comes sorted (`expected_records`): then one merge walk per partition,
    // which reads both lists in order; a binary search per record otherwise.
    let sorted = expected.is_sorted();
    let (mut walked, mut next) = (None, 0);
    for record in expected {
        let list = by_partition.get(&record.tp).map_or(&[][..], Vec::as_slice);
        let first = if sorted {
            if walked != Some(record.tp) {
                (walked, next) = (Some(record.tp), 0);
            }
            while list.get(next).is_some_and(|(r, _)| r < record) {
                next += 1;
            }
            next
        } else {
            list.partition_point(|(r, _)| r < record)
        };
        if list.get(first).is_none_or(|(r, _)| r != record) {
            at_least_once.violation(1, || lost_example(history, record));
        }
    }
    for list in by_partition.values() {
        for run in list.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
            let seen = Seen {
                count: run.len() as u64,
                indices: run.iter().take(PROCESSINGS_SHOWN_MAX).map(|(_, index)| *index).collect(),
            };
            at_most_once.violation(seen.count - 1, || duplicate_example(history, &run[0].0, &seen));
        }
    }
    processed
}

/// Why an owed record was never processed: a position reset skipped it, a commit passed
/// it, or the group never got that far.
fn lost_example(history: &GroupHistory, record: &ExpectedRecord) -> String {
    let head = format!("{} offset {} ({}) was never processed", record.tp, record.offset, record.write);
    let events = &history.events;
    let skipped = events.iter().find(|(_, e)| {
        matches!(e, GroupEvent::PositionReset { tp, from, to, .. }
            if *tp == record.tp && from.is_none_or(|f| f <= record.offset) && *to > record.offset)
    });
    if let Some((at, event)) = skipped {
        return format!("{head}: {} skipped it", describe(*at, event));
    }
    let passed = events.iter().enumerate().find(|(_, (_, e))| {
        matches!(e, GroupEvent::OffsetStored { tp, offset, .. } if *tp == record.tp && *offset > record.offset)
    });
    let Some((index, (at, event))) = passed else {
        let last = events.iter().rev().find_map(|(_, e)| match e {
            GroupEvent::OffsetStored { tp, offset, .. } if *tp == record.tp => Some(*offset),
            _ => None,
        });
        return match last {
            Some(offset) => format!("{head}: the group's committed offset on {} stopped at {offset}", record.tp),
            None => format!("{head}: the group never committed an offset on {}", record.tp),
        };
    };
    let mut text = format!("{head}: {} passed it", describe(*at, event));
    if let Some(consumer) = event.consumer() {
        // Committing before processing loses records only if the consumer then stops.
        let next = events[index + 1..].iter().find(|(_, e)| e.consumer() == Some(consumer) && is_setback(e));
        if let Some((at, next)) = next {
            text.push_str(&format!(", then {}", describe(*at, next)));
        }
    }
    text + &led_to(history, index, &event.consumer().into_iter().collect::<Vec<_>>(), None)
}

fn duplicate_example(history: &GroupHistory, record: &ExpectedRecord, seen: &Seen) -> String {
    let mut text = format!("{} offset {} ({}) processed {} times:", record.tp, record.offset, record.write, seen.count);
    let mut consumers = Vec::new();
    for (i, index) in seen.indices.iter().enumerate() {
        if let (at, GroupEvent::Processed { consumer, generation, .. }) = &history.events[*index] {
            text.push_str(&format!(
                "{} by c{consumer} (gen {generation}) at t={}ms",
                if i == 0 { "" } else { "," },
                at.0
            ));
            if !consumers.contains(consumer) {
                consumers.push(*consumer);
            }
        }
    }
    if seen.count as usize > seen.indices.len() {
        text.push_str(", …");
    }
    // What happened before the second processing: the replay's cause.
    let second = seen.indices.get(1).copied().unwrap_or(0);
    consumers.truncate(2);
    text + &led_to(history, second, &consumers, Some(record.tp))
}

/// Processing order per partition. A *run* is one consumer's uninterrupted processing of
/// one partition: it starts when the consumer is assigned the partition (or first
/// processes it) and ends when the consumer revokes or loses it, crashes or restarts, or
/// its position is reset (seek, `auto.offset.reset`, rewind after an abort). Within a
/// run, processed offsets strictly increase; gaps are allowed (compaction, transaction
/// markers, aborted records). One violation per step back.
pub(super) fn order(history: &GroupHistory, result: &mut GroupPropertyResult) {
    let mut last: BTreeMap<(u32, TopicPartition), (Offset, usize)> = BTreeMap::new();
    for (index, (_, event)) in history.events.iter().enumerate() {
        match event {
            GroupEvent::Processed { consumer, tp, offset, .. } => {
                if let Some((previous, previous_index)) = last.insert((*consumer, *tp), (*offset, index)) {
                    if *offset <= previous {
                        result.violation(1, || {
                            let at_previous = history.events[previous_index].0 .0;
                            format!(
                                "{} after offset {previous} at t={at_previous}ms, with no revoke, assignment or seek between{}",
                                describe(history.events[index].0, event),
                                led_to(history, index, &[*consumer], Some(*tp))
                            )
                        });
                    }
                }
            }
            GroupEvent::Assigned { consumer, partitions, .. }
            | GroupEvent::Revoked { consumer, partitions }
            | GroupEvent::Lost { consumer, partitions } => {
                for tp in partitions {
                    last.remove(&(*consumer, *tp));
                }
            }
            GroupEvent::PositionReset { consumer, tp, .. } => {
                last.remove(&(*consumer, *tp));
            }
            GroupEvent::ConsumerCrashed { consumer } | GroupEvent::ConsumerRestarted { consumer } => {
                last.retain(|(c, _), _| c != consumer);
            }
            _ => {}
        }
    }
}

/// one-owner-per-generation, and (for cooperative groups) never-two-owners-at-once: at
/// no moment do two live members own one partition under one generation, or (KIP-429)
/// at all. Ownership runs from the sync that added a partition to its revoke or loss, a
/// crash, or the end of the membership; zombies (removed, fenced or unaware of a lost
/// generation) are no live members, so their overlap is not counted here — the fencing
/// checker judges what they commit. Each overlapping pair is counted once.
pub(super) fn ownership(
    history: &GroupHistory,
    one_owner: &mut GroupPropertyResult,
    mut never_two: Option<&mut GroupPropertyResult>,
) {
    let mut members = Members::default();
    let mut reported_generation: BTreeSet<(TopicPartition, i32, u32, u32)> = BTreeSet::new();
    let mut reported_overlap: BTreeSet<(TopicPartition, usize, usize)> = BTreeSet::new();
    for (index, (at, event)) in history.events.iter().enumerate() {
        if !members.apply(index, event) {
            continue;
        }
        let GroupEvent::Assigned { consumer, .. } = event else { continue };
        let Some(view) = members.consumers.get(consumer) else { continue };
        for (tp, since) in &view.owned {
            for (other, other_view, other_since) in members.owners(*tp).filter(|(c, ..)| c != consumer) {
                let pair = (*consumer.min(&other), *consumer.max(&other));
                let since_of = |i: usize| history.events[i].0 .0;
                if other_view.generation == view.generation
                    && reported_generation.insert((*tp, view.generation, pair.0, pair.1))
                {
                    one_owner.violation(1, || {
                        format!(
                            "{tp} owned by c{other} (since t={}ms) and c{consumer} (since t={}ms) both in gen {} at t={}ms{}",
                            since_of(other_since),
                            since_of(*since),
                            view.generation,
                            at.0,
                            led_to(history, index, &[other, *consumer], None)
                        )
                    });
                }
                let Some(never_two) = never_two.as_deref_mut() else { continue };
                if reported_overlap.insert((*tp, other_since.min(*since), other_since.max(*since))) {
                    never_two.violation(1, || {
                        format!(
                            "{tp} owned by c{other} (gen {}, since t={}ms) and c{consumer} (gen {}, since t={}ms) at once from t={}ms: c{other} had not revoked it{}",
                            other_view.generation,
                            since_of(other_since),
                            view.generation,
                            since_of(*since),
                            at.0,
                            led_to(history, index, &[other, *consumer], None)
                        )
                    });
                }
            }
        }
    }
}

/// no-fenced-commit-accepted: the coordinator stores a member's commit only under the
/// group's current generation and from a member it still has (Kafka's
/// `GroupCoordinator.handleCommitOffsets`: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID;
/// FENCED_INSTANCE_ID for a replaced static member, KIP-345; the same generation fencing
/// guards transactional offset commits, KIP-447). Member ids are never reused, so once
/// removed, a member id may commit nothing more — to that coordinator: a removal lives in
/// the coordinator's memory until a new generation is written, so a successor that loads
/// the group from `__consumer_offsets` (a failover) knows the member again unless that
/// generation was written, which the generation check then covers. A removal by a
/// coordinator that another has since replaced (one cut off from the cluster, still
/// timing out sessions) fences nothing. Both are judged when the coordinator validated
/// the commit: a removal or a new generation while its append was in flight does not
/// unmake it. One violation per stored offset.
pub(super) fn fenced_commits(history: &GroupHistory, result: &mut GroupPropertyResult) {
    let mut removed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut current: Option<NodeId> = None;
    for (index, (at, event)) in history.events.iter().enumerate() {
        match event {
            GroupEvent::OffsetLoaded { coordinator, .. } => {
                current = Some(*coordinator);
                removed.clear();
            }
            GroupEvent::MemberRemoved { member_id, coordinator, .. } if current.is_none_or(|c| c == *coordinator) => {
                removed.entry(member_id.as_str()).or_insert(index);
            }
            GroupEvent::OffsetStored {
                tp,
                offset,
                by: Committer::Member { consumer, member_id, generation, validated_at },
                group_generation,
            } => {
                let head = || {
                    format!(
                        "{tp} offset {offset} from c{consumer} (member {member_id}, gen {generation}) was stored at t={}ms",
                        at.0
                    )
                };
                if generation != group_generation {
                    result.violation(1, || {
                        format!(
                            "{} while the group was in gen {group_generation}{}",
                            head(),
                            led_to(history, index, &[*consumer], None)
                        )
                    });
                } else if let Some(removal) =
                    removed.get(member_id.as_str()).filter(|removal| history.events[**removal].0 < *validated_at)
                {
                    result.violation(1, || {
                        let (removed_at, removal) = &history.events[*removal];
                        format!(
                            "{} although {}{}",
                            head(),
                            describe(*removed_at, removal),
                            led_to(history, index, &[*consumer], None)
                        )
                    });
                }
            }
            _ => {}
        }
    }
}

/// committed-offset-never-backwards: a partition's committed offset never decreases,
/// neither by a stored commit (a late or zombie commit landing after a newer one) nor by
/// a coordinator failover that loads an older value (a stored commit lost). An explicit
/// reset may move it anywhere and is the new baseline.
pub(super) fn offsets_backwards(history: &GroupHistory, result: &mut GroupPropertyResult) {
    let mut last: BTreeMap<TopicPartition, (Offset, usize)> = BTreeMap::new();
    for (index, (at, event)) in history.events.iter().enumerate() {
        let (tp, offset) = match event {
            GroupEvent::OffsetStored { tp, offset, by: Committer::Reset, .. } => {
                last.insert(*tp, (*offset, index));
                continue;
            }
            GroupEvent::OffsetStored { tp, offset, .. } => (*tp, Some(*offset)),
            GroupEvent::OffsetLoaded { tp, offset, .. } => (*tp, *offset),
            _ => continue,
        };
        if let Some(&(previous, previous_index)) = last.get(&tp) {
            if offset.is_none_or(|o| o < previous) {
                result.violation(1, || {
                    let now = offset.map_or("none".to_string(), |o| o.to_string());
                    let (previous_at, previous_event) = &history.events[previous_index];
                    format!(
                        "{tp} committed offset went back from {previous} to {now}: {}; before it {}{}",
                        describe(*at, event),
                        describe(*previous_at, previous_event),
                        led_to(history, index, &event.consumer().into_iter().collect::<Vec<_>>(), None)
                    )
                });
            }
        }
        match offset {
            Some(offset) => last.insert(tp, (offset, index)),
            None => last.remove(&tp),
        };
    }
}

/// Events that set a consumer back: it stops, or stops being a member.
fn is_setback(event: &GroupEvent) -> bool {
    matches!(
        event,
        GroupEvent::ConsumerCrashed { .. }
            | GroupEvent::ConsumerPaused { .. }
            | GroupEvent::Fenced { .. }
            | GroupEvent::MemberRemoved { .. }
            | GroupEvent::Lost { .. }
    )
}

/// What kind of step an event is in a consumer's story, for [`led_to`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The process stopped: crash or pause.
    Process,
    /// The membership ended: fenced, removed by the coordinator, partitions lost.
    Membership,
    /// An assignment or a revoke.
    Assignment,
}

fn step(event: &GroupEvent) -> Option<Step> {
    match event {
        GroupEvent::ConsumerCrashed { .. } | GroupEvent::ConsumerPaused { .. } => Some(Step::Process),
        GroupEvent::Fenced { .. } | GroupEvent::MemberRemoved { .. } | GroupEvent::Lost { .. } => {
            Some(Step::Membership)
        }
        GroupEvent::Assigned { .. } | GroupEvent::Revoked { .. } => Some(Step::Assignment),
        _ => None,
    }
}

/// The events that led to the one at `index`, as "; after …" (empty when none): for each
/// consumer named, its last crash or pause, its last loss of membership and its last
/// assignment or revoke; the last rebalance start; and, given `tp`, the last committed
/// offset stored or loaded for it. In time order.
pub(super) fn led_to(history: &GroupHistory, index: usize, consumers: &[u32], tp: Option<TopicPartition>) -> String {
    const STEPS: usize = 3;
    let mut found: BTreeSet<usize> = BTreeSet::new();
    let mut steps: BTreeSet<(u32, Step)> = BTreeSet::new();
    let (mut rebalance, mut commit) = (false, tp.is_none());
    for (i, (_, event)) in history.events[..index.min(history.events.len())].iter().enumerate().rev() {
        let take = match event {
            GroupEvent::RebalanceStarted { .. } => !std::mem::replace(&mut rebalance, true),
            GroupEvent::OffsetStored { tp: t, .. } | GroupEvent::OffsetLoaded { tp: t, .. } if Some(*t) == tp => {
                !std::mem::replace(&mut commit, true)
            }
            _ => match (event.consumer().filter(|c| consumers.contains(c)), step(event)) {
                (Some(consumer), Some(step)) => steps.insert((consumer, step)),
                _ => false,
            },
        };
        if take {
            found.insert(i);
        }
        if rebalance && commit && steps.len() == STEPS * consumers.len() {
            break;
        }
    }
    if found.is_empty() {
        return String::new();
    }
    let items: Vec<String> = found.iter().map(|i| describe(history.events[*i].0, &history.events[*i].1)).collect();
    format!("; after: {}", items.join(", "))
}
