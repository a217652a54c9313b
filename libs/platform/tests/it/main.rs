//! Platform integration tests: batch transactions, the pool-wait metric and idle pings on real
//! PostgreSQL, and the server's load shedding.
mod db_batch;
mod idle_ping;
mod load_shed;
mod pool_wait;
mod read_only;
