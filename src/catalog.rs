//! The built-in catalogue of portal services and their prop names (DocSpace v3.7 and the
//! services older portals still have).
//!
//! It only feeds offline checks and "did you mean" hints: the portal's own
//! `GET settings/authservice` is the authority at run time, since portals of different
//! versions carry different services.

/// One service a portal may offer under Settings → Integration → Third-party services.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// The contract name, used in `[[map]]` blocks: the configuration key POST expects
    /// (exact, case-sensitive).
    pub name: &'static str,
    /// The name GET lists the service under, where it differs (`appleID`).
    pub listed_as: Option<&'static str>,
    /// Prop names, in the portal's order.
    pub props: &'static [&'static str],
    /// Paid services answer 402 on plans without third-party services.
    pub paid: bool,
    /// Removed from current DocSpace; older portals may still have it.
    pub legacy: bool,
}

const fn svc(name: &'static str, props: &'static [&'static str]) -> ServiceInfo {
    ServiceInfo {
        name,
        listed_as: None,
        props,
        paid: false,
        legacy: false,
    }
}
const fn paid(name: &'static str, props: &'static [&'static str]) -> ServiceInfo {
    ServiceInfo {
        name,
        listed_as: None,
        props,
        paid: true,
        legacy: false,
    }
}
const fn legacy(name: &'static str, props: &'static [&'static str]) -> ServiceInfo {
    ServiceInfo {
        name,
        listed_as: None,
        props,
        paid: false,
        legacy: true,
    }
}

/// Every known service.
pub const SERVICES: &[ServiceInfo] = &[
    // GET lists it as `appleID`; POST accepts only `appleid` (API doc §4, §5).
    ServiceInfo {
        listed_as: Some("appleID"),
        ..svc(
            "appleid",
            &[
                "appleIdClientId",
                "appleIdClientIdMobile",
                "appleIdTeamId",
                "appleIdKeyId",
                "appleIdPrivateKey",
            ],
        )
    },
    svc("box", &["boxClientId", "boxClientSecret"]),
    svc("dropbox", &["dropboxClientId", "dropboxClientSecret"]),
    svc("facebook", &["facebookClientId", "facebookClientSecret"]),
    svc("twitter", &["twitterKey", "twitterSecret"]),
    svc(
        "firebase",
        &[
            "firebase_apiKey",
            "firebase_projectId",
            "firebase_messagingSenderId",
            "firebase_authorization",
        ],
    ),
    svc("google", &["googleClientId", "googleClientSecret"]),
    svc("linkedin", &["linkedInKey", "linkedInSecret"]),
    svc("skydrive", &["skydriveappkey", "skydriveappsecret"]),
    svc("microsoft", &["microsoftClientId", "microsoftClientSecret"]),
    svc(
        "twilio",
        &["twilioAccountSid", "twilioAuthToken", "twiliosender"],
    ),
    paid("s3", &["acesskey", "secretaccesskey"]),
    paid("googlecloud", &["json"]),
    paid("rackspace", &["username", "apiKey"]),
    svc("zoom", &["zoomClientId", "zoomClientSecret"]),
    svc("telegram", &["telegramBotToken", "telegramBotName"]),
    svc("weixin", &["weixinClientId", "weixinClientSecret"]),
    svc(
        "externaldb",
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
    svc(
        "nextcloud",
        &[
            "nextcloudBaseUrl",
            "nextcloudClientId",
            "nextcloudClientSecret",
        ],
    ),
    legacy("bitly", &["bitlyToken"]),
    legacy("clickatell", &["clickatellapiKey"]),
    legacy("wordpress", &["wpClientId", "wpClientSecret"]),
    legacy("selectel", &["authUser", "authPwd"]),
    legacy("smsc", &["smsclogin", "smscpsw", "smscsender"]),
    legacy(
        "docuSign",
        &["docuSignClientId", "docuSignClientSecret", "docuSignHost"],
    ),
    legacy("mailru", &["mailRuClientId", "mailRuClientSecret"]),
    legacy("vk", &["vkClientId", "vkClientSecret"]),
    legacy("yandex", &["yandexClientId", "yandexClientSecret"]),
    legacy("yahoo", &["yahooClientId", "yahooClientSecret"]),
];

/// Looks a service up by its exact (case-sensitive) name.
pub fn service(name: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|s| s.name == name)
}

/// The catalogue entry for a name as a DocSpace GET lists it: by the contract name, or by
/// the display name where it differs (`appleID` → `appleid`).
pub fn from_listed(listed: &str) -> Option<&'static ServiceInfo> {
    service(listed).or_else(|| SERVICES.iter().find(|s| s.listed_as == Some(listed)))
}

/// The closest known name to `wanted`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&wanted_lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ", did you mean `x`?" or nothing.
pub fn hint<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(wanted, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_case_and_typos() {
        let names = SERVICES.iter().map(|s| s.name);
        assert_eq!(did_you_mean("Google", names.clone()), Some("google"));
        assert_eq!(did_you_mean("telegarm", names.clone()), Some("telegram"));
        assert_eq!(did_you_mean("completely-else", names), None);
        let s3 = service("s3").map(|s| s.props.to_vec()).unwrap_or_default();
        assert_eq!(did_you_mean("accesskey", s3), Some("acesskey"));
        assert_eq!(from_listed("appleID").map(|s| s.name), Some("appleid"));
        assert_eq!(from_listed("appleid").map(|s| s.name), Some("appleid"));
        assert!(from_listed("AppleID").is_none());
    }
}
