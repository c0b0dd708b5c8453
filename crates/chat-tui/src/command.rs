//! What the user typed on the input line: a message, or a `/command`.

use chat_domain::search::SearchQuery;
use chat_domain::{DomainError, RoomName, Username};
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
    /// `/dm [-e] <user>`: open the direct conversation with a user,
    /// end-to-end encrypted with `-e`.
    Dm { user: String, encrypted: bool },
    /// `/verify <user>`: show a user's device fingerprints and the safety
    /// number of the two users.
    Verify(String),
    /// `/who`: who is online in the room on screen.
    Who,
    /// `/history`: load older messages of the room on screen.
    History,
    /// `/create [-e] <room> [private|public]`: create a room and show it;
    /// with `-e`, an end-to-end encrypted room, private unless `public`
    /// is given.
    Create {
        room: String,
        private: bool,
        encrypted: bool,
    },
    /// `/topic [text]`: show the topic of the room on screen, or set it.
    Topic(Option<String>),
    /// `/members`: list the members of the room on screen.
    Members,
    /// `/invite <user>`: add a user to the room on screen.
    Invite(String),
    /// `/kick <user> [reason]`: remove a member from the room on screen.
    Kick {
        user: String,
        reason: Option<String>,
    },
    /// `/ban <user> [reason]`: remove a member and bar them from coming back.
    Ban {
        user: String,
        reason: Option<String>,
    },
    /// `/mute <user> <minutes>`: stop a member posting for a while.
    Mute { user: String, minutes: u32 },
    /// `/op <user>`: make a member a moderator of the room on screen.
    Op(String),
    /// `/edit <seq> <text>`: replace the text of one's message.
    Edit { seq: i64, text: String },
    /// `/delete <seq>`: delete a message.
    Delete(i64),
    /// `/reply <seq> <text>`: send a message that answers another.
    Reply { seq: i64, text: String },
    /// `/react <seq> <emoji>`: react to a message, or take the reaction
    /// back if one has already made it.
    React { seq: i64, emoji: String },
    /// `/unreact <seq> <emoji>`: take back one's reaction to a message.
    Unreact { seq: i64, emoji: String },
    /// `/search [-r] <words>`: find messages with every word, in the room
    /// on screen with `-r`, else in every room of the user's.
    Search { words: String, this_room: bool },
    /// `/search more`: the next (older) page of the last search.
    SearchMore,
    /// `/goto <n>`: show result `n` of the last search in its room.
    Goto(usize),
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
    "/join <room>           join or create a public room and show it",
    "/create <room> [private]  create a room (private: members only)",
    "/create -e <room> [public]  end-to-end encrypted room (default private)",
    "/leave [room]          leave the room on screen (or the one named)",
    "/rooms                 list the rooms on the server",
    "/dm <user>             open a direct conversation",
    "/dm -e <user>          open an end-to-end encrypted direct conversation",
    "/verify <user>         their device fingerprints and your safety number",
    "/who                   who is online in this room",
    "/members               the members of this room, roles and mutes",
    "/topic [text]          show this room's topic, or set it",
    "/invite <user>         add someone to this room (owner, mods)",
    "/kick <user> [reason]  remove someone from this room (owner, mods)",
    "/ban <user> [reason]   remove someone for good (owner, mods)",
    "/mute <user> <minutes> stop someone posting for a while (owner, mods)",
    "/op <user>             make a member a moderator (owner)",
    "/reply <seq> <text>    answer message #seq, quoting it",
    "/edit <seq> <text>     replace the text of your message #seq",
    "/delete <seq>          delete #seq (yours; anyone's: owner, mods)",
    "/react <seq> <emoji>   react to #seq; again takes the reaction back",
    "/unreact <seq> <emoji> take back your reaction to #seq",
    "/history               load older messages (also Page Up at the top)",
    "/search [-r] <words>   find messages with every word (-r: this room)",
    "/search more           the next page of results, older ones",
    "/goto <n>              show search result n in its room",
    "/help                  this list",
    "/quit                  leave the client (also /exit, /q, Ctrl-C)",
    "Tab / Ctrl-N / Ctrl-P: move between rooms; //text sends '/text'",
    "Up on an empty line edits your last message; Enter saves, Esc cancels",
];

