//! Kafka error codes as data in responses, never as Rust `Err` (as in `kafka-protocol`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    None,
    OffsetOutOfRange,
    UnknownTopicOrPartition,
    LeaderNotAvailable,
    NotLeaderOrFollower,
    RequestTimedOut,
    NetworkException,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    FencedLeaderEpoch,
    UnknownLeaderEpoch,
    StaleBrokerEpoch,
    InvalidUpdateVersion,
    IneligibleReplica,
    DuplicateBrokerRegistration,
    NotController,
    // Group coordination (classic protocol, KIP-345/KIP-394).
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    IllegalGeneration,
    InconsistentGroupProtocol,
    UnknownMemberId,
    InvalidSessionTimeout,
    RebalanceInProgress,
    MemberIdRequired,
    FencedInstanceId,
    GroupMaxSizeReached,
    // Idempotent producer (KIP-98, KIP-360).
    OutOfOrderSequenceNumber,
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    // Transactions (KIP-98, KIP-890).
    InvalidTxnState,
    InvalidProducerIdMapping,
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    ProducerFenced,
    /// An OffsetFetch with `require_stable` (KIP-447) asked for a partition with a
    /// transactional offset commit still pending.
    UnstableOffsetCommit,
    /// The producer gave up on a batch after `delivery.timeout.ms` (client-side).
    DeliveryTimeout,
    /// The write's transaction was aborted (client-side, the Java client's
    /// `TransactionAbortedException`).
    TransactionAborted,
}

impl ErrorCode {
    /// Kafka's numeric code (`Errors.java`); `DeliveryTimeout` is the client-side
    /// `TimeoutException`, reported like REQUEST_TIMED_OUT.
    pub fn code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::OffsetOutOfRange => 1,
            ErrorCode::UnknownTopicOrPartition => 3,
            ErrorCode::LeaderNotAvailable => 5,
            ErrorCode::NotLeaderOrFollower => 6,
            ErrorCode::RequestTimedOut | ErrorCode::DeliveryTimeout => 7,
            // No wire code: the client fails the batches of an aborted transaction itself.
            ErrorCode::TransactionAborted => -1,
            ErrorCode::NetworkException => 13,
            ErrorCode::NotEnoughReplicas => 19,
            ErrorCode::NotEnoughReplicasAfterAppend => 20,
            ErrorCode::NotController => 41,
            ErrorCode::CoordinatorLoadInProgress => 14,
            ErrorCode::CoordinatorNotAvailable => 15,
            ErrorCode::NotCoordinator => 16,
            ErrorCode::IllegalGeneration => 22,
            ErrorCode::InconsistentGroupProtocol => 23,
            ErrorCode::UnknownMemberId => 25,
            ErrorCode::InvalidSessionTimeout => 26,
            ErrorCode::RebalanceInProgress => 27,
            ErrorCode::MemberIdRequired => 79,
            ErrorCode::FencedInstanceId => 82,
            ErrorCode::GroupMaxSizeReached => 81,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::UnknownLeaderEpoch => 75,
            ErrorCode::StaleBrokerEpoch => 77,
            ErrorCode::InvalidUpdateVersion => 95,
            ErrorCode::DuplicateBrokerRegistration => 101,
            ErrorCode::IneligibleReplica => 107,
            ErrorCode::OutOfOrderSequenceNumber => 45,
            ErrorCode::DuplicateSequenceNumber => 46,
            ErrorCode::InvalidProducerEpoch => 47,
            ErrorCode::InvalidTxnState => 48,
            ErrorCode::InvalidProducerIdMapping => 49,
            ErrorCode::InvalidTransactionTimeout => 50,
            ErrorCode::ConcurrentTransactions => 51,
            ErrorCode::ProducerFenced => 90,
            ErrorCode::UnstableOffsetCommit => 88,
        }
    }

    /// Whether a client may retry the request that got this error.
    pub fn retriable(self) -> bool {
        match self {
            ErrorCode::None | ErrorCode::DeliveryTimeout | ErrorCode::InvalidUpdateVersion => false,
            ErrorCode::TransactionAborted => false,
            ErrorCode::IneligibleReplica | ErrorCode::StaleBrokerEpoch => false,
            ErrorCode::DuplicateBrokerRegistration => true,
            ErrorCode::OffsetOutOfRange => false,
            // Not retriable in Errors.java; the idempotent producer retries OUT_OF_ORDER
            // itself where Kafka's TransactionManager.canRetry does.
            ErrorCode::OutOfOrderSequenceNumber
            | ErrorCode::DuplicateSequenceNumber
            | ErrorCode::InvalidProducerEpoch => false,
            // A transaction's state errors end it (abortable or fatal in the client);
            // CONCURRENT_TRANSACTIONS is Errors.java's one retriable transaction error.
            ErrorCode::InvalidTxnState
            | ErrorCode::InvalidProducerIdMapping
            | ErrorCode::InvalidTransactionTimeout
            | ErrorCode::ProducerFenced => false,
            ErrorCode::ConcurrentTransactions | ErrorCode::UnstableOffsetCommit => true,
            // As in Errors.java: only the coordinator-availability errors are retriable;
            // the membership errors make the consumer rejoin instead.
            ErrorCode::IllegalGeneration
            | ErrorCode::InconsistentGroupProtocol
            | ErrorCode::UnknownMemberId
            | ErrorCode::InvalidSessionTimeout
            | ErrorCode::RebalanceInProgress
            | ErrorCode::MemberIdRequired
            | ErrorCode::FencedInstanceId
            | ErrorCode::GroupMaxSizeReached => false,
            ErrorCode::CoordinatorLoadInProgress | ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator => {
                true
            }
            ErrorCode::UnknownTopicOrPartition
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::RequestTimedOut
            | ErrorCode::NetworkException
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::NotController => true,
        }
    }

    /// Errors a leader returns only when it refused the batch before appending it.
    pub fn rejected_before_append(self) -> bool {
        matches!(
            self,
            ErrorCode::NotEnoughReplicas
                | ErrorCode::OutOfOrderSequenceNumber
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::InvalidTxnState
        )
    }

    /// Errors after which a client refreshes its metadata before retrying.
    pub fn invalidates_metadata(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
        )
    }

    /// Kafka's upper-case name, as the Java client prints it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::NetworkException => "NETWORK_EXCEPTION",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
            ErrorCode::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::MemberIdRequired => "MEMBER_ID_REQUIRED",
            ErrorCode::FencedInstanceId => "FENCED_INSTANCE_ID",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::DuplicateSequenceNumber => "DUPLICATE_SEQUENCE_NUMBER",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::InvalidTxnState => "INVALID_TXN_STATE",
            ErrorCode::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            ErrorCode::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            ErrorCode::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            ErrorCode::ProducerFenced => "PRODUCER_FENCED",
            ErrorCode::UnstableOffsetCommit => "UNSTABLE_OFFSET_COMMIT",
            ErrorCode::DeliveryTimeout => "DELIVERY_TIMEOUT",
            ErrorCode::TransactionAborted => "TRANSACTION_ABORTED",
        }
    }
}
