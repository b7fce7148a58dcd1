//! Helpers for servers with access control on: an administrator made at start, users,
//! members and tokens made through `/api/v1`, and clients that present credentials.

use base64::Engine as _;
use reqwest::{
    Client, Method, Response, StatusCode,
    header::{AUTHORIZATION, HeaderMap, HeaderValue},
};
use serde_json::{Value, json};

use super::TestServer;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// Every test user's password is its name followed by this.
pub const PASSWORD_SUFFIX: &str = "-secret-pw";

pub fn password_of(user: &str) -> String {
    format!("{user}{PASSWORD_SUFFIX}")
}

/// A server with auth on and an administrator; `configure` adjusts the rest.
pub async fn start_auth(configure: impl FnOnce(&mut berth::Config)) -> TestServer {
    TestServer::start_with(|cfg| {
        cfg.auth.enabled = true;
        cfg.auth.admin_password = Some(ADMIN_PASSWORD.into());
        configure(cfg);
    })
    .await
}

pub fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A client that sends `authorization` with every request.
pub fn client_with(authorization: &str) -> Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(authorization).expect("header value"),
    );
    Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestServer {
    /// Makes the server's own client (used by every helper) present these credentials.
    pub fn sign_in(&mut self, user: &str, password: &str) {
        self.client = client_with(&basic(user, password));
    }

    /// Makes the server's own client anonymous.
    pub fn sign_out(&mut self) {
        self.client = Client::new();
    }

    /// An `/api/v1` call as `user` (with `password`), JSON body optional.
    pub async fn api_as(
        &self,
        creds: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = Client::new().request(method, self.url(&format!("/api/v1{path}")));
        if let Some((user, password)) = creds {
            req = req.header(AUTHORIZATION, basic(user, password));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("api request")
    }

    /// An `/api/v1` call as the administrator that must succeed; returns its JSON (if any).
    pub async fn admin_api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let resp = self
            .api_as(Some((ADMIN, ADMIN_PASSWORD)), method, path, body)
            .await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn create_user(&self, name: &str) {
        self.admin_api(
            Method::POST,
            "/users",
            Some(json!({ "name": name, "password": password_of(name) })),
        )
        .await;
    }

    pub async fn set_role(&self, namespace: &str, user: &str, role: &str) {
        self.admin_api(
            Method::PUT,
            &format!("/namespaces/{namespace}/members/{user}"),
            Some(json!({ "role": role })),
        )
        .await;
    }

    pub async fn set_visibility(&self, repo: &str, visibility: &str) {
        self.admin_api(
            Method::PATCH,
            &format!("/repositories/{repo}"),
            Some(json!({ "visibility": visibility })),
        )
        .await;
    }

    /// A personal access token of `user` (created by the user) → (login name, secret, id).
    pub async fn personal_token(&self, user: &str, scopes: &[&str]) -> (String, String, i64) {
        let resp = self
            .api_as(
                Some((user, &password_of(user))),
                Method::POST,
                &format!("/users/{user}/tokens"),
                Some(json!({ "name": "test", "scopes": scopes })),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        (
            body["username"].as_str().expect("username").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
            body["id"].as_i64().expect("id"),
        )
    }

    /// GET /token with optional Basic credentials and `scopes`; returns the status and body.
    pub async fn token(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> (StatusCode, Value) {
        let query: Vec<(&str, &str)> = std::iter::once(("service", "berth"))
            .chain(scopes.iter().map(|s| ("scope", *s)))
            .collect();
        let mut req = Client::new().get(self.url("/token")).query(&query);
        if let Some((user, password)) = creds {
            req = req.header(AUTHORIZATION, basic(user, password));
        }
        let resp = req.send().await.expect("GET /token");
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// An access token that must be issued.
    pub async fn bearer(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let (status, body) = self.token(creds, scopes).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        format!("Bearer {}", body["token"].as_str().expect("token"))
    }
}
