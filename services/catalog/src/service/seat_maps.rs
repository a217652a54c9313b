//! Live seat maps (`WatchSeats`): one upstream `WatchOccupancy` stream per watched date and
//! replica, shared by every watcher of that date on the replica.
//!
//! The first watcher of a date starts its feed task; the task reopens the upstream stream
//! when it fails (exponential backoff, 200 ms to 5 s) and ends when the last watcher leaves.
//! While the upstream is down the date's reading is [`Reading::Lost`], and every stream of it
//! ends with UNAVAILABLE (SEAT_FEED_LOST): a map that may be stale is never served as live.
//! A watcher costs a `watch` receiver and its place among `SEAT_MAP_MAX_STREAMS`.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use platform::outbound::reconnect_delays;
use platform::status::StreamSlots;
use tokio::sync::{OwnedSemaphorePermit, watch};
use uuid::Uuid;

use crate::clients::reservation::{Occupancy, OccupancyClient, occupancy_of};

/// What a date's watchers see.
#[derive(Debug, Clone)]
pub enum Reading {
    /// The upstream has not answered yet.
    Pending,
    /// The date's occupancy now.
    Live(Arc<Occupancy>),
    /// The upstream failed; it is being reopened.
    Lost,
}

type Rooms = HashMap<Uuid, watch::Sender<Reading>>;

/// This replica's live seat maps.
#[derive(Debug, Clone)]
pub struct SeatMaps {
    occupancy: OccupancyClient,
    rooms: Arc<Mutex<Rooms>>,
    slots: StreamSlots,
}

/// A watcher's place: its readings and its slot among the replica's streams.
#[derive(Debug)]
pub struct Watcher {
    pub readings: watch::Receiver<Reading>,
    pub slot: OwnedSemaphorePermit,
}

impl SeatMaps {
    /// Room for `max_streams` watchers at once.
    #[must_use]
    pub fn new(occupancy: OccupancyClient, max_streams: usize) -> Self {
        let slots = StreamSlots::new(
            max_streams,
            "this replica serves its maximum of WatchSeats streams; poll ListSeats instead",
            Duration::from_secs(5),
        );
        Self { occupancy, rooms: Arc::default(), slots }
    }

    /// Starts watching `schedule`, starting its feed if nobody watched it on this replica.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS, with RetryInfo) when the replica serves
    /// its maximum of streams.
    pub fn watch(&self, schedule: Uuid) -> Result<Watcher, tonic::Status> {
        let slot = self.slots.take()?;
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let readings = match rooms.get(&schedule) {
            Some(room) => room.subscribe(),
            None => {
                let room = watch::Sender::new(Reading::Pending);
                let readings = room.subscribe();
                rooms.insert(schedule, room.clone());
                tokio::spawn(self.clone().feed(schedule, room));
                readings
            }
        };
        Ok(Watcher { readings, slot })
    }

    /// Keeps `room` fed from reservation until nobody watches it.
    async fn feed(self, schedule: Uuid, room: watch::Sender<Reading>) {
        let mut delays = reconnect_delays();
        loop {
            let opened = tokio::select! {
                () = room.closed() => {
                    if self.retire(schedule, &room) { return }
                    continue;
                }
                opened = self.occupancy.watch(schedule) => opened,
            };
            match opened {
                Ok(mut upstream) => loop {
                    let message = tokio::select! {
                        () = room.closed() => {
                            if self.retire(schedule, &room) { return }
                            continue;
                        }
                        message = upstream.message() => message,
                    };
                    match message.map(|m| m.map(occupancy_of)) {
                        Ok(Some(Ok(occupancy))) => {
                            delays = reconnect_delays();
                            room.send_replace(Reading::Live(Arc::new(occupancy)));
                        }
                        Ok(None) => break,
                        Ok(Some(Err(e))) => {
                            tracing::warn!(error = %e, "seat maps: reservation sent a bad occupancy");
                            break;
                        }
                        Err(status) => {
                            tracing::debug!(code = ?status.code(), "seat maps: the occupancy stream failed");
                            break;
                        }
                    }
                },
                Err(status) => tracing::debug!(code = ?status.code(), "seat maps: cannot open the occupancy stream"),
            }
            room.send_replace(Reading::Lost);
            let pause = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = room.closed() => if self.retire(schedule, &room) { return },
            }
        }
    }

    /// Removes `room` when nobody watches it (checked under the lock `watch` takes, so a
    /// watcher arriving now keeps the feed alive); whether it was removed.
    fn retire(&self, schedule: Uuid, room: &watch::Sender<Reading>) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if room.receiver_count() > 0 {
            return false;
        }
        rooms.remove(&schedule);
        true
    }

    /// Dates watched on this replica now (a gauge for tests and operators).
    #[must_use]
    pub fn watched_dates(&self) -> usize {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}
