use queue_service::{app, config::Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::app::run::<Config, _, _>(&app::SERVICE, app::run).await
}
