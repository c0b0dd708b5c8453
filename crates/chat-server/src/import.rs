//! `chat-server import-original`: brings the users and messages of the
//! original Python backend's database over into this server's.
//!
//! Users keep their bcrypt hashes, so they sign in with their old
//! passwords; a name our rules refuse is renamed by a stated rule
//! ([`rename_rule`]) and reported. Messages are decrypted with the
//! original's key, encrypted again under our key ring, and appended to
//! `general` in the original's `(created_at, id)` order with their times and
//! authors, a batch per transaction. Each user and message is recorded by
//! its original id in the transaction that writes it, so the import can be
//! stopped anywhere and run again: it resumes after the newest message it
//! brought over and imports nothing twice.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chat_auth::PasswordHasher;
use chat_crypto::{FernetKey, KeyRing};
use chat_domain::{DomainError, MessageBody, UserId, Username};
use chat_storage::{ImportMessage, ImportUser, OriginalDatabase, OriginalUser, Store};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::ImportArgs;
use crate::{Settings, open_store_with, redacted_url, secrets};

/// How many skipped messages the report lists one by one.
const SKIPPED_SHOWN: usize = 100;

/// How many of the original's first messages are tried with its key before
/// anything is imported.
const KEY_PROBE: i64 = 100;

/// What to import, and how.
#[derive(Clone)]
pub struct ImportOptions {
    /// The original's database URL; may hold a password, so it is only
    /// ever shown through [`redacted_url`].
    pub from: String,
    /// The key the original encrypted its messages with.
    pub original_key: FernetKey,
    /// Read, decrypt and report, but write nothing.
    pub dry_run: bool,
    /// Import after messages already in `general`.
    pub append: bool,
    /// Messages per page read and per transaction written.
    pub batch_size: i64,
}

impl fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOptions")
            .field("from", &redacted_url(&self.from))
            .field("original_key", &self.original_key)
            .field("dry_run", &self.dry_run)
            .field("append", &self.append)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl ImportOptions {
    /// The options of the command line: the original's key is read from
    /// the environment variable that `--passphrase-env` or `--key-env`
    /// names, so it never appears on a command line.
    pub fn from_args(args: &ImportArgs) -> anyhow::Result<ImportOptions> {
        let (flag, variable, passphrase) = match (&args.passphrase_env, &args.key_env) {
            (Some(variable), None) => ("--passphrase-env", variable, true),
            (None, Some(variable)) => ("--key-env", variable, false),
            _ => bail!("give exactly one of --passphrase-env and --key-env"),
        };
        let value = std::env::var(variable)
            .map(SecretString::from)
            .map_err(|_| anyhow!("{variable} (named by {flag}) is not set, or not UTF-8"))?;
        let original_key = if passphrase {
            if value.expose_secret().is_empty() {
                bail!("{variable} (named by {flag}) is empty");
            }
            let text = SecretString::from(format!(
                "{}{}",
                FernetKey::PASSPHRASE_PREFIX,
                value.expose_secret()
            ));
            FernetKey::parse(text.expose_secret())
        } else {
            FernetKey::parse(value.expose_secret())
        }
        .with_context(|| format!("{variable} (named by {flag}) does not hold a valid key"))?;
        Ok(ImportOptions {
            from: args.from.clone(),
            original_key,
            dry_run: args.dry_run,
            append: args.append,
            batch_size: args.batch_size,
        })
    }
}

/// Where an import run stands, after each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    /// Messages in the original's table.
    pub total: i64,
    /// Messages read by this run, the already imported included.
    pub read: usize,
    /// Messages imported by this run (or that would be, in a dry run).
    pub imported: usize,
    /// Messages skipped by this run.
    pub skipped: usize,
    /// Since the run started.
    pub elapsed: Duration,
}

impl ImportProgress {
    /// Messages read per second so far.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.read as f64 / seconds
        } else {
            0.0
        }
    }
}

/// A user whose name was changed on the way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub original_id: i64,
    /// Its name in the original.
    pub from: String,
    /// Its name here: what it signs in with from now on.
    pub to: Username,
    /// Why, in words.
    pub reason: String,
}

