//! Sessions and attendance, written from the SFU's events and read by teachers and admins.

use models::ClassId;
use serde::Serialize;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::now_secs;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionRecord {
    pub session_id: String,
    pub started_at: i64,
    /// `null` while the session runs.
    pub ended_at: Option<i64>,
    pub close_reason: Option<String>,
    /// End-to-end encrypted: everyone admitted to the session joined with a key
    /// (docs/e2ee.md). `false` for good from the first participant whose browser could not
    /// encrypt, and for sessions from before encryption.
    pub e2ee: bool,
}

/// One stay of one person in one session. A person who reconnects has several.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttendanceRecord {
    pub user_id: String,
    pub display_name: String,
    pub role: String,
    /// Unix seconds.
    pub joined_at: i64,
    /// Unix seconds; `null` while still in the call.
    pub left_at: Option<i64>,
    pub leave_reason: Option<String>,
    /// This person's page encrypted end to end (it joined with a key).
    pub e2ee: bool,
}

#[derive(Clone)]
pub struct Attendance {
    pool: AnyPool,
}

impl Attendance {
    pub fn new(pool: AnyPool) -> Attendance {
        Attendance { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The writes below run on the caller's connection, inside the transaction that also queues
    /// their webhooks (see [`crate::events`]).
    pub async fn session_started(
        conn: &mut AnyConnection,
        session_id: &str,
        class_id: &str,
    ) -> Result<(), sqlx::Error> {
        // End-to-end encrypted until someone who cannot encrypt joins (`joined`).
        sqlx::query(
            "INSERT INTO visio_sessions (session_id, class_id, started_at, e2ee) VALUES ($1, $2, $3, 1)",
        )
        .bind(session_id)
        .bind(class_id)
        .bind(now_secs())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Ends the session, and the stay of anyone whose departure was not reported.
    pub async fn session_ended(
        conn: &mut AnyConnection,
        session_id: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let now = now_secs();
        sqlx::query("UPDATE visio_sessions SET ended_at = $1, close_reason = $2 WHERE session_id = $3 AND ended_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(session_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE attendance SET left_at = $1, leave_reason = $2 WHERE session_id = $3 AND left_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn joined(
        conn: &mut AnyConnection,
        session_id: &str,
        participant_id: &str,
        user_id: &str,
        display_name: &str,
        role: &str,
        e2ee: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO attendance (session_id, participant_id, user_id, display_name, role, joined_at, e2ee)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_id, participant_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(participant_id)
        .bind(user_id)
        .bind(display_name)
        .bind(role)
        .bind(now_secs())
        .bind(e2ee as i64)
        .execute(&mut *conn)
        .await?;
        if !e2ee {
            // The others sent in clear for this one: the session was not end-to-end encrypted,
            // whoever joins or leaves later.
            sqlx::query("UPDATE visio_sessions SET e2ee = 0 WHERE session_id = $1")
                .bind(session_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    pub async fn left(
        conn: &mut AnyConnection,
        session_id: &str,
        participant_id: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE attendance SET left_at = $1, leave_reason = $2
             WHERE session_id = $3 AND participant_id = $4 AND left_at IS NULL",
        )
        .bind(now_secs())
        .bind(reason)
        .bind(session_id)
        .bind(participant_id)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub async fn sessions(&self, class_id: &ClassId) -> Result<Vec<SessionRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT session_id, started_at, ended_at, close_reason, e2ee FROM visio_sessions
             WHERE class_id = $1 ORDER BY started_at DESC, session_id",
        )
        .bind(class_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionRecord {
                    session_id: row.try_get("session_id")?,
                    started_at: row.try_get("started_at")?,
                    ended_at: row.try_get("ended_at")?,
                    close_reason: row.try_get("close_reason")?,
                    e2ee: row.try_get::<i64, _>("e2ee")? != 0,
                })
            })
            .collect()
    }

    /// Attendance of a session of this class; `None` if the class has no such session.
    pub async fn attendance(
        &self,
        class_id: &ClassId,
        session_id: &str,
    ) -> Result<Option<Vec<AttendanceRecord>>, sqlx::Error> {
        let session =
            sqlx::query("SELECT 1 AS one FROM visio_sessions WHERE session_id = $1 AND class_id = $2")
                .bind(session_id)
                .bind(class_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        if session.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT user_id, display_name, role, joined_at, left_at, leave_reason, e2ee FROM attendance
             WHERE session_id = $1 ORDER BY joined_at, participant_id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        let records = rows
            .iter()
            .map(|row| {
                Ok(AttendanceRecord {
                    user_id: row.try_get("user_id")?,
                    display_name: row.try_get("display_name")?,
                    role: row.try_get("role")?,
                    joined_at: row.try_get("joined_at")?,
                    left_at: row.try_get("left_at")?,
                    leave_reason: row.try_get("leave_reason")?,
                    e2ee: row.try_get::<i64, _>("e2ee")? != 0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(records))
    }
}

/// The columns of the attendance CSV (also in the OpenAPI document).
pub const CSV_HEADER: &str = "user_id,display_name,role,joined_at,left_at,leave_reason,e2ee";

/// CSV with a header line; fields quoted where needed (RFC 4180).
pub fn to_csv(records: &[AttendanceRecord]) -> String {
    fn field(raw: &str) -> String {
        // A leading = + - @ would be read as a formula by spreadsheets: neutralise it.
        let raw = if raw.starts_with(['=', '+', '-', '@']) { format!("'{raw}") } else { raw.to_owned() };
        if raw.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", raw.replace('"', "\"\""))
        } else {
            raw
        }
    }
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for record in records {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            field(&record.user_id),
            field(&record.display_name),
            field(&record.role),
            record.joined_at,
            record.left_at.map(|t| t.to_string()).unwrap_or_default(),
            field(record.leave_reason.as_deref().unwrap_or("")),
            record.e2ee,
        ));
    }
    out
}
