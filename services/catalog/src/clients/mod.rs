//! Clients of the services catalog depends on, each call through `platform::outbound`:
//! reservation (live seat status). Token checks go through `platform::auth::TokenValidator`.
pub mod reservation;