/// The longest mute `/mute` accepts: a year, in minutes.
const MAX_MUTE_MINUTES: u32 = 366 * 24 * 60;

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
    let rest = rest.trim();
    let (name, arguments) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = name.to_ascii_lowercase();
    let arguments = Arguments::new(arguments);
    let command = match name.as_str() {
        "quit" | "exit" | "q" => arguments.none("quit", Command::Quit)?,
        "help" | "h" | "?" => arguments.none("help", Command::Help)?,
        "rooms" => arguments.none("rooms", Command::Rooms)?,
        "who" => arguments.none("who", Command::Who)?,
        "history" => arguments.none("history", Command::History)?,
        "members" => arguments.none("members", Command::Members)?,
        "join" => {
            let room = arguments.one("join", "<room>")?;
            Command::Join(public_room(room)?)
        }
        "create" => {
            let (encrypted, arguments) = arguments.encrypted_flag();
            let (room, rest) = arguments.first("create", "[-e] <room> [private|public]")?;
            let private = match rest {
                None => encrypted,
                Some(word) if word.eq_ignore_ascii_case("private") => true,
                Some(word) if word.eq_ignore_ascii_case("public") => false,
                Some(_) => {
                    return Err(CommandError::Invalid(
                        "usage: /create [-e] <room> [private|public]".to_owned(),
                    ));
                }
            };
            Command::Create {
                room: public_room(room)?,
                private,
                encrypted,
            }
        }
        "leave" => {
            let room = arguments
                .optional("leave")?
                .map(|room| RoomName::parse(&room.to_ascii_lowercase()))
                .transpose()
                .map_err(invalid)?;
            Command::Leave(room.map(|room| room.as_str().to_owned()))
        }
        "dm" | "msg" => {
            let (encrypted, arguments) = arguments.encrypted_flag();
            Command::Dm {
                user: username(arguments.one("dm", "[-e] <user>")?)?,
                encrypted,
            }
        }
        "verify" => Command::Verify(username(arguments.one("verify", "<user>")?)?),
        "topic" => Command::Topic(arguments.text()),
        "invite" => Command::Invite(username(arguments.one("invite", "<user>")?)?),
        "op" => Command::Op(username(arguments.one("op", "<user>")?)?),
        "kick" => {
            let (user, reason) = arguments.first("kick", "<user> [reason]")?;
            Command::Kick {
                user: username(user)?,
                reason: reason.map(str::to_owned),
            }
        }
        "ban" => {
            let (user, reason) = arguments.first("ban", "<user> [reason]")?;
            Command::Ban {
                user: username(user)?,
                reason: reason.map(str::to_owned),
            }
        }
        "mute" => {
            let (user, minutes) = arguments.first("mute", "<user> <minutes>")?;
            let minutes = minutes.ok_or(CommandError::MissingArgument {
                command: "mute",
                argument: "<user> <minutes>",
            })?;
            Command::Mute {
                user: username(user)?,
                minutes: mute_minutes(minutes)?,
            }
        }
        "edit" => arguments
            .seq_and("edit", "<seq> <text>")
            .map(|(seq, text)| Command::Edit { seq, text })?,
        "reply" => arguments
            .seq_and("reply", "<seq> <text>")
            .map(|(seq, text)| Command::Reply { seq, text })?,
        "react" => arguments
            .seq_and("react", "<seq> <emoji>")
            .map(|(seq, emoji)| Command::React { seq, emoji })?,
        "unreact" => arguments
            .seq_and("unreact", "<seq> <emoji>")
            .map(|(seq, emoji)| Command::Unreact { seq, emoji })?,
        "delete" => Command::Delete(message_seq("delete", arguments.one("delete", "<seq>")?)?),
        "search" => search(arguments.text)?,
        "goto" => Command::Goto(result_number(arguments.one("goto", "<n>")?)?),
        _ => return Err(CommandError::Unknown(name)),
    };
    Ok(Some(command))
}

/// The words after a command's name.
struct Arguments<'a> {
    text: &'a str,
}

