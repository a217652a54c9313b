use clap::Parser;
use reservation_service::{config::Config, startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("reservation");
    let listener = tokio::net::TcpListener::bind(config.listen.addr_or(startup::DEFAULT_ADDR)).await?;
    startup::run(config.into_settings()?, listener, platform::server::shutdown_signal()).await
}
