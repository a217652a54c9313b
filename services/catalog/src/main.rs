use catalog_service::{config::Config, startup};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("catalog");
    platform::metrics::install(config.listen.metrics_addr)?;
    let listeners = config.listen.bind(startup::DEFAULT_PUBLIC_ADDR, startup::DEFAULT_INTERNAL_ADDR).await?;
    startup::run(config.into_settings()?, listeners, platform::server::shutdown_signal()).await
}
