//! The shared counters' conformance suite: what every [`Counters`] engine must do.

use std::time::Duration;

use super::sleep;
use crate::counters::Counters;

/// Every check one after the other; keys start with `prefix` (unique per run).
pub async fn run_all(counters: &dyn Counters, prefix: &str) {
    exact_under_concurrency(counters, prefix).await;
    windows_end(counters, prefix).await;
    get_and_clear(counters, prefix).await;
    blocks(counters, prefix).await;
    long_keys(counters, prefix).await;
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
