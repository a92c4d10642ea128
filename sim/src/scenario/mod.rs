//! Scenario files (`scenarios/*.toml`): parsed at the edge into a validated [`Scenario`].
//! Unknown keys are rejected; every error names the file, the line and the key.

use crate::checkers::Property;
use crate::faults::ScheduledFault;

mod file;
pub mod matrix;
mod write;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use trial_model::{
    Acks, BrokerConfig, CommitMode, ConsumerConfig, ControllerConfig, GroupsConfig, MessageKind, NullKeyPartitioner,
    ProducerConfig, Protocol, TopicConfig, TopicId, Truncation,
};

/// Bound on a run's simulated length, so that a typo cannot make a run that never ends.
pub const SIM_TIME_MAX_MS: u64 = 24 * 3_600 * 1_000;
pub const BROKERS_MAX: u32 = 64;
pub const PRODUCERS_MAX: usize = 64;
pub const CONSUMERS_MAX: usize = 256;
/// Name of the internal topic of committed offsets (created when a scenario has groups).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Name of the internal topic of transaction states (created when a scenario has
/// transactions).
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
pub const TXN_PRODUCERS_MAX: usize = 64;
/// Bound on the records of one transaction of the workload.
pub const RECORDS_PER_TXN_MAX: u32 = 1_000;
pub const PARTITIONS_MAX: u32 = 4_096;
pub const FAULTS_MAX: usize = 10_000;
pub const RATE_MAX: f64 = 1_000_000.0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (Some(line), false) => write!(f, "{}:{}: `{}`: {}", self.file, line, self.key, self.message),
            (Some(line), true) => write!(f, "{}:{}: {}", self.file, line, self.message),
            (None, false) => write!(f, "{}: `{}`: {}", self.file, self.key, self.message),
            (None, true) => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSpec {
    pub name: String,
    pub topic: TopicId,
    /// Records per simulated second.
    pub rate: f64,
    /// Size of the key space; 0 sends null keys.
    pub keys: u32,
    /// `config.enable_idempotence` as resolved by [`resolve_idempotence`].
    pub config: ProducerConfig,
    /// `enable_idempotence` as the file wrote it (`None`: Kafka's default rule).
    pub idempotence: Option<bool>,
}

/// Kafka's rule for `enable.idempotence` (3.2+, KAFKA-13598): written true, it needs
/// acks=all, retries > 0 and at most 5 in flight, or the producer refuses to start;
/// not written, it is on unless one of those settings says otherwise.
pub fn resolve_idempotence(config: &mut ProducerConfig, explicit: Option<bool>) -> Result<(), &'static str> {
    config.enable_idempotence = explicit.unwrap_or(true);
    match config.idempotence_conflict() {
        Some(why) if explicit == Some(true) => Err(why),
        Some(_) => {
            config.enable_idempotence = false;
            Ok(())
        }
        None => Ok(()),
    }
}

/// The transactional workload: `producers` transactional producers (transactional ids
/// `txn-0`, `txn-1`, …), each running one transaction after another on `topic`.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnSpec {
    pub producers: u32,
    pub topic: TopicId,
    /// Records per transaction, spread over the topic's partitions at random.
    pub records_per_txn: u32,
    /// Fraction of transactions the application aborts instead of committing.
    pub abort_ratio: f64,
    /// How often an idle producer begins the next transaction.
    pub interval_ms: u64,
    /// The client settings every producer starts from (its transactional id is set
    /// per producer).
    pub config: trial_model::txn::TxnProducerConfig,
}

impl TxnSpec {
    pub fn transactional_id(index: u32) -> String {
        format!("txn-{index}")
    }
}

/// The consume–transform–produce workload: `apps` processes, each a read_committed
/// consumer in `group` and a transactional producer (transactional ids `pipeline-0`,
/// `pipeline-1`, …, one per process as KIP-447 allows), copying every record of `input`
/// to `output` inside transactions that also commit the input offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    pub apps: u32,
    pub group: String,
    pub input: (String, TopicId),
    pub output: TopicId,
    /// How often an idle process calls `poll()`.
    pub poll_interval_ms: u64,
    /// The consumer every process starts from (manual commits, read_committed).
    pub consumer: ConsumerConfig,
    /// The producer every process starts from (its transactional id is set per process).
    pub producer: trial_model::txn::TxnProducerConfig,
}

