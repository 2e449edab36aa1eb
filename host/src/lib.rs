//! Switchboard: a self-hosted instant-messaging server whose message router calls sandboxed
//! WebAssembly plugins at defined hook points.
//!
//! Dependencies point one way: `api` → `router` → {`plugins`, `store`, `hub`}. The `router`
//! knows no HTTP types and no wasmtime types; `store` knows only SQL. [`serve`] is the one
//! entry point, used by the binary and by the end-to-end tests alike.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bus;
pub mod config;
pub mod directory;
pub mod error;
pub mod export;
pub mod files;
pub mod holds;
pub mod hub;
pub mod ids;
pub mod ldap;
pub mod llm;
pub mod matrix;
pub mod membership;
pub mod mentions;
pub mod metrics;
pub mod names;
pub mod oidc;
pub mod os_limits;
pub mod plugins;
pub mod private_files;
pub mod protocol;
pub mod reactions;
pub mod retention;
pub mod router;
pub mod search;
pub mod signing;
pub mod store;
pub mod webhooks;

#[cfg(test)]
mod module_graph_tests;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::AppState;
use crate::config::Config;
use crate::hub::{CloseReason, Hub};
use crate::router::Router;
use crate::router::commit::Committer;
use crate::router::hooks::{Hooks, NoHooks};
use crate::store::{Store, StoreOptions};

/// Open the configured store (running migrations).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // The data directory holds the database, the JWT secret and plugin state.
    private_files::tighten(&config.data_dir, "the data directory")
        .with_context(|| format!("protecting data directory {}", config.data_dir.display()))?;
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        sqlite_synchronous: config.store.sqlite_synchronous,
        sqlite_checkpoint_interval: config.store.sqlite_checkpoint_interval(),
        preserve_versions: config.compliance.preserve_deleted,
        index_search: config.store.search_index,
        search_merge_pages: config.store.search_merge_pages,
        sqlite_retry_filter_keys: config.store.sqlite_retry_filter_keys,
    };
    let url = config.database_url();
    store::open(&url, &options)
        .await
        .with_context(|| format!("opening database {}", store::redact_url(&url)))
}

/// Give the operator the generated password of the first account, never through the log:
/// on a terminal it is printed once; otherwise (a systemd service, whose standard output
/// lands in the journal that every `adm` member reads, or a container) it goes into
/// `<data_dir>/initial-admin-password`, readable only by the server's own user, and the log
/// says where.
fn hand_over_first_password(data_dir: &std::path::Path, password: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        println!(
            "Created the first account: user `admin`, password `{password}` (shown once; change it)."
        );
        return Ok(());
    }
    let path = data_dir.join("initial-admin-password");
    // A file left by an earlier installation in this directory is replaced, never reused.
    let _ = std::fs::remove_file(&path);
    private_files::write_new(&path, format!("{password}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "created the first account `admin`; its one-time password is in this file (readable \
         only by the server's user): sign in, change it, and delete the file"
    );
    Ok(())
}

/// On first start with an empty database, create `admin` and return its password.
pub async fn bootstrap_admin(store: &dyn Store, config: &Config) -> anyhow::Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = match &config.initial_admin_password {
        Some(p) => p.expose().to_string(),
        None => ids::random_token(18),
    };
    let admin = accounts::NewAccount {
        name: "admin".into(),
        password: password.clone(),
        display_name: Some("Administrator".into()),
        admin: true,
    };
    match accounts::create(store, &config.auth, admin, audit::Actor::System).await {
        Ok(_) => Ok(Some(password)),
        // Several nodes started together on one empty database: another one created it
        // between our count and our insert. Not an error; it just isn't ours to announce.
        Err(e) if e.code() == "user_exists" => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "creating the admin account: {}",
            e.body().message
        )),
    }
}

