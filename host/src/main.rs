//! The `switchboard` command: run the server, manage users, and the plugin author's tools.

mod cli;

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchboard::config::{Config, LogFormat};

/// mimalloc instead of the system allocator: glibc keeps the ~19 MiB argon2 buffers of every
/// password check (resident memory grew by that much per login); mimalloc returns them, and
/// is faster for the server's many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted IM server with WebAssembly plugins"
)]
struct Cli {
    /// Configuration file (default: ./switchboard.toml if present). Given before the
    /// subcommand (not global: `plugin test --config` sets a plugin setting).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SQLite under ./data unless configured otherwise).
    Serve {
        /// Address to listen on, overriding the configuration.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage accounts directly in the database.
    #[command(subcommand)]
    User(UserCommand),

    /// Copy a stopped SQLite installation into an empty PostgreSQL database, keeping every
    /// id, seq and timestamp; verifies the copy and prints a summary.
    MigrateStore {
        /// The SQLite database, e.g. sqlite://./data/switchboard.db
        #[arg(long)]
        from: String,
        /// The empty PostgreSQL database, e.g. postgres://switchboard@db/switchboard
        #[arg(long)]
        to: String,
    },
    /// The database schema: apply this binary's pending migrations now (the server also does
    /// at start), or only look.
    Migrate {
        /// Print what is applied and what is pending; change nothing. Exits 1 if the
        /// database is newer than this binary or a migration needs attention.
        #[arg(long, conflicts_with = "dry_run")]
        status: bool,
        /// Show what would be applied; on SQLite, also apply it to a scratch copy of the
        /// database to prove it goes through. Changes nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up the installation while it runs: `backup DEST`, or check one: `backup verify
    /// SRC` (docs/operations.md, "Backup and restore").
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
        /// A new directory for the backup (never overwritten).
        dest: Option<PathBuf>,
    },
    /// Restore a backup (verified first) into the configured installation, which must be
    /// empty: a new data directory (SQLite) or an empty PostgreSQL database.
    Restore { src: PathBuf },
    /// Plugins: manage a running server's (list, install, enable, disable, reload, set,
    /// uninstall) and the author's tools (keygen, sign, new, test).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The compliance export (docs/compliance.md).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Message search's index.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Print the OpenAPI 3.1 description of the HTTP API (the one a server serves at
    /// `/api/v1/openapi.json`), for client generators and API tools.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Check a backup without changing it: every file's size and SHA-256, the database's
    /// integrity and schema, the audit chain against its signed checkpoints, the stored
    /// files. Exits 1 when anything is wrong.
    Verify {
        src: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    /// Recompute every message's searchable text (after an upgrade whose notes ask for it,
    /// or to repair the index), printing progress. Safe while the server runs: messages
    /// sent meanwhile are indexed as they are stored.
    Reindex {
        /// Only messages not indexed yet (what the server also does by itself at start).
        #[arg(long)]
        missing_only: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Write the next signed batch of the series in OUT: every event of the chosen rooms
    /// (default: all), senders (default: all) and time range, as JSON lines.
    Run {
        #[arg(long)]
        out: PathBuf,
        #[arg(long = "room")]
        rooms: Vec<i64>,
        #[arg(long = "user")]
        users: Vec<i64>,
        /// Milliseconds since the epoch.
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        until: Option<i64>,
    },
    /// Check every batch in DIR: signatures, file hashes and the links between batches.
    Verify { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the audit chain and check it against every signed checkpoint: reports, each on
    /// its own, records changed, put in, or removed, and an end cut off after a checkpoint.
    /// Exits non-zero on any finding, or when the check itself could not run.
    Verify {
        /// Also check the checkpoints in this file (the `compliance.checkpoint_file` lines),
        /// kept where the database's administrators cannot rewrite them.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `switchboard plugin ...`: the admin commands talk to a running server's admin API; the
/// author's tools need no server and no configuration.
#[derive(Debug, Subcommand)]
enum PluginCommand {
    #[command(flatten)]
    Admin(cli::admin_client::PluginAdminCommand),
    /// Generate an ed25519 signing key pair: OUT.key (secret, mode 0600) and OUT.pub (give
    /// it to operators for `plugins.trusted_keys`). Never overwrites.
    Keygen {
        /// Path and base name of the two files, e.g. keys/acme.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component: writes COMPONENT.sig next to it (install the two together).
    Sign {
        /// The secret key file made by `plugin keygen`.
        #[arg(long)]
        key: PathBuf,
        component: PathBuf,
    },
    /// Write the plugin interface this binary speaks, every supported version, as WIT
    /// packages: OUT/switchboard-plugin-<version>/{types,hooks,host}.wit. Never overwrites.
    Wit {
        /// The directory to write into.
        #[arg(long, default_value = "wit")]
        out: PathBuf,
    },
    /// Create a plugin project NAME in Rust, Python, JavaScript or C (builds as-is with the
    /// language's tools; its README says how).
    New {
        /// 1-64 characters of [a-z0-9_-], starting with a letter.
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: cli::scaffold::Lang,
        /// Where to create the project's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust only: depend on this guest SDK (`plugin-api` of a Switchboard checkout)
        /// instead of the copy written into the crate.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run one hook of a component without a server and print the outcome and the time.
    ///
    /// The input is a JSON object; missing fields take defaults:
    ///   message-pre-send:  {"body": "...", "room_id": 1, "sender_id": 1, "sender_name":
    ///                       "alice", "client_msg_id": "test-1", "editing": null,
    ///                       "metadata": {}}   (body required)
    ///   message-delivered: {"room": {"id": 1, "kind": "group", "name": "general"},
    ///                       "event": {"id": 1, "seq": 1, "kind": "message", "sender_id": 1,
    ///                       "body": "...", "metadata": {}}}
    ///   on-login:          {"id": 1, "name": "alice", "display_name": "Alice",
    ///                       "is_admin": false, "is_bot": false}
    ///   on-connect:        as on-login, plus "session_id": "session-1"
    ///   authenticate:      {"method": "api-key", "credential": "...", "username": null}
    ///                       (prints accept + user, refuse + reason, or defer)
    ///   command:           {"command": "echo", "args": "hello", "sender_name": "alice"}
    ///                       (the plugin gets capability bot and the command; its bot and
    ///                       the sender share a room; prints what the bot posted and what
    ///                       only the sender would see)
    ///
    /// Exits non-zero on bad input, a hook the plugin does not implement, or a failed call.
    #[command(verbatim_doc_comment)]
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// message-pre-send, message-delivered, on-login, on-connect, command or authenticate.
        #[arg(long, value_parser = cli::standalone::parse_hook)]
        hook: switchboard::router::hooks::HookKind,
        /// The hook's input, a JSON file (see above).
        #[arg(long)]
        input: PathBuf,
        /// A setting for the plugin, KEY=VALUE; repeat a key for a list.
        #[arg(long = "config", value_name = "KEY=VALUE",
              value_parser = cli::standalone::parse_setting)]
        settings: Vec<(String, String)>,
        /// Load with this plugin.toml (its capabilities, limits, settings) instead of
        /// granting log, config and kv.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Call the hook N times and report the warm-call average too.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Compile from scratch instead of reusing the compiled component kept from an
        /// earlier run (in ~/.cache/switchboard/plugin-test).
        #[arg(long)]
        no_cache: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account and print its generated password (or read one from stdin).
    Add {
        name: String,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List accounts.
    List,
    /// Grant the compliance role (reads and verifies the audit log), or take it away.
    Compliance {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Deactivate an account and end its sessions.
    Deactivate { name: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The author's tools need no server configuration (a broken switchboard.toml in the
    // working directory must not stop `plugin test`) and keep stdout for their results.
    // Subcommands that act on a server's plugins can load `cli.config` themselves.
    if let Command::Plugin(command) = cli.command {
        return plugin_command(command);
    }
    if let Command::Openapi = cli.command {
        println!("{}", switchboard::api::openapi::document_json());
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    init_tracing(config.log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen } => {
                if let Some(listen) = listen {
                    config.listen = listen;
                }
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding {}", config.listen))?;
                switchboard::serve(config, listener, shutdown_signal()).await
            }
            Command::User(command) => user_command(&config, command).await,
            Command::Export(command) => export_command(&config, command).await,
            Command::Search(SearchCommand::Reindex { missing_only }) => {
                search_reindex(&config, missing_only).await
            }
            Command::Audit(AuditCommand::Verify { checkpoints, json }) => {
                audit_verify(&config, checkpoints, json).await
            }
            Command::Plugin(_) | Command::Openapi => {
                unreachable!("handled before the configuration is loaded")
            }
            Command::Migrate {
                status,
                dry_run,
                json,
            } => migrate_command(&config, status, dry_run, json).await,
            Command::Backup {
                command: Some(BackupCommand::Verify { src, json }),
                ..
            } => backup_verify(&config, &src, json).await,
            Command::Backup {
                command: None,
                dest: Some(dest),
            } => {
                let done = switchboard::backup::backup(&config, &dest).await?;
                let m = &done.manifest;
                println!(
                    "backed up {} ({} schema {}): {} events, {} audit records, {} entries, {} bytes{}",
                    done.path.display(),
                    m.backend,
                    m.schema_version,
                    m.events,
                    m.audit_records,
                    m.entries.len(),
                    done.bytes,
                    if m.files_missing.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} file(s) deleted during the backup are missing",
                            m.files_missing.len()
                        )
                    }
                );
                Ok(())
            }
            Command::Backup { .. } => {
                anyhow::bail!("usage: switchboard backup DEST | switchboard backup verify SRC")
            }
            Command::Restore { src } => {
                let done = switchboard::backup::restore(&config, &src).await?;
                println!(
                    "restored {} into {} (schema {}, {} events, {} audit records, {} files); \
                     start the server to bring the schema up to date",
                    src.display(),
                    done.database,
                    done.manifest.schema_version,
                    done.manifest.events,
                    done.manifest.audit_records,
                    done.files
                );
                if done.plugins > 0 {
                    println!("restored {} plugin file(s)", done.plugins);
                }
                if let Some(note) = &done.plugins_skipped {
                    println!("note: {note}");
                }
                Ok(())
            }
            Command::MigrateStore { from, to } => {
                println!(
                    "migrating {} -> {}",
                    switchboard::store::redact_url(&from),
                    switchboard::store::redact_url(&to)
                );
                let report = switchboard::store::migrate::sqlite_to_postgres(&from, &to).await?;
                println!("{report}");
                println!("done: point database_url at the PostgreSQL database and start the nodes");
                Ok(())
            }
        }
    })
}

async fn migrate_command(
    config: &Config,
    only_status: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    use switchboard::store::schema;
    let url = config.database_url();
    let shown = switchboard::store::redact_url(&url);
    let status = schema::status(&url)
        .await
        .with_context(|| format!("reading the schema of {shown}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!(
            "{shown}: {} database at schema version {}, this binary carries up to {}",
            status.backend,
            if status.fresh {
                "new".to_string()
            } else {
                status.database_version.to_string()
            },
            status.binary_version
        );
        for m in &status.applied {
            println!(
                "  applied  {:>4} {} ({})",
                m.version, m.description, m.installed_on
            );
        }
        for m in &status.pending {
            println!("  pending  {:>4} {}", m.version, m.description);
        }
    }
    let problems = status.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        std::process::exit(1);
    }
    if only_status {
        return Ok(());
    }
    if dry_run {
        if status.pending.is_empty() {
            println!("nothing to apply");
        } else if status.backend == "sqlite" && !status.fresh {
            let took = schema::dry_run_sqlite(&url).await?;
            println!(
                "dry run: the {} pending migration(s) applied to a scratch copy in {:.1} s; the \
                 database itself is unchanged",
                status.pending.len(),
                took.as_secs_f64()
            );
        } else {
            println!(
                "dry run: the {} pending migration(s) above would be applied; nothing was changed",
                status.pending.len()
            );
        }
        return Ok(());
    }
    if status.pending.is_empty() {
        println!("up to date");
        return Ok(());
    }
    switchboard::open_store(config).await?;
    println!("applied {} migration(s)", status.pending.len());
    Ok(())
}

async fn backup_verify(config: &Config, src: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let report = switchboard::backup::verify(config, src).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let m = &report.manifest;
        println!(
            "{}: {} backup by switchboard {}, schema {}, {} entries, {} events, {} audit records",
            src.display(),
            m.backend,
            m.switchboard_version,
            m.schema_version,
            m.entries.len(),
            m.events,
            m.audit_records
        );
        if let Some(audit) = &report.audit {
            println!(
                "audit chain: {} records, {} checkpoints checked",
                audit.records, audit.checkpoints_checked
            );
        }
        for problem in &report.problems {
            println!("problem: {problem}");
        }
        if report.is_sound() {
            println!("sound");
        }
    }
    if !report.is_sound() {
        std::process::exit(1);
    }
    Ok(())
}

async fn search_reindex(config: &Config, missing_only: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.store.search_index,
        "search is turned off in the configuration (store.search_index = false): nothing to index"
    );
    let store = switchboard::open_store(config).await?;
    let started = std::time::Instant::now();
    let mut last_report = started;
    let done = switchboard::search::reindex(store.as_ref(), missing_only, |visited, total| {
        // A line per second at most, and the last one.
        if visited == total || last_report.elapsed() >= std::time::Duration::from_secs(1) {
            last_report = std::time::Instant::now();
            #[allow(clippy::cast_precision_loss)]
            let percent = if total == 0 {
                100.0
            } else {
                visited as f64 * 100.0 / total as f64
            };
            println!("indexed {visited}/{total} messages ({percent:.0}%)");
        }
    })
    .await?;
    println!(
        "done: {} messages looked at, {} updated, in {:.1} s",
        done.visited,
        done.written,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn user_command(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let store = switchboard::open_store(config).await?;
    match command {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
            display_name,
        } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password")?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (switchboard::ids::random_token(18), true)
            };
            let account = switchboard::accounts::NewAccount {
                name,
                password: password.clone(),
                display_name,
                admin,
            };
            let user = switchboard::accounts::create(
                store.as_ref(),
                &config.auth,
                account,
                switchboard::audit::Actor::Cli,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.body().message))?;
            println!(
                "created user `{}` (id {}{})",
                user.name,
                user.id,
                if admin { ", admin" } else { "" }
            );
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::List => {
            for user in store.list_users().await? {
                let flags = [
                    (user.is_admin, "admin"),
                    (user.is_compliance, "compliance"),
                    (user.is_bot, "bot"),
                    (!user.active, "deactivated"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| *f)
                .collect::<Vec<_>>()
                .join(",");
                println!("{:>6}  {:<32}  {}", user.id, user.name, flags);
            }
        }
        UserCommand::Compliance { name, revoke } => {
            let (user, _) = store.user_by_name(&name).await?.context("no such user")?;
            switchboard::accounts::set_compliance(
                store.as_ref(),
                user.id,
                !revoke,
                switchboard::audit::Actor::Cli,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.body().message))?;
            let what = if revoke { "no longer has" } else { "now has" };
            println!("`{name}` {what} the compliance role");
        }
        UserCommand::Deactivate { name } => {
            let (user, _) = store.user_by_name(&name).await?.context("no such user")?;
            let ended = switchboard::accounts::set_active(
                store.as_ref(),
                user.id,
                false,
                switchboard::audit::Actor::Cli,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.body().message))?;
            // This process is not the server: the running nodes notice the ended sessions at
            // their next session re-check (`limits.ws_session_recheck_secs`) and close the
            // sockets then; every HTTP request is refused at once.
            println!(
                "deactivated `{name}`; ended {} session(s) (open connections close within {} s)",
                ended.len(),
                config.limits.ws_session_recheck_secs
            );
        }
    }
    Ok(())
}

