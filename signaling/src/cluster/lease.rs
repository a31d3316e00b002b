//! Leases on periodic work, so that with several replicas one does it at a time.
//!
//! A row per kind of work (`leases`): whoever inserts it, or finds it expired, or holds it
//! already, holds it until `expires_ms`. The same SQL runs on SQLite and PostgreSQL (a
//! conditional upsert), unlike `pg_try_advisory_lock`, which is PostgreSQL's alone and tied to one
//! pooled connection.

use sqlx::AnyPool;

use super::registry::now_ms;

/// Takes or renews the lease `name` for `holder` for `ttl_ms`. Returns whether `holder` holds it.
pub async fn try_acquire(pool: &AnyPool, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let n_rows = sqlx::query(
        "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
         WHERE leases.expires_ms < $4 OR leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(now + ttl_ms as i64)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n_rows == 1)
}

/// Gives the lease back early, if `holder` holds it.
pub async fn release(pool: &AnyPool, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
