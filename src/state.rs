//! What every request handler shares, `/v2/` and `/api/v1` alike: the domain services, the
//! peer address, and the slot where the verified user is noted for the access log. It sits below both [`crate::http`] and [`crate::api`] so that neither
//! imports the other; [`crate::serve`] builds it once and attaches it to the merged routes.

use std::sync::{Arc, OnceLock};

use axum::extract::ConnectInfo;

use crate::{auth::Auth, config::ExternalUrl, registry::Registry};

/// The state attached to every route: the domain, access control, and how we are reached.
#[derive(Clone)]
pub struct AppState {
    /// The registry domain: blobs, uploads, manifests, tags and the catalog.
    pub registry: Registry,
    /// Access control: who is asking and what they may do.
    pub auth: Auth,
    /// Served over TLS by Berth itself: absolute URLs it builds are `https`.
    pub https: bool,
    /// How clients reach the registry, when configured (`external_url`).
    pub external_url: Option<ExternalUrl>,
}

/// The peer address of a request, as the listener saw it (proxies' headers are not trusted:
/// they would let anyone escape the login rate limit).
pub fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Who made a request, once a handler has checked it: the access log's `user`. The layer
/// puts an empty slot in the request's extensions; the code that verifies credentials fills it.
#[derive(Clone, Default)]
pub struct AccessUser(Arc<OnceLock<String>>);

impl AccessUser {
    /// Records `name` as the request's verified user (the first one recorded stays).
    pub fn note(extensions: &axum::http::Extensions, name: &str) {
        if let Some(slot) = extensions.get::<AccessUser>() {
            let _ = slot.0.set(name.to_owned());
        }
    }

    /// The user noted for the request, if credentials were verified.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}