async fn export_command(config: &Config, command: ExportCommand) -> anyhow::Result<()> {
    let key = switchboard::audit::load_or_create_key(&config.compliance, &config.data_dir)?;
    match command {
        ExportCommand::Run {
            out,
            rooms,
            users,
            from,
            until,
        } => {
            let store = switchboard::open_store(config).await?;
            let request = switchboard::export::ExportRequest {
                rooms,
                users,
                from_at: from,
                until_at: until,
            };
            let files = switchboard::files::Files::open(config)?;
            let (batch, manifest) = switchboard::export::export(
                store.as_ref(),
                &files,
                &key,
                &request,
                &out,
                &switchboard::export::ArchiveSettings::from_config(&config.compliance),
            )
            .await?;
            switchboard::audit::record(
                store.as_ref(),
                switchboard::audit::Actor::Cli,
                switchboard::audit::Action::ExportRun,
                switchboard::audit::Subject::Export,
                serde_json::json!({
                    "batch": batch.display().to_string(), "events": manifest.events,
                    "rooms": manifest.rooms, "request": manifest.request,
                }),
            )
            .await;
            println!(
                "wrote {} ({} events from {} rooms)",
                batch.display(),
                manifest.events,
                manifest.rooms
            );
        }
        ExportCommand::Verify { dir } => {
            let report = switchboard::export::verify(&dir, &key.public())?;
            println!("{} batches, {} events", report.batches, report.events);
            for problem in &report.problems {
                println!("{problem}");
            }
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            println!("intact");
        }
    }
    Ok(())
}

