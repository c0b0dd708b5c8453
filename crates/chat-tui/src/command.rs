//! What the user typed on the input line: a message, or a `/command`.

use chat_domain::{RoomName, Username};
use thiserror::Error;

/// One parsed input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Send this text to the room on screen.
    Say(String),
    /// `/quit`, `/exit`, `/q`.
    Quit,
    /// `/help`.
    Help,
    /// `/join <room>`: join (or create) a public room and show it.
    Join(String),
    /// `/leave [room]`: leave the named room, or the room on screen.
    Leave(Option<String>),
    /// `/rooms`: list every room on the server.
    Rooms,
    /// `/dm <user>`: open the direct conversation with a user.
    Dm(String),
    /// `/who`: who is online in the room on screen.
    Who,
    /// `/history`: load older messages of the room on screen.
    History,
}

/// Why a line is not a valid command. The text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum CommandError {
    #[error("unknown command /{0}; type /help for the list")]
    Unknown(String),
    #[error("usage: /{command} {argument}")]
    MissingArgument {
        command: &'static str,
        argument: &'static str,
    },
    #[error("/{command} takes {expected}")]
    TooManyArguments {
        command: &'static str,
        expected: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The help text, one line per command.
pub(crate) const HELP: &[&str] = &[
    "/join <room>   join or create a public room and switch to it",
    "/leave [room]  leave the room on screen (or the one named)",
    "/rooms         list the rooms on the server",
    "/dm <user>     open a direct conversation",
    "/who           who is online in this room",
    "/history       load older messages (also Page Up at the top)",
    "/help          this list",
    "/quit          leave the client (also /exit, /q, Ctrl-C)",
    "Tab / Ctrl-N / Ctrl-P: move between rooms; //text sends '/text'",
];

/// Parses an input line. A blank line is `None`: nothing to do.
pub(crate) fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    if rest.starts_with('/') {
        // `//text` sends `/text`, so a message can start with a slash.
        return Ok(Some(Command::Say(rest.to_owned())));
    }
    let mut words = rest.split_whitespace();
    let name = words.next().unwrap_or_default().to_ascii_lowercase();
    let argument = words.next();
    let extra = words.next().is_some();
    let command = match name.as_str() {
        "quit" | "exit" | "q" => no_argument("quit", argument, Command::Quit)?,
        "help" | "h" | "?" => no_argument("help", argument, Command::Help)?,
        "rooms" => no_argument("rooms", argument, Command::Rooms)?,
        "who" => no_argument("who", argument, Command::Who)?,
        "history" => no_argument("history", argument, Command::History)?,
        "join" => {
            let room = argument.ok_or(CommandError::MissingArgument {
                command: "join",
                argument: "<room>",
            })?;
            let room = RoomName::public(room).map_err(|e| CommandError::Invalid(e.to_string()))?;
            Command::Join(room.as_str().to_owned())
        }
        "leave" => {
            let room = argument
                .map(|room| RoomName::parse(&room.to_ascii_lowercase()))
                .transpose()
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            Command::Leave(room.map(|room| room.as_str().to_owned()))
        }
        "dm" | "msg" => {
            let user = argument.ok_or(CommandError::MissingArgument {
                command: "dm",
                argument: "<user>",
            })?;
            let user = Username::parse(user).map_err(|e| CommandError::Invalid(e.to_string()))?;
            Command::Dm(user.as_str().to_owned())
        }
        _ => return Err(CommandError::Unknown(name)),
    };
    if extra {
        return Err(CommandError::TooManyArguments {
            command: command_name(&command),
            expected: "one argument",
        });
    }
    Ok(Some(command))
}

fn no_argument(
    command: &'static str,
    argument: Option<&str>,
    parsed: Command,
) -> Result<Command, CommandError> {
    match argument {
        None => Ok(parsed),
        Some(_) => Err(CommandError::TooManyArguments {
            command,
            expected: "no argument",
        }),
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Say(_) => "say",
        Command::Quit => "quit",
        Command::Help => "help",
        Command::Join(_) => "join",
        Command::Leave(_) => "leave",
        Command::Rooms => "rooms",
        Command::Dm(_) => "dm",
        Command::Who => "who",
        Command::History => "history",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Command {
        parse(line).expect(line).expect(line)
    }

    #[test]
    fn plain_text_is_a_message_kept_exactly_as_typed() {
        assert_eq!(
            parsed("  hello there "),
            Command::Say("  hello there ".to_owned())
        );
    }

    #[test]
    fn a_blank_line_does_nothing() {
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn quit_has_three_spellings() {
        for line in ["/quit", "/exit", "/q", "/QUIT"] {
            assert_eq!(parsed(line), Command::Quit, "{line}");
        }
    }

    #[test]
    fn join_takes_a_room_name_and_lowers_its_case() {
        assert_eq!(parsed("/join Lobby"), Command::Join("lobby".to_owned()));
    }

    #[test]
    fn join_without_a_room_explains_its_usage() {
        let error = parse("/join").expect_err("no room");
        assert_eq!(error.to_string(), "usage: /join <room>");
    }

    #[test]
    fn join_refuses_a_room_name_the_server_would_refuse() {
        let error = parse("/join no:colons").expect_err("invalid");
        assert!(error.to_string().contains("room name"), "{error}");
    }

    #[test]
    fn leave_works_with_or_without_a_room() {
        assert_eq!(parsed("/leave"), Command::Leave(None));
        assert_eq!(
            parsed("/leave lobby"),
            Command::Leave(Some("lobby".to_owned()))
        );
    }

    #[test]
    fn dm_takes_a_valid_username() {
        assert_eq!(parsed("/dm Bob"), Command::Dm("Bob".to_owned()));
        assert!(parse("/dm").is_err());
        assert!(parse("/dm b").is_err(), "too short to be a username");
    }

    #[test]
    fn commands_without_arguments_refuse_one() {
        assert_eq!(
            parse("/who lobby"),
            Err(CommandError::TooManyArguments {
                command: "who",
                expected: "no argument"
            })
        );
        assert!(parse("/join a b").is_err());
    }

    #[test]
    fn the_simple_commands_parse() {
        assert_eq!(parsed("/help"), Command::Help);
        assert_eq!(parsed("/rooms"), Command::Rooms);
        assert_eq!(parsed("/who"), Command::Who);
        assert_eq!(parsed("/history"), Command::History);
    }

    #[test]
    fn an_unknown_command_is_named_in_the_error() {
        assert_eq!(
            parse("/dance now"),
            Err(CommandError::Unknown("dance".to_owned()))
        );
    }

    #[test]
    fn a_double_slash_sends_text_starting_with_a_slash() {
        assert_eq!(parsed("//shrug"), Command::Say("/shrug".to_owned()));
    }
}
