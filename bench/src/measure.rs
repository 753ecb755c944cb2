//! Measuring: rounds that alternate ours and theirs on the same data, the median of the
//! per-round ratios with their min and max, and the goal each figure is held to.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    pub(crate) fn of(samples: &[f64]) -> Stats {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return Stats {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Stats {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// What a figure must reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Goal {
    /// The ratio is at most this.
    AtMost { ratio: f64 },
    /// The ratio is at least this.
    AtLeast { ratio: f64 },
    /// The ratio is within these bounds.
    Between { low: f64, high: f64 },
    /// The value (not a ratio) is below this.
    Below { value: f64 },
    /// The value (not a ratio) is at least this.
    AtLeastValue { value: f64 },
    /// Reported, not held to a goal.
    Report,
}

impl Goal {
    pub(crate) fn met(self, ratio: f64, value: f64) -> Option<bool> {
        match self {
            Goal::AtMost { ratio: goal } => Some(ratio <= goal),
            Goal::AtLeast { ratio: goal } => Some(ratio >= goal),
            Goal::Between { low, high } => Some((low..=high).contains(&ratio)),
            Goal::Below { value: goal } => Some(value < goal),
            Goal::AtLeastValue { value: goal } => Some(value >= goal),
            Goal::Report => None,
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Goal::AtMost { ratio } => format!("≤ {ratio}×"),
            Goal::AtLeast { ratio } => format!("≥ {ratio}×"),
            Goal::Between { low, high } => format!("{low}–{high}×"),
            Goal::Below { value } => format!("< {value}"),
            Goal::AtLeastValue { value } => format!("≥ {value}"),
            Goal::Report => "reported".to_owned(),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) concern: &'static str,
    pub(crate) name: String,
    /// What `ours` and `theirs` are measured in (`ms`, `req/s`, …).
    pub(crate) unit: &'static str,
    pub(crate) ours: Stats,
    /// The peer or raw driver, when the figure compares.
    pub(crate) theirs: Option<Stats>,
    /// What `theirs` is.
    pub(crate) against: Option<String>,
    /// ours ÷ theirs per round (or another stated ratio).
    pub(crate) ratio: Option<Stats>,
    pub(crate) goal: Goal,
    /// Whether the goal is met (`None`: no goal, or `--quick`).
    pub(crate) pass: Option<bool>,
    pub(crate) rounds: usize,
}

/// How many rounds and how much work per round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    pub(crate) quick: bool,
}

impl Plan {
    /// `full` items per round normally, `quick` with `--quick`.
    pub(crate) fn size(self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

/// Runs `ours` and `theirs` for `plan.rounds` rounds after one warm-up each, alternating
/// which goes first; each returns the time its round took. Reports milliseconds and the
/// per-round ratio ours ÷ theirs.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare<O, OF, T, TF>(
    plan: Plan,
    concern: &'static str,
    name: impl Into<String>,
    against: impl Into<String>,
    goal: Goal,
    mut ours: O,
    mut theirs: T,
) -> Figure
where
    O: FnMut(usize) -> OF,
    OF: Future<Output = Duration>,
    T: FnMut(usize) -> TF,
    TF: Future<Output = Duration>,
{
    // Warm-up (caches, connections, page cache), not counted.
    ours(usize::MAX).await;
    theirs(usize::MAX).await;
    let mut o = Vec::new();
    let mut t = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..plan.rounds {
        let (a, b) = if round.is_multiple_of(2) {
            let a = ours(round).await;
            (a, theirs(round).await)
        } else {
            let b = theirs(round).await;
            (ours(round).await, b)
        };
        o.push(a.as_secs_f64() * 1e3);
        t.push(b.as_secs_f64() * 1e3);
        ratios.push(a.as_secs_f64() / b.as_secs_f64().max(1e-12));
    }
    let ratio = Stats::of(&ratios);
    Figure {
        concern,
        name: name.into(),
        unit: "ms",
        ours: Stats::of(&o),
        theirs: Some(Stats::of(&t)),
        against: Some(against.into()),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds: plan.rounds,
    }
}
