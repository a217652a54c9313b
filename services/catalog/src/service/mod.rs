//! Use cases over the store: the seat layouts, cached (immutable once created), and what is
//! left of a concert's sale.
pub mod layouts;
pub mod sales;
