//! The last two minutes of this process's HTTP traffic, per second: requests and a latency
//! histogram, for the admin panel's chart of requests/s and p95 latency. Recorded by the
//! metrics layer (so only when metrics are on), a few relaxed atomic adds per request;
//! Prometheus is the place for anything longer or across processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Seconds kept.
const SLOTS: usize = 120;
/// Latency buckets: bucket `i` holds latencies below `FIRST_US · √2^i` µs (the last holds
/// the rest): 100 µs to about 6.5 s.
const BUCKETS: usize = 33;
const FIRST_US: f64 = 100.0;

struct Slot {
    /// The Unix second this slot counts, or an older one when stale.
    second: AtomicU64,
    requests: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

static RING: [Slot; SLOTS] = [const {
    Slot {
        second: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        buckets: [const { AtomicU64::new(0) }; BUCKETS],
    }
}; SLOTS];

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bucket(took: Duration) -> usize {
    let us = took.as_secs_f64() * 1e6;
    if us < FIRST_US {
        return 0;
    }
    // log base √2 of us / FIRST_US, plus one.
    let i = ((us / FIRST_US).log2() * 2.0).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn bucket_upper_ms(i: usize) -> f64 {
    FIRST_US * 2f64.powf(i as f64 / 2.0) / 1000.0
}

/// Counts one answered request that took `took`.
pub(crate) fn record(took: Duration) {
    record_at(now_secs(), took);
}

fn record_at(second: u64, took: Duration) {
    let slot = &RING[(second % SLOTS as u64) as usize];
    let seen = slot.second.load(Ordering::Relaxed);
    if seen != second
        && slot
            .second
            .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        // This request opened the second: the slot's old counts go. (A request of the
        // same second racing this reset may be lost: a chart can live with that.)
        slot.requests.store(0, Ordering::Relaxed);
        for b in &slot.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
    slot.requests.fetch_add(1, Ordering::Relaxed);
    slot.buckets[bucket(took)].fetch_add(1, Ordering::Relaxed);
}

/// One second of traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Second {
    /// Unix time.
    pub(crate) at: u64,
    pub(crate) requests: u64,
    /// The 95th percentile's bucket bound in milliseconds; `None` without requests.
    pub(crate) p95_ms: Option<f64>,
}

/// The last `n` complete seconds (at most two minutes), oldest first.
pub(crate) fn last(n: usize) -> Vec<Second> {
    last_at(now_secs(), n)
}

fn last_at(now: u64, n: usize) -> Vec<Second> {
    let n = n.min(SLOTS - 1) as u64;
    (1..=n)
        .rev()
        .map(|back| {
            let at = now.saturating_sub(back);
            let slot = &RING[(at % SLOTS as u64) as usize];
            if slot.second.load(Ordering::Acquire) != at {
                return Second {
                    at,
                    requests: 0,
                    p95_ms: None,
                };
            }
            let counts: Vec<u64> = slot
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            let p95_ms = (total > 0).then(|| {
                let want = (total * 95).div_ceil(100);
                let mut seen = 0;
                let mut index = BUCKETS - 1;
                for (i, c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= want {
                        index = i;
                        break;
                    }
                }
                (bucket_upper_ms(index) * 100.0).round() / 100.0
            });
            Second {
                at,
                requests: slot.requests.load(Ordering::Relaxed),
                p95_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_root_two_from_100_us() {
        assert_eq!(bucket(Duration::from_micros(50)), 0);
        assert_eq!(bucket(Duration::from_micros(100)), 1);
        assert_eq!(bucket(Duration::from_micros(150)), 2);
        assert_eq!(bucket(Duration::from_secs(100)), BUCKETS - 1);
        assert!((bucket_upper_ms(2) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn seconds_count_requests_and_their_p95() {
        // Far in the past, so the live traffic of other tests never shares these slots.
        let base = 1_000_000_000;
        for _ in 0..95 {
            record_at(base, Duration::from_micros(120));
        }
        for _ in 0..5 {
            record_at(base, Duration::from_millis(900));
        }
        record_at(base + 1, Duration::from_millis(20));
        let seconds = last_at(base + 3, 3);
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[0].at, base);
        assert_eq!(seconds[0].requests, 100);
        // 95 of 100 are in the 100-141 µs bucket: p95 is its bound.
        assert_eq!(seconds[0].p95_ms, Some(0.14));
        assert_eq!(seconds[1].requests, 1);
        assert!(seconds[1].p95_ms.unwrap() >= 20.0);
        assert_eq!((seconds[2].requests, seconds[2].p95_ms), (0, None));
        // Two minutes later the slot is reused, its old counts gone.
        record_at(base + SLOTS as u64, Duration::from_millis(1));
        assert_eq!(last_at(base + SLOTS as u64 + 1, 1)[0].requests, 1);
    }
}