/// A user that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedUser {
    pub original_id: i64,
    pub username: String,
    pub reason: String,
}

/// A message that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMessage {
    pub original_id: i64,
    pub reason: SkipReason,
}

/// Why a message was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its token does not decrypt with the original's key, or not to UTF-8.
    Undecryptable,
    /// It has no `created_at`, so no place in the order.
    NoTime,
    /// Its `created_at` is not a time.
    UnreadableTime,
    /// Its text is empty or white space only.
    Blank,
    /// Its `user_id` names no user of the original.
    UnknownAuthor(i64),
    /// Its author was skipped.
    AuthorSkipped(i64),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Undecryptable => f.write_str("it does not decrypt with the original's key"),
            SkipReason::NoTime => f.write_str("it has no created_at"),
            SkipReason::UnreadableTime => f.write_str("its created_at is not a time"),
            SkipReason::Blank => f.write_str("its text is blank"),
            SkipReason::UnknownAuthor(id) => write!(f, "its author, user {id}, does not exist"),
            SkipReason::AuthorSkipped(id) => write!(f, "its author, user {id}, was skipped"),
        }
    }
}

/// What an import run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The original's database URL, without its password.
    pub source: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// Users imported by this run, the renamed included.
    pub users_imported: usize,
    /// Users of this run whose name was changed.
    pub renamed: Vec<Rename>,
    /// Users not imported.
    pub users_skipped: Vec<SkippedUser>,
    /// Users an earlier run imported.
    pub users_already_imported: usize,
    /// Messages imported by this run.
    pub messages_imported: usize,
    /// Messages this run read and did not import.
    pub messages_skipped: Vec<SkippedMessage>,
    /// Messages this run read that an earlier run imported.
    pub messages_already_imported: usize,
    /// The original message an earlier run imported last, after which this
    /// run went on.
    pub resumed_after: Option<i64>,
    /// With `--append`: how many messages written here `general` held
    /// after everything imported before; this run's messages follow them.
    pub appended_after: Option<i64>,
    pub elapsed: Duration,
}

/// The rename rule, as the report and the documentation state it.
pub fn rename_rule() -> &'static str {
    "characters other than ASCII letters, digits, '_' and '-' become '_'; \
     names are cut to 50 characters; a name with no letter or digit left becomes \
     user-<original id>; names shorter than 3 characters are padded with '_'; \
     a name that is taken, ignoring case, gets -2, -3, ... (valid names that are \
     not taken are kept first, by original id, then the others are renamed, by \
     original id)"
}

/// The author of the original's messages, by original user id.
enum Author {
    /// Imported (now or earlier); no id in a dry run.
    Here {
        id: Option<UserId>,
        username: Username,
    },
    Skipped,
}

