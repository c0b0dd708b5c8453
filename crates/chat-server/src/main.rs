//! `chat-server`: parses settings, sets up logging and runs a command.

use chat_server::{Cli, Command};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a broken one is worth knowing about.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("warning: could not read .env: {error}");
    }
    let cli = Cli::parse();
    let settings = cli.settings;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    match cli.command.unwrap_or(Command::Serve) {
        Command::GenKey => chat_server::print_new_keys(),
        Command::Migrate => {
            let url = chat_server::database_url(&settings);
            chat_server::open_store(&settings).await?;
            tracing::info!(database = %chat_server::redacted_url(&url), "migrations are up to date");
        }
        Command::Serve => {
            let url = chat_server::database_url(&settings);
            tracing::info!(
                database = %chat_server::redacted_url(&url),
                environment = ?settings.environment,
                "starting"
            );
            let app = chat_server::build(&settings).await?;
            tracing::info!(address = %app.address(), "listening on http://{}", app.address());
            app.run_until_stopped(chat_server::shutdown_signal())
                .await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}
