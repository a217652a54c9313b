//! Waiting-room rules, free of SQL and gRPC.
mod admission;
mod line;
mod pacing;
mod places;
mod room;
mod token;

pub use admission::{AdmissionPolicy, PACE_MEMORY_SECS, Pace, RateWindow};
pub use line::{LineDelta, LineSnapshot, RoomDelta, RoomLine};
pub use pacing::Pacing;
pub use places::Places;
pub use room::{MAX_ACTIVE_TTL_SECS, MAX_POLICY_COUNT, PolicyOverrides, Room, pre_queue_key};
pub use token::{QueueStatus, Token, TokenHistory, TokenState};
