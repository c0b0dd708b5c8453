//! The `chat-tui` binary: parses the command line and runs the client.

use clap::Parser;

fn main() {
    let cli = chat_tui::Cli::parse();
    let mut siv = cursive::default();
    chat_tui::install_with(&mut siv, chat_tui::Options::from_cli(&cli));
    siv.run();
}
