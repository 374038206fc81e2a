//! Prop references: where one prop's value comes from.
//!
//! ```toml
//! props.googleClientId = "vault:secret/oauth/google#client_id"   # SOURCE:PATH#KEY
//! props.json           = "aws:docspace/gcs-service-account"       # SOURCE:PATH (whole value)
//! props.dbPassword     = { source = "vault", path = "secret/db", key = "password" }
//! props.telegramBotName = { value = "acme_docs_bot" }             # a literal
//! props.telegramBotToken = "vault:secret/portals/{portal}/telegram#token"  # per portal
//! ```
//! SOURCE is split at the first `:` (paths and ARNs may contain more); KEY at the last `#`.

use std::fmt;

use crate::secret::{ExposeSecret, SecretString};

/// The `{portal}` placeholder, replaced by the portal's name.
pub const PORTAL_PLACEHOLDER: &str = "{portal}";

/// Where a prop's value comes from.
#[derive(Clone)]
pub enum PropRef {
    /// A value read from a source.
    Secret(SecretRef),
    /// A literal value from the config.
    Literal(SecretString),
}

impl fmt::Debug for PropRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropRef::Secret(r) => write!(f, "{r}"),
            PropRef::Literal(_) => f.write_str("{ value = **REDACTED** }"),
        }
    }
}

/// A reference into a source: `SOURCE:PATH#KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// Name of a `[sources.NAME]` block.
    pub source: String,
    /// Path in the store (may contain `{portal}` until expanded).
    pub path: String,
    /// A field of the secret; `None` = the whole value.
    pub key: Option<String>,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.path)?;
        if let Some(key) = &self.key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

impl SecretRef {
    /// Parses the short form `SOURCE:PATH[#KEY]`.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        // The text is not quoted back: a value without `:` is often a secret pasted
        // where a reference belongs, and errors never show secrets.
        let (source, rest) = text.split_once(':').ok_or_else(|| {
            "not a reference (no `:` after the source name): expected \"SOURCE:PATH#KEY\", \"SOURCE:PATH\" or, for a literal, { value = \"…\" }".to_string()
        })?;
        let (path, key) = match rest.rsplit_once('#') {
            Some((path, key)) => (path, Some(key)),
            None => (rest, None),
        };
        SecretRef::from_parts(source, path, key)
    }

    /// Builds a reference from the long form's parts, checking each.
    pub fn from_parts(source: &str, path: &str, key: Option<&str>) -> Result<SecretRef, String> {
        let source = source.trim();
        if source.is_empty() {
            return Err("the source name is empty (expected \"SOURCE:PATH#KEY\")".into());
        }
        if path.trim().is_empty() {
            return Err(format!("the path after `{source}:` is empty"));
        }
        if path != path.trim() {
            return Err(format!("the path `{path}` has leading or trailing spaces"));
        }
        if let Some(key) = key {
            if key.is_empty() {
                return Err(
                    "the key after `#` is empty (drop the `#` to use the whole value)".into(),
                );
            }
            if key.contains(PORTAL_PLACEHOLDER) {
                return Err("`{portal}` is only allowed in the path, not in the key".into());
            }
        }
        if source.contains(PORTAL_PLACEHOLDER) {
            return Err("`{portal}` is only allowed in the path, not in the source name".into());
        }
        let unknown_placeholder = path.replace(PORTAL_PLACEHOLDER, "");
        if unknown_placeholder.contains('{') || unknown_placeholder.contains('}') {
            return Err(format!(
                "the path `{path}` has a placeholder other than `{{portal}}`"
            ));
        }
        Ok(SecretRef {
            source: source.to_string(),
            path: path.to_string(),
            key: key.map(str::to_string),
        })
    }

    /// This reference for one portal: `{portal}` replaced by its name.
    pub fn for_portal(&self, portal: &str) -> SecretRef {
        SecretRef {
            source: self.source.clone(),
            path: self.path.replace(PORTAL_PLACEHOLDER, portal),
            key: self.key.clone(),
        }
    }
}

impl PropRef {
    /// True for `{ value = "" }`: an explicit request to clear that prop.
    pub fn is_empty_literal(&self) -> bool {
        matches!(self, PropRef::Literal(v) if v.expose_secret().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        let r = SecretRef::parse("vault:secret/oauth/google#client_id").unwrap();
        assert_eq!(
            (r.source.as_str(), r.path.as_str(), r.key.as_deref()),
            ("vault", "secret/oauth/google", Some("client_id"))
        );
        let r = SecretRef::parse("aws:docspace/backup").unwrap();
        assert_eq!(r.key, None);
        // ARNs contain colons: only the first one separates the source.
        let r = SecretRef::parse("aws:arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCd#k").unwrap();
        assert_eq!(r.path, "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCd");
        let r = SecretRef::parse("vault:secret/portals/{portal}/tg#token").unwrap();
        assert_eq!(r.for_portal("prod").path, "secret/portals/prod/tg");
    }

    #[test]
    fn bad_forms() {
        for bad in [
            "nocolon",
            ":path",
            "vault:",
            "vault:path#",
            "vault:a/{env}/b",
            "vault:p#{portal}",
            "vault: p",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
