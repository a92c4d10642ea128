//! The end of a run: the final state of every replica, handed to the checkers.

use super::{Actor, Durable, Engine, FinalDisk, Life, RunOutput, Stop};
use crate::history::{PartitionFinal, ReplicaFinal};
use trial_model::{ControllerDisk, Offset};

impl Engine<'_> {
    pub(super) fn finish(mut self, stop: Stop) -> RunOutput {
        self.stats.sim_time_ms = self.now.0;
        let Life::Up(Actor::Controller(controller)) = &self.nodes[self.controller_index].life else {
            return self.output(stop, Vec::new());
        };
        let states: Vec<_> = controller.partitions().cloned().collect();
        let mut disks: Vec<Option<FinalDisk>> = Vec::new();
        for node in self.nodes.iter_mut().take(self.brokers) {
            let life = std::mem::replace(
                &mut node.life,
                Life::Down { durable: Durable::Controller(ControllerDisk::default()), machine_up: false },
            );
            disks.push(match life {
                Life::Up(Actor::Broker(b)) => {
                    let hws = b.disk().logs.keys().map(|tp| (*tp, b.high_watermark(*tp).unwrap_or_default())).collect();
                    Some((b.into_disk(), hws))
                }
                Life::Down { durable: Durable::Broker(disk), .. } => {
                    let hws = disk.logs.iter().map(|(tp, log)| (*tp, log.hw_checkpoint())).collect();
                    Some((disk, hws))
                }
                _ => None,
            });
        }
        let mut partitions = Vec::with_capacity(states.len());
        for state in states {
            let mut replicas = Vec::new();
            for replica in &state.replicas {
                let Some(Some((disk, hws))) = disks.get_mut(replica.0 as usize) else {
                    continue;
                };
                let log = disk.logs.remove(&state.tp).map(|l| l.into_entries()).unwrap_or_default();
                let high_watermark = hws.iter().find(|(tp, _)| *tp == state.tp).map_or(Offset(0), |(_, hw)| *hw);
                replicas.push(ReplicaFinal { broker: *replica, high_watermark, log });
            }
            partitions.push(PartitionFinal {
                tp: state.tp,
                leader: state.leader,
                leader_epoch: state.leader_epoch.0,
                isr: state.isr.clone(),
                elr: state.elr.clone(),
                replicas,
            });
        }
        self.output(stop, partitions)
    }

    pub(super) fn output(mut self, stop: Stop, partitions: Vec<PartitionFinal>) -> RunOutput {
        self.history.partitions = partitions;
        let groups = self.consumers.finish(self.now);
        let lag = self.consumers.take_lag();
        let pipeline_group = self.pipelines.finish(self.now);
        RunOutput {
            history: self.history,
            trace_hash: self.hash.0,
            stats: self.stats,
            faults: Vec::new(),
            stop,
            groups,
            lag,
            pipeline_group,
        }
    }
}
