//! The Docker token flow (auth-token.md, auth-oauth.md, auth-jwt.md) and everything around
//! it: challenges, tokens from Basic and OAuth2 grants, Basic straight to `/v2/`, hostile
//! tokens, revocation, visibility answers, rate limiting and the audit log.

use base64::Engine as _;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_MANIFEST,
    auth::{ADMIN, ADMIN_PASSWORD, basic, client_with, password_of, start_auth},
    error_code, header, json_body, sha256,
};

/// The claims of a JWT, unverified (to look at what was granted).
fn claims(token: &str) -> Value {
    let token = token.trim_start_matches("Bearer ");
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

/// The server's signing key (base64 PKCS#8), read from its index.
async fn signing_key(s: &crate::common::TestServer) -> String {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&s.database_url)
        .await
        .expect("index");
    let row = sqlx::query("SELECT pkcs8 FROM signing_keys")
        .fetch_one(&pool)
        .await
        .expect("signing key row");
    row.get(0)
}

async fn get_with(s: &crate::common::TestServer, auth: &str, path: &str) -> reqwest::Response {
    Client::new()
        .get(s.url(path))
        .header("authorization", auth)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("GET")
}

/// Unauthenticated requests get 401 UNAUTHORIZED with a Bearer challenge naming the realm,
/// the service and the scope to ask for (auth-token.md, "How to authenticate").
#[tokio::test]
async fn anonymous_requests_get_a_bearer_challenge() {
    let s = start_auth(|_| {}).await;
    let base = s.get("/v2/").await;
    assert_eq!(base.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&base, "www-authenticate").as_deref(),
        Some(format!("Bearer realm=\"{}/token\",service=\"berth\"", s.base).as_str())
    );
    assert_eq!(error_code(base).await, "UNAUTHORIZED");

    let pull = s.get("/v2/team/app/manifests/latest").await;
    assert_eq!(pull.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&pull, "www-authenticate")
            .unwrap()
            .ends_with(",scope=\"repository:team/app:pull\"")
    );
    let push = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&push, "www-authenticate")
            .unwrap()
            .ends_with(",scope=\"repository:team/app:pull,push\"")
    );
    assert_eq!(error_code(push).await, "UNAUTHORIZED");
}

