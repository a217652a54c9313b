use catalog_service::{config::Config, startup};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("catalog");
    let listener = tokio::net::TcpListener::bind(config.listen.addr_or(startup::DEFAULT_ADDR)).await?;
    startup::run(config.into_settings()?, listener, platform::server::shutdown_signal()).await
}
