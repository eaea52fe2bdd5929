//! Users and the SASL mechanisms clients log in with (PLAIN, AMQPLAIN).
//!
//! Passwords are kept only as RabbitMQ's `rabbit_password_hashing_sha256` hashes: a 4-byte
//! salt followed by SHA-256(salt ++ password), which is also the form definitions files carry,
//! so users can be moved between RabbitMQ and warren unchanged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use warren_amqp::FieldTable;

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; 4],
    digest: [u8; 32],
}

impl PasswordHash {
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 4];
        // A fixed salt only weakens the hash against precomputation; it never breaks login.
        let _ = getrandom::fill(&mut salt);
        Self::with_salt(salt, password)
    }

    fn with_salt(salt: [u8; 4], password: &str) -> Self {
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

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub tags: Vec<String>,
    /// Users that may log in only from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_only: bool,
}

/// Why a login was refused. The client is told only that it was refused, as RabbitMQ does;
/// the reason goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials(String),
    LoopbackOnly(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::BadCredentials(u) => write!(f, "invalid credentials for user '{u}'"),
            LoginError::LoopbackOnly(u) => write!(f, "user '{u}' can only connect via localhost"),
        }
    }
}

#[derive(Debug, Default)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
}

impl Users {
    pub fn add(&self, user: User) {
        if let Ok(mut m) = self.users.write() {
            m.insert(user.name.clone(), user);
        }
    }

    /// Every user, sorted by name.
    pub fn all(&self) -> Vec<User> {
        let mut v: Vec<User> = self
            .users
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn get(&self, name: &str) -> Option<User> {
        self.users.read().ok()?.get(name).cloned()
    }

    pub fn login(
        &self,
        name: &str,
        password: &str,
        from_loopback: bool,
    ) -> Result<User, LoginError> {
        let user = self
            .get(name)
            .filter(|u| u.password.verify(password))
            .ok_or_else(|| LoginError::BadCredentials(name.to_owned()))?;
        if user.loopback_only && !from_loopback {
            return Err(LoginError::LoopbackOnly(name.to_owned()));
        }
        Ok(user)
    }
}

/// The SASL mechanisms offered in `connection.start`, in RabbitMQ's order.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

/// Username and password out of a SASL response; `None` if the response is malformed.
pub fn credentials(mechanism: &str, response: &Bytes) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => parse_plain(response),
        "AMQPLAIN" => parse_amqplain(response),
        _ => None,
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((
        String::from_utf8(user.to_vec()).ok()?,
        String::from_utf8(pass.to_vec()).ok()?,
    ))
}

/// AMQPLAIN: a field table body (no length prefix) with LOGIN and PASSWORD.
fn parse_amqplain(response: &Bytes) -> Option<(String, String)> {
    let table = FieldTable::decode(response.clone()).ok()?;
    let text =
        |k: &str| -> Option<String> { String::from_utf8(table.get(k)?.as_bytes()?.to_vec()).ok() };
    Some((text("LOGIN")?, text("PASSWORD")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use warren_amqp::FieldValue;

    #[test]
    fn hash_verifies_and_roundtrips_through_rabbit_form() {
        let h = PasswordHash::new("s3cret");
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cre"));
        let again = PasswordHash::from_rabbit_string(&h.to_rabbit_string()).unwrap();
        assert!(again.verify("s3cret"));
    }

    #[test]
    fn known_rabbitmq_hash_verifies() {
        // salt 908D C60A, password "test12", hash as in RabbitMQ's password hashing docs.
        let h = PasswordHash::with_salt([0x90, 0x8d, 0xc6, 0x0a], "test12");
        let s = h.to_rabbit_string();
        assert_eq!(s, "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
    }

    #[test]
    fn plain_and_amqplain_parse() {
        assert_eq!(
            credentials("PLAIN", &Bytes::from_static(b"\0guest\0pw")),
            Some(("guest".into(), "pw".into()))
        );
        assert_eq!(credentials("PLAIN", &Bytes::from_static(b"guest")), None);
        let t = FieldTable(vec![
            ("LOGIN".into(), FieldValue::from("bob")),
            ("PASSWORD".into(), FieldValue::from("pw")),
        ]);
        let mut buf = BytesMut::new();
        t.encode(&mut buf);
        let body = buf.freeze().slice(4..);
        assert_eq!(
            credentials("AMQPLAIN", &body),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(credentials("EXTERNAL", &body), None);
    }

    #[test]
    fn loopback_only_user_is_refused_from_elsewhere() {
        let users = Users::default();
        users.add(User {
            name: "guest".into(),
            password: PasswordHash::new("guest"),
            tags: vec![],
            loopback_only: true,
        });
        assert!(users.login("guest", "guest", true).is_ok());
        assert_eq!(
            users.login("guest", "guest", false).unwrap_err(),
            LoginError::LoopbackOnly("guest".into())
        );
        assert_eq!(
            users.login("guest", "nope", true).unwrap_err(),
            LoginError::BadCredentials("guest".into())
        );
    }
}
