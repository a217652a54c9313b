//! Use cases over the store: concerts, dates and seat maps ([`concerts`]), the seat layouts,
//! cached (immutable once created), and what is left of a concert's sale.
pub mod concerts;
pub mod layouts;
pub mod sales;
pub mod seat_maps;
