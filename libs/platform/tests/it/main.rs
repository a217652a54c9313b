//! Platform integration tests: batch transactions, schema creation, the pool-wait metric on real
//! PostgreSQL, and the server's load shedding.
mod db_batch;
mod load_shed;
mod migrate;
mod pool_wait;
mod read_only;
