//! Use cases that orchestrate the store, the batchers and the peer clients.
pub mod hold;
