//! Secrets at rest: AES-256-GCM under a master key. Every ciphertext names
//! the key that sealed it, so keys rotate: new secrets use the current key,
//! old ones stay readable while their key is listed in `previous_master_keys`,
//! and [`MasterKeys::needs_rotation`] finds what to re-seal.
//!
//! Layout: `1` (format) · key-id length · key id · 12-byte nonce · ciphertext
//! and tag. The key id is the first 8 bytes of the key's SHA-256, in hex. The
//! caller's context (e.g. tenant and datasource id) is authenticated too, so
//! a ciphertext moved to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{ErrorCode, PulseError};

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key: {0}")]
    BadKey(String),
    #[error("secret was sealed with master key '{0}', which is not configured; add it to previous_master_keys")]
    UnknownKey(String),
    #[error("secret does not open: it was changed, or belongs to another record")]
    Tampered,
    #[error("secret is not in a format this build reads")]
    Format,
}

impl SecretError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadKey(_) | Self::UnknownKey(_) => ErrorCode::FailedPrecondition,
            Self::Tampered | Self::Format => ErrorCode::Internal,
        }
    }
}

struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = hex::decode(text).map_err(|_| {
            SecretError::BadKey("must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`".into())
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            SecretError::BadKey("must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`".into())
        })?;
        let id = hex::encode(&Sha256::digest(key)[..8]);
        Ok(Self { id, cipher: Aes256Gcm::new(&key.into()) })
    }
}

/// The current master key and the previous ones still accepted for reading.
pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids only: key material never reaches a log.
        let previous: Vec<&str> = self.previous.iter().map(|k| k.id.as_str()).collect();
        write!(f, "MasterKeys {{ current: {}, previous: {previous:?} }}", self.current.id)
    }
}

impl MasterKeys {
    pub fn new(current: &str, previous: &[String]) -> Result<Self, SecretError> {
        Ok(Self {
            current: MasterKey::parse(current)?,
            previous: previous.iter().map(|k| MasterKey::parse(k)).collect::<Result<_, _>>()?,
        })
    }

    /// `master_key` from the configuration; without one, the embedded
    /// default generates `state_dir/master.key`, and PostgreSQL deployments
    /// (many processes that must share one key) are refused.
    pub fn from_config(config: &Config) -> Result<Self, PulseError> {
        let current = match &config.master_key {
            Some(k) if !k.is_empty() => k.clone(),
            _ if config.database_url.is_some() => {
                return Err(PulseError::Config(
                    "master_key is required with a database_url: set PULSE_MASTER_KEY to 64 hex characters \
                     (`openssl rand -hex 32`), the same in every process"
                        .into(),
                ));
            }
            _ => crate::auth::load_or_create_secret(&config.state_dir.join("master.key"), || {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                hex::encode(key)
            })?,
        };
        Self::new(&current, &config.previous_master_keys).map_err(|e| PulseError::Config(e.to_string()))
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext`, binding it to `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let id = self.current.id.as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + sealed.len());
        out.push(FORMAT);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed secret with the key it names and the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (id, nonce, body) = split(sealed)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_string()))?;
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: context })
            .map_err(|_| SecretError::Tampered)
    }

    /// True when `sealed` was made with a key other than the current one.
    pub fn needs_rotation(&self, sealed: &[u8]) -> Result<bool, SecretError> {
        Ok(split(sealed)?.0 != self.current.id)
    }
}

fn split(sealed: &[u8]) -> Result<(&str, &[u8], &[u8]), SecretError> {
    let (&format, rest) = sealed.split_first().ok_or(SecretError::Format)?;
    let (&id_len, rest) = rest.split_first().ok_or(SecretError::Format)?;
    if format != FORMAT || rest.len() < id_len as usize + NONCE_LEN + 16 {
        return Err(SecretError::Format);
    }
    let (id, rest) = rest.split_at(id_len as usize);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok((std::str::from_utf8(id).map_err(|_| SecretError::Format)?, nonce, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0001020304050607080900010203040506070809000102030405060708090001";
    const K2: &str = "f001020304050607080900010203040506070809000102030405060708090001";

    #[test]
    fn seals_and_opens_with_context() {
        let keys = MasterKeys::new(K1, &[]).unwrap();
        let sealed = keys.seal(b"postgres://app:s3cret@db/prod", b"ten_a/dsrc_1");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"), "plaintext must not show");
        assert_eq!(keys.open(&sealed, b"ten_a/dsrc_1").unwrap(), b"postgres://app:s3cret@db/prod");
        // Same plaintext, fresh nonce: different ciphertexts.
        assert_ne!(sealed, keys.seal(b"postgres://app:s3cret@db/prod", b"ten_a/dsrc_1"));
        // Another row's context, or a flipped bit, does not open.
        assert!(matches!(keys.open(&sealed, b"ten_b/dsrc_1"), Err(SecretError::Tampered)));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(keys.open(&flipped, b"ten_a/dsrc_1"), Err(SecretError::Tampered)));
        assert!(matches!(keys.open(b"\x01", b""), Err(SecretError::Format)));
    }

    #[test]
    fn keys_rotate() {
        let old = MasterKeys::new(K1, &[]).unwrap();
        let sealed = old.seal(b"secret", b"ctx");
        let rotated = MasterKeys::new(K2, &[K1.to_string()]).unwrap();
        assert_eq!(rotated.open(&sealed, b"ctx").unwrap(), b"secret");
        assert!(rotated.needs_rotation(&sealed).unwrap());
        let resealed = rotated.seal(b"secret", b"ctx");
        assert!(!rotated.needs_rotation(&resealed).unwrap());
        // Dropping the old key makes its secrets unreadable, and says which key.
        let only_new = MasterKeys::new(K2, &[]).unwrap();
        let err = only_new.open(&sealed, b"ctx").unwrap_err().to_string();
        assert!(err.contains(old.current_id()), "{err}");
        assert!(!format!("{rotated:?}").contains(K1), "Debug shows ids, not keys");
    }

    #[test]
    fn bad_keys_and_missing_keys_are_explained() {
        assert!(MasterKeys::new("short", &[]).unwrap_err().to_string().contains("64 hex"));
        let dir = tempfile::tempdir().unwrap();
        let embedded = Config { state_dir: dir.path().to_path_buf(), ..Config::default() };
        let a = MasterKeys::from_config(&embedded).unwrap();
        let b = MasterKeys::from_config(&embedded).unwrap();
        assert_eq!(a.current_id(), b.current_id(), "generated once, then read back");
        let shared = Config { database_url: Some("postgres://x".into()), ..embedded };
        let err = MasterKeys::from_config(&shared).unwrap_err().to_string();
        assert!(err.contains("PULSE_MASTER_KEY"), "{err}");
    }
}
