//! Stage 3's file download against the S3 server alone: the same 64 KiB read straight
//! from the S3 server by the same load generator. At stage 3 every download is one GET to
//! the S3 server, so this is the ceiling of `GET /v1/files/{id}` there, and the ratio says
//! what the server adds on top (authentication, the file's row, streaming the body).

use std::sync::Arc;
use std::time::Duration;

use crate::http::{MakeRequest, load, percentile};
use crate::measure::{Figure, Goal, Plan, Stats};

/// Where the stage-3 server keeps its files.
pub(crate) struct S3Target {
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    pub(crate) prefix: String,
}

/// Our download's req/s ÷ the S3 server's for the same bytes, per round (alternating which
/// goes first).
pub(crate) async fn download_against_s3(
    plan: Plan,
    client: &reqwest::Client,
    base: &str,
    token: &str,
    s3: &S3Target,
    connections: usize,
    length: Duration,
) -> anyhow::Result<Figure> {
    let payload = bytes::Bytes::from(vec![b'q'; 64 * 1024]);
    let response = client
        .post(format!("{base}/v1/files?filename=ceiling.bin"))
        .bearer_auth(token)
        .body(payload.clone())
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "upload answered {}",
        response.status()
    );
    let file: serde_json::Value = response.json().await?;
    let file_id = file["id"].as_str().unwrap_or_default().to_owned();
    // The test S3 server takes unsigned requests: the raw side is a plain HTTP GET, with
    // nothing of ours in between.
    let raw_url = format!(
        "{}/{}/{}-ceiling/64k.bin",
        s3.endpoint.trim_end_matches('/'),
        s3.bucket,
        s3.prefix
    );
    let put = client.put(&raw_url).body(payload).send().await?;
    anyhow::ensure!(
        put.status().is_success(),
        "putting the raw object answered {}",
        put.status()
    );
    let ours: MakeRequest = {
        let url = format!("{base}/v1/files/{file_id}");
        let auth = format!("Bearer {token}");
        Arc::new(move |c: &reqwest::Client| c.get(&url).header("authorization", &auth))
    };
    let raw: MakeRequest = Arc::new(move |c: &reqwest::Client| c.get(&raw_url));
    load(client, connections, length / 10, &ours).await?;
    load(client, connections, length / 10, &raw).await?;
    let (mut ours_rps, mut raw_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_lat, mut raw_lat) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let ((o, ol), (r, rl)) = if round.is_multiple_of(2) {
            let o = load(client, connections, length, &ours).await?;
            (o, load(client, connections, length, &raw).await?)
        } else {
            let r = load(client, connections, length, &raw).await?;
            (load(client, connections, length, &ours).await?, r)
        };
        ours_rps.push(o);
        raw_rps.push(r);
        ratios.push(o / r.max(1e-9));
        ours_lat.extend(ol);
        raw_lat.extend(rl);
    }
    let ratio = Stats::of(&ratios);
    // The server's own work is a small part of each download next to the S3 server's.
    let goal = Goal::AtLeast { ratio: 0.8 };
    Ok(Figure {
        concern: "http",
        name: format!(
            "stage 3 GET a 64 KiB file req/s vs the S3 server alone serving 64 KiB, \
             {connections} connections; p50/p99 {:.2}/{:.2} ms vs {:.2}/{:.2} ms",
            percentile(&mut ours_lat, 0.5),
            percentile(&mut ours_lat, 0.99),
            percentile(&mut raw_lat, 0.5),
            percentile(&mut raw_lat, 0.99),
        ),
        unit: "req/s",
        ours: Stats::of(&ours_rps),
        theirs: Some(Stats::of(&raw_rps)),
        against: Some("plain GETs of the same bytes from the S3 server".into()),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds: plan.rounds,
    })
}