/// Imports the original's database named by `options` into the database
/// of `settings`, calling `on_batch` after each batch of messages.
///
/// Refuses to start when `general` holds messages written here after
/// everything imported so far, unless `options.append`: imported messages
/// would come after them, out of the original's order.
pub async fn import_original(
    settings: &Settings,
    options: &ImportOptions,
    mut on_batch: impl FnMut(&ImportProgress),
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let source_name = redacted_url(&options.from);
    let store = open_store_with(settings, secrets::key_ring(settings)?).await?;
    let mut source = OriginalDatabase::open(&options.from)
        .await
        .with_context(|| format!("could not open the original's database {source_name}"))?;

    let state = store
        .import_state()
        .await
        .context("could not read what was imported before")?;
    let written_here = state.messages_after_import();
    if written_here > 0 && !options.append {
        bail!(
            "general already holds {written_here} messages written on this server after \
             everything imported so far; the imported messages would come after them. \
             Import first and then open the server to users, or give --append to put them \
             after the existing ones"
        );
    }

    let mut report = ImportReport {
        source: source_name,
        dry_run: options.dry_run,
        users_imported: 0,
        renamed: Vec::new(),
        users_skipped: Vec::new(),
        users_already_imported: 0,
        messages_imported: 0,
        messages_skipped: Vec::new(),
        messages_already_imported: 0,
        resumed_after: None,
        appended_after: (written_here > 0).then_some(written_here),
        elapsed: Duration::ZERO,
    };

    let original_keys = KeyRing::new(options.original_key.clone(), Vec::new());
    check_key(&mut source, &original_keys).await?;
    let authors = import_users(&store, &mut source, options, &mut report).await?;

    let total = source
        .message_count()
        .await
        .context("could not count the original's messages")?;
    let without_time = source
        .messages_without_time()
        .await
        .context("could not read the original's messages")?;
    report
        .messages_skipped
        .extend(without_time.into_iter().map(|original_id| SkippedMessage {
            original_id,
            reason: SkipReason::NoTime,
        }));

    let mut position = None;
    if let Some(last) = state.last_imported {
        position = source
            .position_of(last.original_id)
            .await
            .context("could not read the original's messages")?;
        // Gone from the original: read it all again; the record of what
        // was imported keeps anything from coming twice.
        if position.is_some() {
            report.resumed_after = Some(last.original_id);
        }
    }

    let mut read = 0;
    loop {
        let page = source
            .messages_after(position.as_ref(), options.batch_size)
            .await
            .context("could not read the original's messages")?;
        let Some(last) = page.last() else {
            break;
        };
        position = Some(last.position.clone());
        read += page.len();
        let ids: Vec<i64> = page.iter().map(|message| message.id).collect();
        let already: HashSet<i64> = store
            .already_imported(&ids)
            .await
            .context("could not read what was imported before")?
            .into_iter()
            .collect();

        let mut batch = Vec::with_capacity(page.len());
        let mut would_import = 0;
        for message in page {
            if already.contains(&message.id) {
                report.messages_already_imported += 1;
                continue;
            }
            let skip = |reason| SkippedMessage {
                original_id: message.id,
                reason,
            };
            let (user_id, username) = match authors.get(&message.user_id) {
                Some(Author::Here { id, username }) => (*id, username),
                Some(Author::Skipped) => {
                    let reason = SkipReason::AuthorSkipped(message.user_id);
                    report.messages_skipped.push(skip(reason));
                    continue;
                }
                None => {
                    let reason = SkipReason::UnknownAuthor(message.user_id);
                    report.messages_skipped.push(skip(reason));
                    continue;
                }
            };
            let Some(created_at) = message.created_at else {
                report
                    .messages_skipped
                    .push(skip(SkipReason::UnreadableTime));
                continue;
            };
            let Ok(text) = original_keys.decrypt(&message.content) else {
                report
                    .messages_skipped
                    .push(skip(SkipReason::Undecryptable));
                continue;
            };
            // The original had no length limit; ours is for new messages.
            let chars = text.chars().count().max(1);
            let Ok(body) = MessageBody::parse_with_limit(text, chars) else {
                report.messages_skipped.push(skip(SkipReason::Blank));
                continue;
            };
            match user_id {
                Some(user_id) => batch.push(ImportMessage {
                    original_id: message.id,
                    user_id,
                    username: username.clone(),
                    body,
                    created_at,
                }),
                None => would_import += 1,
            }
        }
        let count = batch.len() + would_import;
        if !options.dry_run {
            store
                .import_messages(state.general, batch)
                .await
                .context("importing a batch of messages failed; run the import again to resume")?;
        }
        report.messages_imported += count;
        on_batch(&ImportProgress {
            total,
            read,
            imported: report.messages_imported,
            skipped: report.messages_skipped.len(),
            elapsed: started.elapsed(),
        });
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Fails when the original has messages and its key decrypts none of the
/// first [`KEY_PROBE`]: the key given is not the original's, and nothing
/// should be imported with it.
async fn check_key(source: &mut OriginalDatabase, keys: &KeyRing) -> anyhow::Result<()> {
    let first = source
        .messages_after(None, KEY_PROBE)
        .await
        .context("could not read the original's messages")?;
    if !first.is_empty() && !first.iter().any(|m| keys.decrypt(&m.content).is_ok()) {
        bail!(
            "the key given decrypts none of the original's first {} messages: check the \
             variable named by --passphrase-env or --key-env (nothing was imported)",
            first.len()
        );
    }
    Ok(())
}

/// Imports the users not imported yet and returns every author, by
/// original id.
async fn import_users(
    store: &Store,
    source: &mut OriginalDatabase,
    options: &ImportOptions,
    report: &mut ImportReport,
) -> anyhow::Result<HashMap<i64, Author>> {
    let originals = source
        .users()
        .await
        .context("could not read the original's users")?;
    let earlier = store
        .imported_users()
        .await
        .context("could not read what was imported before")?;
    let mut taken: HashSet<String> = store
        .usernames()
        .await
        .context("could not read this server's users")?
        .iter()
        .map(Username::normalized)
        .collect();

    let mut authors: HashMap<i64, Author> = HashMap::with_capacity(originals.len());
    for user in earlier {
        authors.insert(
            user.original_id,
            Author::Here {
                id: Some(user.user_id),
                username: user.username,
            },
        );
    }
    report.users_already_imported = authors.len();

    let mut pending: Vec<&OriginalUser> = Vec::new();
    for user in &originals {
        if authors.contains_key(&user.id) {
            continue;
        }
        if PasswordHasher::can_verify(&user.hashed_password) {
            pending.push(user);
        } else {
            authors.insert(user.id, Author::Skipped);
            report.users_skipped.push(SkippedUser {
                original_id: user.id,
                username: user.username.clone(),
                reason: "its password hash is not a bcrypt hash, so no password would \
                         sign in as it; its messages are skipped too"
                    .to_owned(),
            });
        }
    }

    let names = assign_names(&pending, &mut taken)?;
    let mut planned = Vec::with_capacity(pending.len());
    for (user, (username, why)) in pending.iter().zip(names) {
        if let Some(reason) = why {
            report.renamed.push(Rename {
                original_id: user.id,
                from: user.username.clone(),
                to: username.clone(),
                reason,
            });
        }
        planned.push(ImportUser {
            original_id: user.id,
            original_username: user.username.clone(),
            username,
            password_hash: user.hashed_password.clone(),
            created_at: user.created_at,
        });
    }

    let batch_size = usize::try_from(options.batch_size).unwrap_or(1).max(1);
    for chunk in planned.chunks(batch_size) {
        let ids = if options.dry_run {
            vec![None; chunk.len()]
        } else {
            store
                .import_users(chunk)
                .await
                .context("importing users failed; run the import again to resume")?
                .into_iter()
                .map(Some)
                .collect()
        };
        for (user, id) in chunk.iter().zip(ids) {
            authors.insert(
                user.original_id,
                Author::Here {
                    id,
                    username: user.username.clone(),
                },
            );
        }
        report.users_imported += chunk.len();
    }
    Ok(authors)
}

/// Each user's name here and, when it is not the original one, why. See
/// [`rename_rule`]: a valid name that is free is kept, in original id
/// order; then the others are conformed and, when taken, suffixed.
fn assign_names(
    users: &[&OriginalUser],
    taken: &mut HashSet<String>,
) -> anyhow::Result<Vec<(Username, Option<String>)>> {
    let mut names: Vec<Option<(Username, Option<String>)>> = vec![None; users.len()];
    let mut refused: Vec<(usize, Result<Username, DomainError>)> = Vec::new();
    for (index, user) in users.iter().enumerate() {
        match Username::parse(user.username.clone()) {
            Ok(name) if taken.insert(name.normalized()) => names[index] = Some((name, None)),
            other => refused.push((index, other)),
        }
    }
    for (index, parsed) in refused {
        let user = users[index];
        let fallback = Username::parse(format!("user-{}", user.id))
            .with_context(|| format!("original user {} has no usable id", user.id))?;
        let (candidate, mut reason) = match parsed {
            Ok(name) => (
                name,
                "the name is taken, ignoring case, by another user".to_owned(),
            ),
            Err(error) => (
                Username::conform(&user.username, &fallback),
                error.to_string(),
            ),
        };
        let mut name = candidate.clone();
        let mut suffix = 1;
        while !taken.insert(name.normalized()) {
            suffix += 1;
            name = candidate.with_suffix(suffix);
            if suffix == 2 && candidate.as_str() != user.username {
                reason.push_str(", and the conformed name is taken");
            }
        }
        names[index] = Some((name, Some(reason)));
    }
    names
        .into_iter()
        .map(|name| name.ok_or_else(|| anyhow!("a user was given no name")))
        .collect()
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "dry run: nothing was written; this is what an import from {} would do",
                self.source
            )?;
        } else {
            writeln!(f, "imported from {} into general", self.source)?;
        }
        writeln!(
            f,
            "users: {} imported ({} renamed), {} skipped, {} imported by an earlier run",
            self.users_imported,
            self.renamed.len(),
            self.users_skipped.len(),
            self.users_already_imported
        )?;
        if !self.renamed.is_empty() {
            writeln!(f, "renamed by this rule: {}", rename_rule())?;
        }
        for rename in &self.renamed {
            writeln!(
                f,
                "  renamed: user {} {:?} -> {:?} ({}); it signs in as {:?} with its old password",
                rename.original_id,
                rename.from,
                rename.to.as_str(),
                rename.reason,
                rename.to.as_str()
            )?;
        }
        for user in &self.users_skipped {
            writeln!(
                f,
                "  skipped: user {} {:?}: {}",
                user.original_id, user.username, user.reason
            )?;
        }
        writeln!(
            f,
            "messages: {} imported, {} skipped, {} imported by an earlier run",
            self.messages_imported,
            self.messages_skipped.len(),
            self.messages_already_imported
        )?;
        for message in self.messages_skipped.iter().take(SKIPPED_SHOWN) {
            writeln!(
                f,
                "  skipped: message {}: {}",
                message.original_id, message.reason
            )?;
        }
        if self.messages_skipped.len() > SKIPPED_SHOWN {
            writeln!(
                f,
                "  ... and {} more skipped messages",
                self.messages_skipped.len() - SKIPPED_SHOWN
            )?;
        }
        if let Some(original_id) = self.resumed_after {
            writeln!(
                f,
                "resumed after message {original_id}, the last one an earlier run imported \
                 (messages before it that an earlier run skipped were not read again)"
            )?;
        }
        if let Some(count) = self.appended_after {
            writeln!(
                f,
                "appended (--append): the imported messages come after the {count} messages \
                 general already held"
            )?;
        }
        let seconds = self.elapsed.as_secs_f64();
        writeln!(f, "took {seconds:.1} s")
    }
}

