//! The authorization-keys store and its rules (authservice-api.md §3–§6).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::ajaxpro::AjaxError;
use crate::auth::Principal;
use crate::catalogue::{listed_name, prop_title};
use crate::config::{ServiceSpec, Validation};
use crate::dto::AuthServiceRequest;
use crate::envelope::ApiError;

/// The services with their current values.
#[derive(Debug)]
pub(crate) struct Services {
    services: Vec<ServiceSpec>,
    paid_allowed: bool,
    max_value_len: usize,
}

impl Services {
    pub fn new(services: Vec<ServiceSpec>, paid_allowed: bool, max_value_len: usize) -> Services {
        Services {
            services,
            paid_allowed,
            max_value_len,
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

    /// `GET settings/authservice`: every service in portal order, values in clear.
    pub fn list(&self, principal: Principal) -> Result<Value, ApiError> {
        if !principal.admin {
            return Err(ApiError::access_denied());
        }
        Ok(Value::Array(
            self.services.iter().map(service_json).collect(),
        ))
    }

    /// `POST settings/authservice`: `Ok(true)` when something changed (or all was cleared),
    /// `Ok(false)` when every sent value was already stored.
    pub fn save(
        &mut self,
        principal: Principal,
        request: &AuthServiceRequest,
    ) -> Result<bool, ApiError> {
        if !principal.admin || !principal.write {
            return Err(ApiError::access_denied());
        }
        let paid_allowed = self.paid_allowed;
        let max_len = self.max_value_len;
        let service = request
            .name
            .as_deref()
            .and_then(|name| self.find_mut(name))
            .filter(|s| s.can_set)
            .ok_or_else(ApiError::access_denied)?;
        if service.paid && !paid_allowed {
            return Err(ApiError::payment_required());
        }
        let Some(sent) = request.props.as_ref() else {
            return Err(ApiError::bad_request(
                "Value cannot be null. (Parameter 'props')",
            ));
        };
        // .NET measures string length in UTF-16 code units.
        if let Some(long) = sent.iter().find(|p| {
            p.value
                .as_deref()
                .is_some_and(|v| v.encode_utf16().count() > max_len)
        }) {
            return Err(ApiError::bad_request(format!(
                "The value of prop '{}' is too long: at most {max_len} characters are allowed",
                long.name.as_deref().unwrap_or_default()
            )));
        }

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

        if service.validated == Validation::TelegramEnforced && !telegram_keys_valid(service) {
            for (_, value) in &mut service.props {
                value.clear();
            }
            return Err(ApiError::bad_request("Bad keys"));
        }
        Ok(changed)
    }
}

impl Services {
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
        request: &AuthServiceRequest,
    ) -> Result<bool, AjaxError> {
        if !principal.admin || !principal.write {
            return Err(AjaxError::access_denied());
        }
        let paid_allowed = self.paid_allowed;
        let name = request.name.as_deref().unwrap_or("");
        let service = self
            .find_mut(name)
            .ok_or_else(|| AjaxError::unknown_service(name))?;
        if !service.can_set {
            return Err(AjaxError::access_denied());
        }
        if service.paid && !paid_allowed {
            return Err(AjaxError::payment_required());
        }
        let Some(sent) = request.props.as_ref() else {
            return Err(AjaxError::null_argument("props"));
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
            return Err(AjaxError::fill_all_fields());
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

        if service.validated == Validation::TelegramEnforced && !telegram_keys_valid(service) {
            for (_, value) in &mut service.props {
                value.clear();
            }
            return Err(AjaxError::bad_keys());
        }
        Ok(changed)
    }
}

fn service_json(service: &ServiceSpec) -> Value {
    let mut json = json!({
        "name": listed_name(&service.name),
        "title": service.title,
        "description": format!("{} keys for ONLYOFFICE DocSpace", service.title),
        "instruction": format!("Create an application at {} and enter its keys here.", service.title),
        "canSet": service.can_set,
        "paid": service.paid,
    });
    if service.can_set {
        json["props"] = service
            .props
            .iter()
            .map(|(name, value)| prop_json(&service.name, name, value))
            .collect();
    }
    json
}

/// One prop as GET shows it. `externaldb`'s props carry the extra form fields of v3.7.1
/// (`options`, `dependsOn`, `dependsOnValue`); their exact content is inferred, their presence
/// is what a client must tolerate.
fn prop_json(service: &str, name: &str, value: &str) -> Value {
    let mut json = json!({
        "name": name,
        "value": value,
        "title": prop_title(name),
        "type": "text",
    });
    if service == "externaldb" {
        match name {
            "databaseType" => {
                json["type"] = json!("select");
                json["options"] = json!(["postgresql", "mysql", "sqlite"]);
            }
            "sqliteFilePath" => {
                json["dependsOn"] = json!("databaseType");
                json["dependsOnValue"] = json!("sqlite");
            }
            _ => {}
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
