//! Logging in: the SASL mechanisms clients use (PLAIN, AMQPLAIN), checked against the users
//! of the topology (whose passwords are kept only hashed, see `warren_meta::password`).

use bytes::Bytes;
use warren_amqp::FieldTable;
use warren_meta::{Topology, User};

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

/// Checks a login against the users in the topology. `loopback_users` may log in only from a
/// loopback address (RabbitMQ's `loopback_users`, `guest` by default).
pub fn login(
    topology: &Topology,
    loopback_users: &[String],
    name: &str,
    password: &str,
    from_loopback: bool,
) -> Result<User, LoginError> {
    let user = topology
        .user(name)
        .filter(|u| u.password.verify(password))
        .ok_or_else(|| LoginError::BadCredentials(name.to_owned()))?;
    if !from_loopback && loopback_users.iter().any(|u| u == name) {
        return Err(LoginError::LoopbackOnly(name.to_owned()));
    }
    Ok(user.clone())
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
        let mut t = Topology::new();
        t.apply(&warren_meta::Command::AddUser {
            name: "guest".into(),
            password: warren_meta::PasswordHash::new("guest"),
            tags: vec![],
        })
        .unwrap();
        let loopback = ["guest".to_owned()];
        assert!(login(&t, &loopback, "guest", "guest", true).is_ok());
        assert_eq!(
            login(&t, &loopback, "guest", "guest", false).unwrap_err(),
            LoginError::LoopbackOnly("guest".into())
        );
        assert!(login(&t, &[], "guest", "guest", false).is_ok());
        assert_eq!(
            login(&t, &loopback, "guest", "nope", true).unwrap_err(),
            LoginError::BadCredentials("guest".into())
        );
        assert_eq!(
            login(&t, &loopback, "nobody", "guest", true).unwrap_err(),
            LoginError::BadCredentials("nobody".into())
        );
    }
}
