//! The class directory: classes and their members, kept in SQLite (default) or PostgreSQL.
//!
//! Tier limits are checked inside the transaction that changes a member, after [`db::lock_class`], so
//! two concurrent requests cannot both pass the check and exceed a limit.

use models::api::{ClassUpsert, ClassView, MemberUpsert, MemberView, OverLimit};
use models::{ClassId, ClassOptions, Role, Tier, TierTable, UserId};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{self, now_secs, parse_column, RowError};

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("class not found")]
    ClassNotFound,
    #[error("the class has reached its tier's limit of {limit} members")]
    MemberLimitReached { limit: u32 },
    #[error("the class has reached its tier's limit of {limit} teachers and admins")]
    AdminLimitReached { limit: u32 },
    #[error("corrupt row in the directory: {0}")]
    CorruptRow(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<RowError> for DirectoryError {
    fn from(err: RowError) -> Self {
        match err {
            RowError::Corrupt(message) => DirectoryError::CorruptRow(message),
            RowError::Database(err) => DirectoryError::Database(err),
        }
    }
}

/// Whether a write created the thing or replaced it (201 vs 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// Counts per tier, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounts {
    pub n_classes: i64,
    pub n_members: i64,
}

#[derive(Clone)]
pub struct Directory {
    pool: AnyPool,
    tiers: TierTable,
    /// When this process last recorded each class as in use (see `note_activity`).
    activity: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<ClassId, i64>>>,
}

/// Use of a class is written at most this often per class and process.
const ACTIVITY_GRANULARITY_SECS: i64 = 3600;

impl Directory {
    pub fn new(pool: AnyPool, tiers: TierTable) -> Directory {
        Directory { pool, tiers, activity: Default::default() }
    }

