use clap::Parser;
use reservation_service::{config::Config, startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("reservation");
    platform::metrics::install(config.listen.metrics_addr)?;
    // With the `failpoints` feature, FAILPOINTS="reservation::after-debit=return" arms the
    // crash point for drills; without it this does nothing.
    let _failpoints = fail::FailScenario::setup();
    let listeners = config.listen.bind(startup::DEFAULT_PUBLIC_ADDR, startup::DEFAULT_INTERNAL_ADDR).await?;
    startup::run(config.into_settings()?, listeners, platform::server::shutdown_signal()).await
}
