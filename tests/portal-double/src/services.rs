//! The authorization-keys store and its rules (authservice-api.md §3–§6). The store is the
//! installation's: doubles started with
//! [`PortalDouble::start_sharing`](crate::PortalDouble::start_sharing) share one, as the portals
//! of one self-hosted installation share their keys (§3). Each portal's own settings (version,
//! language, plan) come in with every call.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::ajaxpro::AjaxError;
use crate::auth::Principal;
use crate::catalogue::{listed_name, prop_title};
use crate::config::{ServiceSpec, Validation, Version};
use crate::dto::{AuthServiceRequest, PropRequest};
use crate::envelope::ApiError;
use crate::state::Settings;

/// Which values a service refuses (as if its key check failed with the third party).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// These values, in any prop.
    Values(BTreeSet<String>),
    /// Every non-empty value (e.g. a portal without internet access checking with Telegram).
    Every,
}

/// The services with their current values.
#[derive(Debug)]
pub(crate) struct Store {
    services: Vec<ServiceSpec>,
    /// The services as configured when the store was created: what GET shows with
    /// `core:default-consumers=true`.
    defaults: Vec<ServiceSpec>,
    /// By service name.
    refusals: BTreeMap<String, Refusal>,
}

/// Whether a save may end with the key check failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// As configured ([`Validation`] and the refusals).
    Normal,
    /// An injected [`FaultKind::Refuse`](crate::FaultKind::Refuse): the check fails.
    Fail,
}

impl Store {
    pub fn new(services: Vec<ServiceSpec>) -> Store {
        Store {
            defaults: services.clone(),
            services,
            refusals: BTreeMap::new(),
        }
    }

    /// Every service in portal order, with its current values.
    pub fn all(&self) -> &[ServiceSpec] {
        &self.services
    }

