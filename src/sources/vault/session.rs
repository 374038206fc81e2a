//! The token a Vault source uses: login, renewal, and how often a failing login is
//! tried again.
//!
//! The token is reused and renewed at two thirds of its TTL; a new login replaces it when
//! renewal is refused or no longer extends it, or when Vault says it is invalid. Logins
//! and renewals are single-flight (one lock per source). A login that fails, whatever the
//! reason, is not tried again for [`LOGIN_RETRY`]: requests in that time get the same
//! error at once (or keep using a token that is still valid). Since a cycle reads all
//! its secrets together, that is at most one login attempt per source per cycle, and
//! fewer at intervals under 5 s; a source whose login failed at start-up logs in on a
//! later cycle without a reload.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::api::{Auth, Envelope, TokenInfo};
use super::{VaultAuth, VaultSource};
use crate::secret::{read_secret_file_async, ExposeSecret, SecretString};
use crate::sources::{metrics, SourceError};

/// After a failed login, further logins wait this long.
pub(super) const LOGIN_RETRY: Duration = Duration::from_secs(5);

/// A token in use, with its lifecycle.
#[derive(Clone)]
pub(super) struct Session {
    /// Tells sessions apart (a token found invalid is dropped only once).
    pub id: u64,
    pub token: SecretString,
    /// When to renew (or log in again); `None` for tokens that never expire.
    pub renew_at: Option<Instant>,
    /// When the token expires; `None` when it does not, or too far away to say.
    pub expires_at: Option<Instant>,
    pub ttl: Duration,
    pub renewable: bool,
}

