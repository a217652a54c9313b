//! proto ⇄ domain conversions for the catalog.
use concert_proto::concert::catalog::v1::{self as pb, GradePricing};
use platform::{convert::timestamp, money::Won, validate::FieldViolation};

use crate::domain::{Concert, GradeRange, Schedule, Seat, SeatStatus, UpcomingDates, seat_layout};

pub(super) fn concert(c: &Concert) -> pb::Concert {
    pb::Concert {
        concert_id: c.concert_id.to_string(),
        title: c.title.clone(),
        venue: c.venue.clone(),
        sale_opens_at: c.sale_opens_at.map(timestamp),
        ..pb::Concert::default()
    }
}

/// A concert as the list shows it, with its upcoming dates and price range.
pub(super) fn listed_concert(c: &Concert, upcoming: &UpcomingDates) -> pb::Concert {
    pb::Concert {
        upcoming_dates: upcoming.count,
        first_starts_at: upcoming.first_starts_at.map(timestamp),
        last_starts_at: upcoming.last_starts_at.map(timestamp),
        price_from: upcoming.price_from.map_or(0, Won::get),
        price_to: upcoming.price_to.map_or(0, Won::get),
        ..concert(c)
    }
}

pub(super) fn schedule(s: &Schedule, available: u32) -> pb::Schedule {
    pb::Schedule {
        schedule_id: s.schedule_id.to_string(),
        concert_id: s.concert_id.to_string(),
        starts_at: Some(timestamp(s.starts_at)),
        total_seats: s.total_seats,
        available_seats: available,
    }
}

pub(super) fn seat(s: &Seat, status: SeatStatus) -> pb::Seat {
    let status = match status {
        SeatStatus::Available => pb::SeatStatus::Available,
        SeatStatus::Held => pb::SeatStatus::Held,
        SeatStatus::Sold => pb::SeatStatus::Sold,
        SeatStatus::Unknown => pb::SeatStatus::Unspecified,
    };
    pb::Seat {
        schedule_id: s.schedule_id.to_string(),
        seat_number: s.seat_number,
        grade: s.grade.clone(),
        price: s.price.get(),
        status: status.into(),
    }
}

pub(super) fn grade_ranges(grades: &[GradePricing]) -> Result<Vec<(u32, String, Won)>, FieldViolation> {
    let ranges = grades
        .iter()
        .map(|g| {
            Ok(GradeRange {
                grade: platform::validate::text("grades", &g.grade, crate::domain::MAX_GRADE_CHARS, true)?,
                first: g.first_seat,
                last: g.last_seat,
                price: Won::payment("grades.price", g.price)?,
            })
        })
        .collect::<Result<Vec<_>, FieldViolation>>()?;
    seat_layout(&ranges)
}

pub(super) fn validated_title_venue(title: &str, venue: &str) -> Result<(String, String), FieldViolation> {
    Ok((platform::validate::text("title", title, 200, true)?, platform::validate::text("venue", venue, 200, false)?))
}