/// Shows an import's progress on standard error: one line redrawn in place
/// on a terminal, a plain line at most every second otherwise.
#[derive(Debug)]
pub struct ProgressPrinter {
    terminal: bool,
    last_line: Option<Instant>,
    drawn: bool,
}

impl Default for ProgressPrinter {
    fn default() -> Self {
        ProgressPrinter {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            drawn: false,
        }
    }
}

impl ProgressPrinter {
    /// Shows `progress`.
    pub fn update(&mut self, progress: &ImportProgress) {
        let line = format!(
            "{} of {} messages read, {} imported, {} skipped, {:.0} messages/s",
            progress.read,
            progress.total,
            progress.imported,
            progress.skipped,
            progress.rate()
        );
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a closed standard error does not stop
        // the import.
        if self.terminal {
            const WIDTH: usize = 30;
            let total = usize::try_from(progress.total).unwrap_or(0).max(1);
            let filled = (progress.read.min(total) * WIDTH) / total;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
            let _ = write!(err, "\r[{bar}] {line}\x1b[K");
            let _ = err.flush();
            self.drawn = true;
        } else if self
            .last_line
            .is_none_or(|last| last.elapsed() >= Duration::from_secs(1))
        {
            let _ = writeln!(err, "{line}");
            self.last_line = Some(Instant::now());
        }
    }

    /// Ends the redrawn line, if any.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}