    fn find(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut ServiceSpec> {
        self.services.iter_mut().find(|s| s.name == name)
    }

    pub fn value(&self, service: &str, prop: &str) -> Option<String> {
        self.find(service)?
            .props
            .iter()
            .find(|(name, _)| name == prop)
            .map(|(_, value)| value.clone())
    }

    pub fn values(&self, service: &str) -> BTreeMap<String, String> {
        self.find(service)
            .map(|s| s.props.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes a stored value directly, bypassing every rule, as an admin in the UI would.
    ///
    /// # Panics
    /// If the service or prop does not exist: that is a mistake in the test using the double.
    pub fn set_value(&mut self, service: &str, prop: &str, value: &str) {
        let spec = self
            .find_mut(service)
            .unwrap_or_else(|| panic!("portal double has no service {service:?}"));
        let slot = spec
            .props
            .iter_mut()
            .find(|(name, _)| name == prop)
            .unwrap_or_else(|| panic!("service {service:?} has no prop {prop:?}"));
        slot.1 = value.to_owned();
    }

    /// From now on a save that leaves `value` in any prop of `service` fails the key check.
    /// An empty value is never refused (an empty service is not checked).
    pub fn refuse(&mut self, service: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let refusal = self
            .refusals
            .entry(service.to_owned())
            .or_insert_with(|| Refusal::Values(BTreeSet::new()));
        if let Refusal::Values(values) = refusal {
            values.insert(value.to_owned());
        }
    }

    /// From now on a save that leaves any non-empty value in `service` fails the key check.
    pub fn refuse_every_value(&mut self, service: &str) {
        self.refusals.insert(service.to_owned(), Refusal::Every);
    }

    /// Forgets the refusals of `service`.
    pub fn accept_all(&mut self, service: &str) {
        self.refusals.remove(service);
    }

    /// Whether the service's key check fails with its current values: never for an empty
    /// service (the portal skips the check then), else by an injected failure, a refused value
    /// or, for `telegram`, a token Telegram would reject.
    fn check_fails(&self, service: &ServiceSpec, check: Check) -> bool {
        let filled: Vec<&str> = service
            .props
            .iter()
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        if filled.is_empty() {
            return false;
        }
        let refused = match self.refusals.get(&service.name) {
            None => false,
            Some(Refusal::Every) => true,
            Some(Refusal::Values(values)) => filled.iter().any(|v| values.contains(*v)),
        };
        check == Check::Fail
            || refused
            || (service.validated == Validation::TelegramEnforced && !telegram_keys_valid(service))
    }

    /// After a save: if the key check fails, clears every prop of the service (also those that
    /// were fine) and says so.
    fn wipe_if_refused(&mut self, name: &str, check: Check) -> bool {
        let fails = self.find(name).is_some_and(|s| self.check_fails(s, check));
        if fails {
            if let Some(service) = self.find_mut(name) {
                for (_, value) in &mut service.props {
                    value.clear();
                }
            }
        }
        fails
    }

    /// `GET settings/authservice`: every service in portal order, values in clear (or, with
    /// default consumers, as configured), in the fields of the portal's version.
    pub fn list(&self, principal: Principal, settings: &Settings) -> Result<Value, ApiError> {
        if !principal.admin {
            return Err(ApiError::access_denied());
        }
        if settings.setting_hidden {
            return Err(ApiError::payment_required(settings.language));
        }
        Ok(Value::Array(
            self.services
                .iter()
                .map(|service| {
                    let shown = if settings.default_consumers {
                        self.defaults
                            .iter()
                            .find(|d| d.name == service.name)
                            .unwrap_or(service)
                    } else {
                        service
                    };
                    service_json(service, shown, settings.version)
                })
                .collect(),
        ))
    }

    /// `POST settings/authservice`, after the body passed model validation: `Ok(true)` when
    /// something changed (or all was cleared, or before v3.6 a no-op on an unknown service),
    /// `Ok(false)` when every sent value was already stored.
    pub fn save(
        &mut self,
        principal: Principal,
        settings: &Settings,
        request: &AuthServiceRequest,
        check: Check,
    ) -> Result<bool, ApiError> {
        if !principal.admin || !principal.write {
            return Err(ApiError::access_denied());
        }
        if settings.setting_hidden {
            return Err(ApiError::payment_required(settings.language));
        }
        let name = request.name.as_deref();
        let settable = name
            .and_then(|name| self.find(name))
            .is_some_and(|s| s.can_set);
        if !settable {
            if settings.version >= Version::V3_6 {
                return Err(ApiError::access_denied());
            }
            // Before v3.6 `props` is read first (a missing one throws), then the service's
            // consumer is used as it is: unknown or fixed.
            let sent = request
                .props
                .as_ref()
                .ok_or_else(|| ApiError::props_null(settings.language))?;
            return self.save_unsettable(name, sent);
        }
        let name = name.unwrap_or_default().to_owned();
        let Some(service) = self.find_mut(&name) else {
            return Err(ApiError::access_denied());
        };
        if service.paid && !settings.paid_allowed {
            return Err(ApiError::payment_required(settings.language));
        }
        let Some(sent) = request.props.as_ref() else {
            return Err(ApiError::props_null(settings.language));
        };

        let changed = if sent
            .iter()
            .all(|p| p.value.as_deref().unwrap_or("").is_empty())
        {
            // Every value empty (or no props at all): the portal clears the whole service.
            for (_, value) in &mut service.props {
                value.clear();
            }
            true
        } else {
            let mut changed = false;
            for prop in sent {
                let new_value = prop.value.as_deref().unwrap_or("");
                // Unknown prop names are dropped without a word.
                let slot = service
                    .props
                    .iter_mut()
                    .find(|(name, _)| Some(name.as_str()) == prop.name.as_deref());
                if let Some((_, stored)) = slot {
                    if stored != new_value {
                        *stored = new_value.to_owned();
                        changed = true;
                    }
                }
            }
            changed
        };

        if self.wipe_if_refused(&name, check) {
            return Err(ApiError::bad_keys(settings.language));
        }
        Ok(changed)
    }

    /// Before v3.6, a POST to a service that is unknown (`name` matches none, e.g. `appleID`)
    /// or whose keys are fixed in the config file. The portal's `Consumer` then: clearing
    /// (every value empty) throws `NotSupportedException` → 415 `Key for read only. Consumer
    /// <name>` (no name for an unknown service); setting a prop it manages to another value
    /// throws too (415 `Key for read only. Key <prop>`, only possible for a fixed service);
    /// any other prop lands in its in-memory extras, so the answer is `true` and nothing is
    /// stored.
    fn save_unsettable(&self, name: Option<&str>, sent: &[PropRequest]) -> Result<bool, ApiError> {
        let fixed = name.and_then(|name| self.find(name));
        if sent
            .iter()
            .all(|p| p.value.as_deref().unwrap_or("").is_empty())
        {
            return Err(ApiError::read_only_consumer(
                fixed.map_or("", |s| s.name.as_str()),
            ));
        }
        let mut extras: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        let mut changed = false;
        for prop in sent {
            let prop_name = prop.name.as_deref().unwrap_or("");
            let value = prop.value.as_deref();
            let managed = fixed.and_then(|s| s.props.iter().find(|(n, _)| n == prop_name));
            match managed {
                Some((_, configured)) => {
                    if Some(configured.as_str()) != value {
                        return Err(ApiError::read_only_key(prop_name));
                    }
                }
                None => {
                    let current = extras.get(prop_name).copied().flatten();
                    if current != value {
                        extras.insert(prop_name, value);
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }
}

impl Store {
    /// Workspace's `SaveAuthKeys` (authservice-api.md §6): `Ok(true)` when something changed
    /// (or all was cleared), `Ok(false)` when every value was already stored.
    ///
    /// Unlike DocSpace, all props of a service are saved together: a known prop that is empty
    /// or not sent while any sent value is non-empty is `Please fill in all fields` and nothing
    /// is saved; every known prop empty (and no non-empty unknown one) clears the service.
    /// Unknown props are dropped. No length limit.
    pub fn save_workspace(
        &mut self,
        principal: Principal,
        settings: &Settings,
        request: &AuthServiceRequest,
        check: Check,
    ) -> Result<bool, AjaxError> {
        if !principal.admin || !principal.write {
            return Err(AjaxError::access_denied());
        }
        let language = settings.language;
        let name = request.name.as_deref().unwrap_or("").to_owned();
        let service = self
            .find_mut(&name)
            .ok_or_else(|| AjaxError::unknown_service(&name))?;
        if !service.can_set {
            return Err(AjaxError::access_denied());
        }
        if service.paid && !settings.paid_allowed {
            return Err(AjaxError::payment_required(language));
        }
        let Some(sent) = request.props.as_ref() else {
            return Err(AjaxError::props_null(language));
        };

        // What each known prop would become; the last occurrence of a name wins.
        let value_of = |prop: &str| {
            sent.iter()
                .rev()
                .find(|p| p.name.as_deref() == Some(prop))
                .and_then(|p| p.value.as_deref())
                .unwrap_or("")
        };
        let any_filled = sent
            .iter()
            .any(|p| !p.value.as_deref().unwrap_or("").is_empty());
        let any_known_empty = service
            .props
            .iter()
            .any(|(name, _)| value_of(name).is_empty());
        if any_filled && any_known_empty {
            return Err(AjaxError::fill_all_fields(language));
        }

        let changed = if !any_filled {
            for (_, value) in &mut service.props {
                value.clear();
            }
            true
        } else {
            let mut changed = false;
            let new_values: Vec<String> = service
                .props
                .iter()
                .map(|(name, _)| value_of(name).to_owned())
                .collect();
            for ((_, stored), new_value) in service.props.iter_mut().zip(new_values) {
                if *stored != new_value {
                    *stored = new_value;
                    changed = true;
                }
            }
            changed
        };

        if self.wipe_if_refused(&name, check) {
            return Err(AjaxError::bad_keys(language));
        }
        Ok(changed)
    }
}

/// One service as GET shows it: `service`'s shape with the values of `shown` (the stored
/// service, or as configured under default consumers). `paid` from v3.6, the props' `type` (and
/// `externaldb`'s extra fields) from v3.7.1.
fn service_json(service: &ServiceSpec, shown: &ServiceSpec, version: Version) -> Value {
    let mut json = json!({
        "name": listed_name(&service.name),
        "title": service.title,
        "description": format!("{} keys for ONLYOFFICE DocSpace", service.title),
        "instruction": format!("Create an application at {} and enter its keys here.", service.title),
        "canSet": service.can_set,
    });
    if version >= Version::V3_6 {
        json["paid"] = json!(service.paid);
    }
    if service.can_set {
        json["props"] = service
            .props
            .iter()
            .map(|(name, stored)| {
                let value = shown
                    .props
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(stored.as_str(), |(_, v)| v.as_str());
                prop_json(&service.name, name, value, version)
            })
            .collect();
    }
    json
}

/// One prop as GET shows it. From v3.7.1 every prop has a `type` (`text`); `externaldb`'s props
/// carry the form metadata of its provider (`select`, `number`, `password`, `toggle` types,
/// `options`, and `dependsOn`/`dependsOnValue` on `databaseType`), as in the server source of a
/// self-hosted install (where `sqlite` is offered). A client must tolerate these fields.
fn prop_json(service: &str, name: &str, value: &str, version: Version) -> Value {
    let mut json = json!({
        "name": name,
        "value": value,
        "title": prop_title(name),
    });
    if version < Version::V3_7 {
        return json;
    }
    json["type"] = json!("text");
    if service == "externaldb" {
        let (kind, depends_on) = match name {
            "databaseType" => ("select", None),
            "dbPort" => ("number", Some("mysql")),
            "dbPassword" => ("password", Some("mysql")),
            "dbSsl" => ("toggle", Some("mysql")),
            "sqliteFilePath" => ("text", Some("sqlite")),
            _ => ("text", Some("mysql")),
        };
        json["type"] = json!(kind);
        if name == "databaseType" {
            json["options"] = json!(["mysql", "sqlite"]);
        }
        if let Some(depends_on) = depends_on {
            json["dependsOn"] = json!("databaseType");
            json["dependsOnValue"] = json!(depends_on);
        }
    }
    json
}

/// What Telegram's check amounts to for the double: a non-empty bot token must look like one,
/// `^[0-9]{5,}:[A-Za-z0-9_-]{30,}$`.
fn telegram_keys_valid(service: &ServiceSpec) -> bool {
    let token = service
        .props
        .iter()
        .find(|(name, _)| name == "telegramBotToken")
        .map_or("", |(_, value)| value.as_str());
    token.is_empty() || looks_like_bot_token(token)
}

fn looks_like_bot_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    id.len() >= 5
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 30
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_token_shape() {
        assert!(looks_like_bot_token(
            "12345:abcdefghijklmnopqrstuvwxyz_-0123"
        ));
        assert!(!looks_like_bot_token(
            "1234:abcdefghijklmnopqrstuvwxyz_-0123"
        ));
        assert!(!looks_like_bot_token("12345:short"));
        assert!(!looks_like_bot_token(
            "12345:abcdefghijklmnopqrstuvwxyz_-01:3"
        ));
        assert!(!looks_like_bot_token("nope"));
    }
}