impl Session {
    /// A session for a token with `ttl_secs` to live. TTLs come from the server: the
    /// arithmetic saturates, and a TTL too long to represent never needs renewing.
    pub fn new(id: u64, token: SecretString, ttl_secs: u64, renewable: bool) -> Session {
        let ttl = Duration::from_secs(ttl_secs);
        let now = Instant::now();
        let (renew_at, expires_at) = if ttl_secs == 0 {
            (None, None)
        } else {
            (
                now.checked_add(ttl.saturating_mul(2) / 3),
                now.checked_add(ttl),
            )
        };
        Session {
            id,
            token,
            renew_at,
            expires_at,
            ttl,
            renewable,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What a failed login left behind: when, and the error to answer meanwhile.
pub(super) type LoginFailure = Option<(Instant, SourceError)>;

impl VaultSource {
    /// True when the token comes from a login that authsync can repeat.
    pub(super) fn logs_in(&self) -> bool {
        !matches!(self.auth, VaultAuth::Token { .. })
    }

    /// The session to use now: logs in the first time, renews when due, logs in again
    /// when renewal is refused or no longer extends the token, and holds back logins
    /// for [`LOGIN_RETRY`] after one failed.
    pub(super) async fn session(&self) -> Result<Session, SourceError> {
        let mut slot = self.session.lock().await;
        let now = Instant::now();
        let current = slot.clone();
        if let Some(s) = &current {
            if s.renew_at.is_none_or(|at| now < at) {
                return Ok(s.clone());
            }
            if s.renewable && !s.expired(now) {
                if let Some(renewed) = self.renew(s).await {
                    *slot = Some(renewed.clone());
                    return Ok(renewed);
                }
            }
            if !self.logs_in() {
                // A configured token that cannot be renewed: keep it until Vault refuses it.
                let kept = Session {
                    renew_at: None,
                    ..s.clone()
                };
                *slot = Some(kept.clone());
                return Ok(kept);
            }
        }
        // A login is due. A token that has not expired yet stays in use if it fails.
        let usable = current.filter(|s| !s.expired(now));
        if let Some(e) = self.recent_login_failure(now) {
            return match usable {
                Some(s) => Ok(hold(&mut slot, s, now)),
                None => Err(e),
            };
        }
        match self.login().await {
            Ok(s) => {
                self.set_login_failure(None);
                *slot = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                self.set_login_failure(Some((Instant::now(), e.clone())));
                match usable {
                    Some(s) => {
                        tracing::warn!(source = %self.name, error = %e, "Vault login failed; using the current token until it expires");
                        Ok(hold(&mut slot, s, now))
                    }
                    None => {
                        *slot = None;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Forgets session `id` after Vault called its token invalid (unless another
    /// request already replaced it). True when this call dropped it.
    pub(super) async fn drop_session(&self, id: u64) -> bool {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| s.id == id) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// Whether session `id` is still the one in use.
    pub(super) async fn is_current(&self, id: u64) -> bool {
        self.session
            .lock()
            .await
            .as_ref()
            .is_some_and(|s| s.id == id)
    }

    fn recent_login_failure(&self, now: Instant) -> Option<SourceError> {
        let failed = self.login_failed.lock().ok()?;
        match failed.as_ref() {
            Some((at, e)) if now.saturating_duration_since(*at) < LOGIN_RETRY => Some(e.clone()),
            _ => None,
        }
    }

    fn set_login_failure(&self, failure: LoginFailure) {
        if let Ok(mut slot) = self.login_failed.lock() {
            *slot = failure;
        }
    }

    /// Renews the token; `None` when refused or when it no longer extends the token much
    /// (its max TTL is near), so a login is due.
    async fn renew(&self, current: &Session) -> Option<Session> {
        let r = self
            .api
            .send::<Envelope<serde_json::Value>>(
                Method::POST,
                "auth/token/renew-self",
                Some(&current.token),
                Some(&json!({})),
            )
            .await
            .and_then(|e| {
                e.and_then(|e| e.auth).ok_or_else(|| {
                    SourceError::Unavailable("the renewal answer has no auth".into())
                })
            });
        metrics::source_request(&self.name, "renew", &r);
        match r {
            Ok(info)
                if Duration::from_secs(info.lease_duration).saturating_mul(2) >= current.ttl =>
            {
                tracing::debug!(source = %self.name, ttl_s = info.lease_duration, "Vault token renewed");
                Some(Session::new(
                    current.id,
                    current.token.clone(),
                    info.lease_duration,
                    info.renewable,
                ))
            }
            Ok(info) => {
                tracing::info!(source = %self.name, ttl_s = info.lease_duration, "Vault token near its max TTL");
                None
            }
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "Vault token renewal refused");
                None
            }
        }
    }

    /// `auth/token/lookup-self` for `token`, counted.
    pub(super) async fn lookup_self(&self, token: &SecretString) -> Result<TokenInfo, SourceError> {
        let r = self
            .api
            .send::<Envelope<TokenInfo>>(Method::GET, "auth/token/lookup-self", Some(token), None)
            .await
            .and_then(|e| {
                e.and_then(|e| e.data).ok_or_else(|| {
                    SourceError::Unavailable("the token lookup answer has no data".into())
                })
            });
        metrics::source_request(&self.name, "lookup_self", &r);
        r
    }

    /// A fresh token: the configured one (looked up for its TTL), or a new login.
    /// Secrets (secret_id, JWT) are re-read at every login: they rotate.
    async fn login(&self) -> Result<Session, SourceError> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = match &self.auth {
            VaultAuth::Token { token } => {
                let token = token
                    .read_async()
                    .await
                    .map_err(|e| SourceError::Auth(format!("cannot read the Vault token: {e}")))?;
                let info = self.lookup_self(&token).await.map_err(|e| match e {
                    SourceError::Denied(_) => {
                        SourceError::Auth("the Vault token is invalid, expired or revoked".into())
                    }
                    other => other,
                })?;
                Session::new(id, token, info.ttl, info.renewable.unwrap_or(false))
            }
            VaultAuth::Approle {
                role_id,
                secret_id,
                mount,
            } => {
                let role_id = role_id
                    .read_async()
                    .await
                    .map_err(|e| SourceError::Auth(format!("cannot read role_id: {e}")))?;
                let secret_id = secret_id
                    .read_async()
                    .await
                    .map_err(|e| SourceError::Auth(format!("cannot read secret_id: {e}")))?;
                let body = json!({
                    "role_id": role_id.expose_secret(),
                    "secret_id": secret_id.expose_secret(),
                });
                let auth = self
                    .login_at(mount, &body, |e| {
                        format!(
                            "AppRole login at auth/{mount} failed ({}); check role_id and secret_id",
                            e.detail()
                        )
                    })
                    .await?;
                Session::new(id, auth.client_token, auth.lease_duration, auth.renewable)
            }
            VaultAuth::Kubernetes {
                role,
                mount,
                jwt_file,
            } => {
                let jwt = read_secret_file_async(jwt_file).await.map_err(|e| {
                    SourceError::Auth(format!("cannot read the service-account token: {e}"))
                })?;
                let body = json!({ "role": role, "jwt": jwt.expose_secret() });
                let auth = self
                    .login_at(mount, &body, |e| {
                        format!(
                            "Kubernetes login at auth/{mount} (role {role}) failed ({})",
                            e.detail()
                        )
                    })
                    .await?;
                Session::new(id, auth.client_token, auth.lease_duration, auth.renewable)
            }
        };
        if self.logs_in() {
            tracing::info!(source = %self.name, ttl_s = session.ttl.as_secs(), renewable = session.renewable, "logged in to Vault");
        }
        Ok(session)
    }

    /// `POST auth/MOUNT/login`, counted. A refusal becomes an `Auth` error worded by
    /// `why`; an unreachable or sealed Vault stays `Unavailable` (not a credential
    /// problem).
    async fn login_at(
        &self,
        mount: &str,
        body: &serde_json::Value,
        why: impl FnOnce(&SourceError) -> String,
    ) -> Result<Auth, SourceError> {
        let r = self
            .api
            .send::<Envelope<serde_json::Value>>(
                Method::POST,
                &format!("auth/{mount}/login"),
                None,
                Some(body),
            )
            .await
            .and_then(|e| {
                e.and_then(|e| e.auth)
                    .filter(|a| !a.client_token.expose_secret().is_empty())
                    .ok_or_else(|| SourceError::Invalid("the login answer has no token".into()))
            });
        metrics::source_request(&self.name, "login", &r);
        match r {
            Ok(auth) => Ok(auth),
            Err(e @ SourceError::Unavailable(_)) => Err(e),
            Err(e) => Err(SourceError::Auth(why(&e))),
        }
    }
}

/// Keeps `s` in use and puts off the next renewal or login by [`LOGIN_RETRY`] (never
/// past the token's expiry).
fn hold(slot: &mut Option<Session>, s: Session, now: Instant) -> Session {
    let retry = now.checked_add(LOGIN_RETRY);
    let renew_at = match (retry, s.expires_at) {
        (Some(r), Some(e)) => Some(r.min(e)),
        (r, _) => r,
    };
    let held = Session { renew_at, ..s };
    *slot = Some(held.clone());
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_ttls_saturate_instead_of_panicking() {
        let token = SecretString::from("t".to_string());
        let s = Session::new(1, token.clone(), u64::MAX, true);
        // Too far to represent: treated as "no renewal needed", never a panic.
        assert!(s
            .renew_at
            .is_none_or(|at| at > Instant::now() + Duration::from_secs(3600)));
        assert_eq!(s.ttl, Duration::from_secs(u64::MAX));
        let s = Session::new(2, token.clone(), 90, true);
        let left = s
            .renew_at
            .map(|at| at.saturating_duration_since(Instant::now()));
        assert!(left.is_some_and(|d| d <= Duration::from_secs(60) && d > Duration::from_secs(55)));
        assert!(Session::new(3, token, 0, false).renew_at.is_none());
        // The renewal check multiplies a server-given lease: it must saturate too.
        assert!(Duration::from_secs(u64::MAX).saturating_mul(2) >= s.ttl);
    }
}
