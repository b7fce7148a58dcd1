//! Access control over the storage lifecycle: protected tags follow the caller's role, and the
//! lifecycle endpoints (collection, policies, repository settings and deletion) check it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    error_code, image_config, image_manifest, sha256,
};

/// A server where `dev` is a developer and `maint` a maintainer of namespace `prod`, and the
/// administrator pushed `prod/app:v1.0`, whose manifest is returned.
async fn prod() -> (TestServer, Vec<u8>) {
    let mut s = start_auth(|_| {}).await;
    for user in ["dev", "maint"] {
        s.create_user(user).await;
    }
    s.admin_api(Method::POST, "/namespaces", Some(json!({ "name": "prod" })))
        .await;
    s.set_role("prod", "dev", "developer").await;
    s.set_role("prod", "maint", "maintainer").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (_, manifest) = s.push_image("prod/app", "v1.0", &[b"release"]).await;
    (s, manifest)
}

async fn as_user(
    s: &TestServer,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> StatusCode {
    let password = password_of(user);
    let creds = if user == ADMIN {
        (ADMIN, ADMIN_PASSWORD)
    } else {
        (user, password.as_str())
    };
    s.api_as(Some(creds), method, path, body).await.status()
}

/// A developer may push but not move or delete a protected tag; a maintainer may do both.
#[tokio::test]
async fn protected_tags_follow_the_callers_role() {
    let (mut s, manifest) = prod().await;
    let settings = "/repositories/prod/app/-/settings";
    let rules = json!({ "protected_patterns": ["v[0-9]+(\\.[0-9]+)*"] });
    assert_eq!(
        as_user(&s, "dev", Method::PUT, settings, Some(rules.clone())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&s, "maint", Method::PUT, settings, Some(rules)).await,
        StatusCode::OK
    );
    assert_eq!(
        as_user(&s, "dev", Method::GET, settings, None).await,
        StatusCode::OK
    );

    s.sign_in("dev", &password_of("dev"));
    let resp = s
        .put_manifest("prod/app", "v2.0", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "DENIED");
    // A manifest the repository does not hold yet, under a protected tag: refused too, and
    // not stored.
    let config = image_config("linux", "arm64", None);
    s.push_blob("prod/app", &config).await;
    let new = image_manifest(&config, &[]);
    let resp = s
        .put_manifest("prod/app", "v3.0", Some(OCI_MANIFEST), &new)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(resp).await, "DENIED");
    assert_eq!(
        s.get(&format!("/v2/prod/app/manifests/{}", sha256(&new)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let resp = s
        .put_manifest("prod/app", "nightly", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "unprotected tags are open"
    );

    s.sign_in("maint", &password_of("maint"));
    let resp = s
        .put_manifest("prod/app", "v2.0", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        s.delete("/v2/prod/app/manifests/v1.0").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.get("/v2/prod/app/manifests/v2.0").await.status(),
        StatusCode::OK
    );
}

/// Collection is for administrators; a policy of one repository is for its maintainers, one
/// over a pattern for administrators; deleting a repository takes a maintainer.
#[tokio::test]
async fn lifecycle_endpoints_check_the_role() {
    let (s, _) = prod().await;
    for user in ["dev", "maint"] {
        assert_eq!(
            as_user(&s, user, Method::GET, "/gc/runs", None).await,
            StatusCode::FORBIDDEN,
            "{user}"
        );
        assert_eq!(
            as_user(
                &s,
                user,
                Method::POST,
                "/gc/runs",
                Some(json!({ "dry_run": true }))
            )
            .await,
            StatusCode::FORBIDDEN,
            "{user}"
        );
    }
    assert_eq!(
        as_user(&s, ADMIN, Method::GET, "/gc/estimate", None).await,
        StatusCode::OK
    );
    let anonymous = s.api_as(None, Method::GET, "/gc/runs", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let one_repo = json!({ "repository": "prod/app", "name_regex": ".*", "keep_n": 5 });
    let pattern = json!({ "repositories": "prod/.*", "name_regex": ".*", "keep_n": 5 });
    assert_eq!(
        as_user(
            &s,
            "dev",
            Method::PUT,
            "/policies/keep",
            Some(one_repo.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&s, "maint", Method::PUT, "/policies/keep", Some(one_repo)).await,
        StatusCode::OK
    );
    assert_eq!(
        as_user(
            &s,
            "maint",
            Method::POST,
            "/policies/keep/runs",
            Some(json!({ "dry_run": true }))
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        as_user(
            &s,
            "maint",
            Method::PUT,
            "/policies/wide",
            Some(pattern.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(
            &s,
            "maint",
            Method::PUT,
            "/policies/keep",
            Some(pattern.clone())
        )
        .await,
        StatusCode::FORBIDDEN,
        "a maintainer cannot widen a policy past the repository"
    );
    assert_eq!(
        as_user(&s, ADMIN, Method::PUT, "/policies/wide", Some(pattern)).await,
        StatusCode::OK
    );
    assert_eq!(
        as_user(&s, "maint", Method::DELETE, "/policies/wide", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&s, "maint", Method::GET, "/policies", None).await,
        StatusCode::FORBIDDEN
    );

    let repo = "/repositories/prod/app";
    assert_eq!(
        as_user(&s, "dev", Method::DELETE, repo, None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&s, "maint", Method::DELETE, repo, None).await,
        StatusCode::NO_CONTENT
    );
}
