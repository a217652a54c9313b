use wallet_service::{app, config::Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // With the `failpoints` feature, FAILPOINTS arms the faults in `wallet_service::faults`;
    // without it this does nothing.
    let _failpoints = fail::FailScenario::setup();
    platform::app::run::<Config, _, _>(&app::SERVICE, app::run).await
}
