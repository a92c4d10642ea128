//! `--trace FILE`: the full history as JSON lines, written while the run goes.

use crate::history::Happening;
use serde_json::json;
use std::io::Write;
use trial_model::{ClusterEvent, Millis, TopicPartition, WriteId, WriteOutcome};

/// Receives every history item as it happens.
pub trait TraceSink {
    fn invoke(&mut self, at: Millis, write: WriteId, producer: u32, key: Option<u32>);
    fn complete(&mut self, at: Millis, write: WriteId, tp: Option<TopicPartition>, outcome: WriteOutcome);
    fn event(&mut self, at: Millis, event: &ClusterEvent);
    fn happening(&mut self, at: Millis, happening: &Happening);
    /// A consumer-group event, filed under `group`.
    fn group(&mut self, at: Millis, group: &str, event: &crate::groups::GroupEvent);
}

/// Writes one JSON object per line. The first write error is kept and reported at the end.
pub struct JsonLines<W: Write> {
    out: W,
    error: Option<std::io::Error>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out, error: None }
    }

    fn line(&mut self, value: serde_json::Value) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = serde_json::to_writer(&mut self.out, &value)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
        {
            self.error = Some(error);
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.out.flush()
    }
}

impl<W: Write> TraceSink for JsonLines<W> {
    fn invoke(&mut self, at: Millis, write: WriteId, producer: u32, key: Option<u32>) {
        self.line(json!({"t": at.0, "type": "invoke", "write": write.0, "producer": producer, "key": key}));
    }

    fn complete(&mut self, at: Millis, write: WriteId, tp: Option<TopicPartition>, outcome: WriteOutcome) {
        let (kind, offset, error) = match outcome {
            WriteOutcome::Ok { offset } => ("ok", offset.map(|o| o.0), None),
            WriteOutcome::Failed { error, definite: true } => ("fail", None, Some(error.name())),
            WriteOutcome::Failed { error, definite: false } => ("info", None, Some(error.name())),
        };
        let partition = tp.map(|tp| json!({"topic": tp.topic.0, "partition": tp.partition}));
        self.line(
            json!({"t": at.0, "type": kind, "write": write.0, "tp": partition, "offset": offset, "error": error}),
        );
    }

    fn event(&mut self, at: Millis, event: &ClusterEvent) {
        self.line(json!({"t": at.0, "type": "cluster", "event": event}));
    }

    fn happening(&mut self, at: Millis, happening: &Happening) {
        self.line(json!({"t": at.0, "type": "happening", "happening": happening}));
    }

    fn group(&mut self, at: Millis, group: &str, event: &crate::groups::GroupEvent) {
        self.line(json!({"t": at.0, "type": "group", "group": group, "event": event}));
    }
}
