//! Kafka's rack-unaware replica placement (`AdminUtils.assignReplicasToBrokersRackUnaware`).

use crate::types::NodeId;

/// Replicas of each partition, first replica first (the preferred leader).
/// `start_index` and `replica_shift` are Kafka's two random draws in `0..brokers.len()`;
/// passing them in keeps this pure.
pub fn assign_replicas(
    brokers: &[NodeId],
    partitions: u32,
    replication_factor: u32,
    start_index: usize,
    replica_shift: usize,
) -> Vec<Vec<NodeId>> {
    let n = brokers.len();
    if n == 0 || replication_factor as usize > n {
        return Vec::new();
    }
    let mut shift = replica_shift;
    let mut assignment = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions as usize {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = Vec::with_capacity(replication_factor as usize);
        replicas.push(brokers[first]);
        for j in 0..replication_factor as usize - 1 {
            let offset = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + offset) % n]);
        }
        assignment.push(replicas);
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden table from AdminUtilsTest.testReplicaAssignment (Kafka, 5 brokers, 10
    // partitions, RF 3, fixed start index 0): first replicas stripe across brokers and
    // the follower shift grows by one after each full stripe.
    #[test]
    fn matches_kafka_admin_utils_table() {
        let brokers: Vec<NodeId> = (0..5).map(NodeId).collect();
        let got = assign_replicas(&brokers, 10, 3, 0, 0);
        let expected: [[u32; 3]; 10] = [
            [0, 1, 2],
            [1, 2, 3],
            [2, 3, 4],
            [3, 4, 0],
            [4, 0, 1],
            [0, 2, 3],
            [1, 3, 4],
            [2, 4, 0],
            [3, 0, 1],
            [4, 1, 2],
        ];
        for (partition, replicas) in expected.iter().enumerate() {
            let want: Vec<NodeId> = replicas.iter().map(|b| NodeId(*b)).collect();
            assert_eq!(got[partition], want, "partition {partition}");
        }
    }
}
