//! GDPR: erasing a user's data on request, erasing a class with everything in it, and purging
//! classes nobody has used for two years, after warning the class backend a month before.
//!
//! "Used" means an approved member did something in the class (see
//! `Directory::approved_member`); the class backend's sync calls do not count, or a nightly sync
//! would keep every class alive. The warning is a webhook (`class_purge_scheduled`, written to the
//! outbox with the warning itself), and the list of scheduled purges is also readable
//! (`GET /v1/retention/scheduled`) for a backend that missed it. Any use of the class before the
//! purge calls it off.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use models::api::PurgeScheduled;
use models::{ApiError, ClassId, UserId};
use serde::Deserialize;
use serde_json::json;
use sqlx::Row;

use crate::db::now_secs;
use crate::error::AppError;
use crate::extract::{parse_id, Backend};
use crate::AppState;

const DAY: i64 = 86_400;

/// What the author of a post becomes once its author's data is erased.
pub const ERASED_AUTHOR: &str = "erased";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A class unused for this many days is purged. 0 turns purging off.
    pub inactive_days: u64,
    /// The class backend is warned this many days before the purge.
    pub warning_days: u64,
    /// How often classes are checked.
    pub sweep_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { inactive_days: 730, warning_days: 30, sweep_interval_secs: 3600 }
    }
}

/// Deletes a class and everything in it: its files first (if the store fails, the rows that name
/// them are still there for a retry), then its rows, then its media jobs.
pub async fn erase_class(state: &AppState, class_id: &ClassId) -> Result<(), AppError> {
    // Its call ends first, for everyone, with `removed_from_class`.
    state.sfu.close_room(&sfu::RoomId::from(class_id), sfu::CloseReason::ClassDeleted).await;
    let media_ids = state.uploads.class_media_ids(class_id).await?;
    state.storage.delete_class_files(class_id, &media_ids).await?;
    state.directory.delete_class(class_id).await?;
    state.uploads.forget_class_jobs(class_id).await?;
    sqlx::query("DELETE FROM visio_sessions WHERE class_id = $1")
        .bind(class_id.as_str())
        .execute(state.uploads.pool())
        .await
        .map_err(|err| AppError::Unavailable(err.into()))?;
    Ok(())
}

/// Erase everything we hold about a user: their memberships in every class (they are dropped from
/// running calls), their attendance records (with the display name they had), and their name on
/// the posts they wrote, which stay with the class as class memories.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}", tag = "sync",
    params(("user_id" = UserId, Path)),
    responses((status = 204, description = "Erased, or nothing was held"), (status = 401, body = ApiError)),
    security(("api_key" = []))
)]
pub async fn erase_user(
    _: Backend,
    State(state): State<AppState>,
    axum::extract::Path(user_raw): axum::extract::Path<String>,
) -> Result<StatusCode, AppError> {
    let user_id = parse_id(user_raw, "user_id", UserId::new)?;
    let pool = state.uploads.pool();
    let database = |err: sqlx::Error| AppError::Unavailable(err.into());
    let classes = erase_user_rows(pool, &user_id).await.map_err(database)?;
    for class_id in classes {
        state.sfu.member_removed(&sfu::RoomId::from(&class_id), user_id.clone()).await;
    }
    // After the erasure is committed: whatever a racing call event wrote before it is deleted
    // here, whatever it writes after it, it deletes itself.
    forget_call_rows(pool, &user_id).await.map_err(database)?;
    tracing::info!(user = %user_id, "user data erased");
    Ok(StatusCode::NO_CONTENT)
}

