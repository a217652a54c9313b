//! The queue's adapter over `platform::batch`: concurrent joins in one statement and one commit.
pub mod joins;
