//! Authentication (authservice-api.md §2): API keys, login with lockout, login tokens.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use crate::config::{ApiKey, User};
use crate::envelope::ApiError;
use crate::lang::{Language, Text};
use crate::record::AuthKind;

/// Failed logins within this window count towards a lockout…
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// …this many of them lock the user name out…
const MAX_FAILURES: usize = 5;
/// …for this long, even with the right password.
const LOCKOUT: Duration = Duration::from_secs(60);
/// Default login-token lifetime (a portal without a session lifetime setting).
const TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const COOKIE_NAME: &str = "asc_auth_key";

/// The credential a request presents. The `Authorization` header wins over the cookie: a
/// request with a bad header is rejected even if its cookie is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    None,
    /// `Authorization: Bearer <x>`: only API keys are accepted this way.
    Bearer(String),
    /// `Authorization: <x>`: only login tokens are accepted this way.
    Raw(String),
    /// `Cookie: asc_auth_key=<x>`: a login token.
    Cookie(String),
    /// A header that is not even text.
    Unreadable,
}

impl Credential {
    pub fn from_headers(headers: &HeaderMap) -> Credential {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let Ok(text) = value.to_str() else {
                return Credential::Unreadable;
            };
            let text = text.trim();
            if !text.is_empty() {
                return match text.split_once(' ') {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                        Credential::Bearer(rest.trim().to_owned())
                    }
                    _ => Credential::Raw(text.to_owned()),
                };
            }
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE_NAME)
            .map(|(_, value)| Credential::Cookie(value.trim().to_owned()))
            .unwrap_or(Credential::None)
    }
}

/// Who a request acts as, once authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Portal Owner or DocSpace admin.
    pub admin: bool,
    /// May change settings (API key scope `*:write`; always true for a logged-in user).
    pub write: bool,
}

#[derive(Debug)]
struct KeyEntry {
    key: ApiKey,
    revoked: bool,
}

#[derive(Debug, Default)]
struct LoginFailures {
    recent: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// The portal's accounts: API keys, users, issued tokens and login failures.
#[derive(Debug)]
pub(crate) struct Accounts {
    keys: Vec<KeyEntry>,
    users: Vec<User>,
    /// Valid login tokens → the index of their user.
    tokens: HashMap<String, usize>,
    /// Keyed by the lower-cased user name as sent (unknown names lock out too).
    failures: HashMap<String, LoginFailures>,
    logins: usize,
    token_seed: RandomState,
}

impl Accounts {
    pub fn new(keys: Vec<ApiKey>, users: Vec<User>) -> Accounts {
        Accounts {
            keys: keys
                .into_iter()
                .map(|key| KeyEntry {
                    key,
                    revoked: false,
                })
                .collect(),
            users,
            tokens: HashMap::new(),
            failures: HashMap::new(),
            logins: 0,
            token_seed: RandomState::new(),
        }
    }

    /// Resolves a credential; `None` principal means the request gets 401.
    pub fn authenticate(&self, credential: &Credential) -> (AuthKind, Option<Principal>) {
        match credential {
            Credential::None => (AuthKind::None, None),
            Credential::Unreadable => (AuthKind::Invalid, None),
            Credential::Bearer(secret) => {
                match self
                    .keys
                    .iter()
                    .find(|k| !k.revoked && k.key.key == *secret)
                {
                    Some(k) => (
                        AuthKind::ApiKey,
                        Some(Principal {
                            admin: k.key.admin,
                            write: k.key.write,
                        }),
                    ),
                    None => (AuthKind::Invalid, None),
                }
            }
            Credential::Raw(token) | Credential::Cookie(token) => {
                let kind = if matches!(credential, Credential::Raw(_)) {
                    AuthKind::Token
                } else {
                    AuthKind::Cookie
                };
                match self.tokens.get(token).and_then(|&i| self.users.get(i)) {
                    Some(user) => (
                        kind,
                        Some(Principal {
                            admin: user.admin,
                            write: true,
                        }),
                    ),
                    None => (AuthKind::Invalid, None),
                }
            }
        }
    }

