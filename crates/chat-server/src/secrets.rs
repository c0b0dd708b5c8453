//! The JWT secret and the Fernet keys: from the settings, or, in
//! development only, generated once and kept in the data directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use chat_crypto::{FernetKey, KeyRing, SearchKey, SearchKeys};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::settings::{Environment, Settings};

const SECRET_KEY_FILE: &str = "secret_key";
const ENCRYPTION_KEY_FILE: &str = "encryption_key";
const SEARCH_KEY_FILE: &str = "search_key";

/// A fresh JWT secret: 48 random bytes, url-safe base64.
pub fn generate_jwt_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWT signing secret.
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<SecretString> {
    if let Some(secret) = &settings.secret_key {
        return Ok(secret.clone());
    }
    if settings.environment == Environment::Production {
        bail!(
            "SECRET_KEY is required when CHAT_ENV=production (generate one with `chat-server gen-key`)"
        );
    }
    let secret = load_or_create(&settings.data_dir, SECRET_KEY_FILE, generate_jwt_secret)?;
    Ok(SecretString::from(secret))
}

/// The key ring that encrypts and decrypts messages.
pub fn key_ring(settings: &Settings) -> anyhow::Result<KeyRing> {
    let primary = match &settings.encryption_key {
        Some(key) => {
            FernetKey::parse(key.expose_secret()).context("ENCRYPTION_KEY is not valid")?
        }
        None if settings.environment == Environment::Production => {
            bail!(
                "ENCRYPTION_KEY is required when CHAT_ENV=production (generate one with `chat-server gen-key`)"
            );
        }
        None => {
            let text = load_or_create(&settings.data_dir, ENCRYPTION_KEY_FILE, || {
                FernetKey::generate().to_base64()
            })?;
            FernetKey::parse(&text).with_context(|| {
                format!(
                    "{} holds an invalid key",
                    settings.data_dir.join(ENCRYPTION_KEY_FILE).display()
                )
            })?
        }
    };
    Ok(KeyRing::new(primary, previous_keys(settings)?))
}

/// The keys of the search index: SEARCH_KEY (generated into the data
/// directory in development) and SEARCH_KEY_NEXT; none when CHAT_SEARCH
/// is off.
pub fn search_keys(settings: &Settings) -> anyhow::Result<Option<SearchKeys>> {
    if settings.search == crate::settings::Switch::Off {
        return Ok(None);
    }
    let current = match &settings.search_key {
        Some(key) => SearchKey::parse(key.expose_secret()).context("SEARCH_KEY is not valid")?,
        None if settings.environment == Environment::Production => {
            bail!(
                "SEARCH_KEY is required when CHAT_ENV=production (generate one with `chat-server gen-key`)"
            );
        }
        None => {
            let text = load_or_create(&settings.data_dir, SEARCH_KEY_FILE, || {
                SearchKey::generate().to_base64()
            })?;
            SearchKey::parse(&text).with_context(|| {
                format!(
                    "{} holds an invalid key",
                    settings.data_dir.join(SEARCH_KEY_FILE).display()
                )
            })?
        }
    };
    let next = settings
        .search_key_next
        .as_ref()
        .filter(|key| !key.expose_secret().trim().is_empty())
        .map(|key| SearchKey::parse(key.expose_secret()).context("SEARCH_KEY_NEXT is not valid"))
        .transpose()?;
    Ok(Some(SearchKeys::new(current, next)))
}

/// The keys of `ENCRYPTION_KEYS_PREVIOUS`, in the order given: entry 1
/// first. Empty entries are skipped and not counted.
pub fn previous_keys(settings: &Settings) -> anyhow::Result<Vec<FernetKey>> {
    match &settings.encryption_keys_previous {
        Some(list) => list
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, k)| {
                FernetKey::parse(k).with_context(|| {
                    format!("ENCRYPTION_KEYS_PREVIOUS entry {} is not valid", i + 1)
                })
            })
            .collect(),
        None => Ok(Vec::new()),
    }
}

/// The previous JWT secret, if one is set and not blank.
pub fn jwt_previous_secret(settings: &Settings) -> Option<&SecretString> {
    settings
        .secret_key_previous
        .as_ref()
        .filter(|secret| !secret.expose_secret().trim().is_empty())
}

/// Reads a secret from `dir/name`, or creates it there, readable by the
/// owner only, the first time.
fn load_or_create(
    dir: &Path,
    name: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let secret = generate();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "generated a new {name} and stored it in the data directory; set it explicitly in production"
    );
    Ok(secret)
}
