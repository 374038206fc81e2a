//! Workspace (Community Server v12) portals: best effort.
//!
//! Workspace has no REST endpoint for authorization keys. Its settings page saves
//! through an AjaxPro call (`SaveAuthKeys`), always answering HTTP 200 with either
//! `{"value": true|false}` or `{"error": {"Message", "Type"}}`, and values can only be
//! read back from the settings page's HTML. Service names are capitalised there
//! (`Google`, `DropBox`, `GoogleCloud`); authsync maps them to the DocSpace names used
//! in `[[map]]` blocks, case-insensitively (and `OneDrive` to `skydrive`). Every prop of
//! a service must be sent together: the unmapped ones are filled in from the page.

use scraper::{Html, Selector};
use serde::Deserialize;

use super::{PortalError, PortalProp, PortalService};
use crate::catalog;
use crate::secret::SecretString;

/// The settings page listing the keys.
pub const SETTINGS_PAGE: &str = "Management.aspx?type=10";
/// The AjaxPro handler that saves them.
pub const SAVE_PATH: &str =
    "ajaxpro/ASC.Web.Studio.UserControls.Management.AuthorizationKeys,ASC.Web.Studio.ashx";
/// The AjaxPro method header.
pub const SAVE_METHOD: (&str, &str) = ("X-AjaxPro-Method", "SaveAuthKeys");
/// Workspace's login path.
pub const LOGIN: &str = "api/2.0/authentication.json";

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

/// Services and values from the settings page. Each service is a
/// `div.auth-service-item[data-service]` holding `input.textEdit` fields.
pub fn parse_settings_page(html: &str) -> Result<Vec<(String, PortalService)>, PortalError> {
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
        out.push((
            wire.clone(),
            PortalService {
                name: canonical(&wire),
                title,
                can_set,
                paid: false,
                props,
            },
        ));
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
        let message: String = scrub(e.message.unwrap_or_default())
            .chars()
            .take(300)
            .collect();
        let kind = e.kind.unwrap_or_default();
        return Err(match kind.as_str() {
            "System.UnauthorizedAccessException" => PortalError::Unauthorized,
            "System.Security.SecurityException" => PortalError::Forbidden(message),
            k if k.contains("Billing") => PortalError::PaymentRequired(message),
            _ if message.trim() == "Bad keys" => PortalError::BadKeys,
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
    use crate::secret::ExposeSecret;

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
        let (wire, google) = &services[0];
        assert_eq!((wire.as_str(), google.name.as_str()), ("Google", "google"));
        assert_eq!(google.props[0].value.expose_secret(), "a&b\"c");
        assert!(!services[1].1.can_set);
        assert_eq!(services[1].1.name, "dropbox");
        assert_eq!(services[2].1.name, "skydrive");
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
        let bad = br#"{"error":{"Message":"Bad keys","Type":"System.ArgumentException"}}"#;
        assert!(matches!(
            parse_save_answer(bad, id),
            Err(PortalError::BadKeys)
        ));
        assert!(matches!(
            parse_save_answer(b"<html>", id),
            Err(PortalError::InvalidResponse(_))
        ));
    }
}
