//! What metrics cost (#24): two stage-1 servers side by side, one with metrics on (the
//! default) and one with `metrics.enabled = false`, the same authenticated read
//! (`GET /v1/me` with a session) loaded on each in turn, the order alternating per round;
//! the ratio on ÷ off is taken within the round. Goal: metrics cost at most 3 % (≥ 0.97×).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::http::{MakeRequest, Stage, load, login, percentile, start};
use crate::measure::{Figure, Goal, Plan, Stats};

/// The `metrics` concern: its one figure.
pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    // As the http concern loads its routes.
    let connections = 16;
    let length = Duration::from_millis(plan.size(3_000, 400) as u64);
    Ok(vec![
        metrics_cost(plan, &client, dir, connections, length).await?,
    ])
}

/// On ÷ off.
async fn metrics_cost(
    plan: Plan,
    client: &reqwest::Client,
    dir: &Path,
    connections: usize,
    length: Duration,
) -> anyhow::Result<Figure> {
    let on_stage = Stage::default();
    let off_stage = Stage {
        profile: None,
        env: vec![("ZEROSCALE_METRICS__ENABLED".into(), "false".into())],
    };
    let (on, _) = start(&dir.join("metrics-on"), client, &on_stage).await?;
    let (off, _) = start(&dir.join("metrics-off"), client, &off_stage).await?;
    let me = |base: &str, token: String| -> MakeRequest {
        let url = format!("{base}/v1/me");
        Arc::new(move |c: &reqwest::Client| c.get(&url).bearer_auth(&token))
    };
    let on_request = me(&on.base, login(client, &on.base).await?);
    let off_request = me(&off.base, login(client, &off.base).await?);
    // Warm-up: connections and caches of both.
    load(client, connections, length / 2, &on_request).await?;
    load(client, connections, length / 2, &off_request).await?;
    let (mut on_rps, mut off_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut on_lat, mut off_lat) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds.max(5) {
        let (first, second) = if round % 2 == 0 {
            (&on_request, &off_request)
        } else {
            (&off_request, &on_request)
        };
        let (a, a_lat) = load(client, connections, length, first).await?;
        let (b, b_lat) = load(client, connections, length, second).await?;
        let ((r_on, l_on), (r_off, l_off)) = if round % 2 == 0 {
            ((a, a_lat), (b, b_lat))
        } else {
            ((b, b_lat), (a, a_lat))
        };
        on_rps.push(r_on);
        off_rps.push(r_off);
        ratios.push(r_on / r_off.max(1e-9));
        on_lat.extend(l_on);
        off_lat.extend(l_off);
    }
    let ratio = Stats::of(&ratios);
    let goal = Goal::AtLeast { ratio: 0.97 };
    Ok(Figure {
        concern: "http",
        name: format!(
            "stage 1 GET /v1/me (session) req/s, metrics on vs off, {connections} connections; \
             p50/p99 {:.2}/{:.2} ms vs {:.2}/{:.2} ms",
            percentile(&mut on_lat, 0.5),
            percentile(&mut on_lat, 0.99),
            percentile(&mut off_lat, 0.5),
            percentile(&mut off_lat, 0.99),
        ),
        unit: "req/s",
        ours: Stats::of(&on_rps),
        theirs: Some(Stats::of(&off_rps)),
        against: Some("the same server with metrics.enabled = false".into()),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds: plan.rounds.max(5),
    })
}
