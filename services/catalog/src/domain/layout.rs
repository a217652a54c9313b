use platform::{money::Won, validate::FieldViolation};

/// Every schedule has seats 1..=50.
pub const SEATS_PER_SCHEDULE: u32 = 50;

/// Longest grade name, in characters.
pub const MAX_GRADE_CHARS: usize = 32;

/// Grade and price of seats `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeRange {
    pub grade: String,
    pub first: u32,
    pub last: u32,
    pub price: Won,
}

/// Expands grade ranges into one `(seat_number, grade, price)` per seat, in seat order.
///
/// # Errors
/// A `grades` field violation when a range is empty or out of 1..=50, a grade name is empty
/// or too long, or the ranges do not cover every seat exactly once.
pub fn seat_layout(ranges: &[GradeRange]) -> Result<Vec<(u32, String, Won)>, FieldViolation> {
    let mut seats: Vec<Option<(String, Won)>> = vec![None; SEATS_PER_SCHEDULE as usize];
    if ranges.is_empty() {
        return Err(FieldViolation::new("grades", "must cover seats 1..=50"));
    }
    for r in ranges {
        let name = r.grade.trim();
        if name.is_empty() || name.chars().count() > MAX_GRADE_CHARS {
            return Err(FieldViolation::new("grades", format!("grade names must be 1..={MAX_GRADE_CHARS} characters")));
        }
        if r.first < 1 || r.last > SEATS_PER_SCHEDULE || r.first > r.last {
            return Err(FieldViolation::new(
                "grades",
                format!("range {}..={} must lie within 1..={SEATS_PER_SCHEDULE} with first <= last", r.first, r.last),
            ));
        }
        for n in r.first..=r.last {
            let slot = &mut seats[(n - 1) as usize];
            if slot.is_some() {
                return Err(FieldViolation::new("grades", format!("seat {n} is in more than one range")));
            }
            *slot = Some((name.to_owned(), r.price));
        }
    }
    seats
        .into_iter()
        .zip(1..)
        .map(|(slot, n)| {
            slot.map(|(g, p)| (n, g, p)).ok_or_else(|| FieldViolation::new("grades", format!("seat {n} has no grade")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(grade: &str, first: u32, last: u32, price: i64) -> GradeRange {
        GradeRange { grade: grade.into(), first, last, price: Won::new(price) }
    }

    #[test]
    fn expands_ranges_in_seat_order() {
        let layout = seat_layout(&[range("R", 11, 50, 100_000), range("VIP", 1, 10, 150_000)]).unwrap();
        assert_eq!(layout.len(), 50);
        assert_eq!(layout[0], (1, "VIP".into(), Won::new(150_000)));
        assert_eq!(layout[49], (50, "R".into(), Won::new(100_000)));
    }

    #[test]
    fn rejects_gaps_overlaps_and_bad_ranges() {
        assert!(seat_layout(&[]).is_err());
        assert!(seat_layout(&[range("R", 1, 49, 1)]).unwrap_err().description.contains("seat 50"));
        assert!(
            seat_layout(&[range("R", 1, 50, 1), range("S", 50, 50, 1)])
                .unwrap_err()
                .description
                .contains("more than one")
        );
        assert!(seat_layout(&[range("R", 0, 50, 1)]).is_err());
        assert!(seat_layout(&[range("R", 1, 51, 1)]).is_err());
        assert!(seat_layout(&[range("R", 30, 20, 1)]).is_err());
        assert!(seat_layout(&[range(" ", 1, 50, 1)]).is_err());
        assert_eq!(seat_layout(&[]).unwrap_err().field, "grades");
    }
}
