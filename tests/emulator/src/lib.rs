//! `dittofs-emulator`: an API-faithful stand-in for DittoFS v0.29.0's control plane, for machines that cannot
//! have the real server. Same routes, bodies, status codes, roles, token lifetimes and quirks (docs/dittofs-api.md),
//! held to the real server by the contract suite (`tests/tests/contract.rs`), which runs unchanged against both.

pub mod config;
pub mod faults;
mod http;
pub mod jwt;
pub mod log;
pub mod runtime;
pub mod store;
pub mod tls;

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::Timestamp;

use self::{config::Config, jwt::Signer, log::Log, runtime::Runtime, store::Store};

/// Shared server state.
#[derive(Debug)]
pub struct App {
    config: Config,
    store: Mutex<Store>,
    signer: Signer,
    runtime: Runtime,
    log: Arc<Log>,
    started: Instant,
    started_at: Timestamp,
    requests: AtomicU64,
}

impl App {
    /// The database; never held across an await.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    /// chi's request counter: every request counts, logged or not.
    fn next_request_number(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Runs the server until SIGINT/SIGTERM: opens the database, bootstraps the admin, starts enabled adapters
/// (before the API listener opens, so once `/health` answers the `running` flags are final), then serves.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let log = Arc::new(Log::open(&config.log_level, config.log_format, &config.log_output)?);
    if let Some((host, port)) = &config.postgres {
        // Reachability only: the emulator does not speak PostgreSQL (the real tier proves the database use).
        let reached =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), *port))).await;
        match reached {
            Ok(Ok(_)) => log
                .info("Connected to PostgreSQL", &[("host", host.as_str().into()), ("port", i64::from(*port).into())]),
            Ok(Err(e)) => anyhow::bail!("failed to connect to PostgreSQL at {host}:{port}: {e}"),
            Err(_) => anyhow::bail!("failed to connect to PostgreSQL at {host}:{port}: timed out"),
        }
    }
    let mut store = Store::open(&config.db_path)?;
    ensure_admin(&mut store, &config, &log)?;
    let runtime = Runtime::new(log.clone());
    for row in store.adapters() {
        if !row.enabled {
            log.info("Adapter disabled, skipping", &[("type", (&row.kind).into())]);
            continue;
        }
        if let Err(e) = runtime.start(row).await {
            // The real constructor panics here and takes the whole process down (exit status 2).
            eprintln!("panic: {e}");
            std::process::exit(2);
        }
    }
    // Built before the listener opens: a bad certificate path stops the start, as in DittoFS.
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
    let address = listener.local_addr()?.to_string();
    let (scheme, mtls) =
        (if tls.is_some() { "https" } else { "http" }, config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()));
    log.info("API server listening", &[("addr", (&address).into()), ("scheme", scheme.into()), ("mtls", mtls.into())]);
    let app = Arc::new(App {
        signer: Signer::new(&config.jwt_secret),
        config,
        store: Mutex::new(store),
        runtime,
        log: log.clone(),
        started: Instant::now(),
        started_at: Timestamp::now(),
        requests: AtomicU64::new(0),
    });
    match tls {
        None => axum::serve(listener, http::router(app.clone())).with_graceful_shutdown(shutdown_signal()).await?,
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls, log.clone())?;
            axum::serve(listener, http::router(app.clone())).with_graceful_shutdown(shutdown_signal()).await?
        }
    }
    app.runtime.stop_all().await;
    log.info("Server stopped gracefully", &[]);
    Ok(())
}

/// `EnsureAdminUser`: only when no `admin` exists; the env password clears the must-change flag.
fn ensure_admin(store: &mut Store, config: &Config, log: &Log) -> anyhow::Result<()> {
    if store.user("admin").is_some() {
        return Ok(());
    }
    let (password, must_change) = match &config.admin_initial_password {
        Some(p) => (p.clone(), false),
        None => {
            let p = random_password();
            log.warn(
                "Admin user created with a generated password; set DITTOFS_ADMIN_INITIAL_PASSWORD to choose it",
                &[],
            );
            (p, config.require_initial_password_change)
        }
    };
    log.info("Admin user created", &[("username", "admin".into())]);
    let password_hash =
        store::hash_password(&password).map_err(|e| anyhow::anyhow!("DITTOFS_ADMIN_INITIAL_PASSWORD: {e}"))?;
    store.create_user(store::User {
        id: uuid::Uuid::new_v4().to_string(),
        username: "admin".into(),
        password_hash,
        role: "admin".into(),
        display_name: "Administrator".into(),
        email: String::new(),
        uid: Some(0),
        gid: None,
        groups: vec!["admins".into()],
        enabled: true,
        must_change_password: must_change,
        created_at: Timestamp::now(),
        last_login: None,
    })?;
    Ok(())
}

fn random_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
