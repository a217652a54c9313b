use reservation_service::{app, config::Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // With the `failpoints` feature, FAILPOINTS="reservation::after-debit=return" arms the
    // crash point for drills; without it this does nothing.
    let _failpoints = fail::FailScenario::setup();
    platform::app::run::<Config, _, _>(&app::SERVICE, app::run).await
}
