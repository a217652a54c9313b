//! Demo data: two concerts, three dates each, 50 seats per date in three grades.
use concert_proto::concert::catalog::v1::{AddScheduleRequest, CreateConcertRequest, GradePricing};

use crate::clients::Clients;

const CONCERTS: [(&str, &str); 2] =
    [("Aurora Symphony Live", "Seoul Arts Center"), ("Neon Nights World Tour", "KSPO Dome")];

/// Seats 1-10 VIP, 11-30 R, 31-50 S (won).
pub fn grades() -> Vec<GradePricing> {
    vec![
        GradePricing { grade: "VIP".into(), first_seat: 1, last_seat: 10, price: 150_000 },
        GradePricing { grade: "R".into(), first_seat: 11, last_seat: 30, price: 120_000 },
        GradePricing { grade: "S".into(), first_seat: 31, last_seat: 50, price: 90_000 },
    ]
}

/// Creates the demo concerts unless a concert of the same title exists.
///
/// # Errors
/// When the catalog cannot be read or written.
pub async fn run(clients: &Clients) -> anyhow::Result<()> {
    let existing = clients.all_concerts().await?;
    for (title, venue) in CONCERTS {
        if existing.iter().any(|c| c.title == title) {
            println!("seed: {title:?} already exists");
            continue;
        }
        let concert = clients
            .admin()
            .create_concert(CreateConcertRequest { title: title.into(), venue: venue.into(), sale_opens_at: None })
            .await?
            .into_inner()
            .concert
            .ok_or_else(|| anyhow::anyhow!("CreateConcert returned no concert"))?;
        for days in [7, 8, 14] {
            let starts_at = (chrono::Utc::now() + chrono::Duration::days(days))
                .date_naive()
                .and_hms_opt(19, 0, 0)
                .map(|t| t.and_utc())
                .ok_or_else(|| anyhow::anyhow!("bad demo time"))?;
            clients
                .admin()
                .add_schedule(AddScheduleRequest {
                    concert_id: concert.concert_id.clone(),
                    starts_at: Some(platform::convert::timestamp(starts_at)),
                    grades: grades(),
                })
                .await?;
        }
        println!("seed: created {title:?} at {venue} with 3 dates × 50 seats ({})", concert.concert_id);
    }
    Ok(())
}

/// Adds `n` dates (50 seats each, [`grades`]) to `concert_id`, a minute apart from 30 days on;
/// returns their schedule ids. For benchmarks: each run makes its own.
///
/// # Errors
/// When the catalog refuses or cannot be reached.
pub async fn schedules(clients: &Clients, concert_id: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let starts_at = chrono::Utc::now() + chrono::Duration::days(30) + chrono::Duration::minutes(i as i64);
        let schedule = clients
            .admin()
            .add_schedule(AddScheduleRequest {
                concert_id: concert_id.into(),
                starts_at: Some(platform::convert::timestamp(starts_at)),
                grades: grades(),
            })
            .await?
            .into_inner()
            .schedule
            .ok_or_else(|| anyhow::anyhow!("AddSchedule returned no schedule"))?;
        ids.push(schedule.schedule_id);
    }
    Ok(ids)
}
