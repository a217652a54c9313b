//! Platform integration tests: batch transactions on real PostgreSQL and the server's load shedding.
mod db_batch;
mod load_shed;