async fn audit_verify(
    config: &Config,
    checkpoints: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let store = switchboard::open_store(config).await?;
    let key = switchboard::audit::load_or_create_key(&config.compliance, &config.data_dir)?;
    let extra = match &checkpoints {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("a line of {} is not a checkpoint", path.display()))?,
        None => Vec::new(),
    };
    let report = switchboard::audit::verify(store.as_ref(), &key.public(), extra).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} records, head {} ({}), {} checkpoints",
            report.records,
            report.head_seq,
            report.head_hash.get(..16).unwrap_or(&report.head_hash),
            report.checkpoints_checked
        );
        for seq in &report.modified {
            println!("modified: record {seq} no longer matches its hash");
        }
        for seq in &report.inserted {
            println!("inserted: record {seq} was put into the chain afterwards");
        }
        for (after, before) in &report.deleted {
            println!("deleted: records between {after} and {before} were removed");
        }
        if let Some(t) = &report.truncated {
            println!(
                "truncated: the chain ends at {} but a checkpoint covers {}",
                t.chain_ends_at, t.checkpoint_seq
            );
        }
        for seq in &report.checkpoint_mismatches {
            println!("rewritten: the record at checkpoint {seq} is not the one signed");
        }
        for seq in &report.bad_signatures {
            println!("forged: checkpoint {seq} is not signed by the audit key");
        }
        if report.is_intact() {
            println!("intact");
        }
    }
    if !report.is_intact() {
        std::process::exit(1);
    }
    Ok(())
}

