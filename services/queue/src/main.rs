use queue_service::{app, config::Config};

/// mimalloc, not glibc malloc: a queue replica lives through a rush of a million joins,
/// each leaving short-lived entries in its caches (verified access tokens, remembered
/// WAITING rows, poll marks), and glibc's heap fragments under that churn so that every
/// later poll costs more. The A/B figures are in docs/BENCHMARKS.md ("A million in line";
/// the other services, which showed no difference, under "Tried and dropped").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::app::run::<Config, _, _>(&app::SERVICE, app::run).await
}
