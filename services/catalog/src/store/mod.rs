//! PostgreSQL access for the catalog schema.
use chrono::{DateTime, Utc};
use platform::{db, money::Won};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{Concert, SEATS_PER_SCHEDULE, Schedule, Seat, UpcomingDates},
    error::CatalogError,
};

/// Catalog storage.
#[derive(Debug, Clone)]
pub struct CatalogRepo {
    pool: PgPool,
}

impl CatalogRepo {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The key that signs this service's page tokens (made by its migration).
    ///
    /// # Errors
    /// Database failures; a key too short for `platform::paging`.
    pub async fn page_key(&self) -> anyhow::Result<platform::paging::PageKey> {
        let key = sqlx::query_scalar!("SELECT key FROM page_token_key").fetch_one(&self.pool).await?;
        platform::paging::PageKey::from_bytes(&key)
    }

    /// Creates a concert.
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn create_concert(
        &self,
        title: &str,
        venue: &str,
        sale_opens_at: Option<DateTime<Utc>>,
    ) -> Result<Concert, CatalogError> {
        let concert =
            Concert { concert_id: Uuid::now_v7(), title: title.to_owned(), venue: venue.to_owned(), sale_opens_at };
        sqlx::query!(
            "INSERT INTO concerts (concert_id, title, venue, sale_opens_at) VALUES ($1, $2, $3, $4)",
            concert.concert_id,
            concert.title,
            concert.venue,
            concert.sale_opens_at
        )
        .execute(&self.pool)
        .await?;
        Ok(concert)
    }

    /// One concert.
    ///
    /// # Errors
    /// [`CatalogError::ConcertNotFound`] for an unknown concert.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn concert(&self, concert_id: Uuid) -> Result<Concert, CatalogError> {
        sqlx::query_as!(
            Concert,
            "SELECT concert_id, title, venue, sale_opens_at FROM concerts WHERE concert_id = $1",
            concert_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(CatalogError::ConcertNotFound)
    }