/// A user gets a token for their own namespace, pushes and pulls with it; the token carries
/// exactly the granted actions, for this service, for 300 seconds.
#[tokio::test]
async fn token_from_basic_credentials_pushes_and_pulls() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("alice").await;
    let creds = ("alice", password_of("alice"));
    let token = s
        .bearer(
            Some((creds.0, &creds.1)),
            &["repository:alice/app:pull,push,delete"],
        )
        .await;
    let c = claims(&token);
    assert_eq!(c["aud"], "berth");
    assert_eq!(c["sub"].as_str().unwrap().split(':').next(), Some("user"));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert_eq!(
        c["access"],
        json!([{ "type": "repository", "name": "alice/app", "actions": ["pull", "push", "delete"] }])
    );
    s.client = client_with(&token);
    let (digest, manifest) = s.push_image("alice/app", "v1", &[b"layer of alice"]).await;
    let got = get_with(&s, &token, "/v2/alice/app/manifests/v1").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        header(&got, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(got.bytes().await.unwrap(), manifest);

    // Someone else's namespace: the token is issued, with no actions in it.
    let (status, body) = s
        .token(Some((creds.0, &creds.1)), &["repository:bob/app:pull,push"])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        claims(body["token"].as_str().unwrap())["access"][0]["actions"],
        json!([])
    );
    // Anonymous: a token, no refresh token even when asked.
    let (status, body) = s.token(None, &["repository:alice/app:pull"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims(body["token"].as_str().unwrap())["sub"], "anonymous");
    // Wrong password: 401.
    let (status, _) = s.token(Some(("alice", "not-her-password")), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// OAuth2 (auth-oauth.md): the password grant with access_type=offline returns a refresh
/// token; the refresh_token grant exchanges it for access tokens that work.
#[tokio::test]
async fn oauth_password_and_refresh_token_grants() {
    let s = start_auth(|_| {}).await;
    s.create_user("carol").await;
    let form = |pairs: &[(&str, &str)]| {
        Client::new()
            .post(s.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish(),
            )
            .send()
    };
    let password = password_of("carol");
    let resp = form(&[
        ("grant_type", "password"),
        ("service", "berth"),
        ("client_id", "test"),
        ("access_type", "offline"),
        ("username", "carol"),
        ("password", &password),
        ("scope", "repository:carol/x:pull,push"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    assert_eq!(body["scope"], "repository:carol/x:pull,push");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    // A refresh token is no access token.
    let r = get_with(&s, &format!("Bearer {refresh}"), "/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let resp = form(&[
        ("grant_type", "refresh_token"),
        ("service", "berth"),
        ("client_id", "test"),
        ("refresh_token", &refresh),
        ("scope", "repository:carol/x:pull"),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let access = json_body(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = get_with(&s, &format!("Bearer {access}"), "/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);

    for bad in [
        vec![("grant_type", "client_credentials")],
        vec![
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", "wrong-password"),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "not.a.token"),
        ],
    ] {
        let status = form(&bad).await.unwrap().status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED,
            "{bad:?}: {status}"
        );
    }
}

/// Basic credentials straight to `/v2/` work (simple clients), passwords and tokens alike.
#[tokio::test]
async fn basic_credentials_straight_to_v2() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("dave").await;
    s.sign_in("dave", &password_of("dave"));
    s.push_image("dave/tool", "1.0", &[b"tool"]).await;
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
    let (user, secret, _) = s.personal_token("dave", &["read_registry"]).await;
    assert_eq!(user, "dave");
    let r = get_with(&s, &basic(&user, &secret), "/v2/dave/tool/manifests/1.0").await;
    assert_eq!(r.status(), StatusCode::OK);
    // The token's secret under another user name is no login.
    let r = get_with(&s, &basic("admin", &secret), "/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// A read-only token pulls, and its push is refused with DENIED and a message that says why
/// (clients print it).
#[tokio::test]
async fn read_only_token_is_refused_push_with_a_clear_message() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("erin").await;
    s.sign_in("erin", &password_of("erin"));
    s.push_image("erin/app", "v1", &[b"app"]).await;
    let (user, secret, _) = s.personal_token("erin", &["read_registry"]).await;
    let auth = basic(&user, &secret);
    assert_eq!(
        get_with(&s, &auth, "/v2/erin/app/manifests/v1")
            .await
            .status(),
        StatusCode::OK
    );
    let bytes = b"new layer".to_vec();
    let r = Client::new()
        .post(s.url(&format!(
            "/v2/erin/app/blobs/uploads/?digest={}",
            sha256(&bytes)
        )))
        .header("authorization", &auth)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("read-only"), "{message}");
}

/// Deploy tokens act in their namespace only, with their scopes.
#[tokio::test]
async fn deploy_token_is_bound_to_its_namespace() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(Method::POST, "/namespaces", Some(json!({ "name": "ci" })))
        .await;
    let created = s
        .admin_api(
            Method::POST,
            "/namespaces/ci/deploy-tokens",
            Some(json!({ "name": "pipeline", "scopes": ["read_registry", "write_registry"] })),
        )
        .await;
    assert_eq!(created["username"], "ci+pipeline");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("berth_"));
    s.sign_in("ci+pipeline", &secret);
    s.push_image("ci/app", "build-1", &[b"ci layer"]).await;
    let bytes = b"elsewhere".to_vec();
    let r = s
        .req(
            Method::POST,
            &format!("/v2/other/app/blobs/uploads/?digest={}", sha256(&bytes)),
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The listing shows it without its secret.
    let list = s
        .admin_api(Method::GET, "/namespaces/ci/deploy-tokens", None)
        .await;
    assert_eq!(list["items"][0]["username"], "ci+pipeline");
    assert!(list["items"][0].get("secret").is_none());
    assert!(!list.to_string().contains(&secret));
}

/// Hostile tokens, each refused with 401: alg none, HS256 keyed with the public key, a bad
/// signature, expired, not yet valid, another audience; and tokens used beyond their grant
/// (401, then 403 when the same token is re-sent).
#[tokio::test]
async fn hostile_tokens_are_refused() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("frank").await;
    let creds = ("frank", password_of("frank"));
    s.sign_in(creds.0, &creds.1);
    s.push_image("frank/a", "v1", &[b"a"]).await;
    s.push_image("frank/b", "v1", &[b"b"]).await;
    s.sign_out();
    let good = s
        .bearer(Some((creds.0, &creds.1)), &["repository:frank/a:pull"])
        .await;
    assert_eq!(
        get_with(&s, &good, "/v2/frank/a/manifests/v1")
            .await
            .status(),
        StatusCode::OK
    );
    let sub = claims(&good)["sub"].as_str().unwrap().to_owned();

    let key = signing_key(&s).await;
    let now = s.clock.now();
    let access = vec![berth::auth::ResourceActions {
        kind: "repository".into(),
        name: "frank/a".into(),
        actions: vec!["pull".into(), "push".into()],
    }];
    let real = berth::auth::Keys::load(&key, "berth", "berth").unwrap();
    let elsewhere = berth::auth::Keys::load(&key, "berth", "another-registry").unwrap();
    let other_issuer = berth::auth::Keys::load(&key, "mallory", "berth").unwrap();
    let stranger =
        berth::auth::Keys::load(&berth::auth::Keys::generate(), "berth", "berth").unwrap();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = json!({
        "iss": "berth", "sub": sub, "aud": "berth", "exp": now + 300, "nbf": now, "iat": now,
        "jti": "x", "access": access,
    });
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&payload)
    );
    let public = berth::auth::Keys::public_key(&key).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let mut bad_signature = real.sign(&sub, access.clone(), now, 300, None).unwrap();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    let hostile = [
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256),
        ("bad signature", bad_signature),
        (
            "signed by another key",
            stranger.sign(&sub, access.clone(), now, 300, None).unwrap(),
        ),
        (
            "expired",
            real.sign(&sub, access.clone(), now - 3600, 300, None)
                .unwrap(),
        ),
        (
            "not yet valid",
            real.sign(&sub, access.clone(), now + 3600, 300, None)
                .unwrap(),
        ),
        (
            "wrong audience",
            elsewhere
                .sign(&sub, access.clone(), now, 300, None)
                .unwrap(),
        ),
        (
            "wrong issuer",
            other_issuer
                .sign(&sub, access.clone(), now, 300, None)
                .unwrap(),
        ),
        (
            "unknown subject",
            real.sign("user:999999", access.clone(), now, 300, None)
                .unwrap(),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in hostile {
        let r = get_with(&s, &format!("Bearer {token}"), "/v2/frank/a/manifests/v1").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(error_code(r).await, "UNAUTHORIZED", "{what}");
    }

    // A token for repository A used on B: refused (the client is told to ask for B).
    let r = get_with(&s, &good, "/v2/frank/b/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // A pull token used to push: 401 asking for a wider token (the token spec); the same
    // token re-sent gets 403 with the same challenge (RFC 6750), on which clients that only
    // ask again after a 403 (oras-py) do; a token for the scope named then pushes.
    let push_with = |token: String| {
        Client::new()
            .post(s.url("/v2/frank/a/blobs/uploads/"))
            .header("authorization", token)
            .send()
    };
    let wanted = "scope=\"repository:frank/a:pull,push\",error=\"insufficient_scope\"";
    let r = push_with(good.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").unwrap().contains(wanted));
    let r = push_with(good.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(header(&r, "www-authenticate").unwrap().contains(wanted));
    assert_eq!(error_code(r).await, "DENIED");
    let wider = s
        .bearer(Some((creds.0, &creds.1)), &["repository:frank/a:pull,push"])
        .await;
    assert_eq!(
        push_with(wider).await.unwrap().status(),
        StatusCode::ACCEPTED
    );

    // Malformed scopes are refused by the token endpoint, not silently narrowed.
    for scope in [
        "repository:a:b:c",
        "repository:frank/../etc:pull",
        "repository:..:pull",
        "repository:frank/a:fly",
        "repository:frank/a",
    ] {
        let (status, _) = s.token(Some((creds.0, &creds.1)), &[scope]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scope}");
    }
    // Oversized credentials: refused without being parsed.
    let huge = format!("Bearer {}", "a".repeat(16 * 1024));
    let r = get_with(&s, &huge, "/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let enormous = format!("Bearer {}", "a".repeat(1024 * 1024));
    let r = get_with(&s, &enormous, "/v2/").await;
    assert!(r.status().is_client_error(), "{}", r.status());
}

/// Revoking a token and deleting a user cut off what they had, tokens already issued
/// included.
#[tokio::test]
async fn revoked_tokens_and_deleted_users_are_refused() {
    let s = start_auth(|_| {}).await;
    s.create_user("gina").await;
    let (user, secret, id) = s.personal_token("gina", &["read_registry"]).await;
    let pat = basic(&user, &secret);
    assert_eq!(get_with(&s, &pat, "/v2/").await.status(), StatusCode::OK);
    let jwt = s
        .bearer(Some((&user, &secret)), &["repository:gina/x:pull"])
        .await;
    assert_eq!(get_with(&s, &jwt, "/v2/").await.status(), StatusCode::OK);
    let r = s
        .api_as(
            Some(("gina", &password_of("gina"))),
            Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_with(&s, &pat, "/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_with(&s, &jwt, "/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let listed = s.admin_api(Method::GET, "/users/gina/tokens", None).await;
    assert!(listed["items"][0]["revoked_at"].as_i64().is_some());

    s.create_user("hank").await;
    let hank = s.bearer(Some(("hank", &password_of("hank"))), &[]).await;
    let hank_basic = basic("hank", &password_of("hank"));
    assert_eq!(get_with(&s, &hank, "/v2/").await.status(), StatusCode::OK);
    assert_eq!(
        get_with(&s, &hank_basic, "/v2/").await.status(),
        StatusCode::OK
    );
    s.admin_api(Method::DELETE, "/users/hank", None).await;
    assert_eq!(
        get_with(&s, &hank, "/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_with(&s, &hank_basic, "/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A private repository answers an outsider exactly as a missing one does: same status,
/// same code, same body, for manifests, blobs, tags and referrers.
#[tokio::test]
async fn private_repository_answers_like_a_missing_one() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("ivy").await;
    s.create_user("jack").await;
    s.sign_in("ivy", &password_of("ivy"));
    let layer = b"ivy's secret layer";
    let (digest, _) = s.push_image("ivy/secret", "v1", &[layer]).await;
    let jack = basic("jack", &password_of("jack"));
    let jack_token = s
        .bearer(
            Some(("jack", &password_of("jack"))),
            &["repository:ivy/secret:pull", "repository:ivy/nothing:pull"],
        )
        .await;
    for auth in [&jack, &jack_token] {
        for (present, missing) in [
            (
                "/v2/ivy/secret/manifests/v1",
                "/v2/ivy/nothing/manifests/v1",
            ),
            (
                &format!("/v2/ivy/secret/manifests/{digest}")[..],
                &format!("/v2/ivy/nothing/manifests/{digest}")[..],
            ),
            (
                &format!("/v2/ivy/secret/blobs/{}", sha256(layer))[..],
                &format!("/v2/ivy/nothing/blobs/{}", sha256(layer))[..],
            ),
            ("/v2/ivy/secret/tags/list", "/v2/ivy/nothing/tags/list"),
            (
                &format!("/v2/ivy/secret/referrers/{digest}")[..],
                &format!("/v2/ivy/nothing/referrers/{digest}")[..],
            ),
        ] {
            let a = get_with(&s, auth, present).await;
            let b = get_with(&s, auth, missing).await;
            assert_eq!(a.status(), b.status(), "{present}");
            let (ha, hb) = (
                header(&a, "www-authenticate"),
                header(&b, "www-authenticate"),
            );
            assert_eq!(ha, hb, "{present}");
            assert_eq!(
                a.bytes().await.unwrap(),
                b.bytes().await.unwrap(),
                "{present}"
            );
        }
    }
    // Mounting its blob by digest into a repository of one's own does not copy it.
    s.sign_in("jack", &password_of("jack"));
    let r = s
        .req(
            Method::POST,
            &format!(
                "/v2/jack/copy/blobs/uploads/?mount={}&from=ivy/secret",
                sha256(layer)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "a plain upload session, not a mount"
    );
    let r = s
        .head(&format!("/v2/jack/copy/blobs/{}", sha256(layer)))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The catalog lists only what the caller may see: public for anyone, internal for users,
/// private for members.
#[tokio::test]
async fn catalog_lists_only_what_the_caller_may_see() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(Method::POST, "/namespaces", Some(json!({ "name": "org" })))
        .await;
    s.create_user("kim").await;
    s.create_user("lee").await;
    s.set_role("org", "kim", "reporter").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    for (repo, visibility) in [
        ("org/open", "public"),
        ("org/inner", "internal"),
        ("org/closed", "private"),
    ] {
        s.set_visibility(repo, visibility).await;
        s.push_image(repo, "v1", &[repo.as_bytes()]).await;
    }
    let catalog = |auth: Option<String>| {
        let mut req = Client::new().get(s.url("/v2/_catalog"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { json_body(req.send().await.unwrap()).await["repositories"].clone() }
    };
    assert_eq!(catalog(None).await, json!(["org/open"]));
    assert_eq!(
        catalog(Some(basic("lee", &password_of("lee")))).await,
        json!(["org/inner", "org/open"])
    );
    assert_eq!(
        catalog(Some(basic("kim", &password_of("kim")))).await,
        json!(["org/closed", "org/inner", "org/open"])
    );
    assert_eq!(
        catalog(Some(basic(ADMIN, ADMIN_PASSWORD))).await,
        json!(["org/closed", "org/inner", "org/open"])
    );
}

/// Repeated wrong passwords get 429 with Retry-After, for the address and for the user,
/// even with the right password; after the window the right password works again.
#[tokio::test]
async fn brute_force_is_rate_limited_then_recovers() {
    let s = start_auth(|cfg| {
        cfg.auth.max_failures = 3;
        cfg.auth.failure_window_secs = 2;
    })
    .await;
    s.create_user("mia").await;
    let right = basic("mia", &password_of("mia"));
    for _ in 0..3 {
        let r = get_with(&s, &basic("mia", "guess-guess"), "/v2/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = get_with(&s, &right, "/v2/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    // The token endpoint is limited the same way.
    let (status, _) = s.token(Some(("mia", &password_of("mia"))), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Past the 2 s window (moved on the server's clock, not waited for) the right password
    // works again.
    s.clock.advance(3);
    assert_eq!(get_with(&s, &right, "/v2/").await.status(), StatusCode::OK);
}

/// Auth failures, token creation and revocation, pushes and deletes land in the audit log,
/// readable by administrators only, with no secret in it.
#[tokio::test]
async fn audit_log_records_security_events() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("ned").await;
    let ned = ("ned", password_of("ned"));
    assert_eq!(
        get_with(&s, &basic("ned", "wrong-password"), "/v2/")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, secret, id) = s
        .personal_token(
            "ned",
            &["read_registry", "write_registry", "delete_registry"],
        )
        .await;
    s.sign_in("ned", &secret);
    let (digest, _) = s.push_image("ned/app", "v1", &[b"audited"]).await;
    let r = s.delete(&format!("/v2/ned/app/manifests/{digest}")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .api_as(
            Some((ned.0, &ned.1)),
            Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = s
        .api_as(Some((ned.0, &ned.1)), Method::GET, "/audit", None)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s.api_as(None, Method::GET, "/audit", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let log = s.admin_api(Method::GET, "/audit?limit=100", None).await;
    let entries = log["items"].as_array().unwrap();
    let has = |action: &str, target: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["target"].as_str().unwrap_or("").contains(target))
    };
    assert!(has("login.failed", ""), "{log}");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "login.failed" && e["actor"] == "ned")
    );
    assert!(has("token.create.personal", "ned"), "{log}");
    assert!(has("push", "ned/app:v1"), "{log}");
    assert!(has("delete", &format!("ned/app:{digest}")), "{log}");
    assert!(has("token.revoke", "ned"), "{log}");
    assert!(!log.to_string().contains(&secret));
    assert!(!log.to_string().contains(&ned.1));
    // Newest first.
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
}

/// Tokens survive a restart: the signing key is kept (in the index by default).
#[tokio::test]
async fn tokens_survive_a_restart() {
    let s = start_auth(|_| {}).await;
    s.create_user("ola").await;
    let token = s.bearer(Some(("ola", &password_of("ola"))), &[]).await;
    let dir = s.stop().await;
    let s = crate::common::TestServer::start_in(dir, |cfg| cfg.auth.enabled = true).await;
    assert_eq!(get_with(&s, &token, "/v2/").await.status(), StatusCode::OK);
}

/// With a key file configured, the key is created there once and used from then on.
#[tokio::test]
async fn signing_key_file_is_created_and_reused() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("signing.key");
    let p = path.clone();
    let s = start_auth(move |cfg| cfg.auth.signing_key_path = Some(p)).await;
    let token = s.bearer(None, &[]).await;
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(berth::auth::Keys::public_key(&key).is_some());
    let c = claims(&token);
    let keys_of_file = berth::auth::Keys::load(&key, "berth", "berth").unwrap();
    assert_eq!(
        keys_of_file
            .verify(token.trim_start_matches("Bearer "))
            .unwrap()
            .sub,
        c["sub"].as_str().unwrap()
    );
}

/// Token-only mode (`auth.basic_on_v2 = false`): Basic on `/v2/` gets the challenge with the
/// scope to ask for, the token endpoint still takes Basic, and its token works.
#[tokio::test]
async fn token_only_mode_challenges_basic_with_the_scope() {
    let mut s = start_auth(|cfg| cfg.auth.basic_on_v2 = false).await;
    s.create_user("pia").await;
    let pia = basic("pia", &password_of("pia"));
    let r = get_with(&s, &pia, "/v2/pia/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").unwrap();
    assert!(
        challenge.ends_with(",scope=\"repository:pia/app:pull\""),
        "{challenge}"
    );
    let token = s
        .bearer(
            Some(("pia", &password_of("pia"))),
            &["repository:pia/app:pull,push"],
        )
        .await;
    s.client = client_with(&token);
    s.push_image("pia/app", "v1", &[b"token only"]).await;
    assert_eq!(
        get_with(&s, &token, "/v2/pia/app/manifests/v1")
            .await
            .status(),
        StatusCode::OK
    );
}
