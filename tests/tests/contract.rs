//! Contract suite: the DittoFS behaviours the agent relies on, run against whichever DittoFS the harness
//! starts — `dittofs-emulator` by default, the real `dfs` with `DITTOFS_BIN=/path/to/dfs`. The emulator is
//! held to the real server by running this same file against both; no test here uses emulator-only knobs.

use std::{net::TcpStream, time::Duration};

use anyhow::Result;
use dittofs_tests::{
    dittofs::{ADMIN_PASSWORD, DittoFs, Options},
    dittofs_client::Api,
    kube_env::wait_until,
    shares::{create_share, policies, put_policy},
};
use serde_json::{Value, json};

async fn start() -> Result<DittoFs> {
    DittoFs::start(Options::default()).await
}

async fn create_user(admin: &Api, username: &str, password: &str, role: &str) -> Result<Value> {
    let body = json!({"username": username, "password": password, "role": role});
    admin.post("/api/v1/users", &body).await?.expect_status(201)?.json()
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

async fn wait_listening(port: u16, want: bool) -> Result<()> {
    wait_until(&format!("port {port} listening={want}"), Duration::from_secs(10), async || {
        anyhow::ensure!(listening(port) == want, "listening={}", !want);
        Ok(())
    })
    .await
}

fn by_type(list: &Value) -> std::collections::BTreeMap<String, Value> {
    list.as_array().expect("array").iter().map(|a| (a["type"].as_str().unwrap().to_string(), a.clone())).collect()
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn seeded_defaults_health_and_routing() -> Result<()> {
    let fs = DittoFs::start(Options { seeded_ports: true, ..Options::default() }).await?;
    let admin = fs.admin().await?;
    let adapters = by_type(&admin.get("/api/v1/adapters").await?.expect_status(200)?.json()?);
    assert_eq!(adapters.keys().collect::<Vec<_>>(), ["nfs", "smb"]);
    // The seeded SMB row says 1445, not the documented 12445.
    assert_eq!((adapters["nfs"]["port"].as_i64(), adapters["smb"]["port"].as_i64()), (Some(12049), Some(1445)));
    for a in adapters.values() {
        assert_eq!((a["enabled"].as_bool(), a["running"].as_bool()), (Some(true), Some(true)), "{a}");
        assert!(a["id"].is_string() && a["created_at"].is_string() && a["status"]["checked_at"].is_string(), "{a}");
        assert!(a.get("config").is_none(), "empty config is omitted: {a}");
    }

    let api = fs.api();
    let live = api.get("/health").await?.expect_status(200)?;
    assert_eq!(live.content_type, "application/json");
    let live = live.json()?;
    assert_eq!((live["status"].as_str(), live["data"]["service"].as_str()), (Some("healthy"), Some("dittofs")));
    assert_eq!(live["data"]["control_plane_db"], "reachable");
    let ready = api.get("/health/ready").await?.expect_status(200)?.json()?;
    let mut types: Vec<String> = serde_json::from_value(ready["data"]["adapters"]["types"].clone())?;
    types.sort();
    assert_eq!(types, ["nfs", "smb"]);
    assert_eq!(ready["data"]["adapters"]["running"], 2);

    let missing = api.get("/nope").await?.expect_status(404)?;
    assert_eq!(missing.plain_text()?, "404 page not found");
    // chi mounts answer with and without a trailing slash; a leaf route does not.
    assert_eq!(api.get("/health/").await?.expect_status(200)?.json()?["data"]["service"], "dittofs");
    api.get("/health/ready/").await?.expect_status(404)?;
    let slash = admin.get("/api/v1/adapters/").await?.expect_status(200)?.json()?;
    assert_eq!(by_type(&slash).keys().collect::<Vec<_>>(), ["nfs", "smb"]);
    // The auth middleware of a mounted subtree runs before its 404, so an unknown path there is a 401.
    let unknown = api.get("/api/v1/adapters/nfs/nope").await?.expect_status(401)?;
    assert_eq!(unknown.plain_text()?, "Authorization header required");
    api.get("/api/v1/nope").await?.expect_status(404)?;
    // 405 is an empty body with Allow, after authentication.
    let patch = admin.request("PATCH", "/api/v1/adapters").await?.expect_status(405)?;
    assert!(patch.body.is_empty(), "{patch:?}");
    let root = api.get("/").await?;
    assert!(matches!(root.status, 301 | 302 | 307 | 308), "GET / redirects to /health: {root:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn login_errors_and_401_shapes() -> Result<()> {
    let fs = start().await?;
    let api = fs.api();
    for (body, status, detail) in [
        (json!({"username": "admin", "password": "wrong-password"}), 401, "Invalid username or password"),
        (json!({"username": "ghost", "password": "whatever-pw"}), 401, "Invalid username or password"),
        (json!({"username": "admin"}), 400, "Username and password are required"),
    ] {
        let reply = api.post("/api/v1/auth/login", &body).await?.expect_status(status)?;
        assert_eq!(reply.problem_detail()?, detail);
    }
    let reply = api.post_raw("/api/v1/auth/login", "{not json").await?.expect_status(400)?;
    assert_eq!(reply.problem_detail()?, "Invalid request body");

    // Middleware refusals are Go http.Error text, not problem+json.
    let reply = api.get("/api/v1/adapters").await?.expect_status(401)?;
    assert_eq!(reply.plain_text()?, "Authorization header required");
    let reply = api.with_token(Some("not-a-jwt")).get("/api/v1/adapters").await?.expect_status(401)?;
    assert_eq!(reply.plain_text()?, "Invalid or expired token");

    let mut admin = fs.api();
    let session = admin.login("admin", ADMIN_PASSWORD).await?;
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900, "default access lifetime is 15m");
    let user = &session["user"];
    assert_eq!((user["username"].as_str(), user["role"].as_str()), (Some("admin"), Some("admin")));
    assert_eq!((user["uid"].as_i64(), user["must_change_password"].as_bool()), (Some(0), Some(false)));
    assert_eq!(user["groups"], json!(["admins"]));
    let refresh_token = session["refresh_token"].as_str().unwrap();
    let reply = api.with_token(Some(refresh_token)).get("/api/v1/adapters").await?.expect_status(401)?;
    assert_eq!(reply.plain_text()?, "Invalid or expired token", "a refresh token is not an access token");
    let access_token = session["access_token"].as_str().unwrap();
    let reply = api.post("/api/v1/auth/refresh", &json!({"refresh_token": access_token})).await?.expect_status(401)?;
    assert_eq!(reply.problem_detail()?, "Invalid refresh token");

    let me = admin.get("/api/v1/auth/me").await?.expect_status(200)?.json()?;
    assert_eq!(me["username"], "admin");
    assert!(me.get("access_token").is_none(), "/auth/me returns a bare user");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn tokens_expire_and_refresh_works() -> Result<()> {
    let fs = DittoFs::start(Options {
        access_ttl: Some("3s".into()),
        refresh_ttl: Some("30s".into()),
        ..Options::default()
    })
    .await?;
    let mut admin = fs.api();
    let session = admin.login("admin", ADMIN_PASSWORD).await?;
    assert_eq!(session["expires_in"], 3);
    let issued = std::time::Instant::now();
    admin.get("/api/v1/adapters").await?.expect_status(200)?;

    // Refresh gives a new, working pair.
    let mut refreshed = admin.clone();
    let pair = refreshed.refresh().await?;
    assert_eq!(pair["expires_in"], 3);
    assert_eq!(pair["user"]["username"], "admin");
    refreshed.get("/api/v1/adapters").await?.expect_status(200)?;

    // The first access token stops working once its lifetime is over — not long before.
    let expired = wait_until("the access token to expire", Duration::from_secs(8), async || {
        let reply = admin.get("/api/v1/adapters").await?;
        anyhow::ensure!(reply.status == 401, "HTTP {}", reply.status);
        Ok(reply)
    })
    .await?;
    assert!(issued.elapsed() >= Duration::from_secs(2), "expired after {:?}", issued.elapsed());
    assert_eq!(expired.plain_text()?, "Invalid or expired token");
    // The refresh token outlives the access token.
    admin.refresh().await?;
    admin.get("/api/v1/adapters").await?.expect_status(200)?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn operator_role_reads_adapters_and_is_refused_every_mutation() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let created = create_user(&admin, "k8s-operator", "op-password-1", "operator").await?;
    assert_eq!((created["role"].as_str(), created["must_change_password"].as_bool()), (Some("operator"), Some(false)));
    assert!(created.get("uid").is_none() && created.get("groups").is_none(), "omitted when empty: {created}");
    let dup = admin
        .post("/api/v1/users", &json!({"username": "k8s-operator", "password": "op-password-1", "role": "operator"}))
        .await?;
    assert_eq!(dup.expect_status(409)?.problem_detail()?, "User already exists");
    let short = admin.post("/api/v1/users", &json!({"username": "x1", "password": "p", "role": "root"})).await?;
    assert_eq!(short.expect_status(500)?.problem_detail()?, "Failed to hash password");
    let bad_role =
        admin.post("/api/v1/users", &json!({"username": "x1", "password": "long-enough-pw", "role": "root"})).await?;
    assert_eq!(bad_role.expect_status(400)?.problem_detail()?, "Invalid role. Must be 'user', 'admin', or 'operator'");

    // Admin resets the password (the agent's path on 409).
    admin
        .post("/api/v1/users/k8s-operator/password", &json!({"new_password": "op-password-2"}))
        .await?
        .expect_status(204)?;
    let mut operator = fs.api();
    assert!(operator.login("k8s-operator", "op-password-1").await.is_err(), "old password refused");
    let session = operator.login("k8s-operator", "op-password-2").await?;
    assert_eq!(session["user"]["role"], "operator");

    let list = by_type(&operator.get("/api/v1/adapters").await?.expect_status(200)?.json()?);
    assert_eq!(list.keys().collect::<Vec<_>>(), ["nfs", "smb"]);
    let ports = operator.get("/api/v1/adapters/ports").await?.expect_status(200)?.json()?;
    let nfs = by_type(&ports)["nfs"].clone();
    assert_eq!(nfs["port"].as_u64(), fs.adapter_port("nfs").map(u64::from));
    assert!(nfs.get("status").is_none() && nfs.get("id").is_none(), "{nfs}");
    operator.get("/api/v1/auth/me").await?.expect_status(200)?;
    operator.get("/api/v1/users/k8s-operator").await?.expect_status(200)?;
    let other = operator.get("/api/v1/users/admin").await?.expect_status(403)?;
    assert_eq!(other.problem_detail()?, "Access denied");

    let refused = [
        operator.get("/api/v1/adapters/nfs").await?,
        operator.put("/api/v1/adapters/smb", &json!({"enabled": false})).await?,
        operator.post("/api/v1/adapters", &json!({"type": "nfs"})).await?,
        operator.delete("/api/v1/adapters/smb").await?,
        operator.get("/api/v1/adapters/nfs/status").await?,
        operator.get("/api/v1/adapters/nfs/settings").await?,
        operator.get("/api/v1/users").await?,
        operator.post("/api/v1/users", &json!({"username": "x", "password": "long-enough-pw"})).await?,
        operator.get("/api/v1/shares").await?,
        // The snapshot policies too, which is why the agent applies them in an admin session.
        operator.put("/api/v1/shares/archive/snapshot-policy", &json!({"interval": "1h"})).await?,
        operator.delete("/api/v1/shares/archive/snapshot-policy").await?,
        operator.get("/api/v1/snapshot-policies").await?,
    ];
    for reply in refused {
        assert_eq!(reply.clone().expect_status(403)?.plain_text()?, "Admin access required");
    }
    // Nothing changed behind the refusals.
    assert_eq!(fs.adapters().await?["smb"]["enabled"], true);

    // A plain user may not list adapters at all, but may read ports.
    create_user(&admin, "someone", "someone-password", "user").await?;
    let mut user = fs.api();
    user.login("someone", "someone-password").await?;
    assert_eq!(user.get("/api/v1/adapters").await?.expect_status(403)?.plain_text()?, "Insufficient permissions");
    user.get("/api/v1/adapters/ports").await?.expect_status(200)?;

    // Deleting a user: 204, then its login fails; admin itself cannot be deleted.
    admin.delete("/api/v1/users/someone").await?.expect_status(204)?;
    assert!(user.login("someone", "someone-password").await.is_err());
    assert_eq!(
        admin.delete("/api/v1/users/admin").await?.expect_status(403)?.problem_detail()?,
        "Cannot delete admin user"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn new_admins_must_change_their_password() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let created = create_user(&admin, "second-admin", "first-password", "admin").await?;
    assert_eq!(created["must_change_password"], true);
    let mut second = fs.api();
    let session = second.login("second-admin", "first-password").await?;
    assert_eq!(session["user"]["must_change_password"], true, "login succeeds despite the flag");
    let blocked = second.get("/api/v1/adapters").await?.expect_status(403)?;
    assert!(blocked.plain_text()?.starts_with("account \"second-admin\" must set a new password"), "{blocked:?}");
    second.get("/api/v1/auth/me").await?.expect_status(200)?;
    let changed = second.post("/api/v1/users/me/password", &json!({"new_password": "second-password"})).await?;
    let pair = changed.expect_status(200)?.json()?;
    let fresh = second.with_token(pair["access_token"].as_str());
    fresh.get("/api/v1/adapters").await?.expect_status(200)?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn adapters_enable_disable_move_delete_recreate() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let (nfs_port, smb_port) = (fs.adapter_port("nfs").unwrap(), fs.adapter_port("smb").unwrap());
    wait_listening(smb_port, true).await?;

    // Disable: the listener is closed before the answer, which says running:false.
    let off = admin.put("/api/v1/adapters/smb", &json!({"enabled": false})).await?.expect_status(200)?.json()?;
    assert_eq!((off["enabled"].as_bool(), off["running"].as_bool()), (Some(false), Some(false)));
    assert!(!listening(smb_port), "SMB listener still open after disable");
    let list = fs.adapters().await?;
    assert_eq!((list["smb"]["enabled"].as_bool(), list["smb"]["running"].as_bool()), (Some(false), Some(false)));
    let ready = fs.api().get("/health/ready").await?.json()?;
    assert_eq!(ready["data"]["adapters"]["types"], json!(["nfs"]));
    // The status catches up within the 5 s cache window.
    wait_until("SMB status to say not running", Duration::from_secs(8), async || {
        let list = fs.adapters().await?;
        let status = &list["smb"]["status"];
        anyhow::ensure!(status["status"] == "unknown" && status["message"] == "adapter smb not running", "{status}");
        Ok(())
    })
    .await?;

    // Enable again.
    let on = admin.put("/api/v1/adapters/smb", &json!({"enabled": true})).await?.expect_status(200)?.json()?;
    assert_eq!((on["enabled"].as_bool(), on["running"].as_bool()), (Some(true), Some(true)));
    wait_listening(smb_port, true).await?;

    // Move NFS: the new port listens, the old one is released.
    let new_port = std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
    let moved = admin.put("/api/v1/adapters/nfs", &json!({"port": new_port})).await?.expect_status(200)?.json()?;
    assert_eq!(moved["port"].as_u64(), Some(u64::from(new_port)));
    wait_listening(new_port, true).await?;
    wait_listening(nfs_port, false).await?;

    // Port 0 is stored and reported as 0 (the server binds the type default).
    let zero = admin.put("/api/v1/adapters/smb", &json!({"port": 0})).await?.expect_status(200)?.json()?;
    assert_eq!((zero["port"].as_i64(), zero["running"].as_bool()), (Some(0), Some(true)));
    assert_eq!(fs.adapters().await?["smb"]["port"], 0);
    admin.put("/api/v1/adapters/smb", &json!({"port": smb_port})).await?.expect_status(200)?;

    // Delete, then re-create with enabled:false — it starts anyway.
    admin.delete("/api/v1/adapters/smb").await?.expect_status(204)?;
    assert!(!fs.adapters().await?.contains_key("smb"));
    wait_listening(smb_port, false).await?;
    let gone = admin.get("/api/v1/adapters/smb").await?.expect_status(404)?;
    assert_eq!(gone.problem_detail()?, "Adapter not found");
    let body = json!({"type": "smb", "enabled": false, "port": smb_port});
    let created = admin.post("/api/v1/adapters", &body).await?.expect_status(201)?.json()?;
    assert_eq!(created["running"], false, "the create answer never says running");
    let list = fs.adapters().await?;
    assert_eq!(list["smb"]["running"], true, "POST starts the adapter whatever enabled says: {}", list["smb"]);
    wait_listening(smb_port, true).await?;

    let dup = admin.post("/api/v1/adapters", &json!({"type": "smb"})).await?.expect_status(409)?;
    assert_eq!(dup.problem_detail()?, "Adapter already exists");
    let unknown = admin.post("/api/v1/adapters", &json!({"type": "ftp"})).await?.expect_status(500)?;
    assert_eq!(unknown.problem_detail()?, "Failed to create adapter");
    let unknown = admin.put("/api/v1/adapters/ftp", &json!({"enabled": true})).await?.expect_status(404)?;
    assert_eq!(unknown.problem_detail()?, "Adapter not found");
    assert!(!fs.adapters().await?.contains_key("ftp"));
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn busy_port_reports_running_but_not_healthy() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let squatter = std::net::TcpListener::bind("0.0.0.0:0")?;
    let busy = squatter.local_addr()?.port();
    let reply = admin.put("/api/v1/adapters/nfs", &json!({"port": busy})).await?.expect_status(200)?.json()?;
    assert_eq!(reply["running"], true, "a failed bind still counts as running");
    let status = wait_until("NFS status to reflect the failed bind", Duration::from_secs(8), async || {
        let nfs = fs.adapters().await?["nfs"].clone();
        anyhow::ensure!(nfs["running"] == true && nfs["status"]["status"] != "healthy", "{nfs}");
        Ok(nfs["status"].clone())
    })
    .await?;
    assert_eq!(status["status"], "unknown", "{status}");
    let ready = fs.api().get("/health/ready").await?.json()?;
    assert_eq!(ready["data"]["adapters"]["running"], 2, "failed binds count as running in /health/ready");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn restart_keeps_state_and_reset_drops_it() -> Result<()> {
    let mut fs = start().await?;
    let admin = fs.admin().await?;
    create_user(&admin, "k8s-operator", "op-password-1", "operator").await?;
    admin.put("/api/v1/adapters/smb", &json!({"enabled": false})).await?.expect_status(200)?;
    let nfs_port = fs.adapter_port("nfs").unwrap();

    fs.restart().await?;
    let mut operator = fs.api();
    operator.login("k8s-operator", "op-password-1").await?;
    let list = fs.adapters().await?;
    assert_eq!((list["smb"]["enabled"].as_bool(), list["smb"]["running"].as_bool()), (Some(false), Some(false)));
    assert_eq!(list["nfs"]["port"].as_u64(), Some(u64::from(nfs_port)));
    wait_listening(nfs_port, true).await?;

    // A deleted adapter is not persistent: the next start seeds it again, enabled.
    let admin = fs.admin().await?;
    admin.delete("/api/v1/adapters/smb").await?.expect_status(204)?;
    fs.restart().await?;
    let list = fs.adapters().await?;
    assert_eq!((list["smb"]["enabled"].as_bool(), list["smb"]["port"].as_i64()), (Some(true), Some(1445)));

    fs.reset_database().await?;
    let mut operator = fs.api();
    let err = operator.login("k8s-operator", "op-password-1").await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    fs.admin().await?; // bootstrapped again from DITTOFS_ADMIN_INITIAL_PASSWORD
    assert_eq!(fs.adapters().await?.keys().collect::<Vec<_>>(), ["nfs", "smb"]);
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn disabled_accounts_are_refused_before_the_password_check() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    // `enabled:false` on create is lost to the column default: the account is enabled and can log in.
    let body = json!({"username": "k8s-operator", "password": "op-password-1", "role": "operator", "enabled": false});
    let created = admin.post("/api/v1/users", &body).await?.expect_status(201)?.json()?;
    assert_eq!(created["enabled"], true, "{created}");
    let mut operator = fs.api();
    let session = operator.login("k8s-operator", "op-password-1").await?;

    let off = admin.put("/api/v1/users/k8s-operator", &json!({"enabled": false})).await?.expect_status(200)?.json()?;
    assert_eq!(off["enabled"], false);
    // `enabled` is checked before the password: a wrong password is 403 too, not 401.
    for password in ["op-password-1", "wrong-password"] {
        let body = json!({"username": "k8s-operator", "password": password});
        let reply = fs.api().post("/api/v1/auth/login", &body).await?.expect_status(403)?;
        assert_eq!(reply.problem_detail()?, "User account is disabled", "password {password}");
    }
    let body = json!({"refresh_token": session["refresh_token"]});
    let reply = fs.api().post("/api/v1/auth/refresh", &body).await?.expect_status(403)?;
    assert_eq!(reply.problem_detail()?, "User account is disabled");
    // Tokens are stateless: the access token issued before the disable keeps working until it expires.
    operator.get("/api/v1/adapters").await?.expect_status(200)?;

    admin.put("/api/v1/users/k8s-operator", &json!({"enabled": true})).await?.expect_status(200)?;
    operator.login("k8s-operator", "op-password-1").await?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn health_probes_log_at_debug_and_everything_else_at_info() -> Result<()> {
    let fs = start().await?;
    let api = fs.api();
    let before = fs.info_requests_logged();
    for path in ["/health", "/health/", "/health/ready"] {
        api.get(path).await?.expect_status(200)?;
    }
    // Only `/health` and `/health/…` are probes; `/healthz` is an ordinary (404) request.
    api.get("/healthz").await?.expect_status(404)?;
    api.get("/api/v1/adapters").await?.expect_status(401)?;
    let logged = wait_until("two INFO request lines", Duration::from_secs(5), async || {
        let n = fs.info_requests_logged() - before;
        anyhow::ensure!(n >= 2, "{n} lines");
        Ok(n)
    })
    .await?;
    assert_eq!(logged, 2, "{}", fs.log());
    let log = fs.log();
    let line = log.lines().rfind(|l| l.contains("API request completed")).unwrap_or_default();
    assert!(line.contains("] [INFO] API request completed request_id="), "{line}");
    assert!(line.contains(" method=GET path=/api/v1/adapters status=401 bytes=30 duration="), "{line}");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn out_of_range_port_is_a_bare_500_and_leaves_the_adapter_stopped() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let smb_port = fs.adapter_port("smb").unwrap();
    wait_listening(smb_port, true).await?;
    // The adapter constructor panics on a port over 65535; chi's Recoverer answers with no body at all.
    let reply = admin.put("/api/v1/adapters/smb", &json!({"port": 70000})).await?.expect_status(500)?;
    assert!(reply.body.is_empty() && reply.content_type.is_empty(), "{reply:?}");
    // The row was written before the panic, and the old listener was stopped first.
    let smb = fs.adapters().await?["smb"].clone();
    assert_eq!((smb["port"].as_i64(), smb["running"].as_bool()), (Some(70000), Some(false)), "{smb}");
    wait_listening(smb_port, false).await?;
    let ready = fs.api().get("/health/ready").await?.json()?;
    assert_eq!(ready["data"]["adapters"]["types"], json!(["nfs"]));

    let back = admin.put("/api/v1/adapters/smb", &json!({"port": smb_port})).await?.expect_status(200)?.json()?;
    assert_eq!(back["running"], true);
    wait_listening(smb_port, true).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (emulator, or DITTOFS_BIN); run `make test`"]
async fn snapshot_policies_need_their_share_and_are_validated_listed_and_deleted() -> Result<()> {
    let fs = start().await?;
    let admin = fs.admin().await?;
    let path = "/api/v1/shares/archive/snapshot-policy";
    // No share yet: 404 (the agent's "pending"), and the list is an empty array, not null.
    let missing = admin.put(path, &json!({"interval": "24h"})).await?.expect_status(404)?;
    assert_eq!(missing.problem_detail()?, "share not found");
    assert_eq!(admin.get("/api/v1/snapshot-policies").await?.expect_status(200)?.body.trim_end(), "[]");

    let share = create_share(&admin, "archive").await?;
    assert_eq!((share["name"].as_str(), share["default_permission"].as_str()), (Some("/archive"), Some("none")));
    let dup = json!({"name": "/archive", "metadata_store_id": "meta-archive", "local_block_store": "block-archive"});
    assert_eq!(admin.post("/api/v1/shares", &dup).await?.expect_status(409)?.problem_detail()?, "Share already exists");
    let no_store = json!({"name": "/x", "metadata_store_id": "nope", "local_block_store": "block-archive"});
    let reply = admin.post("/api/v1/shares", &no_store).await?.expect_status(400)?;
    assert_eq!(reply.problem_detail()?, "Metadata store not found: nope");

    // Durations come back in Go's String() form; a zero ttl and an empty prefix are omitted.
    let body = json!({"interval": "24h", "keep_last": 3, "ttl": "90m", "name_prefix": "k8s"});
    let stored = put_policy(&admin, "/archive", &body).await?;
    assert_eq!(
        (stored["share"].as_str(), stored["interval"].as_str(), stored["ttl"].as_str(), stored["keep_last"].as_i64()),
        (Some("/archive"), Some("24h0m0s"), Some("1h30m0s"), Some(3))
    );
    assert_eq!((stored["enabled"].as_bool(), stored["name_prefix"].as_str()), (Some(true), Some("k8s")));
    // An upsert keeps created_at; the escaped name with its slash and a trailing slash reach the same route.
    let updated = admin
        .put("/api/v1/shares/%2Farchive/snapshot-policy/", &json!({"interval": "@Daily", "enabled": false}))
        .await?
        .expect_status(200)?
        .json()?;
    assert_eq!((updated["interval"].as_str(), updated["enabled"].as_bool()), (Some("24h0m0s"), Some(false)));
    assert_eq!(updated["created_at"], stored["created_at"]);
    assert!(updated.get("ttl").is_none() && updated.get("name_prefix").is_none(), "{updated}");
    let listed = policies(&admin).await?;
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["/archive"]);
    assert_eq!(listed["/archive"], admin.get(path).await?.expect_status(200)?.json()?);

    for (body, detail) in [
        (json!({"interval": "0s"}), r#"invalid interval: schedule: interval must be positive, got "0s""#),
        (
            json!({"interval": "bogus"}),
            r#"invalid interval: schedule: invalid interval "bogus": time: invalid duration "bogus""#,
        ),
        (
            json!({"interval": "@yearly"}),
            r#"invalid interval: schedule: unknown shorthand "@yearly" (want @hourly, @daily, @weekly)"#,
        ),
        (
            json!({"interval": "9999999999h"}),
            r#"invalid interval: schedule: invalid interval "9999999999h": time: invalid duration "9999999999h""#,
        ),
        (json!({}), "invalid interval: schedule: empty interval"),
        (json!({"interval": "1h", "ttl": "-1s"}), "invalid ttl: must be >= 0"),
        (json!({"interval": "1h", "keep_last": -1}), "keep_last must be >= 0"),
        (json!({"interval": "1h", "name_prefix": "a/b"}), "invalid name_prefix: must match ^[A-Za-z0-9_-]{0,64}$"),
    ] {
        let reply = admin.put(path, &body).await?.expect_status(400)?;
        assert_eq!(reply.problem_detail()?, detail, "{body}");
    }
    let reply = admin.request("POST", path).await?.expect_status(405)?;
    assert!(reply.body.is_empty(), "{reply:?}");

    admin.delete(path).await?.expect_status(204)?;
    let gone = admin.delete(path).await?.expect_status(404)?;
    assert_eq!(gone.problem_detail()?, "snapshot policy not found");
    assert_eq!(admin.get(path).await?.expect_status(404)?.problem_detail()?, "snapshot policy not found");
    // Deleting the share takes its policy with it.
    put_policy(&admin, "archive", &json!({"interval": "1h"})).await?;
    admin.delete("/api/v1/shares/archive").await?.expect_status(204)?;
    assert!(policies(&admin).await?.is_empty());
    Ok(())
}
