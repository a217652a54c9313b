use clap::Parser;
use reservation_service::{config::Config, startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = platform::telemetry::init("reservation");
    // With the `failpoints` feature, FAILPOINTS="reservation::after-debit=return" arms the
    // crash point for drills; without it this does nothing.
    let _failpoints = fail::FailScenario::setup();
    let listener = tokio::net::TcpListener::bind(config.listen.addr_or(startup::DEFAULT_ADDR)).await?;
    startup::run(config.into_settings()?, listener, platform::server::shutdown_signal()).await
}
