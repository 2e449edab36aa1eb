//! The OpenAPI description as a contract the end-to-end tests hold the server to.
//!
//! Every response the harness's [`Client`](crate::support::Client) receives goes through
//! [`check`]: the request must be a described operation (or the server's own `no_route`
//! answer), its status must be described (or fall under the `default` error answer), its
//! content type must be one the operation declares, and a JSON body must validate against the
//! declared schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1). So the description
//! cannot drift from what the server answers while the suite passes.
//!
//! The tests below check the other direction: every described operation is served, and the
//! served document is the one the checks use.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestServer;

/// The description, as the server serves it.
static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(switchboard::api::openapi::document_json())
        .expect("the OpenAPI description is JSON")
});

/// Compiled response schemas, by their JSON pointer into the description.
static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
    LazyLock::new(Default::default);

/// The described path template `path` (percent-encoded, without query) falls under, if any.
/// A literal segment beats a parameter, so `/users/me` would win over `/users/{id}`.
pub fn template_for(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let paths = DOCUMENT["paths"].as_object().expect("paths");
    paths
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') && part.ends_with('}') {
                    if segment.is_empty() {
                        return None;
                    }
                } else if part == segment {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, template)| template.clone())
}

/// A JSON pointer segment (RFC 6901: `~` and `/` escaped) as a URI fragment may carry it
/// (the braces of path templates percent-encoded, RFC 6901 §6).
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Panic unless this response is what the description says `method path` answers.
pub fn check(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) {
    let method = method.to_ascii_lowercase();
    let Some(template) = template_for(path) else {
        // Not a described path: only the server's own "no such endpoint" may answer.
        let code = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string));
        assert!(
            status == 404 && code.as_deref() == Some("no_route"),
            "{method} {path} answered {status} {body:?}, but the OpenAPI description has no \
             such path: describe the route"
        );
        return;
    };
    let operation = &DOCUMENT["paths"][&template][&method];
    if operation.is_null() {
        assert!(
            status == 405 || status == 404,
            "{method} {path} answered {status}, but {template} describes no {method} operation"
        );
        return;
    }
    let responses = operation["responses"].as_object().expect("responses");
    let key = if responses.contains_key(&status.to_string()) {
        status.to_string()
    } else {
        assert!(
            !(200..400).contains(&status) && responses.contains_key("default"),
            "{method} {template} answered {status}, which its description does not list"
        );
        "default".to_string()
    };
    let response = &responses[&key];
    let Some(content) = response["content"].as_object() else {
        assert!(
            body.is_empty(),
            "{method} {template} {status}: described without a body, answered {body:?}"
        );
        return;
    };
    let media_type = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // A described range (`image/*`, `*/*`: a file sent with its stored type) covers the type.
    let range = format!("{}/*", media_type.split('/').next().unwrap_or_default());
    assert!(
        [media_type.as_str(), range.as_str(), "*/*"]
            .iter()
            .any(|key| content.contains_key(*key)),
        "{method} {template} {status}: answered as {media_type:?}, described as {:?}",
        content.keys().collect::<Vec<_>>()
    );
    if !(media_type == "application/json" || media_type.ends_with("+json")) {
        return;
    }
    if !content.contains_key(&media_type) || content[&media_type]["schema"].is_null() {
        return;
    }
    let instance: Value = serde_json::from_str(body).unwrap_or_else(|err| {
        panic!("{method} {template} {status}: {media_type} body is not JSON ({err}): {body:?}")
    });
    let pointer = format!(
        "#/paths/{}/{method}/responses/{key}/content/{}/schema",
        pointer_segment(&template),
        pointer_segment(&media_type)
    );
    let validator = validator(&pointer);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} answered {status} with a body the OpenAPI description does not \
         allow:\n  {}\nbody: {instance}",
        errors.join("\n  ")
    );
}

/// A validator for the schema at `pointer`, resolving `$ref`s within the description: the
/// root is the whole document with a `$ref` to the schema (its other members are not
/// schema keywords, so a 2020-12 validator ignores them).
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    let mut cache = VALIDATORS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = cache.get(pointer) {
        return found.clone();
    }
    let mut root = DOCUMENT.clone();
    root["$ref"] = Value::String(pointer.to_string());
    let validator = Arc::new(
        jsonschema::draft202012::options()
            .build(&root)
            .unwrap_or_else(|err| panic!("the schema at {pointer} does not compile: {err}")),
    );
    cache.insert(pointer.to_string(), validator.clone());
    validator
}

/// `{name}` segments filled with a value the path's parameter accepts.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|part| {
            if part.starts_with('{') && part.ends_with('}') {
                "1"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every described operation is served: asked without a token, none answers with the
/// server's `no_route` fallback or a 405, and every answer fits the description.
#[tokio::test]
async fn every_described_operation_is_served() {
    let server = TestServer::start().await;
    // Redirects (the OpenID Connect routes answer 303) are answers to check, not to follow.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let paths = DOCUMENT["paths"].as_object().expect("paths");
    let mut asked = 0;
    for (template, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let path = concrete(template);
            let url = format!("{}{path}", server.base);
            let verb = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .expect("method");
            let response = http.request(verb, &url).send().await.expect("request");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.text().await.expect("body");
            assert_ne!(
                status, 405,
                "{method} {template} is described but not served"
            );
            assert!(
                !(status == 404 && body.contains("\"no_route\"")),
                "{method} {template} is described but not served"
            );
            check(method, &path, status, content_type.as_deref(), &body);
            asked += 1;
        }
    }
    assert!(asked > 90, "only {asked} operations described");
}

/// `GET /api/v1/openapi.json` serves the description the checks use, to callers with a
/// token; an undescribed path is answered `no_route`, which the check accepts and nothing
/// else.
#[tokio::test]
async fn the_served_description_is_the_checked_one() {
    let server = TestServer::start().await;
    let anonymous = server
        .http
        .get(format!("{}/api/v1/openapi.json", server.base))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let admin = server.admin().await;
    let (status, served) = admin.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, *DOCUMENT);
    assert_eq!(served["openapi"], "3.1.0");

    let (status, body) = admin.get("/api/v1/no-such-endpoint").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The check refuses what the description does not allow.
    let wrong_shape = std::panic::catch_unwind(|| {
        check(
            "GET",
            "/api/v1/rooms",
            200,
            Some("application/json"),
            r#"{"not": "a list"}"#,
        )
    });
    assert!(wrong_shape.is_err(), "a wrong body passed the check");
    let undescribed_status = std::panic::catch_unwind(|| {
        check("GET", "/api/v1/rooms", 202, Some("application/json"), "[]")
    });
    assert!(undescribed_status.is_err(), "an undescribed status passed");
    let undescribed_path = std::panic::catch_unwind(|| {
        check(
            "GET",
            "/api/v1/undescribed",
            200,
            Some("application/json"),
            "{}",
        )
    });
    assert!(undescribed_path.is_err(), "an undescribed path passed");
}