/// Records the erasure and deletes the user's memberships and authorship, in one transaction;
/// returns the classes they were a member of. Their call rows are deleted after it
/// ([`forget_call_rows`]), once they are out of the calls.
pub async fn erase_user_rows(pool: &sqlx::AnyPool, user_id: &UserId) -> Result<Vec<ClassId>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Recorded first, in the transaction that removes the memberships: a call event already on
    // its way (a join) checks it after writing, and deletes what it wrote.
    sqlx::query(
        "INSERT INTO erased_users (user_hash, erased_at) VALUES ($1, $2)
         ON CONFLICT (user_hash) DO UPDATE SET erased_at = excluded.erased_at",
    )
    .bind(crate::db::user_hash(user_id))
    .bind(now_secs())
    .execute(&mut *tx)
    .await?;
    let classes = sqlx::query("SELECT class_id FROM members WHERE user_id = $1")
        .bind(user_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    for statement in
        ["DELETE FROM members WHERE user_id = $1", "UPDATE posts SET author_id = $2 WHERE author_id = $1"]
    {
        sqlx::query(statement).bind(user_id.as_str()).bind(ERASED_AUTHOR).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let mut ids = Vec::with_capacity(classes.len());
    for row in classes {
        if let Ok(class_id) = ClassId::new(row.try_get::<String, _>("class_id")?) {
            ids.push(class_id);
        }
    }
    Ok(ids)
}

/// Whether the user was erased in the last [`ERASURE_GUARD_DAYS`] days (and not added again since).
pub async fn was_erased(pool: &sqlx::AnyPool, user_id: &UserId) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM erased_users WHERE user_hash = $1")
        .bind(crate::db::user_hash(user_id))
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// Deletes the call records that name the user: attendance, and webhooks not yet delivered.
pub async fn forget_call_rows(pool: &sqlx::AnyPool, user_id: &UserId) -> Result<(), sqlx::Error> {
    for statement in
        ["DELETE FROM attendance WHERE user_id = $1", "DELETE FROM webhook_outbox WHERE user_id = $1"]
    {
        sqlx::query(statement).bind(user_id.as_str()).execute(pool).await?;
    }
    Ok(())
}

/// How long an erasure is remembered (by a hash of the id): longer than any call event can take to
/// be recorded, since the erased user is removed from calls at once.
pub const ERASURE_GUARD_DAYS: i64 = 1;
/// Webhooks given up after all their attempts are kept this long for an operator to look at.
pub const GIVEN_UP_WEBHOOK_DAYS: i64 = 30;

/// Classes warned of a coming purge, oldest first.
#[utoipa::path(
    get, path = "/v1/retention/scheduled", tag = "sync",
    responses((status = 200, body = [PurgeScheduled]), (status = 401, body = ApiError)),
    security(("api_key" = []))
)]
pub async fn scheduled(
    _: Backend,
    State(state): State<AppState>,
) -> Result<Json<Vec<PurgeScheduled>>, AppError> {
    Ok(Json(scheduled_purges(&state).await.map_err(|err| AppError::Unavailable(err.into()))?))
}

async fn scheduled_purges(state: &AppState) -> Result<Vec<PurgeScheduled>, sqlx::Error> {
    let config = &state.config.retention;
    let rows = sqlx::query(
        "SELECT class_id, COALESCE(last_active_at, created_at) AS last_active_at, purge_warned_at
         FROM classes WHERE purge_warned_at IS NOT NULL ORDER BY purge_warned_at, class_id",
    )
    .fetch_all(state.uploads.pool())
    .await?;
    let mut scheduled = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(class_id) = ClassId::new(row.try_get::<String, _>("class_id")?) else { continue };
        let last_active_at: i64 = row.try_get("last_active_at")?;
        let warned_at: i64 = row.try_get("purge_warned_at")?;
        scheduled.push(PurgeScheduled {
            class_id,
            last_active_at,
            warned_at,
            purge_at: purge_at(config, last_active_at, warned_at),
        });
    }
    Ok(scheduled)
}

/// The later of "unused for `inactive_days`" and "warned `warning_days` before".
fn purge_at(config: &RetentionConfig, last_active_at: i64, warned_at: i64) -> i64 {
    (last_active_at + config.inactive_days as i64 * DAY).max(warned_at + config.warning_days as i64 * DAY)
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub warned: Vec<ClassId>,
    pub purged: Vec<ClassId>,
}

