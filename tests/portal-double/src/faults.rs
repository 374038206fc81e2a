//! Injected failures for `/api/2.0/settings/authservice` (Workspace: for the AjaxPro
//! `SaveAuthKeys` handler and the settings page).

use std::time::Duration;

/// A failure to inject with [`PortalDouble::inject`](crate::PortalDouble::inject). Faults are
/// checked, in the order they were injected, before the portal handles a request to
/// `/api/2.0/settings/authservice` (before authentication too); the first that matches the
/// request's method is used up and applies. On a Workspace double they apply instead to
/// requests to [`WORKSPACE_SAVE_PATH`](crate::WORKSPACE_SAVE_PATH) (POST) and `/Management.aspx`
/// (GET). Login requests are never faulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only requests with this method (case-insensitive); `None` = any method.
    pub method: Option<String>,
    /// How many requests it hits; `None` = until [`clear_faults`](crate::PortalDouble::clear_faults).
    pub times: Option<usize>,
}

impl Fault {
    /// A fault hitting every request to the endpoint until cleared.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            method: None,
            times: None,
        }
    }

    /// A fault hitting the next request only.
    pub fn once(kind: FaultKind) -> Fault {
        Fault::new(kind).with_times(1)
    }

    /// Restricts the fault to one method, e.g. `"POST"`.
    pub fn with_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_owned());
        self
    }

    /// Limits the fault to the next `n` matching requests.
    pub fn with_times(mut self, n: usize) -> Fault {
        self.times = Some(n);
        self
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Sleep, then answer normally.
    Delay(Duration),
    /// Answer with this status and the portal's error envelope (500 → message
    /// `Internal error`; 401 → empty body, as the portal does). On Workspace: ASP.NET's HTML
    /// error page (`text/html`) with this status; 401 → empty body.
    Status(u16),
    /// 429 with a `Retry-After` header (seconds) and an empty body.
    RateLimited { retry_after_secs: u64 },
    /// 200 with the non-JSON body `<html>oops</html>`.
    Garbage,
    /// Accept the request and never answer (the connection stays open until the double is
    /// dropped).
    Hang,
    /// Answer with this status and an EMPTY body, as the portal does for an API key without
    /// the needed scope or a portal being moved (403), a tenant that is not paid at all (402)
    /// or a suspended portal (404). (For a lasting state use
    /// [`set_portal_state`](crate::PortalDouble::set_portal_state) or
    /// [`set_tenant_paid`](crate::PortalDouble::set_tenant_paid).)
    EmptyBody(u16),
    /// 403 whose body is a bare JSON string (IP restriction), localized:
    /// `"Access from your IP address is restricted"` in English. (Lasting:
    /// [`set_ip_restricted`](crate::PortalDouble::set_ip_restricted).) On Workspace: the HTML
    /// error page with 403.
    IpRestricted,
    /// POST only (a GET never takes it): the request is handled normally, but if it gets as far
    /// as saving non-empty values, the key check fails as an enforced one does — every key of
    /// the service is cleared and the answer is 400 with the localized `Bad keys` (Workspace:
    /// the in-band error). A clear (all values empty) is not checked, so it is not refused.
    /// (For chosen values use [`refuse`](crate::PortalDouble::refuse).)
    Refuse,
}

impl FaultKind {
    /// Whether a request with this method takes the fault.
    fn applies_to(&self, method: &str) -> bool {
        match self {
            FaultKind::Refuse => method.eq_ignore_ascii_case("POST"),
            _ => true,
        }
    }
}

/// The faults currently injected, in injection order.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    active: Vec<Fault>,
}

impl Faults {
    pub fn push(&mut self, fault: Fault) {
        if fault.times != Some(0) {
            self.active.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Uses up the first fault matching `method` and returns what it does.
    pub fn take(&mut self, method: &str) -> Option<FaultKind> {
        let index = self.active.iter().position(|f| {
            f.kind.applies_to(method)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        let fault = &mut self.active[index];
        let kind = fault.kind.clone();
        if let Some(times) = fault.times.as_mut() {
            *times -= 1;
            if *times == 0 {
                self.active.remove(index);
            }
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down_and_filter_by_method() {
        let mut faults = Faults::default();
        faults.push(
            Fault::new(FaultKind::Garbage)
                .with_method("post")
                .with_times(2),
        );
        faults.push(Fault::new(FaultKind::Status(500)));
        assert_eq!(faults.take("GET"), Some(FaultKind::Status(500)));
        assert_eq!(faults.take("POST"), Some(FaultKind::Garbage));
        assert_eq!(faults.take("POST"), Some(FaultKind::Garbage));
        assert_eq!(faults.take("POST"), Some(FaultKind::Status(500)));
        faults.clear();
        assert_eq!(faults.take("POST"), None);
        faults.push(Fault::new(FaultKind::Hang).with_times(0));
        assert_eq!(faults.take("GET"), None);
    }

    #[test]
    fn refuse_is_only_taken_by_a_post() {
        let mut faults = Faults::default();
        faults.push(Fault::once(FaultKind::Refuse));
        faults.push(Fault::once(FaultKind::EmptyBody(402)));
        assert_eq!(faults.take("GET"), Some(FaultKind::EmptyBody(402)));
        assert_eq!(faults.take("GET"), None);
        assert_eq!(faults.take("post"), Some(FaultKind::Refuse));
        assert_eq!(faults.take("POST"), None);
    }
}
