//! Checks a store's config block makes after parsing ([`crate::sources::StoreConfig::check`]),
//! and the URL rules shared by stores and portals.

use std::net::IpAddr;

/// Errors found in one `[sources.NAME]` block after parsing. Each is reported at the value
/// of the field it names (at the block's name when the field is not written), with
/// file:line:column, like every other config error.
pub struct Checks<'a> {
    what: &'a str,
    errors: Vec<(Option<&'static str>, String)>,
}

impl<'a> Checks<'a> {
    pub(crate) fn new(what: &'a str) -> Checks<'a> {
        Checks {
            what,
            errors: Vec::new(),
        }
    }

    /// `[sources.NAME]`, to start messages with.
    pub fn what(&self) -> &str {
        self.what
    }

    /// An error about the block as a whole (reported at its name).
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push((None, message.into()));
    }

    /// An error about `field`.
    pub fn error_at(&mut self, field: &'static str, message: impl Into<String>) {
        self.errors.push((Some(field), message.into()));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(crate) fn into_errors(self) -> Vec<(Option<&'static str>, String)> {
        self.errors
    }

    /// A store address (`field`) must be http(s) with a host: `vault.example.com:8200`
    /// parses as a URL with the scheme `vault.example.com`, which no request can use.
    /// Plain http to a host other than this one sends credentials in clear text: an
    /// error unless the block sets `allow_insecure_http = true`.
    pub fn store_url(
        &mut self,
        url: &url::Url,
        field: &'static str,
        example: &str,
        allow_insecure_http: bool,
    ) -> bool {
        if !((url.scheme() == "https" || url.scheme() == "http") && url.host().is_some()) {
            let msg = format!(
                "{}: {field} must be an http(s) URL with a host, e.g. \"{example}\" (got scheme `{}`)",
                self.what,
                url.scheme()
            );
            self.error_at(field, msg);
            return false;
        }
        if let Some(host) = insecure_http_host(url, allow_insecure_http) {
            let msg = format!(
                "{}: {field} uses plain http:// to {host}, which sends credentials and secret values in clear text; use https://, or set allow_insecure_http = true on this source if the network is trusted",
                self.what
            );
            self.error_at(field, msg);
            return false;
        }
        true
    }
}

/// The host of a plain `http://` URL that is not this machine, unless allowed: the
/// thing to report. Loopback is 127.0.0.0/8, `::1` and `localhost`.
pub fn insecure_http_host(url: &url::Url, allow_insecure_http: bool) -> Option<String> {
    if url.scheme() != "http" || allow_insecure_http {
        return None;
    }
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(ip).is_loopback(),
    };
    (!loopback).then(|| url.host_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(u: &str, allow: bool) -> Option<String> {
        insecure_http_host(&url::Url::parse(u).unwrap(), allow)
    }

    #[test]
    fn plain_http_is_only_for_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8200",
            "http://127.1.2.3",
            "http://localhost:4566",
            "http://LOCALHOST",
            "http://[::1]:8200",
            "https://vault.example.com",
            "https://10.0.0.1",
        ] {
            assert_eq!(flagged(ok, false), None, "{ok}");
        }
        for bad in [
            "http://vault.example.com:8200",
            "http://10.0.0.5",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            assert!(flagged(bad, false).is_some(), "{bad}");
            assert_eq!(flagged(bad, true), None, "{bad}");
        }
        // Credentials in the URL are never part of what is reported.
        assert_eq!(
            flagged("http://user:pw@vault.internal/", false).as_deref(),
            Some("vault.internal")
        );
    }
}
