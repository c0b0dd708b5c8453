//! `chat-server import-original`, from a database built exactly as the
//! original Python backend wrote it: bcrypt hashes made by passlib and
//! Fernet tokens made by Python's `cryptography`, committed as test vectors
//! in `fixtures/original.json` (made by `scripts/original-vectors.py`).
//! Every test runs with the original on SQLite into our SQLite, and with
//! the original on PostgreSQL into our PostgreSQL.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use chat_crypto::FernetKey;
use chat_domain::{MessageBody, RoomName, Username};
use chat_server::import::{ImportOptions, ImportReport, SkipReason, SkippedMessage};
use chat_server::{ImportProgress, Settings};
use chat_storage::testing::{
    Backend, OriginalMessageRow, OriginalUserRow, TestDatabase, write_original_database,
};
use chat_storage::{NewMessage, Store};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Runs each test once per backend, the original and ours on the same one.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let Some(env) = super::Env::new(super::Backend::Sqlite).await? else {
                        return Ok(());
                    };
                    super::$test(&env).await?;
                    env.cleanup().await;
                    Ok(())
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let Some(env) = super::Env::new(super::Backend::Postgres).await? else {
                        return Ok(());
                    };
                    super::$test(&env).await?;
                    env.cleanup().await;
                    Ok(())
                }
            )+
        }
    };
}

on_both_backends!(
    old_users_sign_in_with_their_passwords_and_read_every_message_in_order,
    a_second_run_imports_nothing,
    an_import_stopped_after_two_batches_and_run_again_ends_with_every_message_once,
    a_general_holding_messages_of_this_server_is_refused_unless_appended,
    a_dry_run_reports_the_import_and_writes_nothing,
    a_wrong_key_is_refused_before_anything_is_imported,
    users_without_a_bcrypt_hash_and_messages_without_a_time_are_reported_and_skipped,
    the_command_reads_the_key_from_the_named_variable_and_prints_no_secret,
    a_token_of_the_original_is_its_own_users_only_after_a_case_rename,
);

const FIXTURE: &str = include_str!("fixtures/original.json");

/// Each original user's name here: the rename rule applied to the
/// fixture's names (valid free names are kept first, by id; then the
/// others are renamed, by id).
const NAMES: [(i64, &str); 8] = [
    (1, "alice"),
    (2, "Bob"),
    // Taken by `Bob` ignoring case, and `bob-2` is taken by user 8.
    (3, "bob-3"),
    (4, "jo_"),
    (5, "_mile_dupont"),
    (6, "user-6"),
    (7, "dots_and_spaces__fifty_characters_in_all__01234567"),
    (8, "bob-2"),
];

/// The message that does not decrypt with the original's key.
const UNDECRYPTABLE: i64 = 4;

struct Fixture {
    passphrase: String,
    fernet_key: String,
    users: Vec<OriginalUserRow>,
    /// Each user's password, by id.
    passwords: Vec<(i64, String)>,
    messages: Vec<OriginalMessageRow>,
    /// Each message's text, by id; `None` for the undecryptable one.
    texts: Vec<(i64, Option<String>)>,
}

fn text_of(value: &Value, field: &str) -> Result<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("fixture: {field} is not a string in {value}"))
}

fn int_of(value: &Value, field: &str) -> Result<i64> {
    value[field]
        .as_i64()
        .ok_or_else(|| anyhow!("fixture: {field} is not an integer in {value}"))
}

fn array_of<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>> {
    value[field]
        .as_array()
        .ok_or_else(|| anyhow!("fixture: {field} is not an array"))
}

