//! Which configured AWS paths an event's secret ids name.
//!
//! Both sides are names or ARNs. A Secrets Manager ARN is
//! `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`, where `-XXXXXX` is a
//! random 6-character suffix AWS appends; a *partial* ARN leaves the suffix out. Secret
//! names cannot contain `:`, so whether a string is an ARN is never ambiguous.
//!
//! When in doubt this matches: an extra match only costs a fresh read of a secret the
//! config uses anyway, a missed one delays a rotation until the next scheduled cycle.

use std::collections::BTreeSet;

/// The configured paths (`configured`, names or ARNs) that any of `event_ids` names.
pub fn matching_paths(configured: &BTreeSet<String>, event_ids: &[String]) -> BTreeSet<String> {
    configured
        .iter()
        .filter(|path| event_ids.iter().any(|id| same_secret(path, id)))
        .cloned()
        .collect()
}

/// Whether the configured path `configured` and the event's `event_id` name the same secret:
/// * two names: equal;
/// * a name and an ARN: the ARN's name part equals the name, with or without its suffix;
/// * two ARNs: the same partition, region and account, and the same name part, or equal
///   once the suffix is taken off the one that has it (the other being partial).
pub fn same_secret(configured: &str, event_id: &str) -> bool {
    if configured == event_id {
        return true;
    }
    match (Arn::parse(configured), Arn::parse(event_id)) {
        (None, None) => false,
        (None, Some(arn)) => arn.names(configured),
        (Some(arn), None) => arn.names(event_id),
        (Some(a), Some(b)) => {
            a.scope == b.scope
                && (a.name == b.name
                    || without_suffix(a.name) == Some(b.name)
                    || without_suffix(b.name) == Some(a.name))
        }
    }
}

/// A Secrets Manager ARN, split.
#[derive(Debug, PartialEq, Eq)]
struct Arn<'a> {
    /// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:`
    scope: &'a str,
    /// The secret's name, with the suffix when the ARN is complete.
    name: &'a str,
}

