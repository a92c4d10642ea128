//! Replays a group's events into who is a live member and who owns what, for the
//! ownership checkers and the unowned-time figure.

use super::history::GroupEvent;
use std::collections::BTreeMap;
use trial_model::group::coordinator::NO_GENERATION;
use trial_model::TopicPartition;

/// One consumer as the events so far show it.
#[derive(Clone, Debug)]
pub(super) struct ConsumerView {
    /// The process runs (not crashed since its last restart).
    pub alive: bool,
    /// The member id of the generation it is in, while it is a member: set by a sync,
    /// cleared when it loses the generation, is fenced, or the coordinator removes it.
    pub member_id: Option<String>,
    /// The generation of its last successful sync; kept partitions are owned under it.
    pub generation: i32,
    /// What it owns (believes it may process), with the index of the event that gave it.
    pub owned: BTreeMap<TopicPartition, usize>,
}

impl Default for ConsumerView {
    fn default() -> Self {
        ConsumerView { alive: true, member_id: None, generation: NO_GENERATION, owned: BTreeMap::new() }
    }
}

impl ConsumerView {
    /// A live member: running and in a generation the coordinator still counts it in. A
    /// zombie (removed, or unaware it lost its generation) may still own partitions, but
    /// is not a live member.
    pub fn live_member(&self) -> bool {
        self.alive && self.member_id.is_some()
    }

    fn drop_membership(&mut self) {
        self.member_id = None;
        self.generation = NO_GENERATION;
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Members {
    pub consumers: BTreeMap<u32, ConsumerView>,
}

impl Members {
    /// Applies the event at `index`. Returns whether ownership or membership may have changed.
    pub fn apply(&mut self, index: usize, event: &GroupEvent) -> bool {
        let relevant = matches!(
            event,
            GroupEvent::Assigned { .. }
                | GroupEvent::Revoked { .. }
                | GroupEvent::Lost { .. }
                | GroupEvent::Fenced { .. }
                | GroupEvent::MemberRemoved { .. }
                | GroupEvent::ConsumerCrashed { .. }
                | GroupEvent::ConsumerRestarted { .. }
        );
        let Some(consumer) = event.consumer().filter(|_| relevant) else { return false };
        let view = self.consumers.entry(consumer).or_default();
        match event {
            GroupEvent::Assigned { member_id, generation, partitions, .. } => {
                // Only a running process syncs.
                view.alive = true;
                view.member_id = Some(member_id.clone());
                view.generation = *generation;
                for tp in partitions {
                    view.owned.entry(*tp).or_insert(index);
                }
            }
            GroupEvent::Revoked { partitions, .. } => {
                for tp in partitions {
                    view.owned.remove(tp);
                }
            }
            GroupEvent::Lost { partitions, .. } => {
                for tp in partitions {
                    view.owned.remove(tp);
                }
                view.drop_membership();
            }
            GroupEvent::Fenced { .. } => view.drop_membership(),
            GroupEvent::MemberRemoved { member_id, .. } => {
                if view.member_id.as_ref() == Some(member_id) {
                    view.drop_membership();
                }
            }
            GroupEvent::ConsumerCrashed { .. } | GroupEvent::ConsumerRestarted { .. } => {
                // A process comes back with nothing: it owns only what a new sync gives it.
                view.alive = matches!(event, GroupEvent::ConsumerRestarted { .. });
                view.owned.clear();
                view.drop_membership();
            }
            _ => return false,
        }
        true
    }

    /// The live members that own `tp`, with the index of the event that gave it to them.
    pub fn owners(&self, tp: TopicPartition) -> impl Iterator<Item = (u32, &ConsumerView, usize)> + '_ {
        self.consumers
            .iter()
            .filter(|(_, view)| view.live_member())
            .filter_map(move |(c, view)| view.owned.get(&tp).map(|since| (*c, view, *since)))
    }
}
