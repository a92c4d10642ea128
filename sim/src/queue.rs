//! The engine's event queue: a calendar of one bucket per millisecond for the near
//! future plus a heap for the far future. Events come out ordered by (time, sequence):
//! within a bucket, push order is sequence order, and an event moved in from the heap
//! was pushed before any event pushed straight into that bucket.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Width of the calendar window in milliseconds (a power of two).
const WINDOW_MS: u64 = 4_096;

#[derive(Debug, PartialEq, Eq)]
struct Far {
    at: u64,
    seq: u64,
    item: u32,
}

impl PartialOrd for Far {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Far {
    // Reversed: BinaryHeap is a max-heap and the earliest (time, sequence) goes first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub struct CalendarQueue {
    /// Time of `buckets[head]`.
    base: u64,
    head: usize,
    buckets: Vec<VecDeque<u32>>,
    in_window: usize,
    far: BinaryHeap<Far>,
    seq: u64,
}

impl Default for CalendarQueue {
    fn default() -> Self {
        CalendarQueue {
            base: 0,
            head: 0,
            buckets: (0..WINDOW_MS).map(|_| VecDeque::new()).collect(),
            in_window: 0,
            far: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl CalendarQueue {
    pub fn len(&self) -> usize {
        self.in_window + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `item` at `at`; a time before the current one is queued at the current one.
    pub fn push(&mut self, at: u64, item: u32) {
        self.seq += 1;
        let at = at.max(self.base);
        if at - self.base < WINDOW_MS {
            let index = (self.head + (at - self.base) as usize) & (WINDOW_MS as usize - 1);
            self.buckets[index].push_back(item);
            self.in_window += 1;
        } else {
            self.far.push(Far { at, seq: self.seq, item });
        }
    }

    /// The next event, without taking it or moving the clock (a later push may still
    /// come before it).
    pub fn peek(&self) -> Option<(u64, u32)> {
        if self.in_window > 0 {
            for step in 0..WINDOW_MS as usize {
                let index = (self.head + step) & (WINDOW_MS as usize - 1);
                if let Some(item) = self.buckets[index].front() {
                    return Some((self.base + step as u64, *item));
                }
            }
        }
        self.far.peek().map(|far| (far.at, far.item))
    }

    pub fn pop(&mut self) -> Option<(u64, u32)> {
        loop {
            if let Some(item) = self.buckets[self.head].pop_front() {
                self.in_window -= 1;
                return Some((self.base, item));
            }
            if self.in_window == 0 {
                // Nothing near: jump to the earliest far event.
                let next = self.far.peek()?.at;
                self.base = next;
                self.pull_far();
                continue;
            }
            self.head = (self.head + 1) & (WINDOW_MS as usize - 1);
            self.base += 1;
            self.pull_far();
        }
    }

    /// Moves far events that now fall inside the window into their buckets, in order.
    fn pull_far(&mut self) {
        while let Some(far) = self.far.peek() {
            if far.at - self.base >= WINDOW_MS {
                break;
            }
            let Some(far) = self.far.pop() else { break };
            let index = (self.head + (far.at - self.base) as usize) & (WINDOW_MS as usize - 1);
            self.buckets[index].push_back(far.item);
            self.in_window += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shows the calendar queue yields exactly the (time, push order) order of a sorted
    // list, across the window edge and for far-future events (determinism rule: ties at
    // one instant resolve in a fixed order).
    #[test]
    fn pops_in_time_then_push_order() {
        let mut queue = CalendarQueue::default();
        let mut expected = Vec::new();
        let times = [5u64, 0, 5, 10_000, 4_095, 4_096, 10_000, 3, 100_000, 5];
        for (item, at) in times.iter().enumerate() {
            queue.push(*at, item as u32);
            expected.push((*at, item as u32));
        }
        expected.sort_by_key(|(at, item)| (*at, *item));
        let mut got = Vec::new();
        loop {
            // `peek` names exactly what `pop` gives next, from the window or the heap.
            let peeked = queue.peek();
            let Some(entry) = queue.pop() else { break };
            assert_eq!(peeked, Some(entry));
            got.push(entry);
            if entry.1 == 0 {
                // Pushes made while running land in order too.
                queue.push(10_000, 99);
                expected.push((10_000, 99));
                expected.sort_by_key(|(at, item)| (*at, if *item == 99 { 7 } else { *item }));
            }
        }
        // Item 99 was pushed after items 3 and 6 (both at 10,000), so it comes after them.
        assert_eq!(got, expected);
        assert_eq!(queue.peek(), None);
        assert!(queue.is_empty());
    }
}
