//! Retention: messages older than their room's retention (`compliance.retention_days`, or a
//! room's own policy) are erased for real, in bounded batches, on a schedule whether or not
//! the room sees activity — each message on its own (a conversation that began before the
//! cut-off keeps its newer messages), never one a legal hold covers. A preview tells first
//! exactly what a run would erase; every run is an audit record with its counts.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{self, Action, Actor, Subject};
use crate::config::ComplianceConfig;
use crate::error::{ApiError, Result};
use crate::store::{EventId, Millis, RoomId, Store, now_millis};

/// What a run at `now` would erase.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Preview {
    /// Messages that would be erased.
    pub messages: u64,
    /// Rooms they are in.
    pub rooms: u64,
    /// The oldest one's creation time.
    pub oldest: Option<Millis>,
    /// Messages past retention that a legal hold keeps.
    pub held: u64,
}

struct Plan {
    ids: Vec<EventId>,
    rooms: BTreeSet<RoomId>,
    oldest: Option<Millis>,
    held: u64,
}

fn global_days(config: &ComplianceConfig) -> Option<i64> {
    (config.retention_days > 0).then_some(i64::from(config.retention_days))
}

/// Everything past retention at `now`, held messages counted apart.
async fn plan(store: &dyn Store, config: &ComplianceConfig, now: Millis) -> Result<Plan> {
    let holds: Vec<_> = store
        .holds()
        .await?
        .into_iter()
        .filter(|h| h.active(now))
        .collect();
    let mut plan = Plan {
        ids: Vec::new(),
        rooms: BTreeSet::new(),
        oldest: None,
        held: 0,
    };
    let mut after = 0;
    loop {
        let page = store
            .expired_messages(now, global_days(config), after, 1000)
            .await?;
        let Some(&(last, ..)) = page.last() else {
            break;
        };
        after = last;
        for (id, room, sender, created) in page {
            if holds.iter().any(|h| h.covers(room, sender, created)) {
                plan.held += 1;
                continue;
            }
            plan.ids.push(id);
            plan.rooms.insert(room);
            plan.oldest = Some(plan.oldest.map_or(created, |o| o.min(created)));
        }
    }
    Ok(plan)
}

/// What a run now would erase (nothing is changed).
pub async fn preview(store: &dyn Store, config: &ComplianceConfig) -> Result<Preview> {
    let plan = plan(store, config, now_millis()).await?;
    Ok(Preview {
        messages: plan.ids.len() as u64,
        rooms: plan.rooms.len() as u64,
        oldest: plan.oldest,
        held: plan.held,
    })
}

/// Erase everything past retention now, `compliance.retention_batch` messages per
/// transaction, and put the run on record. Returns what was erased.
pub async fn run(
    store: &dyn Store,
    config: &ComplianceConfig,
    actor: Actor<'_>,
) -> Result<Preview> {
    run_at(store, config, now_millis(), actor).await
}

/// [`run`] as if it were `now` (tests move the clock instead of waiting for days).
pub async fn run_at(
    store: &dyn Store,
    config: &ComplianceConfig,
    now: Millis,
    actor: Actor<'_>,
) -> Result<Preview> {
    let plan = plan(store, config, now).await?;
    let mut erased = 0;
    for batch in plan.ids.chunks(config.retention_batch.max(1)) {
        erased += store.erase_messages(batch).await?;
    }
    let report = Preview {
        messages: erased,
        rooms: plan.rooms.len() as u64,
        oldest: plan.oldest,
        held: plan.held,
    };
    audit::record(
        store,
        actor,
        Action::RetentionRun,
        Subject::Retention,
        serde_json::json!({
            "erased": report.messages, "rooms": report.rooms,
            "oldest": report.oldest, "held": report.held,
        }),
    )
    .await;
    Ok(report)
}

/// Set or clear a room's own retention, refusing one below `retention_min_days`.
pub async fn set_room(
    store: &dyn Store,
    config: &ComplianceConfig,
    room: RoomId,
    days: Option<i64>,
    actor: Actor<'_>,
) -> Result<()> {
    if let Some(days) = days
        && days < i64::from(config.retention_min_days.max(1))
    {
        return Err(ApiError::bad_request(
            "retention_too_short",
            format!(
                "a retention policy keeps messages at least {} day(s) \
                 (compliance.retention_min_days)",
                config.retention_min_days.max(1)
            ),
        ));
    }
    if store.room(room).await?.is_none() {
        return Err(ApiError::not_found("room_not_found", "no such room"));
    }
    store.set_room_retention(room, days).await?;
    audit::record(
        store,
        actor,
        Action::RetentionSet,
        Subject::Room(room),
        serde_json::json!({ "days": days }),
    )
    .await;
    Ok(())
}

/// Run retention every `retention_interval_secs` while the server runs, whether or not
/// anything happens in the rooms.
pub fn spawn_scheduler(
    store: Arc<dyn Store>,
    config: ComplianceConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(config.retention_interval_secs.max(60));
        // The first run comes one interval after start, not at start.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let any_policy = config.retention_days > 0
                || store.room_retentions().await.is_ok_and(|r| !r.is_empty());
            if !any_policy {
                continue;
            }
            match run(store.as_ref(), &config, Actor::System).await {
                Ok(report) if report.messages > 0 => {
                    tracing::info!(
                        erased = report.messages,
                        held = report.held,
                        "retention run"
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    err.log();
                    tracing::warn!(code = err.code(), "retention run failed");
                }
            }
        }
    })
}