    /// `POST /api/2.0/authentication`: the `response` value on success; failures are worded
    /// in `language`.
    pub fn login(
        &mut self,
        user_name: &str,
        password: &str,
        language: Language,
    ) -> Result<Value, ApiError> {
        let now = Instant::now();
        let failures = self.failures.entry(user_name.to_lowercase()).or_default();
        if failures.locked_until.is_some_and(|until| now < until) {
            return Err(ApiError::authentication(
                403,
                language.text(Text::TooManyLoginAttempts),
            ));
        }
        let found = self
            .users
            .iter()
            .position(|u| u.email.eq_ignore_ascii_case(user_name) && u.password == password);
        let Some(index) = found else {
            failures
                .recent
                .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            failures.recent.push(now);
            if failures.recent.len() >= MAX_FAILURES {
                failures.recent.clear();
                failures.locked_until = Some(now + LOCKOUT);
            }
            return Err(ApiError::authentication(
                401,
                language.text(Text::AuthenticationFailed),
            ));
        };
        *failures = LoginFailures::default();
        if self.users[index].tfa {
            return Ok(json!({ "sms": false, "tfa": true }));
        }
        let token = self.new_token();
        self.tokens.insert(token.clone(), index);
        self.logins += 1;
        Ok(json!({
            "token": token,
            "expires": iso8601(SystemTime::now() + TOKEN_LIFETIME),
            "sms": false,
            "tfa": false,
        }))
    }

    /// Tokens are unique (a counter) and unguessable enough for a test (a random hash).
    fn new_token(&self) -> String {
        let serial = self.logins as u64 + 1;
        let mut hasher = self.token_seed.build_hasher();
        hasher.write_u64(serial);
        let a = hasher.finish();
        hasher.write_u64(a);
        let b = hasher.finish();
        format!("{serial:04x}{a:016x}{b:016x}")
    }

    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    pub fn revoke_api_key(&mut self, key: &str) {
        for entry in self.keys.iter_mut().filter(|k| k.key.key == key) {
            entry.revoked = true;
        }
    }

    pub fn login_count(&self) -> usize {
        self.logins
    }
}

/// Formats a time as .NET's `ApiDateTime` does: `2025-01-31T12:34:56.0000000+00:00`.
fn iso8601(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.0000000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn credentials_are_read_from_header_then_cookie() {
        assert_eq!(
            Credential::from_headers(&headers(&[(header::AUTHORIZATION, "Bearer sk-1")])),
            Credential::Bearer("sk-1".into())
        );
        assert_eq!(
            Credential::from_headers(&headers(&[(header::AUTHORIZATION, "abc")])),
            Credential::Raw("abc".into())
        );
        assert_eq!(
            Credential::from_headers(&headers(&[(header::COOKIE, "a=b; asc_auth_key=tok")])),
            Credential::Cookie("tok".into())
        );
        assert_eq!(
            Credential::from_headers(&headers(&[
                (header::AUTHORIZATION, "hdr"),
                (header::COOKIE, "asc_auth_key=tok")
            ])),
            Credential::Raw("hdr".into())
        );
        assert_eq!(
            Credential::from_headers(&HeaderMap::new()),
            Credential::None
        );
    }

    #[test]
    fn dates_are_formatted_like_dotnet() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.0000000+00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(iso8601(t), "2024-02-29T12:34:56.0000000+00:00");
    }

    #[test]
    fn five_failures_lock_the_name_out() {
        let user = User {
            email: "a@example.com".into(),
            password: "pw".into(),
            admin: true,
            tfa: false,
        };
        let mut accounts = Accounts::new(Vec::new(), vec![user]);
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                accounts
                    .login("a@example.com", "bad", Language::En)
                    .unwrap_err()
                    .status,
                401
            );
        }
        let locked = accounts
            .login("A@example.com", "pw", Language::De)
            .unwrap_err();
        assert_eq!(
            (locked.status, locked.message.as_str()),
            (403, Language::De.text(Text::TooManyLoginAttempts))
        );
        assert_eq!(accounts.login_count(), 0);
    }
}
