//! The database both backends share: connecting, migrations, and the few helpers every store uses.
//!
//! One code path serves SQLite and PostgreSQL through sqlx's `Any` driver; the SQL is written to run
//! on both (`$N` placeholders, `ON CONFLICT ... DO UPDATE`, BIGINT booleans and Unix-second times).

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use models::{ClassId, Tier};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

/// Connects, then runs the migrations: the media job queue's (owned by `media-worker`, versions
/// 1000+), then ours. Each migrator ignores the other's versions in the shared migration table.
pub async fn connect(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    let pool = media_worker::queue::open_pool(url, max_connections).await?;
    media_worker::queue::migrate(&pool).await?;
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(&pool).await?;
    Ok(pool)
}

/// How an erased user is remembered for a while (`erased_users`): a SHA-256 of their id, not the id.
pub fn user_hash(user_id: &models::UserId) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(user_id.as_str().as_bytes()))
}

pub fn now_secs() -> i64 {
    // A clock before 1970 is a broken host; 0 keeps ordering sane rather than failing requests.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A text column parsed into a domain type; a value we did not write is a corrupt row, not a panic.
pub fn parse_column<T: FromStr>(row: &AnyRow, column: &str) -> Result<T, RowError> {
    let raw: String = row.try_get(column)?;
    raw.parse().map_err(|_| RowError::Corrupt(format!("{column} = {raw:?}")))
}

/// Locks the class for the rest of the transaction by writing to its row, and tells whether it exists.
///
/// The write takes the row lock on PostgreSQL and the database write lock on SQLite, so checks of
/// tier limits made after it in the same transaction cannot race another writer of the class.
pub async fn lock_class(conn: &mut AnyConnection, class_id: &ClassId) -> Result<bool, sqlx::Error> {
    let n_rows = sqlx::query("UPDATE classes SET updated_at = $1 WHERE class_id = $2")
        .bind(now_secs())
        .bind(class_id.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(n_rows > 0)
}

pub async fn class_tier(conn: &mut AnyConnection, class_id: &ClassId) -> Result<Tier, RowError> {
    let row = sqlx::query("SELECT tier FROM classes WHERE class_id = $1")
        .bind(class_id.as_str())
        .fetch_one(&mut *conn)
        .await?;
    parse_column(&row, "tier")
}