impl<'a> Arn<'a> {
    fn parse(text: &'a str) -> Option<Arn<'a>> {
        let mut parts = text.splitn(7, ':');
        let fields: [&str; 7] = std::array::from_fn(|_| parts.next().unwrap_or(""));
        let [arn, partition, service, _region, _account, resource, name] = fields;
        let ok = arn == "arn"
            && !partition.is_empty()
            && service == "secretsmanager"
            && resource == "secret"
            && !name.is_empty();
        ok.then(|| Arn {
            scope: &text[..text.len() - name.len()],
            name,
        })
    }

    /// Whether this ARN is the secret called `name` (complete or partial ARN).
    fn names(&self, name: &str) -> bool {
        self.name == name || without_suffix(self.name) == Some(name)
    }
}

/// `name` without AWS's random `-XXXXXX` suffix (six letters or digits), if it ends in one.
fn without_suffix(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    let is_suffix = suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric());
    (is_suffix && !base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:";

    fn arn(name: &str) -> String {
        format!("{SCOPE}{name}")
    }

    #[test]
    fn arns_are_recognised() {
        let full = arn("docspace/backup-s3-AbCdEf");
        let a = Arn::parse(&full).unwrap();
        assert_eq!((a.scope, a.name), (SCOPE, "docspace/backup-s3-AbCdEf"));
        for not_arn in [
            "docspace/backup-s3",
            "arn:aws:s3:::bucket",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
            "arn:aws:secretsmanager:eu-west-1:123456789012:other:x",
            "arn::secretsmanager:eu-west-1:1:secret:x",
            "arn:aws:secretsmanager",
            "",
        ] {
            assert_eq!(Arn::parse(not_arn), None, "{not_arn}");
        }
    }

    #[test]
    fn suffixes() {
        assert_eq!(without_suffix("db-AbCdEf"), Some("db"));
        assert_eq!(without_suffix("back-up-s3-a1B2c3"), Some("back-up-s3"));
        assert_eq!(without_suffix("db-AbCdE"), None); // 5 characters
        assert_eq!(without_suffix("db-AbCdEfG"), None); // 7 characters
        assert_eq!(without_suffix("db-AbC_Ef"), None); // not alphanumeric
        assert_eq!(without_suffix("-AbCdEf"), None); // no name before it
        assert_eq!(without_suffix("plain"), None);
    }

    #[test]
    fn name_and_name() {
        assert!(same_secret("docspace/backup-s3", "docspace/backup-s3"));
        assert!(!same_secret("docspace/backup-s3", "docspace/backup"));
        assert!(!same_secret("docspace/backup", "docspace/backup-s3"));
        // Names are case-sensitive, and no suffix is guessed between two names.
        assert!(!same_secret("Oauth/Google", "oauth/google"));
        assert!(!same_secret("db", "db-AbCdEf"));
        assert!(!same_secret("db-AbCdEf", "db"));
    }

    #[test]
    fn name_and_arn_either_way() {
        for (name, event_arn, want) in [
            // Complete ARN: the name is the part before the suffix.
            ("docspace/backup-s3", arn("docspace/backup-s3-AbCdEf"), true),
            // Partial ARN: the name part is the name.
            ("docspace/backup-s3", arn("docspace/backup-s3"), true),
            // A name whose last `-` part is six characters long.
            ("team-abcdef", arn("team-abcdef-Zz9Zz9"), true),
            ("team-abcdef", arn("team-abcdef"), true),
            ("team", arn("team-abcdef-Zz9Zz9"), false),
            // Prefixes and other names do not match.
            ("docspace/backup", arn("docspace/backup-s3-AbCdEf"), false),
            ("docspace", arn("docspace/backup-s3-AbCdEf"), false),
            ("other", arn("docspace/backup-s3-AbCdEf"), false),
            (
                "docspace/backup-s3-AbCdEf",
                arn("docspace/backup-s3-AbCdEf"),
                true,
            ),
        ] {
            assert_eq!(same_secret(name, &event_arn), want, "{name} vs {event_arn}");
            assert_eq!(same_secret(&event_arn, name), want, "{event_arn} vs {name}");
        }
    }

    #[test]
    fn arn_and_arn() {
        let full = arn("oauth/google-Q1w2E3");
        let partial = arn("oauth/google");
        assert!(same_secret(&full, &full));
        assert!(same_secret(&full, &partial));
        assert!(same_secret(&partial, &full));
        assert!(same_secret(&partial, &partial));
        // A secret deleted and created again under the same name has another suffix.
        assert!(!same_secret(&full, &arn("oauth/google-Z9x8Y7")));
        // Other account, region or partition.
        for other_scope in [
            "arn:aws:secretsmanager:eu-west-1:999999999999:secret:oauth/google-Q1w2E3",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:oauth/google-Q1w2E3",
            "arn:aws-cn:secretsmanager:eu-west-1:123456789012:secret:oauth/google-Q1w2E3",
        ] {
            assert!(!same_secret(&full, other_scope), "{other_scope}");
            assert!(!same_secret(&partial, other_scope), "{other_scope}");
        }
        // Different names with dashes.
        assert!(!same_secret(&arn("a-b-c-AbCdEf"), &arn("a-b-AbCdEf")));
        assert!(!same_secret(&arn("a-b"), &arn("a-b-c-AbCdEf")));
    }

    #[test]
    fn not_an_arn_is_a_name() {
        assert!(same_secret("arn:aws:s3:::bucket", "arn:aws:s3:::bucket"));
        assert!(!same_secret("bucket", "arn:aws:s3:::bucket"));
    }

    #[test]
    fn matching_paths_returns_the_configured_spelling() {
        let configured: BTreeSet<String> = [
            "docspace/backup-s3".to_string(),
            arn("oauth/google-Q1w2E3"),
            "portals/alpha/telegram".to_string(),
            "unrelated".to_string(),
        ]
        .into();
        let ids = vec![
            "oauth/google".to_string(),
            arn("docspace/backup-s3-AbCdEf"),
            "nothing/here".to_string(),
        ];
        let got = matching_paths(&configured, &ids);
        let want: BTreeSet<String> =
            [arn("oauth/google-Q1w2E3"), "docspace/backup-s3".into()].into();
        assert_eq!(got, want);
        assert!(matching_paths(&configured, &["nothing".to_string()]).is_empty());
        assert!(matching_paths(&BTreeSet::new(), &ids).is_empty());
        assert!(matching_paths(&configured, &[]).is_empty());
    }
}