impl<'a> Arguments<'a> {
    fn new(text: &'a str) -> Arguments<'a> {
        Arguments { text: text.trim() }
    }

    /// Whether the arguments start with `-e` (end-to-end encrypted), and
    /// the arguments after it.
    fn encrypted_flag(&self) -> (bool, Arguments<'a>) {
        match self.text.strip_prefix("-e") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, Arguments::new(rest))
            }
            _ => (false, Arguments { text: self.text }),
        }
    }

    /// The whole rest of the line, for free text; `None` when blank.
    fn text(&self) -> Option<String> {
        (!self.text.is_empty()).then(|| self.text.to_owned())
    }

    /// `parsed` when there are no arguments.
    fn none(&self, command: &'static str, parsed: Command) -> Result<Command, CommandError> {
        if self.text.is_empty() {
            Ok(parsed)
        } else {
            Err(CommandError::TooManyArguments {
                command,
                expected: "no argument",
            })
        }
    }

    /// At most one word.
    fn optional(&self, command: &'static str) -> Result<Option<&'a str>, CommandError> {
        let mut words = self.text.split_whitespace();
        let word = words.next();
        if words.next().is_some() {
            return Err(CommandError::TooManyArguments {
                command,
                expected: "one argument",
            });
        }
        Ok(word)
    }

    /// Exactly one word.
    fn one(&self, command: &'static str, argument: &'static str) -> Result<&'a str, CommandError> {
        self.optional(command)?
            .ok_or(CommandError::MissingArgument { command, argument })
    }

    /// A first word, and the rest of the line after it (`None` when blank).
    fn first(
        &self,
        command: &'static str,
        argument: &'static str,
    ) -> Result<(&'a str, Option<&'a str>), CommandError> {
        if self.text.is_empty() {
            return Err(CommandError::MissingArgument { command, argument });
        }
        let (first, rest) = self
            .text
            .split_once(char::is_whitespace)
            .unwrap_or((self.text, ""));
        let rest = rest.trim();
        Ok((first, (!rest.is_empty()).then_some(rest)))
    }
}

impl Arguments<'_> {
    /// A message's seq, then the rest of the line, which must be there.
    fn seq_and(
        &self,
        command: &'static str,
        argument: &'static str,
    ) -> Result<(i64, String), CommandError> {
        let (seq, rest) = self.first(command, argument)?;
        let seq = message_seq(command, seq)?;
        let rest = rest.ok_or(CommandError::MissingArgument { command, argument })?;
        Ok((seq, rest.to_owned()))
    }
}

/// A message's seq as typed: `12` or `#12`, as the screen shows it.
fn message_seq(command: &str, text: &str) -> Result<i64, CommandError> {
    let digits = text.strip_prefix('#').unwrap_or(text);
    match digits.parse::<i64>() {
        Ok(seq) if seq >= 1 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(seq),
        _ => Err(CommandError::Invalid(format!(
            "/{command} takes the number of a message, as shown before its author (#12), not {text:?}"
        ))),
    }
}

/// The usage of `/search`.
const SEARCH_USAGE: &str = "[-r] <words> (or /search more)";

/// `/search` with its arguments: `more`, or words after an optional `-r`
/// (this room only) and an optional `--` (so `/search -- more` looks for
/// the word "more"). The words are checked as the server will check them.
fn search(text: &str) -> Result<Command, CommandError> {
    let missing = CommandError::MissingArgument {
        command: "search",
        argument: SEARCH_USAGE,
    };
    if text == "more" {
        return Ok(Command::SearchMore);
    }
    let (this_room, words) = match text.strip_prefix("-r") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            (true, rest.trim_start())
        }
        _ => (false, text),
    };
    let words = match words.strip_prefix("--") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest.trim_start(),
        _ => words,
    };
    if words.is_empty() {
        return Err(missing);
    }
    SearchQuery::parse(words).map_err(invalid)?;
    Ok(Command::Search {
        words: words.to_owned(),
        this_room,
    })
}

/// A search result's number, as the list shows it: `3`.
fn result_number(text: &str) -> Result<usize, CommandError> {
    match text.parse::<usize>() {
        Ok(number) if number >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(number),
        _ => Err(CommandError::Invalid(format!(
            "/goto takes the number of a search result, as shown before it (3), not {text:?}"
        ))),
    }
}

fn invalid(error: DomainError) -> CommandError {
    CommandError::Invalid(error.to_string())
}

fn public_room(name: &str) -> Result<String, CommandError> {
    RoomName::public(name)
        .map(|room| room.as_str().to_owned())
        .map_err(invalid)
}

fn username(name: &str) -> Result<String, CommandError> {
    Username::parse(name)
        .map(|user| user.as_str().to_owned())
        .map_err(invalid)
}