fn fixture() -> Result<Fixture> {
    let root: Value = serde_json::from_str(FIXTURE)?;
    let mut fixture = Fixture {
        passphrase: text_of(&root, "passphrase")?,
        fernet_key: text_of(&root, "fernet_key")?,
        users: Vec::new(),
        passwords: Vec::new(),
        messages: Vec::new(),
        texts: Vec::new(),
    };
    for user in array_of(&root, "users")? {
        let id = int_of(user, "id")?;
        fixture.users.push(OriginalUserRow {
            id,
            username: text_of(user, "username")?,
            hashed_password: text_of(user, "hashed_password")?,
            created_at: Some(text_of(user, "created_at")?),
        });
        fixture.passwords.push((id, text_of(user, "password")?));
    }
    for message in array_of(&root, "messages")? {
        let id = int_of(message, "id")?;
        fixture.messages.push(OriginalMessageRow {
            id,
            user_id: int_of(message, "user_id")?,
            content: text_of(message, "content")?,
            created_at: Some(text_of(message, "created_at")?),
        });
        fixture
            .texts
            .push((id, message["text"].as_str().map(str::to_owned)));
    }
    Ok(fixture)
}

/// A message as a reader of `general` sees it: author, text, time on the
/// wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    username: String,
    content: String,
    created_at: String,
}

/// The name user `id` has here.
fn name_of(id: i64) -> Result<&'static str> {
    NAMES
        .iter()
        .find(|(user, _)| *user == id)
        .map(|(_, name)| *name)
        .ok_or_else(|| anyhow!("no expected name for user {id}"))
}

impl Fixture {
    /// Every message that decrypts, in the original's (created_at, id)
    /// order, as `general` must show it after the import.
    fn expected(&self) -> Result<Vec<Seen>> {
        let mut rows: Vec<(&OriginalMessageRow, &str)> = Vec::new();
        for message in &self.messages {
            let text = self
                .texts
                .iter()
                .find(|(id, _)| *id == message.id)
                .and_then(|(_, text)| text.as_deref());
            if let Some(text) = text {
                rows.push((message, text));
            }
        }
        rows.sort_by(|(a, _), (b, _)| (&a.created_at, a.id).cmp(&(&b.created_at, b.id)));
        rows.into_iter()
            .map(|(message, text)| {
                let created_at = message
                    .created_at
                    .as_deref()
                    .ok_or_else(|| anyhow!("message {} has no time", message.id))?;
                Ok(Seen {
                    username: name_of(message.user_id)?.to_owned(),
                    content: text.to_owned(),
                    // The wire's form of the same time.
                    created_at: format!("{}+00:00", created_at.replacen(' ', "T", 1)),
                })
            })
            .collect()
    }

    fn password_of(&self, id: i64) -> Result<&str> {
        self.passwords
            .iter()
            .find(|(user, _)| *user == id)
            .map(|(_, password)| password.as_str())
            .ok_or_else(|| anyhow!("no password for user {id}"))
    }
}

/// The original's database, ours, and settings for a server on ours.
struct Env {
    backend: Backend,
    source: TestDatabase,
    target: TestDatabase,
    dir: PathBuf,
    settings: Settings,
    fixture: Fixture,
}

impl Env {
    async fn new(backend: Backend) -> Result<Option<Env>> {
        let (source, target) = match backend {
            Backend::Sqlite => (TestDatabase::sqlite(), TestDatabase::sqlite()),
            Backend::Postgres => {
                let Some(source) = TestDatabase::postgres().await else {
                    return Ok(None);
                };
                let Some(target) = TestDatabase::postgres().await else {
                    return Ok(None);
                };
                (source, target)
            }
        };
        let dir = crate::temp_dir("import");
        let mut settings = crate::settings(dir.clone());
        settings.database_url = Some(target.url().to_owned());
        settings.encryption_key = Some(SecretString::from(FernetKey::generate().to_base64()));
        settings.secret_key = Some(SecretString::from(
            chat_server::secrets::generate_jwt_secret(),
        ));
        Ok(Some(Env {
            backend,
            source,
            target,
            dir,
            settings,
            fixture: fixture()?,
        }))
    }

