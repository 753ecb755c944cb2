//! Lanes: a forward pass runs on every thread of the provider's pool at once, each thread
//! (a lane) computing its share of every layer, the lanes meeting only where a layer
//! needs all the shares: twice a layer, where each lane's partial sum is added to the
//! others' ([`Lane::sum`]).
//!
//! A fork-join per product would hand work to a sleeping thread and wait for it to wake:
//! on a virtual machine that costs tens of microseconds, several times a layer, which for
//! one short sentence was about an eighth of the time. Lanes wake once per forward pass
//! (a `rayon` broadcast) and meet at a barrier that spins briefly before yielding.

use std::cell::Cell;
use std::ops::Range;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Spins before a waiting lane starts yielding its thread: a few tens of microseconds,
/// longer than the lanes of one layer usually wait for each other.
const SPINS: u32 = 1 << 14;

/// A barrier for a fixed number of lanes that spins, then yields; a lane that panicked
/// poisons it so the others stop waiting.
#[derive(Debug)]
struct Barrier {
    count: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl Barrier {
    fn new(count: usize) -> Barrier {
        Barrier {
            count,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Waits until every lane has arrived; false when a lane panicked instead.
    fn wait(&self) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation
                .store(generation.wrapping_add(1), Ordering::Release);
            return !self.poisoned.load(Ordering::Acquire);
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Acquire) {
                return false;
            }
            if spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        !self.poisoned.load(Ordering::Acquire)
    }
}

/// What the lanes of one forward pass share: the barrier and the slots partial sums go
/// through, two sets used in turn (a lane can be at most one meeting ahead of another).
#[derive(Debug)]
pub(crate) struct Lanes {
    barrier: Barrier,
    slots: [Vec<RwLock<Vec<f32>>>; 2],
}

impl Lanes {
    /// Lanes for `count` threads.
    pub(crate) fn new(count: usize) -> Lanes {
        let count = count.max(1);
        let slots = || (0..count).map(|_| RwLock::new(Vec::new())).collect();
        Lanes {
            barrier: Barrier::new(count),
            slots: [slots(), slots()],
        }
    }

    /// Lane `index`'s handle, used by that lane's thread only.
    pub(crate) fn lane(&self, index: usize) -> Lane<'_> {
        assert!(
            index < self.barrier.count,
            "lane {index} of {}",
            self.barrier.count
        );
        Lane {
            lanes: self,
            index,
            meeting: Cell::new(0),
        }
    }
}

/// One lane's handle. Dropped while its thread panics, it poisons the barrier so the
/// other lanes return instead of waiting for it.
#[derive(Debug)]
pub(crate) struct Lane<'a> {
    lanes: &'a Lanes,
    index: usize,
    meeting: Cell<usize>,
}

impl Lane<'_> {
    /// This lane's share of `count` items (heads, panels): a contiguous range, the shares
    /// of all lanes in order covering `0..count`, their sizes differing by one at most.
    pub(crate) fn share(&self, count: usize) -> Range<usize> {
        let lanes = self.lanes.barrier.count;
        self.index * count / lanes..(self.index + 1) * count / lanes
    }

    /// The sum of every lane's `partial` (all the same length), the same on every lane:
    /// each adds them in lane order. `None` when another lane panicked.
    pub(crate) fn sum(&self, partial: Vec<f32>) -> Option<Vec<f32>> {
        let count = self.lanes.barrier.count;
        if count == 1 {
            return Some(partial);
        }
        let meeting = self.meeting.get();
        self.meeting.set(meeting + 1);
        let slots = &self.lanes.slots[meeting % 2];
        *slots[self.index].write().unwrap_or_else(|p| p.into_inner()) = partial;
        if !self.lanes.barrier.wait() {
            return None;
        }
        let read = |slot: &RwLock<Vec<f32>>| slot.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut total = read(&slots[0]);
        for slot in &slots[1..] {
            let part = slot.read().unwrap_or_else(|p| p.into_inner());
            for (t, p) in total.iter_mut().zip(part.iter()) {
                *t += p;
            }
        }
        Some(total)
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lanes.barrier.poisoned.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once() {
        for lanes in 1..6 {
            let all = Lanes::new(lanes);
            for count in [0, 1, 5, 12, 48] {
                let mut next = 0;
                for i in 0..lanes {
                    let share = all.lane(i).share(count);
                    assert_eq!(share.start, next);
                    assert!(share.len() <= count.div_ceil(lanes));
                    next = share.end;
                }
                assert_eq!(next, count);
            }
        }
    }

    #[test]
    fn every_lane_gets_the_same_sum_at_every_meeting() {
        let lanes = Lanes::new(3);
        let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let lanes = &lanes;
                    scope.spawn(move || {
                        let lane = lanes.lane(i);
                        (0..50)
                            .map(|m| lane.sum(vec![(i * 100 + m) as f32; 4]).expect("no panic"))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("lane"))
                .collect()
        });
        for (m, sums) in results[0].iter().enumerate() {
            let want = (300 + 3 * m) as f32;
            for lane in &results {
                assert_eq!(lane[m], vec![want; 4], "meeting {m}");
            }
            assert_eq!(sums, &vec![want; 4]);
        }
    }

    #[test]
    fn a_panicking_lane_releases_the_others() {
        let lanes = Lanes::new(2);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| lanes.lane(0).sum(vec![1.0]));
            let failing = scope.spawn(|| {
                let _lane = lanes.lane(1);
                panic!("a kernel bug");
            });
            assert!(failing.join().is_err());
            assert_eq!(waiting.join().expect("lane 0"), None);
        });
    }
}