fn plugin_command(command: PluginCommand) -> anyhow::Result<()> {
    use crate::cli::{scaffold, standalone};
    use switchboard::signing;
    // The tools print results on stdout (`plugin test --json` is read by scripts); the log,
    // including the plugin's own `log` lines, goes to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,plugin=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match command {
        PluginCommand::Admin(command) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(cli::admin_client::run(command))?;
        }
        PluginCommand::Keygen { out } => {
            let key = signing::keygen(&out)?;
            println!(
                "secret key: {} (keep it private)",
                key.secret_path.display()
            );
            println!("public key: {}", key.public_path.display());
            println!("key id:     {}", key.public.id());
            println!("for the operator's switchboard.toml:");
            println!("  [plugins]\n  trusted_keys = [\"{}\"]", key.public);
        }
        PluginCommand::Sign { key, component } => {
            let (signature, id) = signing::sign_file(&key, &component)?;
            println!("signed {} with key {id}", component.display());
            println!("signature: {}", signature.display());
        }
        PluginCommand::Wit { out } => {
            let dirs = cli::wit::write_all(&out)?;
            for (version, dir) in cli::wit::VERSIONS.iter().zip(&dirs) {
                println!(
                    "{}  switchboard:plugin@{}{}",
                    dir.display(),
                    version.version,
                    if version.released {
                        ""
                    } else {
                        "  (newest; not yet released: it may still change)"
                    }
                );
            }
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let made = scaffold::scaffold(&name, &dir, lang, sdk.as_deref())?;
            println!("created {}", made.dir.display());
            for file in &made.files {
                println!("  {}", file.display());
            }
            println!("build:  cd {} && {}", made.dir.display(), made.build);
            println!("output: {}", made.component);
            println!("more:   {}", made.dir.join("README.md").display());
        }
        PluginCommand::Test {
            component,
            hook,
            input,
            settings,
            manifest,
            repeat,
            no_cache,
            json,
        } => {
            let options = standalone::TestOptions {
                component,
                hook,
                input,
                settings,
                manifest,
                repeat,
                cache_dir: if no_cache {
                    None
                } else {
                    standalone::default_cache_dir()
                },
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let report = runtime.block_on(standalone::run(&options))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            if let Some(kind) = &report.failure {
                anyhow::bail!("the plugin failed ({kind})");
            }
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // The log goes to stderr; stdout carries only what is meant for the operator's eyes
    // (the first start's one-time admin password), so collecting the log never collects it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