/// Run the server on `listener` until `shutdown` resolves, then stop accepting, close live
/// sessions, and finish every write already accepted before returning.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config
        .identity
        .validate(&config.auth)
        .and_then(|()| config.store.validate())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let config = Arc::new(config);
    let open_files = os_limits::raise_open_file_limit();
    if let Some(warning) =
        os_limits::connection_cap_warning(open_files, config.http.max_connections)
    {
        tracing::warn!("{warning}");
    }
    let store = open_store(&config).await?;
    if let Some(password) = bootstrap_admin(store.as_ref(), &config).await? {
        if config.initial_admin_password.is_none() {
            hand_over_first_password(&config.data_dir, &password)?;
        } else {
            tracing::info!("created the first account `admin` with the configured password");
        }
    }
    let secret = auth::load_or_create_secret(&config.auth, &config.data_dir)
        .context("loading the JWT signing secret")?;

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let membership = Arc::new(membership::Membership::new(store.clone()));
    let hub = Arc::new(Hub::new(membership.clone(), metrics.clone()));
    let presence_ticker = if config.presence.enabled {
        hub.enable_presence(
            config.presence.clone(),
            store
                .presence_hidden_users()
                .await
                .context("reading who hides their presence")?,
        );
        let every = std::time::Duration::from_millis(config.presence.tick_ms.max(50));
        Some(tokio::spawn(hub.clone().run_presence(every)))
    } else {
        None
    };
    if let Some(url) = &config.cluster.nats_url {
        let bus = bus::NatsBus::start(&config.cluster, url.expose(), hub.clone(), &mut registry)
            .await
            .context("starting the NATS cluster bus")?;
        tracing::info!(
            node = bus::Bus::node_id(bus.as_ref()),
            "clustered over NATS"
        );
        hub.set_bus(bus);
    }
    let llm = Arc::new(
        llm::Llm::new(
            config.llm.clone(),
            store.clone(),
            config.limits.clone(),
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
    );
    // Without a plugins directory the hook layer is `NoHooks`: no engine, no ticker thread.
    let plugins = match &config.plugins.dir {
        Some(_) => Some(
            plugins::PluginHost::load(
                &config.plugins,
                &config.data_dir,
                store.clone(),
                &mut registry,
                Some(llm.clone()),
            )
            .await
            .context("loading plugins")?,
        ),
        None => None,
    };
    let hooks: Arc<dyn Hooks> = match &plugins {
        Some(host) => host.clone(),
        None => Arc::new(NoHooks),
    };
    let (stop_writer, writer_stopped) = watch::channel(false);
    let (committer, writer) = Committer::start(
        store.clone(),
        hub.clone(),
        metrics.clone(),
        config.store.commit_batch_max,
        config.store.commit_queue,
        config.store.search_merge_pages,
        writer_stopped,
    )
    .context("starting the group-commit writer")?;
    let router = Arc::new(Router::new(
        store.clone(),
        membership,
        hub.clone(),
        hooks,
        committer,
        config.limits.clone(),
    ));
    router.attach_llm(llm.clone());
    let housekeeping = {
        let router = router.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                router.housekeeping();
            }
        })
    };
    let auth = Arc::new(auth::Auth::new(store.clone(), config.auth.clone(), &secret));
    if config.compliance.retention_days > 0
        && config.compliance.retention_days < config.compliance.retention_min_days
    {
        anyhow::bail!(
            "compliance.retention_days ({}) is below compliance.retention_min_days ({})",
            config.compliance.retention_days,
            config.compliance.retention_min_days
        );
    }
    let audit_key = audit::load_or_create_key(&config.compliance, &config.data_dir)
        .context("loading the audit key")?;
    let checkpointer =
        audit::spawn_checkpointer(store.clone(), audit_key, config.compliance.clone());
    let retention = retention::spawn_scheduler(store.clone(), config.compliance.clone());
    let search_backfill = config
        .store
        .search_index
        .then(|| search::spawn_backfill(store.clone()));
    let files = Arc::new(files::Files::open(&config).context("opening file storage")?);
    let exporter = match &config.compliance.export_dir {
        Some(dir) => Some(export::spawn_scheduler(
            store.clone(),
            files.clone(),
            audit::load_or_create_key(&config.compliance, &config.data_dir)
                .context("loading the audit key")?,
            dir.clone(),
            config.compliance.export_every_secs,
            export::ArchiveSettings::from_config(&config.compliance),
        )),
        None => None,
    };
    let accounts = Arc::new(accounts::Accounts::new(
        store.clone(),
        auth.clone(),
        hub.clone(),
        router.hooks().clone(),
        config.auth.clone(),
    ));
    let directory = Arc::new(directory::Directory::new(
        store.clone(),
        router.clone(),
        accounts.clone(),
        config.identity.groups.clone(),
        config.auth.break_glass_accounts.clone(),
    ));
    let oidc = Arc::new(
        oidc::Oidc::new(
            config.identity.clone(),
            store.clone(),
            directory.clone(),
            accounts.clone(),
        )
        .context("setting up OpenID Connect sign-in")?,
    );
    let ldap = config.identity.ldap.clone().map(|ldap| {
        Arc::new(ldap::Ldap::new(
            ldap,
            &config.identity.scim,
            store.clone(),
            auth.clone(),
            accounts.clone(),
            directory.clone(),
            metrics.clone(),
        ))
    });
    let ldap_sync = ldap.clone().map(ldap::Ldap::spawn_sync);
    files
        .sweep_unfinished(store.as_ref())
        .await
        .context("removing unfinished uploads")?;
    files.check_scanner().await;
    let purger = files
        .clone()
        .spawn_purger(store.clone(), config.files.purge_interval_secs);
    let webhooks = Arc::new(webhooks::Webhooks::new(
        store.clone(),
        router.clone(),
        config.webhooks.clone(),
    ));
    let matrix = Arc::new(matrix::Matrix::new(
        store.clone(),
        router.clone(),
        hub.clone(),
        config.matrix.clone(),
    ));
    let state = AppState {
        matrix,
        webhooks,
        files,
        config: config.clone(),
        accounts,
        directory,
        oidc,
        ldap,
        store: store.clone(),
        auth,
        router,
        hub: hub.clone(),
        metrics,
        registry: Arc::new(registry),
        plugins: plugins.clone(),
        llm,
    };

    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = store.backend(), "switchboard listening");
    let hub_for_shutdown = hub.clone();
    api::listener::serve(listener, api::app(state), &config.http, async move {
        shutdown.await;
        tracing::info!("shutting down: closing sessions, finishing writes");
        hub_for_shutdown.close_all(CloseReason::Shutdown);
    })
    .await;
    housekeeping.abort();
    if let Some(ticker) = presence_ticker {
        ticker.abort();
    }
    checkpointer.abort();
    retention.abort();
    if let Some(backfill) = search_backfill {
        backfill.abort();
    }
    purger.abort();
    if let Some(sync) = ldap_sync {
        sync.abort();
    }
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    let _ = stop_writer.send(true);
    writer.stopped().await.context("group-commit writer")?;
    // A clean stop leaves the chain's head under a signed checkpoint.
    match audit::load_or_create_key(&config.compliance, &config.data_dir) {
        Ok(key) => {
            let sink = config.compliance.checkpoint_file.as_deref();
            if let Err(err) = audit::checkpoint(store.as_ref(), &key, sink).await {
                tracing::warn!(error = %err, "the final audit checkpoint failed");
            }
        }
        Err(err) => tracing::warn!(error = %err, "no audit key for the final checkpoint"),
    }
    if let Some(host) = plugins {
        host.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}
