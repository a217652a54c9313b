//! Which rooms are sold out: every seat of their concert's dates that have not started is
//! paid for. People waiting there are told (`QueueStatus.sold_out`) instead of waiting for
//! nothing; when a seat comes back (a refund, a date added) the room reopens at the next
//! look. Informational only: admission does not depend on it, so a replica's view may lag by
//! one interval without harm.
use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use uuid::Uuid;

use crate::{clients::catalog::Catalog, service::line::Line};

/// How often each room with people in line is looked at.
pub const SOLD_OUT_INTERVAL: Duration = Duration::from_secs(2);

/// The sold-out rooms as this replica last saw them.
#[derive(Debug, Clone, Default)]
pub struct SoldOut {
    rooms: Arc<RwLock<HashSet<Uuid>>>,
}

impl SoldOut {
    /// Whether `concert_id`'s room was sold out at the last look.
    #[must_use]
    pub fn is_sold_out(&self, concert_id: Uuid) -> bool {
        self.rooms.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&concert_id)
    }

    fn set(&self, concert_id: Uuid, sold_out: bool) {
        let mut rooms = self.rooms.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sold_out {
            rooms.insert(concert_id);
        } else {
            rooms.remove(&concert_id);
        }
    }

    /// Every `every`, asks the catalog about each room with people waiting in this replica's
    /// line, for as long as the replica runs. A failed look keeps the last answer.
    pub async fn watch_forever(self, line: Line, catalog: Catalog, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let snapshot = line.current();
            let waiting: Vec<Uuid> =
                snapshot.rooms.iter().filter(|(_, room)| room.waiting_count() > 0).map(|(id, _)| *id).collect();
            for concert_id in waiting {
                match catalog.sold_out(concert_id).await {
                    Ok(sold_out) => self.set(concert_id, sold_out),
                    Err(e) => {
                        tracing::warn!(%concert_id, error = %e, "cannot ask the catalog whether a room is sold out")
                    }
                }
            }
        }
    }
}
