//! The pruner: a task in every replica that keeps the token tables bounded, deleting
//! expired and spent rows in small batches ([`latchkey_store::prune`] says which rows,
//! and why the ones reuse detection needs stay).
//!
//! Every `interval` it visits each table and deletes batches of at most `batch` rows,
//! pausing between batches as long as the last one took (at least [`PAUSE`]) so a
//! backlog drains steadily beside the traffic instead of in one long statement.
//! Metrics: `latchkey_pruned_rows_total{table}`,
//! `latchkey_prune_duration_seconds{table}` (one table's pass) and
//! `latchkey_prune_lag_seconds{table}` (how long the oldest prunable row has waited).

use std::time::{Duration, Instant};

use latchkey_store::prune::{self, Table};
use latchkey_store::{Db, now_ms};

/// The least pause between two batches of one pass: lets the traffic's queries in
/// between. A pass pauses as long as the batch before took when that is longer, so
/// draining a backlog keeps one database connection busy at most about half the time,
/// and backs off by itself when the database is slow. (bench/prune.sh, 2 cores: a
/// fixed 10 ms drained its backlog in 41–45 s and took 22% of the token endpoint's
/// throughput meanwhile, p99 1.54–1.58x; pausing as long as the batch took, 60–77 s,
/// 17–22%, p99 1.49–1.52x.)
pub const PAUSE: Duration = Duration::from_millis(10);

/// `LATCHKEY_PRUNE_INTERVAL` and `LATCHKEY_PRUNE_BATCH`.
#[derive(Clone, Copy, Debug)]
pub struct PruneSettings {
    pub interval: Duration,
    pub batch: u32,
}

/// What one pass over one table did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub deleted: u64,
    pub batches: u32,
}

/// Runs passes every `settings.interval` until dropped (the service aborts it on
/// shutdown; a batch is one statement, so an abort leaves nothing half done).
pub async fn run(db: Db, settings: PruneSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for table in Table::ALL {
            if let Err(err) = pass(&db, table, settings.batch).await {
                tracing::warn!(table = table.as_str(), error = %err, "pruning failed; retrying next interval");
            }
        }
    }
}

/// Deletes batches from `table`, each resuming where the one before stopped, until one
/// comes back short: the backlog is gone.
pub async fn pass(db: &Db, table: Table, batch: u32) -> latchkey_store::Result<Pass> {
    let start = Instant::now();
    let mut done = Pass::default();
    let mut from = i64::MIN;
    let result = loop {
        let statement = Instant::now();
        match prune::batch(db, table, now_ms(), from, i64::from(batch)).await {
            Ok(deleted) => {
                let n = deleted.rows;
                from = deleted.reached;
                done.deleted += n;
                done.batches += 1;
                metrics::counter!("latchkey_pruned_rows_total", "table" => table.as_str())
                    .increment(n);
                if n < u64::from(batch) {
                    break Ok(());
                }
                tokio::time::sleep(PAUSE.max(statement.elapsed())).await;
            }
            Err(err) => break Err(err),
        }
    };
    metrics::histogram!("latchkey_prune_duration_seconds", "table" => table.as_str())
        .record(start.elapsed().as_secs_f64());
    result?;
    let lag = prune::lag_ms(db, table, now_ms()).await?;
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("latchkey_prune_lag_seconds", "table" => table.as_str())
        .set(lag as f64 / 1000.0);
    if done.deleted > 0 {
        tracing::debug!(
            table = table.as_str(),
            deleted = done.deleted,
            batches = done.batches,
            "pruned"
        );
    }
    Ok(done)
}
