//! The DocSpace v3.7 service catalogue (authservice-api.md §5) and the display strings GET
//! shows for it.

use crate::config::{ServiceSpec, Validation};

/// Every service of DocSpace v3.7.1, in portal order: all settable, all props unset;
/// `s3`, `googlecloud` and `rackspace` are paid; `telegram` is validated (enforced),
/// `twilio` and `externaldb` are validated with the failure ignored.
pub fn docspace_catalogue() -> Vec<ServiceSpec> {
    const SERVICES: &[(&str, &str, &[&str])] = &[
        (
            "appleid",
            "Apple ID",
            &[
                "appleIdClientId",
                "appleIdClientIdMobile",
                "appleIdTeamId",
                "appleIdKeyId",
                "appleIdPrivateKey",
            ],
        ),
        ("box", "Box", &["boxClientId", "boxClientSecret"]),
        (
            "dropbox",
            "Dropbox",
            &["dropboxClientId", "dropboxClientSecret"],
        ),
        (
            "facebook",
            "Facebook",
            &["facebookClientId", "facebookClientSecret"],
        ),
        ("twitter", "X", &["twitterKey", "twitterSecret"]),
        (
            "firebase",
            "Firebase",
            &[
                "firebase_apiKey",
                "firebase_projectId",
                "firebase_messagingSenderId",
                "firebase_authorization",
            ],
        ),
        (
            "google",
            "Google",
            &["googleClientId", "googleClientSecret"],
        ),
        ("linkedin", "LinkedIn", &["linkedInKey", "linkedInSecret"]),
        (
            "skydrive",
            "OneDrive",
            &["skydriveappkey", "skydriveappsecret"],
        ),
        (
            "microsoft",
            "Microsoft",
            &["microsoftClientId", "microsoftClientSecret"],
        ),
        (
            "twilio",
            "Twilio",
            &["twilioAccountSid", "twilioAuthToken", "twiliosender"],
        ),
        ("s3", "Amazon S3", &["acesskey", "secretaccesskey"]),
        ("googlecloud", "Google Cloud Storage", &["json"]),
        ("rackspace", "Rackspace", &["username", "apiKey"]),
        ("zoom", "Zoom", &["zoomClientId", "zoomClientSecret"]),
        (
            "telegram",
            "Telegram",
            &["telegramBotToken", "telegramBotName"],
        ),
        (
            "weixin",
            "WeChat",
            &["weixinClientId", "weixinClientSecret"],
        ),
        (
            "externaldb",
            "External database",
            &[
                "databaseType",
                "dbHost",
                "dbPort",
                "dbName",
                "dbUser",
                "dbPassword",
                "dbSsl",
                "sqliteFilePath",
            ],
        ),
        (
            "nextcloud",
            "Nextcloud",
            &[
                "nextcloudBaseUrl",
                "nextcloudClientId",
                "nextcloudClientSecret",
            ],
        ),
    ];
    SERVICES
        .iter()
        .map(|(name, title, props)| {
            let mut spec = ServiceSpec::new(name, title, props);
            spec.paid = matches!(*name, "s3" | "googlecloud" | "rackspace");
            spec.validated = match *name {
                "telegram" => Validation::TelegramEnforced,
                "twilio" | "externaldb" => Validation::IgnoredFailure,
                _ => Validation::None,
            };
            spec
        })
        .collect()
}

/// The name GET lists a service under. The portal lists `appleid` as `appleID`, yet POST only
/// finds it as `appleid` (authservice-api.md §5), so a client that posts back the listed name
/// gets 403.
pub(crate) fn listed_name(name: &str) -> &str {
    if name == "appleid" {
        "appleID"
    } else {
        name
    }
}

/// A readable title for a prop: `googleClientId` → `Google Client ID`.
pub(crate) fn prop_title(prop: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in prop.chars() {
        if c == '_' {
            words.push(std::mem::take(&mut current));
        } else if c.is_ascii_uppercase() && !current.is_empty() {
            words.push(std::mem::replace(&mut current, c.to_string()));
        } else {
            current.push(c);
        }
    }
    words.push(current);
    words
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.eq_ignore_ascii_case("id") {
                "ID".to_owned()
            } else {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_every_v3_7_service_in_order() {
        let names: Vec<String> = docspace_catalogue().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "appleid",
                "box",
                "dropbox",
                "facebook",
                "twitter",
                "firebase",
                "google",
                "linkedin",
                "skydrive",
                "microsoft",
                "twilio",
                "s3",
                "googlecloud",
                "rackspace",
                "zoom",
                "telegram",
                "weixin",
                "externaldb",
                "nextcloud"
            ]
        );
        let paid: Vec<String> = docspace_catalogue()
            .into_iter()
            .filter(|s| s.paid)
            .map(|s| s.name)
            .collect();
        assert_eq!(paid, ["s3", "googlecloud", "rackspace"]);
        assert!(docspace_catalogue()
            .iter()
            .all(|s| s.can_set && s.props.iter().all(|(_, v)| v.is_empty())));
    }

    #[test]
    fn prop_titles_are_readable() {
        assert_eq!(prop_title("googleClientId"), "Google Client ID");
        assert_eq!(prop_title("firebase_apiKey"), "Firebase Api Key");
        assert_eq!(prop_title("json"), "Json");
    }
}