    /// Writes the fixture, and `more` rows, into the original's database.
    async fn write_original(
        &self,
        more_users: &[OriginalUserRow],
        more_messages: &[OriginalMessageRow],
    ) -> Result<()> {
        let mut users = self.fixture.users.clone();
        users.extend_from_slice(more_users);
        let mut messages = self.fixture.messages.clone();
        messages.extend_from_slice(more_messages);
        write_original_database(&self.source, &users, &messages).await?;
        Ok(())
    }

    /// Imports with the original's passphrase, 4 messages per batch.
    fn options(&self) -> Result<ImportOptions> {
        Ok(ImportOptions {
            from: self.source.url().to_owned(),
            original_key: FernetKey::parse(&format!("passphrase:{}", self.fixture.passphrase))?,
            dry_run: false,
            append: false,
            batch_size: 4,
        })
    }

    async fn import(&self, options: &ImportOptions) -> Result<ImportReport> {
        chat_server::import_original(&self.settings, options, |_| {}).await
    }

    async fn store(&self) -> Result<Store> {
        chat_server::open_store(&self.settings).await
    }

    async fn cleanup(self) {
        self.source.drop_database().await;
        self.target.drop_database().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Signs in over HTTP and returns the access token.
async fn sign_in(http: &reqwest::Client, base: &str, name: &str, password: &str) -> Result<String> {
    let response = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    match body["access_token"].as_str() {
        Some(token) => Ok(token.to_owned()),
        None => bail!("{name} could not sign in ({status}): {body}"),
    }
}

fn seen(item: &Value) -> Result<Seen> {
    Ok(Seen {
        username: text_of(item, "username")?,
        content: text_of(item, "content")?,
        created_at: text_of(item, "created_at")?,
    })
}

/// `general` through the seed's route and through the rooms route; the
/// latter's seqs must be 1, 2, 3...
async fn general_over_http(http: &reqwest::Client, base: &str, token: &str) -> Result<Vec<Seen>> {
    let seed: Value = http
        .get(format!("{base}/api/chat/messages?limit=100"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let seed = seed
        .as_array()
        .ok_or_else(|| anyhow!("/api/chat/messages answered {seed}"))?
        .iter()
        .map(seen)
        .collect::<Result<Vec<Seen>>>()?;
    let page: Value = http
        .get(format!("{base}/api/rooms/general/messages?limit=100"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let items = array_of(&page, "messages")?;
    let seqs: Vec<i64> = items
        .iter()
        .map(|item| int_of(item, "seq"))
        .collect::<Result<_>>()?;
    let expected_seqs: Vec<i64> = (1..=items.len() as i64).collect();
    ensure!(seqs == expected_seqs, "seqs of general: {seqs:?}");
    let rooms = items.iter().map(seen).collect::<Result<Vec<Seen>>>()?;
    ensure!(
        seed == rooms,
        "the two routes disagree:\n{seed:#?}\n{rooms:#?}"
    );
    Ok(seed)
}

/// `general` as the store reads it.
async fn general_in_store(store: &Store) -> Result<Vec<Seen>> {
    let general = store
        .room_by_name(&RoomName::general())
        .await?
        .context("no general room")?;
    store
        .latest(general.id, 1_000)
        .await?
        .into_iter()
        .map(|message| {
            Ok(Seen {
                username: message.username.into_string(),
                content: message.content.context("a message does not decrypt")?,
                created_at: chat_protocol_time(message.created_at),
            })
        })
        .collect()
}

/// The wire's form of a time: RFC 3339, six digits, `+00:00`.
fn chat_protocol_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

async fn old_users_sign_in_with_their_passwords_and_read_every_message_in_order(
    env: &Env,
) -> Result<()> {
    env.write_original(&[], &[]).await?;
    let report = env.import(&env.options()?).await?;

    assert_eq!(report.users_imported, 8, "{report}");
    assert!(report.users_skipped.is_empty(), "{report}");
    let renamed: Vec<(i64, &str, &str)> = report
        .renamed
        .iter()
        .map(|rename| (rename.original_id, rename.from.as_str(), rename.to.as_str()))
        .collect();
    assert_eq!(
        renamed,
        [
            (3, "bob", "bob-3"),
            (4, "jo", "jo_"),
            (5, "émile dupont", "_mile_dupont"),
            (6, "李雷", "user-6"),
            (
                7,
                "dots.and spaces, fifty characters in all: 01234567",
                "dots_and_spaces__fifty_characters_in_all__01234567"
            ),
        ],
        "{report}"
    );
    assert_eq!(report.messages_imported, 10, "{report}");
    assert_eq!(
        report.messages_skipped,
        [SkippedMessage {
            original_id: UNDECRYPTABLE,
            reason: SkipReason::Undecryptable,
        }]
    );
    let printed = report.to_string();
    for line in [
        "users: 8 imported (5 renamed), 0 skipped, 0 imported by an earlier run",
        "renamed: user 3 \"bob\" -> \"bob-3\"",
        "messages: 10 imported, 1 skipped, 0 imported by an earlier run",
        "skipped: message 4: it does not decrypt with the original's key",
    ] {
        assert!(printed.contains(line), "{line:?} not in:\n{printed}");
    }

    let (base, stop, task) = crate::serve(&env.settings).await?;
    let http = reqwest::Client::new();
    let expected = env.fixture.expected()?;
    // An unchanged name and a renamed one, each with its old password.
    for id in [1, 3] {
        let token = sign_in(&http, &base, name_of(id)?, env.fixture.password_of(id)?).await?;
        assert_eq!(general_over_http(&http, &base, &token).await?, expected);
    }
    let refused = sign_in(&http, &base, "alice", "not-her-password").await;
    assert!(refused.is_err(), "a wrong password signed in");
    crate::stop_server(stop, task).await?;
    Ok(())
}

async fn a_second_run_imports_nothing(env: &Env) -> Result<()> {
    env.write_original(&[], &[]).await?;
    env.import(&env.options()?).await?;
    let again = env.import(&env.options()?).await?;
    assert_eq!(again.users_imported, 0, "{again}");
    assert_eq!(again.users_already_imported, 8, "{again}");
    assert_eq!(again.messages_imported, 0, "{again}");
    // The newest message of the original, which the first run imported.
    assert_eq!(again.resumed_after, Some(11), "{again}");
    assert_eq!(
        general_in_store(&env.store().await?).await?,
        env.fixture.expected()?
    );
    Ok(())
}

async fn an_import_stopped_after_two_batches_and_run_again_ends_with_every_message_once(
    env: &Env,
) -> Result<()> {
    env.write_original(&[], &[]).await?;
    let mut options = env.options()?;
    options.batch_size = 2;
    // The import is dropped at its next wait after its second batch
    // committed, wherever it is, as a crash would stop it.
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut batches = 0;
    let on_batch = |_: &ImportProgress| {
        batches += 1;
        if batches == 2 {
            stop.notify_one();
        }
    };
    tokio::select! {
        result = chat_server::import_original(&env.settings, &options, on_batch) => {
            bail!("the import ended before it was stopped: {result:?}");
        }
        () = stop.notified() => {}
    }
    let store = env.store().await?;
    let state = store.import_state().await?;
    assert!(
        (4..10).contains(&state.imported_messages),
        "{} messages imported before the stop",
        state.imported_messages
    );

    let rest = env.import(&options).await?;
    assert_eq!(
        rest.messages_imported as i64,
        10 - state.imported_messages,
        "{rest}"
    );
    assert_eq!(general_in_store(&store).await?, env.fixture.expected()?);
    Ok(())
}

async fn a_general_holding_messages_of_this_server_is_refused_unless_appended(
    env: &Env,
) -> Result<()> {
    env.write_original(&[], &[]).await?;
    // Someone registered here as `Alice` and wrote in `general` first.
    let store = env.store().await?;
    let local = store
        .create_user(&Username::parse("Alice")?, "$2b$12$not-a-real-hash")
        .await?;
    let general = store.import_state().await?.general;
    store
        .append_messages(vec![NewMessage {
            room_id: general,
            user_id: local.id,
            username: local.username.clone(),
            body: MessageBody::parse("written here before the import")?,
            client_id: None,
            reply_to: None,
            mls: false,
        }])
        .await?;

    let refused = env.import(&env.options()?).await;
    let error = format!("{:#}", refused.err().context("the import was not refused")?);
    assert!(error.contains("--append"), "{error}");
    assert_eq!(store.import_state().await?.imported_messages, 0);
    assert_eq!(store.usernames().await?.len(), 1, "users were imported");

    let mut options = env.options()?;
    options.append = true;
    let report = env.import(&options).await?;
    assert_eq!(report.appended_after, Some(1), "{report}");
    assert!(
        report.to_string().contains("appended (--append)"),
        "{report}"
    );
    // The original's `alice` is the same name as `Alice`, ignoring case.
    assert!(
        report
            .renamed
            .iter()
            .any(|rename| rename.original_id == 1 && rename.to.as_str() == "alice-2"),
        "{report}"
    );
    let seen = general_in_store(&store).await?;
    assert_eq!(seen[0].content, "written here before the import");
    let mut expected = env.fixture.expected()?;
    for message in &mut expected {
        if message.username == "alice" {
            message.username = "alice-2".to_owned();
        }
    }
    assert_eq!(seen[1..], expected[..]);

    // The appended import is done: running it again, even without
    // --append, resumes after it and imports nothing.
    let again = env.import(&env.options()?).await?;
    assert_eq!(again.messages_imported, 0, "{again}");
    Ok(())
}

async fn a_dry_run_reports_the_import_and_writes_nothing(env: &Env) -> Result<()> {
    env.write_original(&[], &[]).await?;
    let mut options = env.options()?;
    options.dry_run = true;
    let report = env.import(&options).await?;
    assert_eq!(report.users_imported, 8, "{report}");
    assert_eq!(report.renamed.len(), 5, "{report}");
    assert_eq!(report.messages_imported, 10, "{report}");
    assert!(
        report
            .to_string()
            .starts_with("dry run: nothing was written")
    );
    let store = env.store().await?;
    assert!(store.usernames().await?.is_empty());
    let state = store.import_state().await?;
    assert_eq!((state.general_last_seq, state.imported_messages), (0, 0));
    Ok(())
}

async fn a_wrong_key_is_refused_before_anything_is_imported(env: &Env) -> Result<()> {
    env.write_original(&[], &[]).await?;
    let mut options = env.options()?;
    options.original_key = FernetKey::parse("passphrase:not the original's passphrase")?;
    let refused = env.import(&options).await;
    let error = format!("{:#}", refused.err().context("a wrong key was accepted")?);
    assert!(error.contains("decrypts none"), "{error}");
    let store = env.store().await?;
    assert!(store.usernames().await?.is_empty(), "users were imported");
    assert_eq!(store.import_state().await?.imported_messages, 0);
    Ok(())
}

async fn users_without_a_bcrypt_hash_and_messages_without_a_time_are_reported_and_skipped(
    env: &Env,
) -> Result<()> {
    let key = FernetKey::parse(&env.fixture.fernet_key)?;
    let token = chat_crypto::KeyRing::new(key, Vec::new())
        .encrypt("by a user who cannot sign in")
        .token;
    let carol = OriginalUserRow {
        id: 9,
        username: "carol".to_owned(),
        hashed_password: "not a bcrypt hash".to_owned(),
        created_at: None,
    };
    let messages = [
        OriginalMessageRow {
            id: 12,
            user_id: 9,
            content: token.clone(),
            created_at: Some("2024-03-01 09:07:00.000000".to_owned()),
        },
        OriginalMessageRow {
            id: 13,
            user_id: 1,
            content: token,
            created_at: None,
        },
    ];
    env.write_original(&[carol], &messages).await?;
    let report = env.import(&env.options()?).await?;
    assert_eq!(report.users_imported, 8, "{report}");
    assert_eq!(
        report
            .users_skipped
            .iter()
            .map(|user| (user.original_id, user.username.as_str()))
            .collect::<Vec<_>>(),
        [(9, "carol")]
    );
    let mut skipped = report.messages_skipped.clone();
    skipped.sort_by_key(|message| message.original_id);
    assert_eq!(
        skipped,
        [
            SkippedMessage {
                original_id: UNDECRYPTABLE,
                reason: SkipReason::Undecryptable,
            },
            SkippedMessage {
                original_id: 12,
                reason: SkipReason::AuthorSkipped(9),
            },
            SkippedMessage {
                original_id: 13,
                reason: SkipReason::NoTime,
            },
        ],
        "{report}"
    );
    assert_eq!(
        general_in_store(&env.store().await?).await?,
        env.fixture.expected()?
    );
    Ok(())
}

/// The original's URL with a password in it (PostgreSQL's trust
/// authentication ignores it), to show that it is never printed.
fn with_password(url: &str) -> String {
    url.replacen("://postgres@", "://postgres:s3cret-in-url@", 1)
}

async fn the_command_reads_the_key_from_the_named_variable_and_prints_no_secret(
    env: &Env,
) -> Result<()> {
    env.write_original(&[], &[]).await?;
    let from = with_password(env.source.url());
    let encryption_key = FernetKey::generate().to_base64();
    let output = crate::run_binary(
        vec![
            ("CHAT_DATA_DIR", env.dir.display().to_string()),
            ("DATABASE_URL", env.target.url().to_owned()),
            ("ENCRYPTION_KEY", encryption_key.clone()),
            ("ORIGINAL_FERNET_KEY", env.fixture.fernet_key.clone()),
        ],
        [
            "import-original",
            "--from",
            &from,
            "--key-env",
            "ORIGINAL_FERNET_KEY",
            "--batch-size",
            "3",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "exit {}:\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("messages: 10 imported, 1 skipped"),
        "{stdout}"
    );
    // Not a terminal: plain progress lines.
    assert!(stderr.contains("of 11 messages read"), "{stderr}");
    for secret in [
        env.fixture.fernet_key.as_str(),
        encryption_key.as_str(),
        "s3cret-in-url",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} was printed:\n{stdout}\n{stderr}"
        );
    }
    if env.backend == Backend::Postgres {
        assert!(stdout.contains("postgres:***@"), "{stdout}");
    }

    // Neither or both key flags is a usage error.
    let both = crate::run_binary(
        Vec::new(),
        [
            "import-original",
            "--from",
            &from,
            "--key-env",
            "A",
            "--passphrase-env",
            "B",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await?;
    assert!(!both.status.success());
    Ok(())
}

async fn a_token_of_the_original_is_its_own_users_only_after_a_case_rename(
    env: &Env,
) -> Result<()> {
    use secrecy::ExposeSecret;

    env.write_original(&[], &[]).await?;
    env.import(&env.options()?).await?;
    let mut settings = env.settings.clone();
    settings.accept_legacy_tokens = true;
    let secret = settings
        .secret_key
        .as_ref()
        .context("the test sets SECRET_KEY")?
        .expose_secret()
        .to_owned();
    // What the original issued: HS256, `sub` and `exp` only.
    let token_of = |name: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": name, "exp": chrono::Utc::now().timestamp() + 600}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
    };
    let (base, stop, task) = crate::serve(&settings).await?;
    let http = reqwest::Client::new();
    let status_with = |token: String| {
        let http = http.clone();
        let url = format!("{base}/api/chat/messages?token={token}");
        async move { Ok::<_, anyhow::Error>(http.get(url).send().await?.status().as_u16()) }
    };
    // `Bob` kept the name; the original's `bob` is `bob-3` now, and its
    // old token must not sign in as `Bob`.
    assert_eq!(status_with(token_of("Bob")?).await?, 200);
    assert_eq!(status_with(token_of("bob")?).await?, 401);
    assert_eq!(status_with(token_of("alice")?).await?, 200);
    crate::stop_server(stop, task).await?;
    Ok(())
}
