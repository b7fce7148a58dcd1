//! The permission matrix: every role × visibility × action through HTTP, each against the
//! expected allow or deny (README, "Roles and visibility"). Basic credentials go straight to
//! `/v2/` and `/api/v1`; denials are checked for their status and spec code too.

use reqwest::{Client, Method, StatusCode};
use serde_json::json;

use crate::common::{
    auth::{ADMIN, ADMIN_PASSWORD, basic, password_of, start_auth},
    error_code, random_bytes, sha256,
};

const ROLES: [&str; 5] = ["guest", "reporter", "developer", "maintainer", "owner"];
const VISIBILITIES: [&str; 3] = ["public", "internal", "private"];

/// Who asks: anonymous, a signed-in user with no role, each role, an administrator.
fn identities() -> Vec<(&'static str, Option<(String, String)>)> {
    let mut all = vec![("anonymous", None), ("outsider", Some(user("outsider")))];
    for role in ROLES {
        all.push((role, Some(user(role))));
    }
    all.push(("admin", Some((ADMIN.to_owned(), ADMIN_PASSWORD.to_owned()))));
    all
}

fn user(name: &str) -> (String, String) {
    (name.to_owned(), password_of(name))
}

/// The rules, written out independently of the code that applies them.
fn expected(who: &str, visibility: &str, action: &str) -> bool {
    let rank = |w: &str| match w {
        "admin" | "owner" => 5,
        "maintainer" => 4,
        "developer" => 3,
        "reporter" => 2,
        "guest" => 1,
        _ => 0,
    };
    let signed_in = who != "anonymous";
    let reads = match visibility {
        "public" => true,
        "internal" => signed_in,
        _ => rank(who) >= 2,
    };
    match action {
        "pull" | "list" => reads,
        "push" => rank(who) >= 3,
        "delete" => rank(who) >= 4,
        "manage" => rank(who) >= 5,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_role_visibility_and_action() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.create_user("outsider").await;
    for role in ROLES {
        s.create_user(role).await;
        s.set_role("team", role, role).await;
    }
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    for visibility in VISIBILITIES {
        let repo = format!("team/{visibility}");
        s.set_visibility(&repo, visibility).await;
        s.push_image(&repo, "v1", &[visibility.as_bytes()]).await;
    }

    let mut wrong = Vec::new();
    let mut checked = 0;
    for (who, creds) in identities() {
        let authorization = creds.as_ref().map(|(u, p)| basic(u, p));
        let send = |method: Method, path: String| {
            let mut req = Client::new().request(method, s.url(&path));
            if let Some(a) = &authorization {
                req = req.header("authorization", a);
            }
            req
        };
        let catalog = send(Method::GET, "/v2/_catalog".into())
            .send()
            .await
            .expect("catalog");
        assert_eq!(catalog.status(), StatusCode::OK, "{who}: catalog");
        let catalog: serde_json::Value = catalog.json().await.expect("catalog json");
        for visibility in VISIBILITIES {
            let repo = format!("team/{visibility}");
            // A denial: 401 UNAUTHORIZED without credentials; with them, DENIED (403) for
            // writes and for reads exactly what a missing repository answers.
            let denied = |status: StatusCode, code: &str, read_code: &str| {
                if who == "anonymous" {
                    status == StatusCode::UNAUTHORIZED && code == "UNAUTHORIZED"
                } else if read_code.is_empty() {
                    status == StatusCode::FORBIDDEN && code == "DENIED"
                } else {
                    status == StatusCode::NOT_FOUND && code == read_code
                }
            };
            for action in ["pull", "list", "push", "delete", "manage"] {
                let want = expected(who, visibility, action);
                let (allowed, refused_properly) = match action {
                    "pull" => {
                        let r = send(Method::GET, format!("/v2/{repo}/manifests/v1"))
                            .header("accept", "application/vnd.oci.image.manifest.v1+json")
                            .send()
                            .await
                            .expect("pull");
                        let status = r.status();
                        let ok = status == StatusCode::OK;
                        let code = if ok {
                            String::new()
                        } else {
                            error_code(r).await
                        };
                        (ok, denied(status, &code, "MANIFEST_UNKNOWN"))
                    }
                    "list" => {
                        let listed = catalog["repositories"]
                            .as_array()
                            .expect("repositories")
                            .iter()
                            .any(|r| r == repo.as_str());
                        let r = send(Method::GET, format!("/v2/{repo}/tags/list"))
                            .send()
                            .await
                            .expect("tags");
                        let status = r.status();
                        let tags_ok = status == StatusCode::OK;
                        let code = if tags_ok {
                            String::new()
                        } else {
                            error_code(r).await
                        };
                        if listed != tags_ok {
                            wrong.push(format!(
                                "{who} {visibility}: catalog {listed}, tags {tags_ok}"
                            ));
                        }
                        (listed, denied(status, &code, "NAME_UNKNOWN"))
                    }
                    "push" => {
                        let bytes = random_bytes(64);
                        let r = send(
                            Method::POST,
                            format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(&bytes)),
                        )
                        .body(bytes)
                        .send()
                        .await
                        .expect("push");
                        let status = r.status();
                        let ok = status == StatusCode::CREATED;
                        let code = if ok {
                            String::new()
                        } else {
                            error_code(r).await
                        };
                        (ok, denied(status, &code, ""))
                    }
                    "delete" => {
                        let digest = s.push_blob(&repo, &random_bytes(64)).await;
                        let r = send(Method::DELETE, format!("/v2/{repo}/blobs/{digest}"))
                            .send()
                            .await
                            .expect("delete");
                        let status = r.status();
                        let ok = status == StatusCode::ACCEPTED;
                        let code = if ok {
                            String::new()
                        } else {
                            error_code(r).await
                        };
                        (ok, denied(status, &code, ""))
                    }
                    _ => {
                        let r = send(Method::PATCH, format!("/api/v1/repositories/{repo}"))
                            .json(&json!({ "visibility": visibility }))
                            .send()
                            .await
                            .expect("manage");
                        let status = r.status();
                        let ok = status == StatusCode::NO_CONTENT;
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
                        (ok, denied(status, &code, ""))
                    }
                };
                checked += 1;
                if allowed != want {
                    wrong.push(format!(
                        "{who} {action} on {visibility}: allowed={allowed}, expected {want}"
                    ));
                } else if !allowed && !refused_properly && action != "list" {
                    wrong.push(format!(
                        "{who} {action} on {visibility}: refused with the wrong status or code"
                    ));
                }
            }
        }
    }
    assert_eq!(checked, 8 * 3 * 5);
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
