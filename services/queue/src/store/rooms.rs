//! Waiting rooms: one per concert, with its sale time and policy overrides.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{QueueRepo, room, to_i64};
use crate::{
    domain::{PolicyOverrides, Room},
    error::QueueError,
};

impl QueueRepo {
    /// A concert's waiting room, if it has one yet.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn room(&self, concert_id: Uuid) -> Result<Option<Room>, QueueError> {
        let row = sqlx::query!(
            "SELECT concert_id, sale_opens_at, max_active, admit_per_sec, active_ttl_secs FROM rooms WHERE concert_id = $1",
            concert_id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| room(r.concert_id, r.sale_opens_at, r.max_active, r.admit_per_sec, r.active_ttl_secs)).transpose()
    }

    /// Creates a concert's waiting room (idempotent: a room created meanwhile by another
    /// replica is returned as it is).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn create_room(
        &self,
        concert_id: Uuid,
        sale_opens_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Room, QueueError> {
        sqlx::query!(
            "INSERT INTO rooms (concert_id, sale_opens_at, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (concert_id) DO NOTHING",
            concert_id,
            sale_opens_at,
            now
        )
        .execute(&self.pool)
        .await?;
        self.room(concert_id)
            .await?
            .ok_or_else(|| QueueError::from(anyhow::anyhow!("room {concert_id} vanished after insert")))
    }

    /// Replaces a room's policy overrides; `None` when the room does not exist.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn set_policy(&self, concert_id: Uuid, o: &PolicyOverrides) -> Result<Option<Room>, QueueError> {
        let row = sqlx::query!(
            "UPDATE rooms SET max_active = $2, admit_per_sec = $3, active_ttl_secs = $4
             WHERE concert_id = $1 RETURNING concert_id, sale_opens_at, max_active, admit_per_sec, active_ttl_secs",
            concert_id,
            o.max_active.map(to_i64),
            o.admit_per_sec.map(to_i64),
            o.active_ttl_secs.map(to_i64)
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| room(r.concert_id, r.sale_opens_at, r.max_active, r.admit_per_sec, r.active_ttl_secs)).transpose()
    }
}
