//! Workspace (Community Server v12) portals: best effort.
//!
//! Workspace has no REST endpoint for authorization keys. Its settings page saves
//! through an AjaxPro call (`SaveAuthKeys`), always answering HTTP 200 with either
//! `{"value": true|false}` or `{"error": {"Message", "Type"}}`, and values can only be
//! read back from the settings page's HTML. Service names are capitalised there
//! (`Google`, `DropBox`, `GoogleCloud`); authsync maps them to the DocSpace names used
//! in `[[map]]` blocks, case-insensitively (and `OneDrive` to `skydrive`). Every prop of
//! a service must be sent together: the unmapped ones are filled in from the page.

use async_trait::async_trait;
use reqwest::Method;
use scraper::{Html, Selector};
use serde::Deserialize;

use super::transport::{cut, scrub_values, Reply, Request, Retry, Transport};
use super::{Listing, Payload, Portal, PortalError, PortalProp, PortalService};
use crate::catalog;
use crate::config::PortalConfig;
use crate::secret::{ExposeSecret, SecretString};

/// The settings page listing the keys.
const SETTINGS_PAGE: &str = "Management.aspx?type=10";
/// The AjaxPro handler that saves them.
const SAVE_PATH: &str =
    "ajaxpro/ASC.Web.Studio.UserControls.Management.AuthorizationKeys,ASC.Web.Studio.ashx";
/// The AjaxPro method header.
const SAVE_METHOD: (&str, &str) = ("X-AjaxPro-Method", "SaveAuthKeys");
/// Workspace's login path.
const LOGIN: &str = "api/2.0/authentication.json";

/// A Workspace (Community Server v12) portal.
pub struct Workspace {
    transport: Transport,
}

impl Workspace {
    pub fn new(name: &str, cfg: &PortalConfig) -> Result<Workspace, PortalError> {
        Ok(Workspace {
            transport: Transport::new(name, cfg, LOGIN)?,
        })
    }
}

#[async_trait]
impl Portal for Workspace {
    fn name(&self) -> &str {
        self.transport.name()
    }

    async fn services(&self, retry: Retry) -> Result<Listing, PortalError> {
        let interpret = |reply: Reply| {
            if reply.status.is_success() {
                Ok(reply.body)
            } else {
                Err(reply.error(&[]))
            }
        };
        let body = self
            .transport
            .call(&Request::get(SETTINGS_PAGE), retry, interpret)
            .await?;
        Ok(Listing {
            services: parse_settings_page(&String::from_utf8_lossy(&body))?,
            value_limit: None,
            version_hint: Some("Workspace (Community Server)".into()),
        })
    }

    /// Every prop of the service in one AjaxPro call, the unmapped ones carried over from
    /// the listing (Workspace refuses a partial set).
    async fn set(&self, service: &PortalService, payload: &Payload) -> Result<bool, PortalError> {
        let mut all: Vec<(&str, &str)> = Vec::new();
        for p in &service.props {
            let value = payload
                .props()
                .iter()
                .find(|(n, _)| n == &p.name)
                .map(|(_, v)| v.expose_secret())
                .unwrap_or_else(|| p.value.expose_secret());
            all.push((&p.name, value));
        }
        let empty: Vec<&str> = all
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(n, _)| *n)
            .collect();
        if !empty.is_empty() {
            return Err(PortalError::BadRequest(format!(
                "Workspace saves every prop of `{}` together and refuses empty ones; map {} too (nothing was sent)",
                service.key,
                empty.join(", ")
            )));
        }
        let body = serde_json::json!({
            "name": service.key,
            "props": all
                .iter()
                .map(|(name, value)| serde_json::json!({ "Name": name, "Value": value }))
                .collect::<Vec<_>>(),
        });
        let sent: Vec<&str> = all.iter().map(|(_, v)| *v).collect();
        let request = Request {
            method: Method::POST,
            path: SAVE_PATH,
            body: Some(&body),
            headers: &[SAVE_METHOD],
        };
        // AjaxPro answers in-band (always 200): read the answer inside the retry loop, so
        // a refused login token is re-logged like a 401.
        let interpret = |reply: Reply| {
            if !reply.status.is_success() {
                return Err(reply.error(&sent));
            }
            parse_save_answer(&reply.body, |m| scrub_values(m, &sent)).map(|v| {
                if v {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                }
            })
        };
        let bytes = self
            .transport
            .call(&request, Retry::Normal, interpret)
            .await?;
        Ok(bytes == b"true")
    }
}

/// The DocSpace-style name for a Workspace service name.
pub fn canonical(wire: &str) -> String {
    if wire.eq_ignore_ascii_case("onedrive") {
        return "skydrive".into();
    }
    catalog::SERVICES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(wire))
        .map(|s| s.name.to_string())
        .unwrap_or_else(|| wire.to_lowercase())
}

