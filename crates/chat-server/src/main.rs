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
        Command::GenKey => chat_server::print_new_keys()?,
        Command::RotateKey { batch_size } => {
            let url = chat_server::database_url(&settings);
            tracing::info!(database = %chat_server::redacted_url(&url), batch_size, "rotating keys");
            let mut batches = 0usize;
            let mut reencrypted = 0usize;
            let report = chat_server::rotate_keys(&settings, batch_size, |progress| {
                batches += 1;
                reencrypted += progress.reencrypted;
                if progress.scanned > 0 {
                    println!(
                        "batch {batches}: {} re-encrypted, {} changed meanwhile, {} unreadable \
                         (through message id {}); {reencrypted} re-encrypted so far",
                        progress.reencrypted,
                        progress.changed_meanwhile,
                        progress.unreadable.len(),
                        progress.last_id.map_or(0, |id| id.get()),
                    );
                }
            })
            .await?;
            print!("{report}");
        }
        Command::Reindex(args) => {
            let url = chat_server::database_url(&settings);
            tracing::info!(database = %chat_server::redacted_url(&url), "building the search index");
            let report = chat_server::reindex(&settings, &args, |progress| {
                println!(
                    "indexed {} messages; through message id {} of {}{}",
                    progress.indexed,
                    progress.next_message_id.saturating_sub(1),
                    progress.newest_message_id,
                    if progress.finished { " (done)" } else { "" }
                );
            })
            .await?;
            print!("{report}");
        }
        Command::Admin(args) => {
            let format = if args.json {
                chat_server::admin::Format::Json
            } else {
                chat_server::admin::Format::Table
            };
            print!(
                "{}",
                chat_server::admin::run(&settings, &args.command, format).await?
            );
        }
        Command::ImportOriginal(args) => {
            let options = chat_server::ImportOptions::from_args(&args)?;
            tracing::info!(
                from = %chat_server::redacted_url(&options.from),
                database = %chat_server::redacted_url(&chat_server::database_url(&settings)),
                dry_run = options.dry_run,
                batch_size = options.batch_size,
                "importing the original backend's database"
            );
            let mut progress = chat_server::ProgressPrinter::default();
            let report =
                chat_server::import_original(&settings, &options, |batch| progress.update(batch))
                    .await;
            progress.finish();
            print!("{}", report?);
        }
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
            if let Some(metrics) = app.metrics_address() {
                tracing::info!(address = %metrics, "metrics on http://{metrics}/metrics");
            }
            app.run_until_stopped(chat_server::shutdown_signal())
                .await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}
