//! PostgreSQL access for the catalog schema.
use chrono::{DateTime, Utc};
use platform::{db, money::Won};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{
    domain::{Concert, SEATS_PER_SCHEDULE, Schedule, Seat},
    error::CatalogError,
};

const CONCERT_COLUMNS: &str = "concert_id, title, venue, sale_opens_at";

fn concert_from_row(r: &sqlx::postgres::PgRow) -> Result<Concert, CatalogError> {
    Ok(Concert {
        concert_id: r.try_get("concert_id")?,
        title: r.try_get("title")?,
        venue: r.try_get("venue")?,
        sale_opens_at: r.try_get("sale_opens_at")?,
    })
}

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
        sqlx::query("INSERT INTO concerts (concert_id, title, venue, sale_opens_at) VALUES ($1, $2, $3, $4)")
            .bind(concert.concert_id)
            .bind(&concert.title)
            .bind(&concert.venue)
            .bind(concert.sale_opens_at)
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
        let row = sqlx::query(&format!("SELECT {CONCERT_COLUMNS} FROM concerts WHERE concert_id = $1"))
            .bind(concert_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(CatalogError::ConcertNotFound)?;
        concert_from_row(&row)
    }

    /// One page of concerts, newest first, each with its creation time (the page key).
    ///
    /// # Errors
    /// Database failures only.
    #[tracing::instrument(skip_all)]
    pub async fn concerts(
        &self,
        page: &platform::paging::PageRequest,
    ) -> Result<Vec<(DateTime<Utc>, Concert)>, CatalogError> {
        let (at, id) = page.after_parts();
        let rows = sqlx::query(&format!(
            "SELECT {CONCERT_COLUMNS}, created_at FROM concerts
             WHERE $1::timestamptz IS NULL OR (created_at, concert_id) < ($1, $2)
             ORDER BY created_at DESC, concert_id DESC LIMIT $3"
        ))
        .bind(at)
        .bind(id)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("created_at")?, concert_from_row(r)?))).collect()
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
        let inserted = sqlx::query(
            "INSERT INTO schedules (schedule_id, concert_id, starts_at, total_seats) VALUES ($1, $2, $3, $4)",
        )
        .bind(schedule.schedule_id)
        .bind(concert_id)
        .bind(starts_at)
        .bind(i32::try_from(SEATS_PER_SCHEDULE).unwrap_or(50))
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
        let prices: Vec<Won> = layout.iter().map(|(_, _, p)| *p).collect();
        sqlx::query(
            "INSERT INTO seats (schedule_id, seat_number, grade, price)
             SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[])",
        )
        .bind(schedule.schedule_id)
        .bind(&numbers)
        .bind(&grades)
        .bind(&prices)
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
        let rows = sqlx::query(
            "SELECT c.concert_id, s.schedule_id, s.starts_at, s.total_seats
             FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.concert_id AND s.starts_at > $2
             WHERE c.concert_id = $1 ORDER BY s.starts_at",
        )
        .bind(concert_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(CatalogError::ConcertNotFound);
        }
        let mut schedules = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(schedule_id) = r.try_get::<Option<Uuid>, _>(1)? else { continue };
            let total: i32 = r.try_get(3)?;
            schedules.push(Schedule {
                schedule_id,
                concert_id,
                starts_at: r.try_get(2)?,
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
        let rows = sqlx::query(
            "SELECT st.seat_number, st.grade, st.price, sc.concert_id, sc.starts_at, sc.total_seats
             FROM schedules sc JOIN seats st USING (schedule_id)
             WHERE sc.schedule_id = $1 ORDER BY st.seat_number",
        )
        .bind(schedule_id)
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or(CatalogError::ScheduleNotFound)?;
        let total: i32 = first.try_get(5)?;
        let schedule = Schedule {
            schedule_id,
            concert_id: first.try_get(3)?,
            starts_at: first.try_get(4)?,
            total_seats: platform::db::unsigned(total, "total_seats")?,
        };
        let seats = rows.iter().map(|r| seat(schedule_id, r)).collect::<Result<_, _>>()?;
        Ok((schedule, seats))
    }
}

fn seat(schedule_id: Uuid, r: &sqlx::postgres::PgRow) -> Result<Seat, CatalogError> {
    let n: i32 = r.try_get(0)?;
    Ok(Seat {
        schedule_id,
        seat_number: platform::db::unsigned(n, "seat_number")?,
        grade: r.try_get(1)?,
        price: r.try_get(2)?,
    })
}