    pub fn tiers(&self) -> &TierTable {
        &self.tiers
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn upsert_class(
        &self,
        class_id: &ClassId,
        class: &ClassUpsert,
    ) -> Result<(Written, ClassView), DirectoryError> {
        let now = now_secs();
        let mut tx = self.pool.begin().await?;
        let existed = db::lock_class(&mut tx, class_id).await?;
        sqlx::query(
            "INSERT INTO classes
                (class_id, name, tier, confort_famille, visio_allow_unencrypted, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (class_id) DO UPDATE SET
                name = excluded.name, tier = excluded.tier, confort_famille = excluded.confort_famille,
                visio_allow_unencrypted = CASE WHEN $7 = 1 THEN classes.visio_allow_unencrypted
                                               ELSE excluded.visio_allow_unencrypted END,
                updated_at = excluded.updated_at",
        )
        .bind(class_id.as_str())
        .bind(class.name.as_str())
        .bind(class.tier.as_str())
        .bind(class.options.confort_famille as i64)
        .bind(class.options.visio_allow_unencrypted.unwrap_or(false) as i64)
        .bind(now)
        // Absent: the teachers' choice (or the default of a new class) stays.
        .bind(class.options.visio_allow_unencrypted.is_none() as i64)
        .execute(&mut *tx)
        .await?;
        let view = self.class_view(&mut tx, class_id).await?.ok_or(DirectoryError::ClassNotFound)?;
        tx.commit().await?;
        Ok((if existed { Written::Updated } else { Written::Created }, view))
    }

    /// Deletes the class and all its members. Deleting a missing class is not an error.
    pub async fn delete_class(&self, class_id: &ClassId) -> Result<(), DirectoryError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM members WHERE class_id = $1")
            .bind(class_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM classes WHERE class_id = $1")
            .bind(class_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn class(&self, class_id: &ClassId) -> Result<Option<ClassView>, DirectoryError> {
        let mut conn = self.pool.acquire().await?;
        self.class_view(&mut conn, class_id).await
    }

    async fn class_view(
        &self,
        conn: &mut AnyConnection,
        class_id: &ClassId,
    ) -> Result<Option<ClassView>, DirectoryError> {
        let Some(row) = sqlx::query(
            "SELECT name, tier, confort_famille, visio_allow_unencrypted FROM classes WHERE class_id = $1",
        )
        .bind(class_id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let tier = parse_column::<Tier>(&row, "tier")?;
        let (n_members, n_admins) = member_counts(conn, class_id).await?;
        let policy = self.tiers.policy(tier);
        let mut over_limits = Vec::new();
        if n_members > policy.max_members {
            over_limits.push(OverLimit::Members);
        }
        if policy.max_admins.is_some_and(|max| n_admins > max) {
            over_limits.push(OverLimit::Admins);
        }
        Ok(Some(ClassView {
            class_id: class_id.clone(),
            name: row.try_get("name")?,
            tier,
            options: class_options(&row)?,
            n_members,
            n_admins,
            over_limits,
        }))
    }

    /// Adds or updates a member, enforcing the tier's member and admin limits on anyone who would
    /// newly count against them. Members already counted keep their place after a downgrade.
    pub async fn upsert_member(
        &self,
        class_id: &ClassId,
        user_id: &UserId,
        member: &MemberUpsert,
    ) -> Result<(Written, MemberView), DirectoryError> {
        let now = now_secs();
        let mut tx = self.pool.begin().await?;
        if !db::lock_class(&mut tx, class_id).await? {
            return Err(DirectoryError::ClassNotFound);
        }
        let policy = self.tiers.policy(db::class_tier(&mut tx, class_id).await?);

        let existing = sqlx::query("SELECT role, approved FROM members WHERE class_id = $1 AND user_id = $2")
            .bind(class_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let (was_member, was_admin) = match &existing {
            Some(row) => {
                let approved = row.try_get::<i64, _>("approved")? != 0;
                let role = parse_column::<Role>(row, "role")?;
                (approved, approved && role.administers())
            }
            None => (false, false),
        };
        let (n_members, n_admins) = member_counts(&mut tx, class_id).await?;
        if member.approved && !was_member && n_members >= policy.max_members {
            return Err(DirectoryError::MemberLimitReached { limit: policy.max_members });
        }
        if let Some(max_admins) = policy.max_admins {
            if member.approved && member.role.administers() && !was_admin && n_admins >= max_admins {
                return Err(DirectoryError::AdminLimitReached { limit: max_admins });
            }
        }
        sqlx::query(
            "INSERT INTO members (class_id, user_id, display_name, role, approved, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (class_id, user_id) DO UPDATE SET
                display_name = excluded.display_name, role = excluded.role,
                approved = excluded.approved, updated_at = excluded.updated_at",
        )
        .bind(class_id.as_str())
        .bind(user_id.as_str())
        .bind(member.display_name.trim())
        .bind(member.role.as_str())
        .bind(member.approved as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Added again after an erasure: their calls are recorded again.
        sqlx::query("DELETE FROM erased_users WHERE user_hash = $1")
            .bind(db::user_hash(user_id))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let view = MemberView {
            class_id: class_id.clone(),
            user_id: user_id.clone(),
            display_name: member.display_name.trim().to_owned(),
            role: member.role,
            approved: member.approved,
        };
        Ok((if existing.is_some() { Written::Updated } else { Written::Created }, view))
    }

    /// Sets whether the class's calls admit browsers that cannot encrypt end to end (a teacher's
    /// choice, `visio/settings`; the class backend's `PUT` of the class sets it too). `false`
    /// when there is no such class. Calls already running keep who is in them.
    pub async fn set_visio_allow_unencrypted(
        &self,
        class_id: &ClassId,
        allow: bool,
    ) -> Result<bool, DirectoryError> {
        let n_rows = sqlx::query(
            "UPDATE classes SET visio_allow_unencrypted = $1, updated_at = $2 WHERE class_id = $3",
        )
        .bind(allow as i64)
        .bind(now_secs())
        .bind(class_id.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n_rows > 0)
    }

    /// Removes a member. Removing someone who is not a member is not an error.
    pub async fn delete_member(&self, class_id: &ClassId, user_id: &UserId) -> Result<(), DirectoryError> {
        sqlx::query("DELETE FROM members WHERE class_id = $1 AND user_id = $2")
            .bind(class_id.as_str())
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The member and their class's tier and options, if the user is an *approved* member.
    /// Pending members get `None`, exactly like strangers.
    pub async fn approved_member(
        &self,
        class_id: &ClassId,
        user_id: &UserId,
    ) -> Result<Option<(MemberView, Tier, ClassOptions)>, DirectoryError> {
        let Some(row) = sqlx::query(
            "SELECT m.display_name, m.role, c.tier, c.confort_famille, c.visio_allow_unencrypted
             FROM members m JOIN classes c ON c.class_id = m.class_id
             WHERE m.class_id = $1 AND m.user_id = $2 AND m.approved = 1",
        )
        .bind(class_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let member = MemberView {
            class_id: class_id.clone(),
            user_id: user_id.clone(),
            display_name: row.try_get("display_name")?,
            role: parse_column::<Role>(&row, "role")?,
            approved: true,
        };
        let tier = parse_column::<Tier>(&row, "tier")?;
        let options = class_options(&row)?;
        self.note_activity(class_id).await;
        Ok(Some((member, tier, options)))
    }

    /// An approved member is using the class: it is not unused, and a pending purge is called off.
    /// Written at most once an hour per class and process; a failure is logged, not the request's.
    async fn note_activity(&self, class_id: &ClassId) {
        let now = now_secs();
        {
            // A poisoned lock only means another request panicked mid-insert; the map is still usable.
            let mut seen = self.activity.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.get(class_id).is_some_and(|at| now - at < ACTIVITY_GRANULARITY_SECS) {
                return;
            }
            seen.insert(class_id.clone(), now);
        }
        let written =
            sqlx::query("UPDATE classes SET last_active_at = $1, purge_warned_at = NULL WHERE class_id = $2")
                .bind(now)
                .bind(class_id.as_str())
                .execute(&self.pool)
                .await;
        if let Err(err) = written {
            tracing::warn!(class = %class_id, cause = %err, "cannot record class activity");
        }
    }

    /// Classes and approved members per tier.
    pub async fn counts_by_tier(&self) -> Result<Vec<(Tier, TierCounts)>, DirectoryError> {
        let class_rows = sqlx::query("SELECT tier, COUNT(*) AS n FROM classes GROUP BY tier")
            .fetch_all(&self.pool)
            .await?;
        let member_rows = sqlx::query(
            "SELECT c.tier AS tier, COUNT(*) AS n FROM members m
             JOIN classes c ON c.class_id = m.class_id
             WHERE m.approved = 1 GROUP BY c.tier",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts: Vec<(Tier, TierCounts)> =
            Tier::ALL.iter().map(|tier| (*tier, TierCounts::default())).collect();
        for row in &class_rows {
            let tier = parse_column::<Tier>(row, "tier")?;
            counts[tier as usize].1.n_classes = row.try_get("n")?;
        }
        for row in &member_rows {
            let tier = parse_column::<Tier>(row, "tier")?;
            counts[tier as usize].1.n_members = row.try_get("n")?;
        }
        Ok(counts)
    }
}

/// The options columns of a row of `classes`.
fn class_options(row: &sqlx::any::AnyRow) -> Result<ClassOptions, sqlx::Error> {
    Ok(ClassOptions {
        confort_famille: row.try_get::<i64, _>("confort_famille")? != 0,
        visio_allow_unencrypted: row.try_get::<i64, _>("visio_allow_unencrypted")? != 0,
    })
}

/// Approved members, and approved teachers and admins, of a class.
async fn member_counts(conn: &mut AnyConnection, class_id: &ClassId) -> Result<(u32, u32), DirectoryError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n_members,
                COUNT(CASE WHEN role IN ('teacher', 'admin') THEN 1 END) AS n_admins
         FROM members WHERE class_id = $1 AND approved = 1",
    )
    .bind(class_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let n_members: i64 = row.try_get("n_members")?;
    let n_admins: i64 = row.try_get("n_admins")?;
    Ok((n_members as u32, n_admins as u32))
}
