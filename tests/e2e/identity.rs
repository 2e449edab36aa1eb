//! Enterprise identity: SCIM provisioning with the operations identity providers send (Entra
//! ID's and Okta's shapes), group-mapped rooms and roles, leavers whose sessions end at
//! once, and the local-password policy. On both stores.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::{GroupMapping, LocalPasswords, Secret};

use crate::hardening::{BACKENDS, start_on};
use crate::support::{ADMIN_PASSWORD, Client, PASSWORD, TestServer};

const SCIM_TOKEN: &str = "scim-token-for-tests-0123456789abcdef";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// An identity provider speaking SCIM to a server.
pub struct Scim {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Scim {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_string(),
            http: reqwest::Client::new(),
            token: token.to_string(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if status != StatusCode::NO_CONTENT {
            assert_eq!(
                response.headers()["content-type"],
                "application/scim+json",
                "{path}"
            );
        }
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, operations: Value) -> (StatusCode, Value) {
        let body = json!({ "schemas": [PATCH], "Operations": operations });
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> StatusCode {
        self.call(reqwest::Method::DELETE, path, None).await.0
    }

    /// How many users a filter finds.
    async fn found(&self, filter: &str) -> i64 {
        let (status, list) = self
            .get(&format!("/Users?filter={}", urlencode(filter)))
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["totalResults"].as_i64().unwrap()
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn scim_error(body: &Value) -> (&str, &str) {
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    (
        body["code"].as_str().unwrap_or_default(),
        body["scimType"].as_str().unwrap_or_default(),
    )
}

/// The rooms a user is a member of (as they see them).
async fn rooms_of(client: &Client) -> Vec<i64> {
    let (status, rooms) = client.get("/api/v1/rooms").await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<i64> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

async fn audit_actions(admin: &Client) -> Vec<(String, String, String, Value)> {
    let (status, records) = admin.get("/api/v1/admin/audit?limit=500").await;
    assert_eq!(status, StatusCode::OK);
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
                r["detail"].clone(),
            )
        })
        .collect()
}

fn scim_on(config: &mut switchboard::config::Config, mappings: Vec<GroupMapping>) {
    config.identity.scim.enabled = true;
    config.identity.scim.token = Some(Secret(SCIM_TOKEN.into()));
    config.identity.scim.max_group_members = 5;
    config.identity.groups = mappings;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_refuses_without_the_token_and_is_absent_unless_enabled() {
    let server = TestServer::start().await;
    let (status, body) = Scim::new(&server.base, SCIM_TOKEN).get("/Users").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(scim_error(&body).0, "scim_disabled");

    let server = TestServer::start_with(|c| scim_on(c, Vec::new())).await;
    for token in ["", "wrong", &SCIM_TOKEN[..SCIM_TOKEN.len() - 1]] {
        let (status, body) = Scim::new(&server.base, token).get("/Users").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(scim_error(&body).0, "invalid_scim_token");
    }
    // An admin's access token is not a provisioning token either.
    let admin = server.admin().await;
    let (status, _) = Scim::new(&server.base, &admin.token).get("/Users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let scim = Scim::new(&server.base, SCIM_TOKEN);
    let (status, config) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["patch"]["supported"], true);
    let (status, types) = scim.get("/ResourceTypes").await;
    assert_eq!(
        (status, types["totalResults"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    let (status, schemas) = scim.get("/Schemas").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schemas["Resources"][0]["id"], USER);
}

/// The sequence an identity provider runs, in its own shapes: create (Entra ID's payload
/// with the enterprise extension), match by `userName` and `externalId`, group create and
/// membership patches (Okta's add and remove with values, Entra ID's remove by path),
/// deactivation by `active = "False"`, delete. Bad requests change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_provisions_accounts_groups_rooms_and_roles_the_way_providers_send_them() {
    for backend in BACKENDS {
        // The mapped room must exist before the server reads its mapping: make it, then
        // restart with the mapping (the data directory and database stay).
        let (server, db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let eng = admin.group("engineering", &[]).await;
        let database_url = db.as_ref().map(|db| db.url.clone());
        let mappings = vec![
            GroupMapping {
                name: "Engineering".into(),
                rooms: vec![eng],
                admin: false,
                compliance: false,
            },
            GroupMapping {
                name: "Auditors".into(),
                rooms: Vec::new(),
                admin: false,
                compliance: true,
            },
        ];
        let server = server
            .restart(move |c| {
                c.database_url = database_url.map(Secret);
                c.auth.break_glass_accounts = vec!["admin".into()];
                scim_on(c, mappings);
            })
            .await;
        let admin = server.admin().await;
        let bob = admin.create_user("bob").await;
        let scim = Scim::new(&server.base, SCIM_TOKEN);

        // The break-glass admin is out of the provider's reach.
        let (status, error) = scim
            .patch(
                &format!("/Users/{}", admin.id),
                json!([{ "op": "replace", "path": "active", "value": false }]),
            )
            .await;
        assert_eq!(
            (status, scim_error(&error).0),
            (StatusCode::FORBIDDEN, "protected_account"),
            "{backend:?}"
        );
        assert_eq!(
            scim.delete(&format!("/Users/{}", admin.id)).await,
            StatusCode::FORBIDDEN
        );

        // Entra ID creates a user with its enterprise extension and attributes we do not keep.
        let (status, carol) = scim
            .post(
                "/Users",
                json!({
                    "schemas": [USER, ENTERPRISE],
                    "externalId": "0f7a-carol",
                    "userName": "Carol.Jones",
                    "active": true,
                    "displayName": "Carol Jones",
                    "title": "Engineer",
                    "preferredLanguage": "en-GB",
                    "emails": [{ "primary": true, "type": "work", "value": "carol@example.com" }],
                    "name": { "givenName": "Carol", "familyName": "Jones", "formatted": "Carol Jones" },
                    ENTERPRISE: { "department": "R&D", "employeeNumber": "42" },
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {carol}");
        assert_eq!(carol["userName"], "carol.jones");
        assert_eq!(carol["displayName"], "Carol Jones");
        assert_eq!(carol["externalId"], "0f7a-carol");
        assert_eq!(carol["emails"][0]["value"], "carol@example.com");
        let carol_id = carol["id"].as_str().unwrap().to_string();

        // Matching, as providers do before they create.
        assert_eq!(scim.found(r#"userName eq "CAROL.JONES""#).await, 1);
        assert_eq!(scim.found(r#"externalId eq "0f7a-carol""#).await, 1);
        assert_eq!(
            scim.found(r#"userName eq "bob""#).await,
            1,
            "local accounts match too"
        );
        assert_eq!(scim.found(r#"userName eq "nobody""#).await, 0);
        let (status, body) = scim.get("/Users?filter=title%20co%20%22x%22").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(scim_error(&body), ("invalid_filter", "invalidFilter"));
        let (status, body) = scim.get("/Users?startIndex=abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(scim_error(&body), ("invalid_query", "invalidSyntax"));
        let (status, page) = scim.get("/Users?startIndex=1&count=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["itemsPerPage"], 1);
        assert!(page["totalResults"].as_i64().unwrap() >= 3);

        // Bad input creates nothing.
        let refused = [
            (
                json!({ "schemas": [USER], "userName": "dave", "favouriteColour": "red" }),
                StatusCode::BAD_REQUEST,
                "unknown_attribute",
            ),
            (
                json!({ "schemas": [USER], "userName": "dave", ENTERPRISE: {} }),
                StatusCode::BAD_REQUEST,
                "unknown_attribute",
            ),
            (
                json!({ "userName": "dave" }),
                StatusCode::BAD_REQUEST,
                "invalid_syntax",
            ),
            (
                json!({ "schemas": [USER], "userName": "dave smith!" }),
                StatusCode::BAD_REQUEST,
                "invalid_user_name",
            ),
            (
                json!({ "schemas": [USER], "userName": "dave", "externalId": "0f7a-carol" }),
                StatusCode::CONFLICT,
                "identity_taken",
            ),
            (
                json!({ "schemas": [USER], "userName": "dave", "active": "maybe" }),
                StatusCode::BAD_REQUEST,
                "invalid_value",
            ),
            (
                json!({ "schemas": [USER], "userName": "Carol.Jones" }),
                StatusCode::CONFLICT,
                "user_exists",
            ),
        ];
        for (body, expected_status, expected_code) in refused {
            let (status, error) = scim.post("/Users", body.clone()).await;
            assert_eq!(
                (status, scim_error(&error).0),
                (expected_status, expected_code),
                "{backend:?}: {body}"
            );
        }
        assert_eq!(scim.found(r#"userName eq "dave""#).await, 0);

        // A group that maps to the room: its members are put in it.
        let (status, group) = scim
            .post(
                "/Groups",
                json!({
                    "schemas": [GROUP],
                    "displayName": "Engineering",
                    "externalId": "grp-eng",
                    "members": [{ "value": carol_id }],
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        let group_path = format!("/Groups/{}", group["id"].as_str().unwrap());
        assert_eq!(group["members"][0]["value"], carol_id.as_str());
        let (status, listed) = scim
            .get("/Groups?filter=displayName%20eq%20%22Engineering%22&excludedAttributes=members")
            .await;
        assert_eq!(
            (status, listed["totalResults"].as_i64()),
            (StatusCode::OK, Some(1))
        );
        assert!(listed["Resources"][0].get("members").is_none());
        let (_, room) = admin.get(&format!("/api/v1/rooms/{eng}")).await;
        let members: Vec<i64> = room["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_i64().unwrap())
            .collect();
        assert!(members.contains(&carol_id.parse().unwrap()), "{room}");

        // Okta adds a member with a value list; bob is put in the room.
        assert!(!rooms_of(&bob).await.contains(&eng));
        let (status, _) = scim
            .patch(
                &group_path,
                json!([{ "op": "add", "path": "members", "value": [{ "value": bob.id.to_string() }] }]),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(rooms_of(&bob).await.contains(&eng));

        // Bad patches change nothing: an unknown member, an unknown path, a group past its
        // size limit (5 here), too many operations.
        let before = scim.get(&group_path).await.1["members"].clone();
        let bad_patches = [
            (
                json!([{ "op": "add", "path": "members", "value": [{ "value": "999999" }] }]),
                "unknown_member",
            ),
            (
                json!([{ "op": "add", "path": "members", "value": [{ "value": "not-a-user" }] }]),
                "unknown_member",
            ),
            (
                json!([{ "op": "replace", "path": "owner", "value": "x" }]),
                "invalid_path",
            ),
            (
                json!([{ "op": "add", "path": "members",
                         "value": (0..6).map(|i| json!({ "value": i.to_string() })).collect::<Vec<_>>() }]),
                "group_too_large",
            ),
            (
                json!(
                    (0..101)
                        .map(|_| json!({ "op": "replace", "path": "displayName", "value": "x" }))
                        .collect::<Vec<_>>()
                ),
                "too_many_operations",
            ),
            (
                json!([{ "op": "frobnicate", "path": "members" }]),
                "invalid_syntax",
            ),
        ];
        for (operations, code) in bad_patches {
            let (status, error) = scim.patch(&group_path, operations.clone()).await;
            assert_eq!(
                (status, scim_error(&error).0),
                (StatusCode::BAD_REQUEST, code),
                "{operations}"
            );
        }
        let (status, error) = scim
            .patch(
                &group_path,
                json!([{ "op": "add", "path": "members", "value": [{ "value": admin.id.to_string() }] }]),
            )
            .await;
        assert_eq!(
            (status, scim_error(&error).0),
            (StatusCode::FORBIDDEN, "protected_account")
        );
        assert_eq!(scim.get(&group_path).await.1["members"], before);
        let (status, error) = scim
            .post(
                "/Groups",
                json!({ "schemas": [GROUP], "displayName": "Too big",
                        "members": (0..6).map(|i| json!({ "value": i.to_string() })).collect::<Vec<_>>() }),
            )
            .await;
        assert_eq!(
            (status, scim_error(&error).0),
            (StatusCode::BAD_REQUEST, "group_too_large")
        );
        let (_, none) = scim
            .get("/Groups?filter=displayName%20eq%20%22Too%20big%22")
            .await;
        assert_eq!(none["totalResults"], 0);

        // Entra ID removes by path; bob leaves the room.
        let (status, _) = scim
            .patch(
                &group_path,
                json!([{ "op": "Remove", "path": format!("members[value eq \"{}\"]", bob.id) }]),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!rooms_of(&bob).await.contains(&eng));

        // A group that grants the compliance role, granted and taken back.
        let (status, auditors) = scim
            .post(
                "/Groups",
                json!({ "schemas": [GROUP], "displayName": "Auditors",
                        "members": [{ "value": bob.id.to_string() }] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, me) = bob.get("/api/v1/me").await;
        assert_eq!(me["is_compliance"], true, "{me}");
        let auditors_path = format!("/Groups/{}", auditors["id"].as_str().unwrap());
        assert_eq!(scim.delete(&auditors_path).await, StatusCode::NO_CONTENT);
        let (_, me) = bob.get("/api/v1/me").await;
        assert_eq!(me["is_compliance"], false, "{me}");

        // Entra ID deactivates with a string; bob's socket closes and his tokens stop.
        let mut ws = bob.ws(&server).await;
        let (status, user) = scim
            .patch(
                &format!("/Users/{}", bob.id),
                json!([{ "op": "Replace", "path": "active", "value": "False" }]),
            )
            .await;
        assert_eq!((status, &user["active"]), (StatusCode::OK, &json!(false)));
        assert_eq!(ws.expect_close().await.0, 4001);
        let (status, _) = bob.get("/api/v1/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Okta's profile update without a path; the user name cannot change.
        let carol_path = format!("/Users/{carol_id}");
        let (status, carol) = scim
            .patch(
                &carol_path,
                json!([{ "op": "replace", "value": { "displayName": "Carol J.", "title": "Lead" } }]),
            )
            .await;
        assert_eq!(
            (status, &carol["displayName"]),
            (StatusCode::OK, &json!("Carol J."))
        );
        let (status, error) = scim
            .patch(
                &carol_path,
                json!([{ "op": "replace", "path": "userName", "value": "someone.else" }]),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(scim_error(&error), ("user_name_immutable", "mutability"));

        // Delete deactivates (messages stay on record); the resource still answers.
        assert_eq!(scim.delete(&carol_path).await, StatusCode::NO_CONTENT);
        let (status, carol) = scim.get(&carol_path).await;
        assert_eq!((status, &carol["active"]), (StatusCode::OK, &json!(false)));
        assert_eq!(scim.get("/Users/999999").await.0, StatusCode::NOT_FOUND);

        // All on record, under the provider's name.
        let records = audit_actions(&admin).await;
        for action in [
            "user.create",
            "group.create",
            "group.change",
            "group.sync",
            "group.delete",
            "user.deactivate",
            "user.update",
        ] {
            assert!(
                records
                    .iter()
                    .any(|(actor, a, _, _)| actor == "directory:scim" && a == action),
                "{backend:?}: {action} missing"
            );
        }
        assert!(records.iter().any(|(_, action, subject, detail)| {
            action == "group.sync"
                && subject == &format!("user:{}", bob.id)
                && detail["joined"] == json!([eng])
        }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_passwords_can_be_kept_for_break_glass_accounts_only() {
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        admin.create_user("bob").await;
        let database_url = db.as_ref().map(|db| db.url.clone());
        let server = server
            .restart(move |c| {
                c.database_url = database_url.map(Secret);
                c.auth.local_passwords = LocalPasswords::BreakGlass;
                c.auth.break_glass_accounts = vec!["admin".into()];
            })
            .await;
        let login = |name: &'static str, password: &'static str| {
            let http = server.http.clone();
            let url = format!("{}/api/v1/auth/login", server.base);
            async move {
                let response = http
                    .post(url)
                    .json(&json!({ "username": name, "password": password }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            }
        };
        // Refused the same way whether the account exists or the password is right.
        for (name, password) in [("bob", PASSWORD), ("bob", "wrong"), ("nobody", PASSWORD)] {
            let (status, body) = login(name, password).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("local_passwords_disabled")),
                "{backend:?}: {name}"
            );
        }
        let admin = server.admin().await;
        let bob_id = {
            let (_, users) = admin.get("/api/v1/users").await;
            users
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == "bob")
                .unwrap()["id"]
                .as_i64()
                .unwrap()
        };
        // No one sets a password that could not be used.
        let (status, body) = admin
            .patch(
                &format!("/api/v1/users/{bob_id}"),
                json!({ "password": "a brand new password" }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("local_passwords_disabled")),
            "{body}"
        );
        // The break-glass admin still changes their own.
        let (status, _) = admin
            .post(
                "/api/v1/me/password",
                json!({ "current_password": ADMIN_PASSWORD, "new_password": "another admin password" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let records = audit_actions(&server.login("admin", "another admin password").await).await;
        let refused = records
            .iter()
            .filter(|(_, action, _, detail)| {
                action == "auth.login_failed" && detail["reason"] == "local_passwords_disabled"
            })
            .count();
        assert_eq!(refused, 3, "{backend:?}");
        assert!(records.iter().any(|(actor, action, subject, detail)| {
            action == "auth.login"
                && actor.starts_with("user:")
                && subject == actor
                && detail["method"] == "password"
                && detail["address"] == "127.0.0.1"
        }));
    }
}

// ------------------------------------------------------------------ OpenID Connect

/// The OpenID provider (`tests/oidc/provider.mjs`: the npm `oidc-provider` package) as a
/// process on a free loopback port, killed on drop.
pub struct OpenIdProvider {
    pub base: String,
    http: reqwest::Client,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl OpenIdProvider {
    pub async fn start(config: Value) -> Self {
        let root = crate::wasm_build::workspace_root();
        let modules = root.join("target/lang-tools/oidc/node_modules");
        assert!(
            modules.exists(),
            "{} is missing: run `make lang-tools` (`make test` does it first)",
            modules.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            root.join("tests/oidc/provider.mjs"),
            dir.path().join("provider.mjs"),
        )
        .unwrap();
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("provider.log")).unwrap();
        let child = std::process::Command::new("node")
            .arg("provider.mjs")
            .arg(port.to_string())
            .arg(config.to_string())
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node runs tests/oidc/provider.mjs");
        let provider = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            child,
            _dir: dir,
        };
        for _ in 0..300 {
            if let Ok(response) = provider
                .http
                .get(format!(
                    "{}/.well-known/openid-configuration",
                    provider.base
                ))
                .send()
                .await
                && response.status() == StatusCode::OK
            {
                return provider;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the OpenID provider did not start");
    }

    async fn admin(&self, path: &str) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    async fn tamper(&self, mode: &str) {
        self.admin(&format!("/__tamper?mode={mode}")).await;
    }

    async fn set_groups(&self, sub: &str, groups: &str) {
        self.admin(&format!("/__groups?sub={sub}&groups={}", urlencode(groups)))
            .await;
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A person's browser: follows redirects by hand, keeps the provider's cookies by path, and
/// fills in the provider's login and consent pages.
pub struct Browser {
    http: reqwest::Client,
    /// (path, name) → value.
    cookies: std::collections::BTreeMap<(String, String), String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    fn cookie_header(&self, url: &reqwest::Url) -> String {
        self.cookies
            .iter()
            .filter(|((path, _), _)| url.path().starts_with(path.as_str()))
            .map(|((_, name), value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let request = request.build().unwrap();
        let cookies = self.cookie_header(request.url());
        let mut request = reqwest::RequestBuilder::from_parts(self.http.clone(), request);
        if !cookies.is_empty() {
            request = request.header("cookie", cookies);
        }
        let response = request.send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let mut parts = set.split(';');
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let path = parts
                .find_map(|p| p.trim().strip_prefix("path="))
                .unwrap_or("/");
            self.cookies
                .insert((path.to_string(), name.to_string()), value.to_string());
        }
        response
    }

    /// Follow the sign-in from our server's start through the provider's pages as
    /// `account`, up to the provider's redirect back to our server; returns that URL
    /// (not yet visited).
    pub async fn through_provider(&mut self, start: &str, server: &str, account: &str) -> String {
        let mut url = reqwest::Url::parse(start).unwrap();
        for _ in 0..20 {
            if url.as_str().starts_with(server) && url.path().ends_with("/callback") {
                return url.to_string();
            }
            let response = self.send(self.http.get(url.clone())).await;
            if let Some(location) = response.headers().get("location") {
                url = url.join(location.to_str().unwrap()).unwrap();
                continue;
            }
            let page = response.text().await.unwrap();
            let form = if page.contains(r#"name="prompt" value="login""#) {
                vec![("prompt", "login"), ("login", account), ("password", "any")]
            } else if page.contains(r#"name="prompt" value="consent""#) {
                vec![("prompt", "consent")]
            } else {
                panic!("unexpected page at {url}: {page}");
            };
            let response = self.send(self.http.post(url.clone()).form(&form)).await;
            let location = response.headers()["location"].to_str().unwrap().to_string();
            url = url.join(&location).unwrap();
        }
        panic!("the sign-in did not come back");
    }

    /// Visit our server's callback; returns the fragment it sends the browser to.
    pub async fn back_at(&mut self, callback: &str) -> String {
        let response = self.send(self.http.get(callback)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()["location"].to_str().unwrap();
        location
            .strip_prefix("/#")
            .unwrap_or_else(|| panic!("back to the web client, not {location}"))
            .to_string()
    }
}

pub const CLIENT_SECRET: &str = "client-secret-of-the-test-server-0123";

/// Start a sign-in at `server` with provider `corp` and complete it as `account`: the
/// fragment the web client gets (`oidc_ticket=…` or `oidc_error=…`).
async fn sign_in(server: &TestServer, account: &str) -> String {
    let mut browser = Browser::new();
    let start = format!("{}/api/v1/auth/oidc/corp/start", server.base);
    let callback = browser
        .through_provider(&start, &server.base, account)
        .await;
    browser.back_at(&callback).await
}

async fn redeem(server: &TestServer, ticket: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .post(format!("{}/api/v1/auth/oidc/redeem", server.base))
        .json(&json!({ "ticket": ticket }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Sign in and redeem: the signed-in client.
async fn signed_in(server: &TestServer, account: &str) -> Client {
    let fragment = sign_in(server, account).await;
    let ticket = fragment
        .strip_prefix("oidc_ticket=")
        .unwrap_or_else(|| panic!("signed in, not {fragment}"));
    let (status, tokens) = redeem(server, ticket).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    Client {
        base: server.base.clone(),
        http: server.http.clone(),
        token: tokens["access_token"].as_str().unwrap().to_string(),
        refresh: tokens["refresh_token"].as_str().unwrap().to_string(),
        id: tokens["user"]["id"].as_i64().unwrap(),
        name: tokens["user"]["name"].as_str().unwrap().to_string(),
    }
}

/// A provider with one client for `server`, and a server whose `corp` provider it is, with
/// `Engineering` mapped to a room; the server is restarted on the same address so the
/// redirect URI is known before either starts.
pub async fn oidc_setup(
    backend: crate::hardening::Backend,
    tweak: impl FnOnce(&mut switchboard::config::Config) + Send + 'static,
) -> (
    TestServer,
    Option<crate::cluster::PgDb>,
    OpenIdProvider,
    i64,
) {
    let (server, db) = start_on(backend, |_| {}).await;
    let admin = server.admin().await;
    let eng = admin.group("engineering", &[]).await;
    admin.create_user("bob").await;
    let provider = OpenIdProvider::start(json!({
        "clients": [{
            "client_id": "switchboard",
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{}/api/v1/auth/oidc/corp/callback", server.base)],
        }],
        "accounts": {
            "sub-carol": {
                "preferred_username": "Carol.Jones@Example.com",
                "name": "Carol Jones",
                "email": "carol.jones@example.com",
                "email_verified": true,
                "groups": ["Engineering", "Everyone"],
            },
            "sub-bob": { "preferred_username": "bob", "name": "Bob, from the provider" },
            "sub-nameless": { "name": "No user name" },
        },
    }))
    .await;
    let issuer = provider.base.clone();
    let base = server.base.clone();
    let database_url = db.as_ref().map(|db| db.url.clone());
    let server = server
        .restart(move |c| {
            c.database_url = database_url.map(Secret);
            c.identity.public_url = base;
            c.identity.groups = vec![GroupMapping {
                name: "Engineering".into(),
                rooms: vec![eng],
                admin: false,
                compliance: false,
            }];
            c.identity.oidc = vec![switchboard::config::OidcProvider {
                id: "corp".into(),
                display_name: "Corp".into(),
                issuer,
                client_id: "switchboard".into(),
                client_secret: Some(Secret(CLIENT_SECRET.into())),
                scopes: vec![
                    "openid".into(),
                    "profile".into(),
                    "email".into(),
                    "groups".into(),
                ],
                user_name_claim: "preferred_username".into(),
                display_name_claim: "name".into(),
                email_claim: "email".into(),
                groups_claim: Some("groups".into()),
                strip_domain: true,
                create_accounts: true,
                link_existing_accounts: false,
            }];
            tweak(c);
        })
        .await;
    (server, db, provider, eng)
}

async fn user_count(admin: &Client) -> usize {
    admin.get("/api/v1/users").await.1.as_array().unwrap().len()
}

/// Sign-in through a real OpenID provider: the account is made at the first sign-in from
/// the verified ID token (name, display name, e-mail), found again by the provider's subject
/// afterwards, its groups follow the token's claim into and out of mapped rooms, and it all
/// works with local passwords off for everyone but the break-glass admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_makes_the_account_and_follows_its_groups() {
    for backend in BACKENDS {
        let (server, _db, provider, eng) = oidc_setup(backend, |c| {
            c.auth.local_passwords = LocalPasswords::BreakGlass;
            c.auth.break_glass_accounts = vec!["admin".into()];
        })
        .await;
        let providers: Value = server
            .http
            .get(format!("{}/api/v1/auth/oidc", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(providers, json!([{ "id": "corp", "display_name": "Corp" }]));

        let carol = signed_in(&server, "sub-carol").await;
        let (_, me) = carol.get("/api/v1/me").await;
        assert_eq!(me["name"], "carol.jones", "{backend:?}: {me}");
        assert_eq!(me["display_name"], "Carol Jones");
        assert!(
            rooms_of(&carol).await.contains(&eng),
            "Engineering maps to the room"
        );

        // Found again by subject: one account, however often she signs in.
        let admin = server.admin().await;
        let users = user_count(&admin).await;
        let again = signed_in(&server, "sub-carol").await;
        assert_eq!(again.id, carol.id);
        assert_eq!(user_count(&admin).await, users);

        // The directory moves her out of Engineering; the next sign-in takes her out of
        // the room.
        provider.set_groups("sub-carol", "Everyone").await;
        let again = signed_in(&server, "sub-carol").await;
        assert!(!rooms_of(&again).await.contains(&eng));

        let records = audit_actions(&admin).await;
        assert!(records.iter().any(|(actor, action, _, detail)| {
            action == "auth.login"
                && actor == &format!("user:{}", carol.id)
                && detail["method"] == "oidc:corp"
        }));
        assert!(records.iter().any(|(actor, action, subject, _)| {
            action == "user.create"
                && actor == "directory:oidc:corp"
                && subject == &format!("user:{}", carol.id)
        }));
        assert!(records.iter().any(|(_, action, subject, detail)| {
            action == "group.sync"
                && subject == &format!("user:{}", carol.id)
                && detail["left"] == json!([eng])
        }));
    }
}

/// Bad sign-ins create nothing and are refused with a code the web client shows: ID tokens
/// with a broken signature, altered claims, no signature, another audience or issuer, a
/// nonce of another sign-in, or past their expiry; a replayed state or code; a sign-in that
/// took too long; the provider's own refusal; an unknown provider; a reused ticket; a local
/// account the provider's user would take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refuses_tampered_tokens_replays_and_expired_sign_ins() {
    let (server, _db, provider, _) = oidc_setup(crate::hardening::Backend::Sqlite, |c| {
        c.identity.oidc_login_timeout_secs = 2;
    })
    .await;
    let admin = server.admin().await;
    let users = user_count(&admin).await;

    for mode in [
        "signature",
        "payload",
        "unsigned",
        "audience",
        "issuer",
        "nonce",
        "expired",
    ] {
        provider.tamper(mode).await;
        assert_eq!(
            sign_in(&server, "sub-carol").await,
            "oidc_error=invalid_id_token",
            "{mode}"
        );
    }
    provider.tamper("").await;
    assert_eq!(user_count(&admin).await, users, "nothing was created");
    let records = audit_actions(&admin).await;
    let refused = records
        .iter()
        .filter(|(_, action, subject, detail)| {
            action == "auth.login_failed"
                && subject == "account:oidc:corp"
                && detail["reason"] == "invalid_id_token"
        })
        .count();
    assert_eq!(refused, 7);

    // The provider's redirect replayed: the state is used up. The code with a new state:
    // the provider will not exchange it twice.
    let mut browser = Browser::new();
    let start = format!("{}/api/v1/auth/oidc/corp/start", server.base);
    let callback = browser
        .through_provider(&start, &server.base, "sub-carol")
        .await;
    let fragment = browser.back_at(&callback).await;
    let ticket = fragment.strip_prefix("oidc_ticket=").unwrap().to_string();
    assert_eq!(browser.back_at(&callback).await, "oidc_error=invalid_state");
    let fresh = browser
        .through_provider(&start, &server.base, "sub-carol")
        .await;
    let fresh_state = reqwest::Url::parse(&fresh)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let old_code = reqwest::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let replayed = format!(
        "{}/api/v1/auth/oidc/corp/callback?code={}&state={}",
        server.base,
        urlencode(&old_code),
        urlencode(&fresh_state)
    );
    assert_eq!(
        browser.back_at(&replayed).await,
        "oidc_error=code_exchange_failed"
    );

    // A ticket works once.
    assert_eq!(redeem(&server, &ticket).await.0, StatusCode::OK);
    let (status, body) = redeem(&server, &ticket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_ticket"))
    );
    assert_eq!(redeem(&server, "garbage").await.0, StatusCode::UNAUTHORIZED);

    // Too slow: the state expired on the way (the limit is 2 s here).
    let slow = browser
        .through_provider(&start, &server.base, "sub-carol")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(browser.back_at(&slow).await, "oidc_error=invalid_state");

    // The provider refuses (the person cancelled).
    let cancelled = format!(
        "{}/api/v1/auth/oidc/corp/callback?error=access_denied&state=x",
        server.base
    );
    assert_eq!(
        browser.back_at(&cancelled).await,
        "oidc_error=provider_refused"
    );
    let bare = format!("{}/api/v1/auth/oidc/corp/callback", server.base);
    assert_eq!(browser.back_at(&bare).await, "oidc_error=invalid_callback");
    let response = browser
        .send(
            browser
                .http
                .get(format!("{}/api/v1/auth/oidc/nope/start", server.base)),
        )
        .await;
    assert_eq!(
        response.headers()["location"],
        "/#oidc_error=unknown_provider"
    );

    // `bob` has a local password: the provider's bob does not take the account over, and
    // a user name claim is required.
    assert_eq!(
        sign_in(&server, "sub-bob").await,
        "oidc_error=account_not_linked"
    );
    assert_eq!(
        sign_in(&server, "sub-nameless").await,
        "oidc_error=missing_claim"
    );
    assert_eq!(
        user_count(&admin).await,
        users + 1,
        "only carol's account was made"
    );

    // A deactivated account signs in at the provider but gets no session here.
    let carol_id = {
        let (_, users) = admin.get("/api/v1/users").await;
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "carol.jones")
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    admin
        .patch(
            &format!("/api/v1/users/{carol_id}"),
            json!({ "active": false }),
        )
        .await;
    let fragment = sign_in(&server, "sub-carol").await;
    let ticket = fragment.strip_prefix("oidc_ticket=").unwrap();
    let (status, body) = redeem(&server, ticket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("user_deactivated"))
    );

    // Starting sign-ins keeps state: one address may start only so many a minute.
    let mut last = String::new();
    for _ in 0..31 {
        let response = browser
            .send(
                browser
                    .http
                    .get(format!("{}/api/v1/auth/oidc/corp/start", server.base)),
            )
            .await;
        last = response.headers()["location"].to_str().unwrap().to_string();
    }
    assert_eq!(last, "/#oidc_error=too_many_sign_ins");
}

// ------------------------------------------------------------------ LDAP

const LDAP_ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const LDAP_ROOT_PASSWORD: &str = "directory-admin-secret";

/// Debian's OpenLDAP server (`slapd`) on a free loopback port, over a directory made for the
/// test, killed on drop. It answers at most 2 entries to a search that is not paged, as a
/// large directory caps its searches (Active Directory at 1000): the server must page.
struct Slapd {
    url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Slapd {
    async fn start(entries: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 pidfile {pid}\n\
                 database mdb\n\
                 suffix \"dc=example,dc=org\"\n\
                 rootdn \"{LDAP_ROOT_DN}\"\n\
                 rootpw {LDAP_ROOT_PASSWORD}\n\
                 directory {db}\n\
                 maxsize 10485760\n\
                 sizelimit size.soft=2 size.hard=2 size.pr=unlimited size.prtotal=unlimited\n\
                 access to attrs=userPassword by self =xw by anonymous auth by * none\n\
                 access to * by users read by * none\n",
                pid = dir.path().join("slapd.pid").display(),
                db = db.display(),
            ),
        )
        .unwrap();
        let ldif = dir.path().join("data.ldif");
        std::fs::write(&ldif, entries).unwrap();
        let loaded = std::process::Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .output()
            .expect("slapadd (Debian's slapd package; .ci/run installs it)");
        assert!(
            loaded.status.success(),
            "{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("ldap://127.0.0.1:{port}");
        let child = std::process::Command::new("/usr/sbin/slapd")
            .arg("-h")
            .arg(format!("{url}/"))
            .arg("-f")
            .arg(&conf)
            // A debug level keeps slapd in the foreground, so the test owns the process.
            .arg("-d")
            .arg("0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Owned from here on: killed and waited for on drop, whatever happens next.
        let slapd = Self {
            url,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return slapd;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("slapd did not start");
    }

    /// Change the directory as its administrator would (`ldapmodify`, LDIF on stdin).
    fn modify(&self, ldif: &str) {
        use std::io::Write as _;
        let mut child = std::process::Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url,
                "-D",
                LDAP_ROOT_DN,
                "-w",
                LDAP_ROOT_PASSWORD,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ldapmodify (Debian's ldap-utils; .ci/run installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "ldapmodify failed:\n{ldif}"
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DIRECTORY: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=switchboard,dc=example,dc=org
objectClass: account
objectClass: simpleSecurityObject
uid: switchboard
userPassword: service-account-secret

dn: uid=erin,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: erin
cn: Erin Example
sn: Example
mail: erin@example.org
userPassword: erin-directory-password

dn: uid=frank,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: frank
cn: Frank Example
sn: Example
userPassword: frank-directory-password

dn: uid=gina,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: gina
cn: Gina Example
sn: Example
userPassword: gina-directory-password

dn: cn=engineers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: engineers
member: uid=erin,ou=people,dc=example,dc=org
";

async fn password_login(server: &TestServer, name: &str, password: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "username": name, "password": password }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn admin_metrics(server: &TestServer, admin: &Client) -> String {
    server
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Until `check` holds (the directory sync runs every second here), at most 15 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 15 s");
}

/// Sign-in against a real directory (Debian's slapd): the account is made from the
/// directory's entry at the first bind, its group maps to a room, and the sync takes the
/// person out of the room when the group drops them and deactivates the account — closing
/// its socket — when the directory disables it. User names built to widen the search
/// filter are refused like any wrong credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_sign_in_and_sync_follow_the_directory() {
    for backend in BACKENDS {
        let slapd = Slapd::start(DIRECTORY).await;
        let (server, db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let eng = admin.group("engineering", &[]).await;
        let url = slapd.url.clone();
        let database_url = db.as_ref().map(|db| db.url.clone());
        let server = server
            .restart(move |c| {
                c.database_url = database_url.map(Secret);
                c.auth.local_passwords = LocalPasswords::BreakGlass;
                c.auth.break_glass_accounts = vec!["admin".into()];
                c.identity.groups = vec![GroupMapping {
                    name: "engineers".into(),
                    rooms: vec![eng],
                    admin: false,
                    compliance: false,
                }];
                c.identity.ldap = Some(switchboard::config::LdapConfig {
                    url,
                    starttls: false,
                    bind_dn: "uid=switchboard,dc=example,dc=org".into(),
                    bind_password: Secret("service-account-secret".into()),
                    user_base: "ou=people,dc=example,dc=org".into(),
                    user_filter: "(&(objectClass=inetOrgPerson)(uid={name}))".into(),
                    user_name_attribute: "uid".into(),
                    display_name_attribute: "cn".into(),
                    email_attribute: "mail".into(),
                    disabled_filter: "(description=disabled)".into(),
                    group_base: "ou=groups,dc=example,dc=org".into(),
                    group_filter: "(objectClass=groupOfNames)".into(),
                    group_name_attribute: "cn".into(),
                    group_member_attribute: "member".into(),
                    sync_interval_secs: 1,
                    timeout_ms: 5_000,
                    create_accounts: true,
                });
            })
            .await;

        // Wrong passwords, an empty one (an anonymous bind to LDAP), and names that would
        // widen the filter: all the same refusal, and no account.
        for (name, password) in [
            ("erin", "wrong"),
            ("erin", ""),
            ("*", "erin-directory-password"),
            ("erin)(uid=*", "erin-directory-password"),
            ("*)(|(objectClass=*", "x"),
            ("nobody", "erin-directory-password"),
        ] {
            let (status, body) = password_login(&server, name, password).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
                "{backend:?}: {name:?} / {password:?}"
            );
        }
        let admin = server.admin().await; // the break-glass admin signs in locally
        let before = user_count(&admin).await;

        let erin = server.login("erin", "erin-directory-password").await;
        let (_, me) = erin.get("/api/v1/me").await;
        assert_eq!(me["display_name"], "Erin Example", "{backend:?}: {me}");
        assert_eq!(user_count(&admin).await, before + 1);
        assert!(
            rooms_of(&erin).await.contains(&eng),
            "engineers maps to the room"
        );

        // The directory drops her from the group: the sync takes her out of the room.
        slapd.modify(
            "dn: cn=engineers,ou=groups,dc=example,dc=org\nchangetype: modify\n\
             add: member\nmember: uid=switchboard,dc=example,dc=org\n-\n\
             delete: member\nmember: uid=erin,ou=people,dc=example,dc=org\n",
        );
        eventually("erin leaves the room", || async {
            !rooms_of(&erin).await.contains(&eng)
        })
        .await;

        // The directory disables her: the sync deactivates the account and her socket
        // closes; the directory's password no longer opens a session.
        let mut ws = erin.ws(&server).await;
        slapd.modify(
            "dn: uid=erin,ou=people,dc=example,dc=org\nchangetype: modify\n\
             add: description\ndescription: disabled\n",
        );
        assert_eq!(ws.expect_close().await.0, 4001);
        let (status, body) = password_login(&server, "erin", "erin-directory-password").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("user_deactivated"))
        );

        // The directory removes him: the same.
        let frank = server.login("frank", "frank-directory-password").await;
        let mut ws = frank.ws(&server).await;
        slapd.modify("dn: uid=frank,ou=people,dc=example,dc=org\nchangetype: delete\n");
        assert_eq!(ws.expect_close().await.0, 4001);
        let (status, _) = password_login(&server, "frank", "frank-directory-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "no such person any more");

        // The sync's health is on /metrics for an alert.
        let metrics = admin_metrics(&server, &admin).await;
        assert!(
            metrics.contains("switchboard_ldap_syncs_total{outcome=\"ok\"}"),
            "{metrics}"
        );
        assert!(!metrics.contains("switchboard_ldap_last_sync_seconds 0\n"));

        let records = audit_actions(&admin).await;
        for user in [erin.id, frank.id] {
            assert!(records.iter().any(|(actor, action, subject, _)| {
                actor == "directory:ldap"
                    && action == "user.deactivate"
                    && subject == &format!("user:{user}")
            }));
        }
        assert!(records.iter().any(|(_, action, _, detail)| {
            action == "auth.login" && detail["method"] == "ldap"
        }));
    }
}
