//! [`Secret`]: a password, token or key secret that no log, error or
//! `--print-config` line can show.
//!
//! One type for all of them (keystone passwords, application credential
//! secrets, OIDC access tokens, Keystone tokens, AMS tokens), so that a secret
//! read from a configuration file reaches the request that needs it without
//! being copied into a plain `String` on the way.

use std::fmt;

/// A secret string: `Debug` and `Display` print `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: only for the request that puts it on the wire (or
    /// for scrubbing it out of a server's answer), never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_printed() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?} {s} {:?}", Some(&s)), "**** **** Some(****)");
        assert_eq!(s.expose(), "s3cret");
    }
}