impl PipelineSpec {
    pub fn transactional_id(index: u32) -> String {
        format!("pipeline-{index}")
    }
}

/// A consumer group: `consumers` members running the same application loop.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub topics: Vec<(String, TopicId)>,
    pub consumers: u32,
    /// Each consumer gets `group.instance.id` = `<group>-<index>` (KIP-345).
    pub static_membership: bool,
    /// The template every member starts from.
    pub config: ConsumerConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    pub latency_ms: (u64, u64),
    pub loss: f64,
    pub duplicate: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec { latency_ms: (1, 3), loss: 0.0, duplicate: 0.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NemesisKind {
    Kill,
    PowerLoss,
    /// A graceful stop (controlled shutdown), then a restart.
    Shutdown,
    Pause,
    Partition,
    Isolate,
    Loss,
    Duplicate,
    Latency,
    DropKind,
    ClockOffset,
}

impl NemesisKind {
    pub const ALL: [NemesisKind; 11] = [
        NemesisKind::Kill,
        NemesisKind::PowerLoss,
        NemesisKind::Shutdown,
        NemesisKind::Pause,
        NemesisKind::Partition,
        NemesisKind::Isolate,
        NemesisKind::Loss,
        NemesisKind::Duplicate,
        NemesisKind::Latency,
        NemesisKind::DropKind,
        NemesisKind::ClockOffset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::PowerLoss => "power-loss",
            NemesisKind::Shutdown => "shutdown",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Isolate => "isolate",
            NemesisKind::Loss => "loss",
            NemesisKind::Duplicate => "duplicate",
            NemesisKind::Latency => "latency",
            NemesisKind::DropKind => "drop-kind",
            NemesisKind::ClockOffset => "clock-offset",
        }
    }

    fn parse(name: &str) -> Option<NemesisKind> {
        NemesisKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NemesisSpec {
    pub interval_ms: (u64, u64),
    pub fault_duration_ms: (u64, u64),
    pub kinds: Vec<NemesisKind>,
    /// Swarm testing: the seed picks which of `kinds` are on in a run.
    pub swarm: bool,
    /// Most brokers down (killed, powered off or paused) at once.
    pub max_down: u32,
    /// Whether the controller may be a fault target too.
    pub controller: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expect {
    pub hold: Vec<Property>,
    pub violate: Vec<Property>,
    /// Consumer-group properties, judged for every group of the scenario.
    pub group_hold: Vec<crate::groups::GroupProperty>,
    pub group_violate: Vec<crate::groups::GroupProperty>,
    /// Transaction properties, judged when the scenario has transactions.
    pub txn_hold: Vec<crate::txns::TxnProperty>,
    pub txn_violate: Vec<crate::txns::TxnProperty>,
}

/// Which list of an expectation an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpectList {
    Hold,
    Violate,
}

/// The `hold` and `violate` lists of an `[expect]` or a `[[matrix.expect]]` entry, each
/// name sorted into cluster, group or transaction properties. An unknown name, or one in
/// both lists, is an error about that list.
pub(crate) fn parse_expect(hold: &[String], violate: &[String]) -> Result<Expect, (ExpectList, String)> {
    use crate::groups::GroupProperty;
    use crate::txns::TxnProperty;
    let mut expect = Expect::default();
    for (list, names) in [(ExpectList::Hold, hold), (ExpectList::Violate, violate)] {
        for name in names {
            let holds = list == ExpectList::Hold;
            if let Some(p) = Property::parse(name) {
                if holds { &mut expect.hold } else { &mut expect.violate }.push(p);
            } else if let Some(p) = GroupProperty::parse(name) {
                if holds { &mut expect.group_hold } else { &mut expect.group_violate }.push(p);
            } else if let Some(p) = TxnProperty::parse(name) {
                if holds { &mut expect.txn_hold } else { &mut expect.txn_violate }.push(p);
            } else {
                let names: Vec<&str> = Property::ALL
                    .iter()
                    .map(|p| p.name())
                    .chain(GroupProperty::ALL.iter().map(|p| p.name()))
                    .chain(TxnProperty::ALL.iter().map(|p| p.name()))
                    .collect();
                return Err((list, format!("unknown property `{name}`; one of: {}", names.join(", "))));
            }
        }
    }
    let both = |name: &str| Err((ExpectList::Violate, format!("`{name}` cannot both hold and be violated")));
    if let Some(p) = expect.hold.iter().find(|p| expect.violate.contains(p)) {
        return both(p.name());
    }
    if let Some(p) = expect.group_hold.iter().find(|p| expect.group_violate.contains(p)) {
        return both(p.name());
    }
    if let Some(p) = expect.txn_hold.iter().find(|p| expect.txn_violate.contains(p)) {
        return both(p.name());
    }
    Ok(expect)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub path: Option<PathBuf>,
    pub description: String,
    pub brokers: u32,
    pub broker: BrokerConfig,
    pub controller: ControllerConfig,
    pub topics: Vec<TopicConfig>,
    pub producers: Vec<ProducerSpec>,
    pub groups: Vec<GroupSpec>,
    pub transactions: Option<TxnSpec>,
    pub pipeline: Option<PipelineSpec>,
    /// Input and output topics the end-to-end exactly-once checker compares without a
    /// `[pipeline]`: set by `Simulation::expect_exactly_once` for applications' own
    /// consume–transform–produce code on the madsim host (not a file key).
    pub end_to_end: Option<(TopicId, TopicId)>,
    pub network: NetworkSpec,
    pub duration_ms: u64,
    pub liveness_ms: u64,
    pub faults: Vec<ScheduledFault>,
    pub nemesis: Option<NemesisSpec>,
    pub expect: Expect,
}

impl Scenario {
    /// A small healthy cluster, the base that property tests and examples build on.
    pub fn basic(name: &str) -> Scenario {
        let topic = TopicConfig {
            name: "events".into(),
            partitions: 3,
            replication_factor: 3,
            min_insync_replicas: 2,
            unclean_leader_election: false,
            replica_assignment: None,
        };
        let producer = ProducerSpec {
            name: "p0".into(),
            topic: TopicId(0),
            rate: 200.0,
            keys: 100,
            config: ProducerConfig::default(),
            idempotence: None,
        };
        Scenario {
            name: name.into(),
            path: None,
            description: String::new(),
            brokers: 3,
            broker: BrokerConfig::default(),
            controller: ControllerConfig::default(),
            topics: vec![topic],
            producers: vec![producer],
            groups: Vec::new(),
            transactions: None,
            pipeline: None,
            end_to_end: None,
            network: NetworkSpec::default(),
            duration_ms: 60_000,
            liveness_ms: 180_000,
            faults: Vec::new(),
            nemesis: None,
            expect: Expect::default(),
        }
    }

    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.broker.protocol = protocol;
        self.controller.protocol = protocol;
    }

    /// The command a user types to replay this scenario with `seed`.
    pub fn replay_command(&self, seed: u64) -> String {
        match &self.path {
            Some(path) => format!("kafka-trial run {} --seed {seed}", path.display()),
            None => format!("(built-in scenario `{}`) seed {seed}", self.name),
        }
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_with_text(path).map(|(scenario, _)| scenario)
    }

    /// Loads a scenario file and returns it with the file's text (for what else the
    /// file declares, such as its `[matrix]`).
    pub fn load_with_text(path: &Path) -> Result<(Scenario, String), ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {error}"),
        })?;
        let mut scenario = Scenario::parse(&text, &file)?;
        scenario.path = Some(path.to_path_buf());
        Ok((scenario, text))
    }

    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let raw: file::RawScenario = toml::from_str(text).map_err(|error| {
            let line = error.span().map(|span| line_of(text, span.start));
            ScenarioError { file: file.into(), line, key: String::new(), message: error.message().trim().to_string() }
        })?;
        file::Validator { text, file, txn_producers: Default::default(), pipeline_apps: Default::default() }
            .scenario(raw)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}
