//! Live occupancy per schedule (`WatchOccupancy`): one feed per replica, shared by every
//! stream of a schedule.
//!
//! The feed hears which schedules changed (`store::seat_changes`, PostgreSQL LISTEN), waits
//! [`COALESCE`] for more of the same burst, and re-reads the watched ones among them in one
//! occupancy query; every [`RESCAN`] it re-reads every watched schedule, because a hold that
//! runs out by time changes no row (the sweeper's later update is announced, but may come up
//! to its interval later) and because notifications sent while the session was down are lost.
//! A stream's cost is a `watch` receiver: no query, task or buffer of its own.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::Stream;
use platform::clock::SharedClock;
use platform::status::StreamSlots;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, watch};
use uuid::Uuid;

use crate::{
    domain::OccupiedSeat,
    error::ReservationError,
    store::{ReservationRepo, SeatChange},
};

/// How long the feed gathers notifications before it re-reads: a burst of holds on one date
/// costs one query per this interval, not one per hold.
pub const COALESCE: Duration = Duration::from_millis(50);
/// How often every watched schedule is re-read in any case.
pub const RESCAN: Duration = Duration::from_secs(1);
/// Most `WatchOccupancy` streams one replica serves (catalog keeps one per watched schedule
/// and catalog replica).
pub const MAX_STREAMS: usize = 10_000;

/// What a schedule's watchers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Not read yet.
    Pending,
    /// Every occupied seat now, in seat order.
    Seats(Arc<Vec<OccupiedSeat>>),
    /// The last read failed: the streams end (UNAVAILABLE) rather than show a stale map.
    Unavailable,
}

type Rooms = HashMap<Uuid, watch::Sender<Reading>>;

/// The replica's occupancy feed.
#[derive(Debug, Clone)]
pub struct SeatFeed {
    rooms: Arc<Mutex<Rooms>>,
    slots: StreamSlots,
    /// Wakes the feed to read a schedule someone started watching.
    wake: Arc<Notify>,
}

impl SeatFeed {
    /// Starts the feed on `changes`, reading occupancy from `repo`.
    #[must_use]
    pub fn start(
        repo: ReservationRepo,
        clock: SharedClock,
        changes: mpsc::Receiver<SeatChange>,
        tasks: &mut platform::app::Tasks,
    ) -> Self {
        let feed = Self {
            rooms: Arc::default(),
            slots: StreamSlots::new(
                MAX_STREAMS,
                "this replica serves its maximum of WatchOccupancy streams",
                Duration::from_secs(1),
            ),
            wake: Arc::new(Notify::new()),
        };
        tasks.spawn(feed.clone().run(repo, clock, changes));
        feed
    }

    /// The occupancy of `schedule`: now, then at every change.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS) beyond [`MAX_STREAMS`]; the stream ends
    /// with UNAVAILABLE (SEAT_FEED_LOST) when a read fails.
    pub fn watch(
        &self,
        schedule: Uuid,
    ) -> Result<impl Stream<Item = Result<Arc<Vec<OccupiedSeat>>, ReservationError>> + use<>, tonic::Status> {
        let permit = self.slots.take()?;
        let readings = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            rooms.entry(schedule).or_insert_with(|| watch::Sender::new(Reading::Pending)).subscribe()
        };
        self.wake.notify_one();
        Ok(readings_of(readings, permit))
    }

    async fn run(self, repo: ReservationRepo, clock: SharedClock, mut changes: mpsc::Receiver<SeatChange>) {
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let targets = tokio::select! {
                _ = rescan.tick() => self.watched(|_| true),
                () = self.wake.notified() => self.watched(|r| *r == Reading::Pending),
                heard = changes.recv() => {
                    let Some(first) = heard else { return };
                    let changed = gather(first, &mut changes).await;
                    match changed {
                        None => self.watched(|_| true),
                        Some(changed) => self.watched_of(&changed),
                    }
                }
            };
            if targets.is_empty() {
                continue;
            }
            let read = repo.occupancy(&targets, clock.now()).await;
            self.publish(&targets, read);
        }
    }

    /// The watched schedules whose reading passes `pick`; drops the rooms nobody watches.
    fn watched(&self, pick: impl Fn(&Reading) -> bool) -> Vec<Uuid> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.retain(|_, room| room.receiver_count() > 0);
        rooms.iter().filter(|(_, room)| pick(&room.borrow())).map(|(id, _)| *id).collect()
    }

    fn watched_of(&self, changed: &HashSet<Uuid>) -> Vec<Uuid> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        changed.iter().filter(|id| rooms.contains_key(id)).copied().collect()
    }

    fn publish(&self, targets: &[Uuid], read: Result<Vec<OccupiedSeat>, ReservationError>) {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_schedule: HashMap<Uuid, Vec<OccupiedSeat>> = HashMap::new();
        let failed = match read {
            Ok(seats) => {
                for seat in seats {
                    by_schedule.entry(seat.schedule_id).or_default().push(seat);
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "seat feed: cannot read occupancy");
                true
            }
        };
        for id in targets {
            let Some(room) = rooms.get(id) else { continue };
            let reading = if failed {
                Reading::Unavailable
            } else {
                let mut seats = by_schedule.remove(id).unwrap_or_default();
                seats.sort_by_key(|s| s.seat_number);
                Reading::Seats(Arc::new(seats))
            };
            // Watchers hear only changes (the rescan mostly finds none).
            room.send_if_modified(|current| {
                let changed = *current != reading;
                if changed {
                    *current = reading.clone();
                }
                changed
            });
        }
    }
}

/// The schedules named by `first` and whatever else arrives within [`COALESCE`]; `None` when
/// notifications were missed (every schedule may have changed).
async fn gather(first: SeatChange, changes: &mut mpsc::Receiver<SeatChange>) -> Option<HashSet<Uuid>> {
    let deadline = tokio::time::Instant::now() + COALESCE;
    let mut changed = HashSet::new();
    let mut missed = false;
    let mut next = Some(first);
    while let Some(change) = next {
        match change {
            SeatChange::Schedule(id) => {
                changed.insert(id);
            }
            SeatChange::Missed => missed = true,
        }
        next = tokio::time::timeout_at(deadline, changes.recv()).await.ok().flatten();
    }
    (!missed).then_some(changed)
}

/// A receiver's readings as a stream: the current one (once read), then each change; ends
/// after an unavailable reading. The permit is the stream's place among [`MAX_STREAMS`].
fn readings_of(
    readings: watch::Receiver<Reading>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Arc<Vec<OccupiedSeat>>, ReservationError>> {
    futures::stream::unfold(Some((readings, permit, true)), |state| async move {
        let (mut readings, permit, first) = state?;
        if !first {
            readings.changed().await.ok()?;
        }
        loop {
            let reading = readings.borrow_and_update().clone();
            match reading {
                Reading::Pending => readings.changed().await.ok()?,
                Reading::Seats(seats) => return Some((Ok(seats), Some((readings, permit, false)))),
                Reading::Unavailable => return Some((Err(ReservationError::SeatFeedLost), None)),
            }
        }
    })
}