    /// One page of concerts, newest first, each with its creation time (the page key).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn concerts(
        &self,
        page: &platform::paging::PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Concert, UpcomingDates)>, CatalogError> {
        let (at, id) = page.after_parts();
        // Per concert of the page, two probes of `schedules_by_concert` (and the seats of
        // its upcoming dates for the price range): a page of 50 costs 100 small lookups.
        let rows = sqlx::query!(
            r#"SELECT c.concert_id, c.title, c.venue, c.sale_opens_at, c.created_at,
                      d.dates AS "dates!", d.first_starts_at, d.last_starts_at,
                      p.price_from AS "price_from: Won", p.price_to AS "price_to: Won"
               FROM concerts c
               CROSS JOIN LATERAL (
                   SELECT count(*) AS dates, min(starts_at) AS first_starts_at, max(starts_at) AS last_starts_at
                   FROM schedules s WHERE s.concert_id = c.concert_id AND s.starts_at > $4) d
               CROSS JOIN LATERAL (
                   SELECT min(st.price) AS price_from, max(st.price) AS price_to
                   FROM schedules s JOIN seats st ON st.schedule_id = s.schedule_id
                   WHERE s.concert_id = c.concert_id AND s.starts_at > $4) p
               WHERE $1::timestamptz IS NULL OR (c.created_at, c.concert_id) < ($1, $2::uuid)
               ORDER BY c.created_at DESC, c.concert_id DESC LIMIT $3"#,
            at,
            id,
            page.fetch_limit(),
            now
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let concert = Concert {
                    concert_id: r.concert_id,
                    title: r.title,
                    venue: r.venue,
                    sale_opens_at: r.sale_opens_at,
                };
                let upcoming = UpcomingDates {
                    count: platform::db::unsigned(r.dates, "dates")?,
                    first_starts_at: r.first_starts_at,
                    last_starts_at: r.last_starts_at,
                    price_from: r.price_from,
                    price_to: r.price_to,
                };
                Ok((r.created_at, concert, upcoming))
            })
            .collect()
    }

    /// Adds a schedule and its seats in one transaction.
    ///
    /// # Errors
    /// [`CatalogError::ConcertNotFound`] for an unknown concert.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn add_schedule(
        &self,
        concert_id: Uuid,
        starts_at: DateTime<Utc>,
        layout: &[(u32, String, Won)],
    ) -> Result<(Schedule, Vec<Seat>), CatalogError> {
        let schedule = Schedule { schedule_id: Uuid::now_v7(), concert_id, starts_at, total_seats: SEATS_PER_SCHEDULE };
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query!(
            "INSERT INTO schedules (schedule_id, concert_id, starts_at, total_seats) VALUES ($1, $2, $3, $4)",
            schedule.schedule_id,
            concert_id,
            starts_at,
            i32::try_from(SEATS_PER_SCHEDULE).unwrap_or(50)
        )
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if db::sqlstate(&e).as_deref() == Some(db::FOREIGN_KEY_VIOLATION) {
                CatalogError::ConcertNotFound
            } else {
                e.into()
            });
        }
        let numbers: Vec<i32> = layout.iter().map(|(n, _, _)| i32::try_from(*n).unwrap_or(0)).collect();
        let grades: Vec<&str> = layout.iter().map(|(_, g, _)| g.as_str()).collect();
        let prices: Vec<i64> = layout.iter().map(|(_, _, p)| p.get()).collect();
        sqlx::query!(
            "INSERT INTO seats (schedule_id, seat_number, grade, price)
             SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[])",
            schedule.schedule_id,
            &numbers,
            &grades as &[&str],
            &prices
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let seats = layout
            .iter()
            .map(|(n, g, p)| Seat { schedule_id: schedule.schedule_id, seat_number: *n, grade: g.clone(), price: *p })
            .collect();
        Ok((schedule, seats))
    }

    /// Schedules of a concert starting after `now`, earliest first.
    ///
    /// # Errors
    /// [`CatalogError::ConcertNotFound`] for an unknown concert.
    #[tracing::instrument(skip_all, fields(%concert_id))]
    pub async fn upcoming_schedules(
        &self,
        concert_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Schedule>, CatalogError> {
        let rows = sqlx::query!(
            r#"SELECT c.concert_id, s.schedule_id AS "schedule_id?", s.starts_at AS "starts_at?",
                      s.total_seats AS "total_seats?"
               FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.concert_id AND s.starts_at > $2
               WHERE c.concert_id = $1 ORDER BY s.starts_at"#,
            concert_id,
            now
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(CatalogError::ConcertNotFound);
        }
        let mut schedules = Vec::with_capacity(rows.len());
        for r in rows {
            // The concert's row alone (no date after `now`) has no schedule.
            let (Some(schedule_id), Some(starts_at), Some(total)) = (r.schedule_id, r.starts_at, r.total_seats) else {
                continue;
            };
            schedules.push(Schedule {
                schedule_id,
                concert_id,
                starts_at,
                total_seats: platform::db::unsigned(total, "total_seats")?,
            });
        }
        Ok(schedules)
    }

    /// A schedule and its seats in seat order.
    ///
    /// # Errors
    /// [`CatalogError::ScheduleNotFound`] for an unknown schedule.
    #[tracing::instrument(skip_all, fields(%schedule_id))]
    pub async fn schedule_seats(&self, schedule_id: Uuid) -> Result<(Schedule, Vec<Seat>), CatalogError> {
        let rows = sqlx::query!(
            r#"SELECT st.seat_number, st.grade, st.price AS "price: Won", sc.concert_id, sc.starts_at, sc.total_seats
               FROM schedules sc JOIN seats st USING (schedule_id)
               WHERE sc.schedule_id = $1 ORDER BY st.seat_number"#,
            schedule_id
        )
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or(CatalogError::ScheduleNotFound)?;
        let schedule = Schedule {
            schedule_id,
            concert_id: first.concert_id,
            starts_at: first.starts_at,
            total_seats: platform::db::unsigned(first.total_seats, "total_seats")?,
        };
        let seats = rows
            .into_iter()
            .map(|r| {
                let seat_number = platform::db::unsigned(r.seat_number, "seat_number")?;
                Ok(Seat { schedule_id, seat_number, grade: r.grade, price: r.price })
            })
            .collect::<Result<_, CatalogError>>()?;
        Ok((schedule, seats))
    }
}
