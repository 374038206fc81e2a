//! DocSpace portals: `GET`/`POST /api/2.0/settings/authservice` (API doc §1–§5).
//!
//! Reading matches services by the name GET shows (`appleID`); writing uses the
//! configuration key POST accepts (`appleid`) — see [`catalog::from_listed`]. The GET's
//! fields also tell roughly which server version answers, and with it the longest value
//! the portal stores (§3, §4).

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::transport::{decode_response, Reply, Request, Retry, Transport};
use super::{Listing, Payload, Portal, PortalError, PortalProp, PortalService};
use crate::catalog;
use crate::config::PortalConfig;
use crate::secret::{ExposeSecret, SecretString};

const AUTHSERVICE: &str = "api/2.0/settings/authservice";
const LOGIN: &str = "api/2.0/authentication";

/// A DocSpace portal.
pub struct DocSpace {
    transport: Transport,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireService {
    name: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    can_set: bool,
    #[serde(default)]
    paid: Option<bool>,
    #[serde(default)]
    props: Option<Vec<WireProp>>,
}

#[derive(Deserialize)]
struct WireProp {
    name: String,
    #[serde(default)]
    value: Option<SecretString>,
    /// Present from v3.7.1, the release that raised the value limit to 4000.
    #[serde(default, rename = "type")]
    kind: Option<serde::de::IgnoredAny>,
}

impl DocSpace {
    pub fn new(name: &str, cfg: &PortalConfig) -> Result<DocSpace, PortalError> {
        Ok(DocSpace {
            transport: Transport::new(name, cfg, LOGIN)?,
        })
    }
}

#[async_trait]
impl Portal for DocSpace {
    fn name(&self) -> &str {
        self.transport.name()
    }

    async fn services(&self, retry: Retry) -> Result<Listing, PortalError> {
        let body = self
            .transport
            .call(&Request::get(AUTHSERVICE), retry, success_or_error)
            .await?;
        parse_services_response(&body)
    }

    async fn set(&self, service: &PortalService, payload: &Payload) -> Result<bool, PortalError> {
        let body = serde_json::json!({
            "name": service.key,
            "props": payload
                .props()
                .iter()
                .map(|(name, value)| serde_json::json!({ "name": name, "value": value.expose_secret() }))
                .collect::<Vec<_>>(),
        });
        let sent = payload.values();
        let request = Request {
            method: Method::POST,
            path: AUTHSERVICE,
            body: Some(&body),
            headers: &[],
        };
        let interpret = |reply: Reply| {
            if reply.status.is_success() {
                Ok(reply.body)
            } else {
                Err(reply.error(&sent))
            }
        };
        let bytes = self
            .transport
            .call(&request, Retry::Normal, interpret)
            .await?;
        decode_response::<bool>(&bytes, &sent)
    }
}

fn success_or_error(reply: Reply) -> Result<Vec<u8>, PortalError> {
    if reply.status.is_success() {
        Ok(reply.body)
    } else {
        Err(reply.error(&[]))
    }
}

/// Decodes a `GET settings/authservice` answer (public so that `tests/fuzz_parsers.rs`
/// can reach the client's parser).
pub fn parse_services_response(bytes: &[u8]) -> Result<Listing, PortalError> {
    let wire: Vec<WireService> = decode_response(bytes, &[])?;
    let typed = wire
        .iter()
        .flat_map(|s| s.props.iter().flatten())
        .any(|p| p.kind.is_some());
    let services = wire
        .into_iter()
        .map(|s| {
            let (name, key) = match catalog::from_listed(&s.name) {
                Some(info) => (info.name.to_string(), info.name.to_string()),
                None => (s.name.clone(), s.name.clone()),
            };
            PortalService {
                title: s.title.unwrap_or_else(|| s.name.clone()),
                listed_as: s.name,
                name,
                key,
                can_set: s.can_set,
                paid: s.paid.unwrap_or(false),
                props: s
                    .props
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| PortalProp {
                        name: p.name,
                        value: p.value.unwrap_or_else(|| SecretString::from(String::new())),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Listing {
        services,
        // Props carry `type` from v3.7.1, the release that raised the limit to 4000;
        // without it the portal is older and stores at most 255 (v3.0 had no limit, but
        // cannot be told apart from v3.1–v3.6: 255 is the safe reading).
        value_limit: Some(if typed {
            super::LIMIT
        } else {
            super::LIMIT_BEFORE_3_7_1
        }),
        version_hint: Some(if typed {
            "DocSpace v3.7.1 or later".into()
        } else {
            "DocSpace before v3.7.1".into()
        }),
    })
}

/// Decodes a `POST settings/authservice` answer: the portal's `true` (something changed)
/// or `false` (all values were already equal).
pub fn parse_set_response(bytes: &[u8]) -> Result<bool, PortalError> {
    decode_response::<bool>(bytes, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_map_to_configuration_keys_and_fields_give_the_limit() {
        let v37 = br#"{"response":[
            {"name":"appleID","title":"Apple ID","canSet":true,"paid":false,"props":[{"name":"appleIdClientId","value":"x","title":"t","type":"text"}]},
            {"name":"google","canSet":true,"props":[{"name":"googleClientId","value":"","type":"text"}]},
            {"name":"custom","canSet":false}
        ],"status":0}"#;
        let l = parse_services_response(v37).unwrap_or_else(|e| panic!("{e}"));
        let apple = &l.services[0];
        assert_eq!(
            (
                apple.name.as_str(),
                apple.listed_as.as_str(),
                apple.key.as_str()
            ),
            ("appleid", "appleID", "appleid")
        );
        assert_eq!(l.services[2].key, "custom");
        assert_eq!(l.value_limit, Some(4000));
        let v35 = br#"{"response":[{"name":"google","canSet":true,"props":[{"name":"googleClientId","value":""}]}],"status":0}"#;
        let l = parse_services_response(v35).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.value_limit, Some(255));
    }
}