/// Warns of classes that reach `inactive - warning` days unused, and purges those whose warning is
/// at least `warning` days old and that are `inactive` days unused. Safe to run from several
/// replicas: a warning is sent by whoever records it, and erasing twice erases once.
pub async fn sweep(state: &AppState, now: i64) -> Result<Sweep, AppError> {
    let config = &state.config.retention;
    let mut done = Sweep::default();
    let pool = state.uploads.pool();
    let database = |err: sqlx::Error| AppError::Unavailable(err.into());
    sqlx::query("DELETE FROM erased_users WHERE erased_at < $1")
        .bind(now - ERASURE_GUARD_DAYS * DAY)
        .execute(pool)
        .await
        .map_err(database)?;
    sqlx::query("DELETE FROM webhook_outbox WHERE gave_up_at < $1")
        .bind(now - GIVEN_UP_WEBHOOK_DAYS * DAY)
        .execute(pool)
        .await
        .map_err(database)?;
    if config.inactive_days == 0 {
        return Ok(done);
    }
    let inactive = config.inactive_days as i64 * DAY;
    let warning = (config.warning_days as i64 * DAY).min(inactive);

    let to_warn = sqlx::query(
        "SELECT class_id, COALESCE(last_active_at, created_at) AS last_active_at FROM classes
         WHERE purge_warned_at IS NULL AND COALESCE(last_active_at, created_at) < $1",
    )
    .bind(now - (inactive - warning))
    .fetch_all(pool)
    .await
    .map_err(database)?;
    for row in to_warn {
        let Ok(class_id) = ClassId::new(row.try_get::<String, _>("class_id").map_err(database)?) else {
            continue;
        };
        let last_active_at: i64 = row.try_get("last_active_at").map_err(database)?;
        let mut tx = pool.begin().await.map_err(database)?;
        let recorded = sqlx::query(
            "UPDATE classes SET purge_warned_at = $1 WHERE class_id = $2 AND purge_warned_at IS NULL",
        )
        .bind(now)
        .bind(class_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(database)?
        .rows_affected();
        if recorded == 1 {
            let purge_at = purge_at(config, last_active_at, now);
            let fields = json!({ "class_id": class_id.as_str(), "last_active_at": last_active_at, "purge_at": purge_at });
            state.webhooks.enqueue(&mut tx, "class_purge_scheduled", None, fields).await.map_err(database)?;
            tx.commit().await.map_err(database)?;
            state.webhooks.wake();
            tracing::info!(class = %class_id, purge_at, "class unused: purge scheduled");
            done.warned.push(class_id);
        }
    }

    let to_purge = sqlx::query(
        "SELECT class_id FROM classes
         WHERE purge_warned_at IS NOT NULL AND purge_warned_at <= $1 AND COALESCE(last_active_at, created_at) < $2",
    )
    .bind(now - warning)
    .bind(now - inactive)
    .fetch_all(pool)
    .await
    .map_err(database)?;
    for row in to_purge {
        let Ok(class_id) = ClassId::new(row.try_get::<String, _>("class_id").map_err(database)?) else {
            continue;
        };
        erase_class(state, &class_id).await?;
        let mut conn = pool.acquire().await.map_err(database)?;
        let fields = json!({ "class_id": class_id.as_str() });
        state.webhooks.enqueue(&mut conn, "class_purged", None, fields).await.map_err(database)?;
        state.webhooks.wake();
        tracing::info!(class = %class_id, "unused class purged");
        done.purged.push(class_id);
    }
    Ok(done)
}

/// Sweeps every `sweep_interval_secs` until the process stops.
///
/// With several replicas, one sweeps at a time: the sweep holds the lease `retention_sweep`
/// (`cluster::lease`) for the period, so two replicas never purge the same class at once (and
/// never send its `class_purged` twice).
pub fn start(state: AppState) {
    let period = Duration::from_secs(state.config.retention.sweep_interval_secs.max(1));
    let holder = format!("replica-{}", hex::encode(rand::random::<[u8; 8]>()));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let ttl_ms = period.as_millis() as u64;
            match crate::cluster::lease::try_acquire(state.uploads.pool(), SWEEP_LEASE, &holder, ttl_ms).await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(cause = %err, "cannot take the retention sweep's lease; trying again later");
                    continue;
                }
            }
            if let Err(err) = sweep(&state, now_secs()).await {
                tracing::warn!(cause = ?err, "retention sweep failed; trying again later");
            }
        }
    });
}

/// The lease of the retention sweep (`leases` table).
pub const SWEEP_LEASE: &str = "retention_sweep";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_comes_after_two_years_and_never_less_than_a_month_after_the_warning() {
        let config = RetentionConfig::default();
        let last = 1_000 * DAY;
        assert_eq!(purge_at(&config, last, last + 700 * DAY), last + 730 * DAY);
        // Warned late (the server was down): still a full month's notice.
        assert_eq!(purge_at(&config, last, last + 900 * DAY), last + 930 * DAY);
    }
}
