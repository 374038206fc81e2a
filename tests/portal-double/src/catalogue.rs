//! The DocSpace v3.7 service catalogue (authservice-api.md §5), a Community Server v12
//! (Workspace) catalogue (§6) and the display strings GET and the settings page show.

use crate::config::{ServiceSpec, Validation, Version};

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

/// The services of a DocSpace release, in portal order: [`docspace_catalogue()`] for
/// [`Version::V3_7`]; without `externaldb` and `nextcloud` (added in v3.7.1) for `V3_5` and
/// `V3_6`. (`telegram` and `weixin` arrived in v3.5.0, so every version has them.)
pub fn docspace_catalogue_for(version: Version) -> Vec<ServiceSpec> {
    let mut services = docspace_catalogue();
    if version < Version::V3_7 {
        services.retain(|s| !matches!(s.name.as_str(), "externaldb" | "nextcloud"));
    }
    services
}

/// A Community Server v12 (Workspace) catalogue, in the order the settings page shows it:
/// capitalised names (`Google`, `DropBox`, `S3`, `GoogleCloud`, …) with DocSpace's prop names.
/// All settable, all props unset; `S3`, `GoogleCloud`, `Rackspace` and `Selectel` are paid;
/// `Telegram` is validated (enforced), `Twilio` with the failure ignored.
///
/// The list is a best-effort reconstruction (authservice-api.md §6 is partly inferred): the
/// live settings page is the authority for what a given Workspace has.
pub fn workspace_catalogue() -> Vec<ServiceSpec> {
    const SERVICES: &[(&str, &str, &[&str])] = &[
        ("Bitly", "Bitly", &["bitlyToken"]),
        ("Box", "Box", &["boxClientId", "boxClientSecret"]),
        ("Clickatell", "Clickatell", &["clickatellapiKey"]),
        (
            "DocuSign",
            "DocuSign",
            &["docuSignClientId", "docuSignClientSecret", "docuSignHost"],
        ),
        (
            "DropBox",
            "Dropbox",
            &["dropboxClientId", "dropboxClientSecret"],
        ),
        (
            "Facebook",
            "Facebook",
            &["facebookClientId", "facebookClientSecret"],
        ),
        (
            "Firebase",
            "Firebase",
            &[
                "firebase_apiKey",
                "firebase_projectId",
                "firebase_messagingSenderId",
                "firebase_authorization",
            ],
        ),
        (
            "Google",
            "Google",
            &["googleClientId", "googleClientSecret"],
        ),
        ("GoogleCloud", "Google Cloud Storage", &["json"]),
        ("LinkedIn", "LinkedIn", &["linkedInKey", "linkedInSecret"]),
        (
            "OneDrive",
            "OneDrive",
            &["skydriveappkey", "skydriveappsecret"],
        ),
        ("Rackspace", "Rackspace", &["username", "apiKey"]),
        ("S3", "Amazon S3", &["acesskey", "secretaccesskey"]),
        ("Selectel", "Selectel", &["authUser", "authPwd"]),
        ("SMSC", "SMSC", &["smsclogin", "smscpsw", "smscsender"]),
        (
            "Telegram",
            "Telegram",
            &["telegramBotToken", "telegramBotName"],
        ),
        (
            "Twilio",
            "Twilio",
            &["twilioAccountSid", "twilioAuthToken", "twiliosender"],
        ),
        ("Twitter", "Twitter", &["twitterKey", "twitterSecret"]),
        ("VK", "VK", &["vkClientId", "vkClientSecret"]),
        ("Wordpress", "WordPress", &["wpClientId", "wpClientSecret"]),
        ("Yahoo", "Yahoo", &["yahooClientId", "yahooClientSecret"]),
        (
            "Yandex",
            "Yandex",
            &["yandexClientId", "yandexClientSecret"],
        ),
    ];
    SERVICES
        .iter()
        .map(|(name, title, props)| {
            let mut spec = ServiceSpec::new(name, title, props);
            spec.paid = matches!(*name, "S3" | "GoogleCloud" | "Rackspace" | "Selectel");
            spec.validated = match *name {
                "Telegram" => Validation::TelegramEnforced,
                "Twilio" => Validation::IgnoredFailure,
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
    fn older_versions_lack_the_v3_7_1_services() {
        assert_eq!(docspace_catalogue_for(Version::V3_7), docspace_catalogue());
        for version in [Version::V3_5, Version::V3_6] {
            let names: Vec<String> = docspace_catalogue_for(version)
                .into_iter()
                .map(|s| s.name)
                .collect();
            assert_eq!(names.len(), 17, "{version:?}");
            assert!(names.iter().any(|n| n == "telegram") && names.iter().any(|n| n == "weixin"));
            assert!(!names.iter().any(|n| n == "externaldb" || n == "nextcloud"));
        }
    }

    #[test]
    fn workspace_catalogue_is_capitalised_with_docspace_prop_names() {
        let catalogue = workspace_catalogue();
        let names: Vec<&str> = catalogue.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Bitly",
                "Box",
                "Clickatell",
                "DocuSign",
                "DropBox",
                "Facebook",
                "Firebase",
                "Google",
                "GoogleCloud",
                "LinkedIn",
                "OneDrive",
                "Rackspace",
                "S3",
                "Selectel",
                "SMSC",
                "Telegram",
                "Twilio",
                "Twitter",
                "VK",
                "Wordpress",
                "Yahoo",
                "Yandex"
            ]
        );
        let s3 = catalogue.iter().find(|s| s.name == "S3").unwrap();
        assert!(s3.paid);
        assert_eq!(s3.props[0].0, "acesskey");
        assert!(catalogue
            .iter()
            .all(|s| s.can_set && s.props.iter().all(|(_, v)| v.is_empty())));
        // Prop names are unique across services (they are the settings page's input ids).
        let mut props: Vec<&str> = catalogue
            .iter()
            .flat_map(|s| s.props.iter().map(|(p, _)| p.as_str()))
            .collect();
        let total = props.len();
        props.sort_unstable();
        props.dedup();
        assert_eq!(props.len(), total);
    }

    #[test]
    fn prop_titles_are_readable() {
        assert_eq!(prop_title("googleClientId"), "Google Client ID");
        assert_eq!(prop_title("firebase_apiKey"), "Firebase Api Key");
        assert_eq!(prop_title("json"), "Json");
    }
}
