//! Passwords as RabbitMQ's `rabbit_password_hashing_sha256` keeps them: a 4-byte salt followed
//! by SHA-256(salt ++ password), base64-encoded in definitions. Users move between RabbitMQ and
//! warren unchanged, and no password is ever stored or replicated in the clear.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; 4],
    digest: [u8; 32],
}

impl PasswordHash {
    /// Hashes with a fresh random salt. Commands carry the hash, never the password, so this
    /// runs where the password arrives and the (deterministic) apply only copies the result.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 4];
        // A fixed salt only weakens the hash against precomputation; it never breaks login.
        let _ = getrandom::fill(&mut salt);
        Self::with_salt(salt, password)
    }

    pub fn with_salt(salt: [u8; 4], password: &str) -> Self {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h.finalize());
        PasswordHash { salt, digest }
    }

    pub fn verify(&self, password: &str) -> bool {
        let other = Self::with_salt(self.salt, password);
        // Constant time: the comparison must not reveal how many leading bytes matched.
        self.digest
            .iter()
            .zip(other.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The hash as RabbitMQ writes it in definitions: base64(salt ++ digest).
    pub fn to_rabbit_string(&self) -> String {
        let mut all = Vec::with_capacity(36);
        all.extend_from_slice(&self.salt);
        all.extend_from_slice(&self.digest);
        STANDARD.encode(all)
    }

    pub fn from_rabbit_string(s: &str) -> Option<Self> {
        let raw = STANDARD.decode(s).ok()?;
        if raw.len() != 36 {
            return None;
        }
        let mut salt = [0u8; 4];
        let mut digest = [0u8; 32];
        salt.copy_from_slice(&raw[..4]);
        digest.copy_from_slice(&raw[4..]);
        Some(PasswordHash { salt, digest })
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rabbit_string())
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PasswordHash::from_rabbit_string(&s)
            .ok_or_else(|| serde::de::Error::custom("not a salted SHA-256 password hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_roundtrips_through_rabbit_form() {
        let h = PasswordHash::new("s3cret");
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cre"));
        let again = PasswordHash::from_rabbit_string(&h.to_rabbit_string()).unwrap();
        assert!(again.verify("s3cret"));
        let json = serde_json::to_string(&h).unwrap();
        let back: PasswordHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<PasswordHash>("\"short\"").is_err());
    }

    #[test]
    fn known_rabbitmq_hash_verifies() {
        // salt 908D C60A, password "test12", hash as in RabbitMQ's password hashing docs.
        let h = PasswordHash::with_salt([0x90, 0x8d, 0xc6, 0x0a], "test12");
        assert_eq!(
            h.to_rabbit_string(),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
    }
}
