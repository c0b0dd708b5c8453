//! `search`: fills many rooms with messages of Zipf-distributed words, has
//! a reader join some of them, then times searches (`GET /api/search`) of
//! five kinds, one after another: one word in one room, one word across the
//! reader's rooms, three words across them, a three-letter prefix across
//! them, and a five-letter one (longer than the index's prefixes, so the
//! server reads more candidates than it returns). Query words are drawn
//! from the same distribution as the text, so common words are searched as
//! often as people would.

use std::time::Instant;

use anyhow::{Context, bail};
use chat_protocol::rest::SearchBody;
use clap::Args;

use crate::api::{Api, RunNames};
use crate::fleet::{self, Seeding, Target};
use crate::rooms::VOCABULARY_WORDS;
use crate::stats::{Percentiles, Report};
use crate::words::{Pad, Vocabulary, splitmix64, unit};

/// Options of the `search` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct SearchArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Rooms to fill.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) rooms: usize,
    /// Messages in all, shared out over the rooms.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) messages: u64,
    /// About this many words per message.
    #[arg(long, default_value_t = 10)]
    pub(crate) words: usize,
    /// Rooms the reader joins and searches across.
    #[arg(long, default_value_t = 50)]
    pub(crate) reader_rooms: usize,
    /// Searches of each kind.
    #[arg(long, default_value_t = 300)]
    pub(crate) queries: usize,
    /// Results asked for per search.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Unacknowledged seed messages per socket.
    #[arg(long, default_value_t = 32)]
    pub(crate) seed_window: usize,
}

/// The kinds of search timed, in order.
const KINDS: [&str; 5] = [
    "one_word_one_room",
    "one_word_reader_rooms",
    "three_words_reader_rooms",
    "prefix_reader_rooms",
    "long_prefix_reader_rooms",
];

/// Runs the scenario.
pub(crate) async fn run(args: SearchArgs) -> anyhow::Result<Report> {
    if args.rooms == 0 || args.reader_rooms == 0 || args.reader_rooms > args.rooms {
        bail!("need at least one room, and between one and --rooms reader rooms");
    }
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    let users = args.target.users_for(args.rooms);
    eprintln!(
        "search: {} messages of ~{} words in {} rooms ({users} senders); a reader in {} of them",
        args.messages, args.words, args.rooms, args.reader_rooms
    );
    // The last account reads.
    let tokens = fleet::accounts(&api, &names, users + 1, args.target.setup_concurrency).await?;
    let reader = tokens[users].clone();
    let rooms: Vec<String> = (0..args.rooms)
        .map(|index| names.room(&format!("s{index}")))
        .collect();
    fleet::create_rooms(&api, &tokens[0], &rooms, args.target.setup_concurrency).await?;

    let mut report = Report::new("search");
    report.add("server", args.target.server.as_str());
    report.add("rooms", args.rooms as u64);
    report.add("words_per_message", args.words as u64);
    report.add("vocabulary", VOCABULARY_WORDS as u64);
    let vocabulary = std::sync::Arc::new(Vocabulary::zipf(VOCABULARY_WORDS, 1.0));
    let seeding = Seeding {
        rooms: rooms.clone(),
        senders: (0..args.rooms).map(|room| (room % users, room)).collect(),
        messages: args.messages,
        window: args.seed_window,
        pad: Pad::Words {
            vocabulary: std::sync::Arc::clone(&vocabulary),
            mean: args.words,
        },
        connect_concurrency: args.target.connect_concurrency,
    };
    fleet::seed(&api, &tokens, seeding, &mut report).await?;
    if !report.ok() {
        return Ok(report);
    }

    // The reader joins rooms spread over the whole set.
    let step = args.rooms / args.reader_rooms;
    let joined: Vec<&String> = (0..args.reader_rooms).map(|n| &rooms[n * step]).collect();
    for room in &joined {
        let response = api
            .http()
            .post(api.url(&format!("/api/rooms/{room}/join"))?)
            .bearer_auth(&reader)
            .send()
            .await
            .with_context(|| format!("joining {room}"))?;
        if !response.status().is_success() {
            bail!("joining {room} answered {}", response.status());
        }
    }
    report.add("reader_rooms", joined.len() as u64);

    let mut state = 0x5EA2_C4ED_u64;
    for kind in KINDS {
        let mut latencies = Vec::with_capacity(args.queries);
        let mut results = 0u64;
        let mut with_results = 0u64;
        let mut errors = Vec::new();
        for _ in 0..args.queries {
            let pick = (splitmix64(&mut state) as usize) % joined.len();
            let mut word = || vocabulary.word_at(unit(&mut state)).to_owned();
            let (q, room) = match kind {
                "one_word_one_room" => (word(), Some(joined[pick].as_str())),
                "one_word_reader_rooms" => (word(), None),
                "three_words_reader_rooms" => (format!("{} {} {}", word(), word(), word()), None),
                _ => {
                    // The first three (or five) letters of a word that has
                    // more.
                    let letters = if kind == "prefix_reader_rooms" { 3 } else { 5 };
                    let mut chosen = word();
                    while chosen.chars().count() <= letters {
                        chosen = word();
                    }
                    (
                        format!("{}*", chosen.chars().take(letters).collect::<String>()),
                        None,
                    )
                }
            };
            let mut url = api.url("/api/search")?;
            url.query_pairs_mut()
                .append_pair("q", &q)
                .append_pair("limit", &args.limit.to_string());
            if let Some(room) = room {
                url.query_pairs_mut().append_pair("room", room);
            }
            let sent = Instant::now();
            let answer = api.http().get(url).bearer_auth(&reader).send().await;
            let body = match answer {
                Ok(response) if response.status().is_success() => response
                    .json::<SearchBody>()
                    .await
                    .map_err(|e| e.to_string()),
                Ok(response) => Err(format!("{q:?} answered {}", response.status())),
                Err(error) => Err(format!("{q:?}: {error}")),
            };
            match body {
                Ok(body) => {
                    let micros = sent.elapsed().as_micros();
                    latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    results += body.results.len() as u64;
                    with_results += u64::from(!body.results.is_empty());
                }
                Err(error) => errors.push(error),
            }
        }
        eprintln!("  {kind}: {} searches", latencies.len());
        report.add(format!("{kind}_searches"), latencies.len() as u64);
        report.add(format!("{kind}_with_results"), with_results);
        report.add(format!("{kind}_results"), results);
        report.latency(
            &format!("{kind}_latency"),
            &Percentiles::of_micros(latencies),
        );
        report.failures(&format!("{kind} searches failed"), &errors);
    }
    Ok(report)
}
