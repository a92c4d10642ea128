//! Consumer groups in the history, and the checkers that judge each group.
//!
//! The engine records one [`GroupHistory`] per group (client-side events of its
//! consumers and what the coordinator accepted) and, at the end, calls [`check_groups`]
//! with the producer [`History`], whose committed logs say which records each group was
//! owed. Every checker is a pure function of that; none looks at the model's state.
//!
//! What is judged (names as [`GroupProperty::name`]): every owed record processed at
//! least once and at most once (exactly once is both, as Kafka's consumer javadoc puts
//! delivery semantics); per-partition processing order; no partition owned by two live
//! members of one generation, and under cooperative rebalancing (KIP-429) by two members
//! at once; no fenced member's commit accepted (KIP-345, KIP-447); committed offsets
//! never moving back except by an explicit reset. Plus [`RebalanceFigures`].

mod checkers;
mod figures;
mod history;
mod replay;

pub use figures::{rebalance_figures, RebalanceFigures};
pub use history::{describe, expected_records, Committer, ExpectedRecord, GroupEvent, GroupHistory, GroupProtocol};

use crate::checkers::{Semantics, EXAMPLES_MAX};
use crate::history::History;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProperty {
    /// Every owed record was processed at least once.
    AtLeastOnce,
    /// No record was processed more than once.
    AtMostOnce,
    /// Within one consumer's run of an assignment, processed offsets strictly increase.
    InOrderPerPartition,
    /// No partition owned by two live members under one generation.
    OneOwnerPerGeneration,
    /// No partition owned by two live members at once (checked for cooperative groups).
    NeverTwoOwnersAtOnce,
    /// The coordinator never stores a commit from a stale generation or a removed member.
    NoFencedCommitAccepted,
    /// A committed offset never moves back except by an explicit reset.
    CommittedOffsetNeverBackwards,
}

impl GroupProperty {
    pub const ALL: [GroupProperty; 7] = [
        GroupProperty::AtLeastOnce,
        GroupProperty::AtMostOnce,
        GroupProperty::InOrderPerPartition,
        GroupProperty::OneOwnerPerGeneration,
        GroupProperty::NeverTwoOwnersAtOnce,
        GroupProperty::NoFencedCommitAccepted,
        GroupProperty::CommittedOffsetNeverBackwards,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupProperty::AtLeastOnce => "at-least-once",
            GroupProperty::AtMostOnce => "at-most-once",
            GroupProperty::InOrderPerPartition => "in-order-per-partition",
            GroupProperty::OneOwnerPerGeneration => "one-owner-per-generation",
            GroupProperty::NeverTwoOwnersAtOnce => "never-two-owners-at-once",
            GroupProperty::NoFencedCommitAccepted => "no-fenced-commit-accepted",
            GroupProperty::CommittedOffsetNeverBackwards => "committed-offset-never-backwards",
        }
    }

    pub fn parse(name: &str) -> Option<GroupProperty> {
        GroupProperty::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPropertyResult {
    pub property: GroupProperty,
    /// False when the property does not apply to the group (never-two-owners-at-once on
    /// an eager group, whose guarantee is per generation only).
    pub checked: bool,
    pub violations: u64,
    pub examples: Vec<String>,
}

impl GroupPropertyResult {
    fn new(property: GroupProperty) -> Self {
        GroupPropertyResult { property, checked: true, violations: 0, examples: Vec::new() }
    }

    /// Counts `count` violations shown by one example (built only while examples are kept).
    fn violation(&mut self, count: u64, example: impl FnOnce() -> String) {
        self.violations += count;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }

    pub fn held(&self) -> bool {
        self.violations == 0
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    /// Records owed: acknowledged and in a subscribed partition's committed log.
    pub expected: u64,
    /// `Processed` events.
    pub processed: u64,
    /// Owed records never processed.
    pub lost: u64,
    /// Processings beyond the first of one record.
    pub duplicates: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupVerdicts {
    pub group: String,
    pub protocol: GroupProtocol,
    /// In [`GroupProperty::ALL`] order.
    pub results: Vec<GroupPropertyResult>,
    pub counts: GroupCounts,
    /// The delivery semantics the group's processing showed.
    pub semantics: Semantics,
    pub rebalances: RebalanceFigures,
}

impl GroupVerdicts {
    pub fn result(&self, property: GroupProperty) -> &GroupPropertyResult {
        // `check_group` fills every property in ALL order.
        &self.results[GroupProperty::ALL.iter().position(|p| *p == property).unwrap_or(0)]
    }

    /// Whether every checked property held.
    pub fn held(&self) -> bool {
        self.results.iter().all(GroupPropertyResult::held)
    }

    /// The group's part of a text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.counts;
        let _ = writeln!(
            out,
            "group {} ({}): observed semantics {} · owed {} · processed {} · lost {} · duplicates {}",
            self.group,
            self.protocol.name(),
            self.semantics.name(),
            c.expected,
            c.processed,
            c.lost,
            c.duplicates
        );
        let _ = writeln!(out, "  {}", self.rebalances.text());
        for result in &self.results {
            let status = match (result.checked, result.held()) {
                (false, _) => "n/a     ",
                (true, true) => "held    ",
                (true, false) => "VIOLATED",
            };
            let _ = writeln!(out, "  {status} {:<32} {:>8} violation(s)", result.property.name(), result.violations);
            for example in &result.examples {
                let _ = writeln!(out, "             {example}");
            }
        }
        out
    }
}

/// Runs every group checker over one group's history; `expected` are the records it was
/// owed (see [`expected_records`]).
pub fn check_group(history: &GroupHistory, expected: &[ExpectedRecord]) -> GroupVerdicts {
    let [mut at_least_once, mut at_most_once, mut order, mut one_owner, mut never_two, mut fenced, mut backwards] =
        GroupProperty::ALL.map(GroupPropertyResult::new);
    let processed = checkers::processing(history, expected, &mut at_least_once, &mut at_most_once);
    checkers::order(history, &mut order);
    never_two.checked = history.protocol == GroupProtocol::Cooperative;
    checkers::ownership(history, &mut one_owner, never_two.checked.then_some(&mut never_two));
    checkers::fenced_commits(history, &mut fenced);
    checkers::offsets_backwards(history, &mut backwards);
    let counts = GroupCounts {
        expected: expected.len() as u64,
        processed,
        lost: at_least_once.violations,
        duplicates: at_most_once.violations,
    };
    let semantics = match (at_least_once.held(), at_most_once.held()) {
        (true, true) => Semantics::ExactlyOnce,
        (true, false) => Semantics::AtLeastOnce,
        (false, true) => Semantics::AtMostOnce,
        (false, false) => Semantics::None,
    };
    GroupVerdicts {
        group: history.group.clone(),
        protocol: history.protocol,
        results: vec![at_least_once, at_most_once, order, one_owner, never_two, fenced, backwards],
        counts,
        semantics,
        rebalances: rebalance_figures(history),
    }
}

/// Runs the group checkers over every group of a run, each against the records its
/// subscribed topics hold in `history`'s committed logs.
pub fn check_groups(groups: &[GroupHistory], history: &History) -> Vec<GroupVerdicts> {
    groups.iter().map(|group| check_group(group, &expected_records(history, &group.topics))).collect()
}
