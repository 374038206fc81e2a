//! Request bodies, bound the way the portal's ASP.NET model binding does: field names matched
//! case-insensitively, unknown fields ignored, a wrong JSON type is a validation error.

use serde_json::{Map, Value};

/// A body the binder rejected; answered with the 400 validation envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindError {
    /// The ASP.NET model-state key, e.g. `$` or `$.props[0].value`.
    pub key: String,
    pub message: String,
}

impl BindError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> BindError {
        BindError {
            key: key.into(),
            message: message.into(),
        }
    }

    fn not_convertible(path: &str, dotnet_type: &str) -> BindError {
        BindError::new(
            path,
            format!("The JSON value could not be converted to {dotnet_type}. Path: {path}"),
        )
    }
}

/// Parses a request body that must be JSON.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, BindError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BindError::new("", "A non-empty request body is required."));
    }
    serde_json::from_slice(body)
        .map_err(|e| BindError::new("$", format!("The JSON is invalid: {e}. Path: $")))
}

/// `POST settings/authservice`: `{"name", "props": [{"name", "value"}]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthServiceRequest {
    pub name: Option<String>,
    pub props: Option<Vec<PropRequest>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PropRequest {
    pub name: Option<String>,
    pub value: Option<String>,
}

impl AuthServiceRequest {
    /// DocSpace: a prop's `value` is a required member (it may be `null`, not absent).
    pub fn bind(body: &Value) -> Result<AuthServiceRequest, BindError> {
        bind_auth_keys(
            body,
            "ASC.Web.Api.ApiModels.RequestsDto.AuthServiceRequestsDto",
            "ASC.Web.Api.ApiModels.RequestsDto.AuthKey",
            true,
        )
    }

    /// The index of the first prop whose value is longer than `max` UTF-16 code units (as .NET
    /// measures string length).
    pub fn first_too_long(&self, max: usize) -> Option<usize> {
        self.props.as_ref()?.iter().position(|p| {
            p.value
                .as_deref()
                .is_some_and(|v| v.encode_utf16().count() > max)
        })
    }

    /// Workspace's AjaxPro `SaveAuthKeys(string name, List<AuthKey> props)`: the same shape
    /// (`{"name", "props": [{"Name", "Value"}]}`), field names matched case-insensitively too.
    pub fn bind_ajax_pro(body: &Value) -> Result<AuthServiceRequest, BindError> {
        bind_auth_keys(
            body,
            "AjaxPro.JavaScriptObject",
            "ASC.Web.Studio.UserControls.Management.AuthKey",
            false,
        )
    }
}

fn bind_auth_keys(
    body: &Value,
    root_type: &str,
    prop_type: &str,
    value_required: bool,
) -> Result<AuthServiceRequest, BindError> {
    let object = as_object(body, "$", root_type)?;
    let name = string_field(object, "name", "$")?;
    let props = match field(object, "props") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let path = format!("$.props[{i}]");
                    let prop = as_object(item, &path, prop_type)?;
                    if value_required && field(prop, "value").is_none() {
                        return Err(BindError::new(
                            path,
                            format!(
                                "JSON deserialization for type '{prop_type}' was missing \
                                 required properties, including the following: value"
                            ),
                        ));
                    }
                    Ok(PropRequest {
                        name: string_field(prop, "name", &path)?,
                        value: string_field(prop, "value", &path)?,
                    })
                })
                .collect::<Result<Vec<_>, BindError>>()?,
        ),
        Some(_) => {
            return Err(BindError::not_convertible(
                "$.props",
                &format!("System.Collections.Generic.List`1[{prop_type}]"),
            ))
        }
    };
    Ok(AuthServiceRequest { name, props })
}

/// `POST authentication`: `{"userName", "password"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginRequest {
    pub user_name: Option<String>,
    pub password: Option<String>,
}

impl LoginRequest {
    pub fn bind(body: &Value) -> Result<LoginRequest, BindError> {
        let object = as_object(
            body,
            "$",
            "ASC.Web.Api.ApiModels.RequestsDto.AuthRequestsDto",
        )?;
        Ok(LoginRequest {
            user_name: string_field(object, "userName", "$")?,
            password: string_field(object, "password", "$")?,
        })
    }
}

fn as_object<'a>(
    value: &'a Value,
    path: &str,
    dotnet_type: &str,
) -> Result<&'a Map<String, Value>, BindError> {
    value
        .as_object()
        .ok_or_else(|| BindError::not_convertible(path, dotnet_type))
}

/// The field named `name` in any letter case (the last one wins, as in System.Text.Json).
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .next_back()
}

fn string_field(
    object: &Map<String, Value>,
    name: &str,
    parent: &str,
) -> Result<Option<String>, BindError> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BindError::not_convertible(
            &format!("{parent}.{name}"),
            "System.String",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_are_case_insensitive() {
        let request = AuthServiceRequest::bind(&json!({
            "NAME": "google",
            "Props": [{"Name": "googleClientId", "VALUE": "x"}, {"name": "b", "value": null}],
            "title": "ignored",
            "canSet": true
        }))
        .unwrap();
        assert_eq!(request.name.as_deref(), Some("google"));
        let props = request.props.unwrap();
        assert_eq!(props[0].name.as_deref(), Some("googleClientId"));
        assert_eq!(props[0].value.as_deref(), Some("x"));
        assert_eq!(props[1].value, None);
    }

    #[test]
    fn wrong_types_are_bind_errors() {
        let err = AuthServiceRequest::bind(
            &json!({"name": "google", "props": [{"name": "a", "value": 5}]}),
        )
        .unwrap_err();
        assert_eq!(err.key, "$.props[0].value");
        assert!(AuthServiceRequest::bind(&json!([1])).is_err());
        assert!(AuthServiceRequest::bind(&json!({"props": "x"})).is_err());
        assert!(parse_json(b"").is_err());
        assert!(parse_json(b"{nope").is_err());
    }

    #[test]
    fn docspace_requires_value_but_not_a_non_null_one() {
        let err = AuthServiceRequest::bind(
            &json!({"name": "google", "props": [{"name": "a", "value": null}, {"name": "b"}]}),
        )
        .unwrap_err();
        assert_eq!(err.key, "$.props[1]");
        assert!(err.message.contains("value"), "{}", err.message);
        let ajax =
            AuthServiceRequest::bind_ajax_pro(&json!({"name": "G", "props": [{"Name": "b"}]}))
                .unwrap();
        assert_eq!(ajax.props.unwrap()[0].value, None);
    }

    #[test]
    fn too_long_counts_utf16_units() {
        let request = AuthServiceRequest::bind(&json!({"name": "g", "props": [
            {"name": "a", "value": "xx"}, {"name": "b", "value": "😀😀"}
        ]}))
        .unwrap();
        assert_eq!(request.first_too_long(4), None);
        assert_eq!(request.first_too_long(3), Some(1));
        assert_eq!(request.first_too_long(1), Some(0));
    }
}