fn mute_minutes(text: &str) -> Result<u32, CommandError> {
    match text.parse::<u32>() {
        Ok(minutes) if (1..=MAX_MUTE_MINUTES).contains(&minutes) => Ok(minutes),
        _ => Err(CommandError::Invalid(format!(
            "/mute takes a number of minutes from 1 to {MAX_MUTE_MINUTES}, not {text:?}"
        ))),
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
        assert_eq!(
            parsed("/dm Bob"),
            Command::Dm {
                user: "Bob".to_owned(),
                encrypted: false
            }
        );
        assert!(parse("/dm").is_err());
        assert!(parse("/dm b").is_err(), "too short to be a username");
    }

    #[test]
    fn dash_e_asks_for_an_encrypted_conversation_or_room() {
        assert_eq!(
            parsed("/dm -e bob"),
            Command::Dm {
                user: "bob".to_owned(),
                encrypted: true
            }
        );
        assert_eq!(
            parse("/dm -e").expect_err("no user").to_string(),
            "usage: /dm [-e] <user>"
        );
        assert!(parse("/dm -e bob carol").is_err());
        assert_eq!(
            parsed("/create -e vault"),
            Command::Create {
                room: "vault".to_owned(),
                private: true,
                encrypted: true
            }
        );
        assert_eq!(
            parsed("/create -e square public"),
            Command::Create {
                room: "square".to_owned(),
                private: false,
                encrypted: true
            }
        );
        assert_eq!(
            parsed("/create -e vault private"),
            Command::Create {
                room: "vault".to_owned(),
                private: true,
                encrypted: true
            }
        );
    }

    #[test]
    fn verify_takes_one_username() {
        assert_eq!(parsed("/verify bob"), Command::Verify("bob".to_owned()));
        assert!(parse("/verify").is_err());
        assert!(parse("/verify bob carol").is_err());
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

    #[test]
    fn create_takes_a_room_and_an_optional_private() {
        assert_eq!(
            parsed("/create Den"),
            Command::Create {
                room: "den".to_owned(),
                private: false,
                encrypted: false
            }
        );
        assert_eq!(
            parsed("/create den PRIVATE"),
            Command::Create {
                room: "den".to_owned(),
                private: true,
                encrypted: false
            }
        );
        assert!(parse("/create den secret").is_err());
        assert_eq!(
            parse("/create").expect_err("no room").to_string(),
            "usage: /create [-e] <room> [private|public]"
        );
    }

    #[test]
    fn topic_without_text_asks_and_with_text_keeps_the_whole_line() {
        assert_eq!(parsed("/topic"), Command::Topic(None));
        assert_eq!(parsed("/topic   "), Command::Topic(None));
        assert_eq!(
            parsed("/topic release  planning: friday"),
            Command::Topic(Some("release  planning: friday".to_owned()))
        );
    }

    #[test]
    fn kick_and_ban_take_a_user_and_an_optional_reason() {
        assert_eq!(
            parsed("/kick bob"),
            Command::Kick {
                user: "bob".to_owned(),
                reason: None
            }
        );
        assert_eq!(
            parsed("/ban bob  spam, again"),
            Command::Ban {
                user: "bob".to_owned(),
                reason: Some("spam, again".to_owned())
            }
        );
        assert_eq!(
            parse("/kick").expect_err("no user").to_string(),
            "usage: /kick <user> [reason]"
        );
        assert!(parse("/ban b").is_err(), "too short to be a username");
    }

    #[test]
    fn mute_takes_a_user_and_a_positive_number_of_minutes() {
        assert_eq!(
            parsed("/mute dave 15"),
            Command::Mute {
                user: "dave".to_owned(),
                minutes: 15
            }
        );
        assert_eq!(
            parse("/mute dave").expect_err("no minutes").to_string(),
            "usage: /mute <user> <minutes>"
        );
        for minutes in ["0", "-5", "soon", "10 more"] {
            let error = parse(&format!("/mute dave {minutes}")).expect_err(minutes);
            assert!(error.to_string().contains("minutes"), "{error}");
        }
    }

    #[test]
    fn invite_and_op_take_exactly_one_user() {
        assert_eq!(parsed("/invite carol"), Command::Invite("carol".to_owned()));
        assert_eq!(parsed("/op erin"), Command::Op("erin".to_owned()));
        assert!(parse("/invite").is_err());
        assert_eq!(
            parse("/op erin frank"),
            Err(CommandError::TooManyArguments {
                command: "op",
                expected: "one argument"
            })
        );
    }

    #[test]
    fn members_takes_no_argument() {
        assert_eq!(parsed("/members"), Command::Members);
        assert!(parse("/members lobby").is_err());
    }

    #[test]
    fn edit_and_reply_take_a_seq_and_keep_the_rest_of_the_line() {
        assert_eq!(
            parsed("/edit 12 hello,  world"),
            Command::Edit {
                seq: 12,
                text: "hello,  world".to_owned()
            }
        );
        assert_eq!(
            parsed("/reply #3 tea, please"),
            Command::Reply {
                seq: 3,
                text: "tea, please".to_owned()
            }
        );
    }

    #[test]
    fn a_change_without_its_text_explains_its_usage() {
        for (line, usage) in [
            ("/edit 12", "usage: /edit <seq> <text>"),
            ("/edit", "usage: /edit <seq> <text>"),
            ("/reply 4   ", "usage: /reply <seq> <text>"),
            ("/react 4", "usage: /react <seq> <emoji>"),
            ("/unreact 4", "usage: /unreact <seq> <emoji>"),
            ("/delete", "usage: /delete <seq>"),
        ] {
            assert_eq!(parse(line).expect_err(line).to_string(), usage, "{line}");
        }
    }

    #[test]
    fn a_seq_that_is_not_a_positive_number_is_refused_with_an_example() {
        for line in [
            "/edit twelve hello",
            "/delete 0",
            "/delete -3",
            "/react +5 👍",
            "/reply 1.5 hi",
        ] {
            let error = parse(line).expect_err(line).to_string();
            assert!(error.contains("the number of a message"), "{line}: {error}");
        }
        assert_eq!(parsed("/delete #7"), Command::Delete(7));
        assert!(parse("/delete 7 8").is_err());
    }

    #[test]
    fn react_and_unreact_take_a_seq_and_a_reaction() {
        assert_eq!(
            parsed("/react 5 👍"),
            Command::React {
                seq: 5,
                emoji: "👍".to_owned()
            }
        );
        assert_eq!(
            parsed("/unreact #5 🎉"),
            Command::Unreact {
                seq: 5,
                emoji: "🎉".to_owned()
            }
        );
    }

    #[test]
    fn the_help_fits_beside_the_other_panels() {
        // The messages panel of a 120-column terminal holds 76 columns,
        // three of them taken by the `-- ` of a notice.
        for line in HELP {
            assert!(line.chars().count() <= 73, "too wide: {line}");
        }
    }

    #[test]
    fn every_command_is_in_the_help() {
        for command in [
            "/join", "/create", "/leave", "/rooms", "/dm", "/who", "/members", "/topic", "/invite",
            "/kick", "/ban", "/mute", "/op", "/history", "/help", "/quit", "/edit", "/delete",
            "/reply", "/react", "/unreact", "/search", "/goto",
        ] {
            assert!(
                HELP.iter().any(|line| line.starts_with(command)),
                "{command} is missing from the help"
            );
        }
    }

    #[test]
    fn search_keeps_the_words_as_typed_for_every_room_or_this_one() {
        assert_eq!(
            parsed("/search  Café  lai*"),
            Command::Search {
                words: "Café  lai*".to_owned(),
                this_room: false
            }
        );
        assert_eq!(
            parsed("/search -r release plan"),
            Command::Search {
                words: "release plan".to_owned(),
                this_room: true
            }
        );
        // A word that merely starts with -r is a word.
        assert_eq!(
            parsed("/search -rust"),
            Command::Search {
                words: "-rust".to_owned(),
                this_room: false
            }
        );
    }

    #[test]
    fn search_more_is_the_next_page_and_a_double_dash_searches_for_the_word() {
        assert_eq!(parsed("/search more"), Command::SearchMore);
        assert_eq!(
            parsed("/search -- more"),
            Command::Search {
                words: "more".to_owned(),
                this_room: false
            }
        );
        assert_eq!(
            parsed("/search -r -- more"),
            Command::Search {
                words: "more".to_owned(),
                this_room: true
            }
        );
        assert_eq!(
            parsed("/search more tea"),
            Command::Search {
                words: "more tea".to_owned(),
                this_room: false
            }
        );
    }

    #[test]
    fn a_search_the_server_would_refuse_is_refused_with_the_reason() {
        for line in ["/search", "/search -r", "/search -r --", "/search   "] {
            assert_eq!(
                parse(line).expect_err(line).to_string(),
                "usage: /search [-r] <words> (or /search more)",
                "{line}"
            );
        }
        let prefix = parse("/search ca*")
            .expect_err("prefix too short")
            .to_string();
        assert!(prefix.contains("at least 3"), "{prefix}");
        let many = parse("/search a b c d e f g h i")
            .expect_err("nine words")
            .to_string();
        assert!(many.contains("at most 8 words"), "{many}");
        let empty = parse("/search ?! ...").expect_err("no word").to_string();
        assert!(!empty.is_empty());
    }

    #[test]
    fn goto_takes_a_positive_result_number() {
        assert_eq!(parsed("/goto 3"), Command::Goto(3));
        assert_eq!(
            parse("/goto").expect_err("no number").to_string(),
            "usage: /goto <n>"
        );
        for line in ["/goto 0", "/goto -1", "/goto #3", "/goto three", "/goto +2"] {
            let error = parse(line).expect_err(line).to_string();
            assert!(
                error.contains("number of a search result"),
                "{line}: {error}"
            );
        }
        assert!(parse("/goto 1 2").is_err());
    }
}
