use queue_service::{app, config::Config};

/// mimalloc, not glibc malloc: a queue replica lives through a rush of a million joins,
/// each leaving short-lived entries in its caches (verified access tokens, remembered
/// WAITING rows, poll marks). After that churn glibc's heap made every later poll cost
/// more (`_int_malloc`, `malloc_consolidate` were the replica's largest symbols); with
/// mimalloc the queue's CPU per poll at a million waiting fell from 50–53 to 37–45 µs
/// (docs/BENCHMARKS.md, "A million in line"). The other services showed no difference
/// (a closed-loop A/B of all four, same file, "Tried and dropped").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::app::run::<Config, _, _>(&app::SERVICE, app::run).await
}