/// Services and values from the settings page (the client's parser; public so that
/// `tests/fuzz_parsers.rs` can reach it). Each service is a
/// `div.auth-service-item[data-service]` holding `input.textEdit` fields.
pub fn parse_settings_page(html: &str) -> Result<Vec<PortalService>, PortalError> {
    let doc = Html::parse_document(html);
    let (Ok(items), Ok(inputs), Ok(title)) = (
        Selector::parse("div.auth-service-item[data-service]"),
        Selector::parse("input[id]"),
        Selector::parse(".auth-service-title"),
    ) else {
        return Err(PortalError::InvalidResponse(
            "internal selector error".into(),
        ));
    };
    let mut out = Vec::new();
    for item in doc.select(&items) {
        let wire = item
            .value()
            .attr("data-service")
            .unwrap_or_default()
            .to_string();
        let can_set = item
            .value()
            .attr("data-can-set")
            .is_none_or(|v| v != "false");
        let props = item
            .select(&inputs)
            .map(|i| PortalProp {
                name: i.value().attr("id").unwrap_or_default().to_string(),
                value: SecretString::from(i.value().attr("value").unwrap_or_default().to_string()),
            })
            .collect();
        let title = item
            .select(&title)
            .next()
            .map(|t| t.text().collect::<String>())
            .unwrap_or_else(|| wire.clone());
        out.push(PortalService {
            name: canonical(&wire),
            listed_as: wire.clone(),
            key: wire,
            title,
            can_set,
            paid: false,
            props,
        });
    }
    if out.is_empty() {
        return Err(PortalError::InvalidResponse(
            "the settings page lists no authorization keys (not a Workspace portal, or its markup changed)".into(),
        ));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct AjaxAnswer {
    #[serde(default)]
    value: Option<bool>,
    #[serde(default)]
    error: Option<AjaxError>,
}

#[derive(Deserialize)]
struct AjaxError {
    #[serde(default, rename = "Message")]
    message: Option<String>,
    #[serde(default, rename = "Type")]
    kind: Option<String>,
}

/// The AjaxPro answer: `value`, or an in-band error mapped to the DocSpace-like kinds.
pub fn parse_save_answer(
    bytes: &[u8],
    scrub: impl Fn(String) -> String,
) -> Result<bool, PortalError> {
    let answer: AjaxAnswer = serde_json::from_slice(bytes).map_err(|_| {
        PortalError::InvalidResponse(format!(
            "the AjaxPro answer ({} bytes) is not JSON",
            bytes.len()
        ))
    })?;
    if let Some(e) = answer.error {
        // Scrub, then cut (a value straddling the cut would survive as a fragment).
        let message = cut(scrub(e.message.unwrap_or_default()));
        let kind = e.kind.unwrap_or_default();
        // Decided on the exception type; the message is localized and only shown. Any
        // other exception refused the values, like a 400 from DocSpace.
        return Err(match kind.as_str() {
            "System.UnauthorizedAccessException" => PortalError::Unauthorized,
            "System.Security.SecurityException" => PortalError::AccessDenied(message),
            k if k.contains("Billing") => PortalError::PaymentRequired(message),
            _ => PortalError::BadRequest(message),
        });
    }
    answer.value.ok_or_else(|| {
        PortalError::InvalidResponse("the AjaxPro answer has neither value nor error".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_parsed_and_names_mapped() {
        let html = r#"<html><body>
<input type="text" class="textEdit" id="studioSearch" value="" />
<div class="auth-service-item" data-service="Google" data-can-set="true">
<span class="auth-service-title">Google</span>
<input type="text" class="textEdit" id="googleClientId" value="a&amp;b&quot;c" />
<input type="text" class="textEdit" id="googleClientSecret" value="" />
</div>
<div class="auth-service-item" data-service="DropBox" data-can-set="false"><span class="auth-service-title">DropBox</span></div>
<div class="auth-service-item" data-service="OneDrive"><input id="skydriveappkey" value="k" /></div>
</body></html>"#;
        let services = parse_settings_page(html).unwrap();
        assert_eq!(services.len(), 3);
        let google = &services[0];
        assert_eq!(
            (google.key.as_str(), google.name.as_str()),
            ("Google", "google")
        );
        assert_eq!(google.props[0].value.expose_secret(), "a&b\"c");
        assert!(!services[1].can_set);
        assert_eq!(services[1].name, "dropbox");
        assert_eq!(services[2].name, "skydrive");
        assert!(parse_settings_page("<html></html>").is_err());
    }

    #[test]
    fn answers_are_mapped() {
        let id = |s: String| s;
        assert!(matches!(
            parse_save_answer(br#"{"value":true}"#, id),
            Ok(true)
        ));
        let unauth = br#"{"error":{"Message":"Attempted to perform an unauthorized operation.","Type":"System.UnauthorizedAccessException"}}"#;
        assert!(matches!(
            parse_save_answer(unauth, id),
            Err(PortalError::Unauthorized)
        ));
        for text in ["Bad keys", "Schlechte Tasten", "Неверные ключи"] {
            let bad =
                format!(r#"{{"error":{{"Message":"{text}","Type":"System.ArgumentException"}}}}"#);
            assert!(matches!(
                parse_save_answer(bad.as_bytes(), id),
                Err(PortalError::BadRequest(m)) if m == text
            ));
        }
        assert!(matches!(
            parse_save_answer(b"<html>", id),
            Err(PortalError::InvalidResponse(_))
        ));
    }
}
