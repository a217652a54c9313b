//! Use cases over the store: the seat layouts, cached (immutable once created).
pub mod layouts;
