//! The shared counters' conformance suite: what every [`Counters`] engine must do.

use std::time::Duration;

use super::sleep;
use crate::counters::{Counters, Hit};

/// Every check one after the other; keys start with `prefix` (unique per run).
pub async fn run_all(counters: &dyn Counters, prefix: &str) {
    exact_under_concurrency(counters, prefix).await;
    windows_end(counters, prefix).await;
    get_and_clear(counters, prefix).await;
    blocks(counters, prefix).await;
    long_keys(counters, prefix).await;
    batches(counters, prefix).await;
}

/// Concurrent hits on one counter each see a different count: 1 to N, none twice.
pub async fn exact_under_concurrency(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let key = format!("{prefix}:concurrent");
    let hits = (0..40).map(|_| counters.hit(&key, 1, Duration::from_secs(60)));
    let mut seen: Vec<u64> = futures::future::join_all(hits)
        .await
        .into_iter()
        .map(|r| r.expect("hit").count)
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<_>>(),
        "{backend}: concurrent hits were not counted exactly"
    );
    let n = counters
        .hit(&key, 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(n.count, 45, "{backend}: a hit of 5");
}

/// A window lasts from its first hit; the next hit after it starts a new one.
pub async fn windows_end(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let key = format!("{prefix}:window");
    let window = Duration::from_millis(400);
    let first = counters.hit(&key, 1, window).await.unwrap();
    assert_eq!(first.count, 1, "{backend}");
    let left = first.resets_at - chrono::Utc::now();
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::milliseconds(450),
        "{backend}: the window ends in {left}"
    );
    // A later hit does not move the window's end.
    let second = counters
        .hit(&key, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.count, 2, "{backend}");
    assert!(
        (second.resets_at - first.resets_at)
            .num_milliseconds()
            .abs()
            < 50,
        "{backend}: the second hit moved the window's end"
    );
    sleep(Duration::from_millis(500)).await;
    let third = counters.hit(&key, 1, window).await.unwrap();
    assert_eq!(third.count, 1, "{backend}: the window did not end");
}

/// `get` reads without counting; `clear` ends the window.
pub async fn get_and_clear(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let key = format!("{prefix}:get");
    assert_eq!(counters.get(&key).await.unwrap().count, 0, "{backend}");
    counters
        .hit(&key, 3, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(counters.get(&key).await.unwrap().count, 3, "{backend}");
    assert_eq!(counters.get(&key).await.unwrap().count, 3, "{backend}");
    counters.clear(&key).await.unwrap();
    assert_eq!(counters.get(&key).await.unwrap().count, 0, "{backend}");
    let again = counters
        .hit(&key, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.count, 1, "{backend}: clear did not end the window");
}

/// A block lasts its time, is never shortened by a shorter one, and the longest of
/// several keys' blocks is reported; `clear` lifts it.
pub async fn blocks(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let a = format!("{prefix}:block-a");
    let b = format!("{prefix}:block-b");
    let both = [a.clone(), b.clone()];
    assert_eq!(counters.blocked(&both).await.unwrap(), None, "{backend}");
    counters
        .block(&a, Duration::from_millis(600))
        .await
        .unwrap();
    counters.block(&a, Duration::from_millis(50)).await.unwrap();
    let left = counters.blocked(&both).await.unwrap().expect("blocked");
    assert!(
        left > Duration::from_millis(300) && left <= Duration::from_millis(600),
        "{backend}: {left:?} left of a 600 ms block"
    );
    counters.block(&b, Duration::from_secs(30)).await.unwrap();
    let left = counters.blocked(&both).await.unwrap().expect("blocked");
    assert!(left > Duration::from_secs(25), "{backend}: {left:?}");
    counters.clear(&b).await.unwrap();
    sleep(Duration::from_millis(700)).await;
    assert_eq!(
        counters.blocked(&both).await.unwrap(),
        None,
        "{backend}: a block outlived its time, or clear did not lift one"
    );
}

/// Keys longer than any engine stores still count, each apart.
pub async fn long_keys(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let long = |c: char| format!("{prefix}:long:{}", c.to_string().repeat(5000));
    let x = counters
        .hit(&long('x'), 1, Duration::from_secs(60))
        .await
        .unwrap();
    let y = counters
        .hit(&long('y'), 1, Duration::from_secs(60))
        .await
        .unwrap();
    let x2 = counters
        .hit(&long('x'), 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((x.count, y.count, x2.count), (1, 1, 2), "{backend}");
}

/// `hit_many` counts as the same hits one after the other would, repeated keys
/// included, and batches racing each other and single hits stay exact.
pub async fn batches(counters: &dyn Counters, prefix: &str) {
    let backend = counters.backend().to_owned();
    let hit = |key: &str, n: u64| Hit {
        key: format!("{prefix}:batch:{key}"),
        n,
        window: Duration::from_secs(60),
    };
    assert!(
        counters.hit_many(&[]).await.unwrap().is_empty(),
        "{backend}: an empty batch"
    );
    let counts: Vec<u64> = counters
        .hit_many(&[
            hit("a", 2),
            hit("b", 3),
            hit("a", 1),
            hit("c", 1),
            hit("b", 4),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.count)
        .collect();
    assert_eq!(counts, [2, 3, 3, 1, 7], "{backend}: a batch's counts");
    assert_eq!(
        counters.get(&hit("b", 0).key).await.unwrap().count,
        7,
        "{backend}"
    );
    // Batches of two hits on one counter, racing single hits on it: 80 in all, each
    // count seen once.
    let shared = hit("race", 1);
    let pair = [shared.clone(), shared.clone()];
    let batched = (0..20).map(|_| counters.hit_many(&pair));
    let single = (0..40).map(|_| counters.hit(&shared.key, 1, shared.window));
    let (batched, single) = futures::future::join(
        futures::future::join_all(batched),
        futures::future::join_all(single),
    )
    .await;
    let mut seen: Vec<u64> = batched
        .into_iter()
        .flat_map(|r| r.expect("batch"))
        .chain(single.into_iter().map(|r| r.expect("hit")))
        .map(|w| w.count)
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=80).collect::<Vec<_>>(),
        "{backend}: batches and hits racing were not counted exactly"
    );
}
