//! The `switchboard` command: run the server, manage users.

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
    /// Configuration file (default: ./switchboard.toml if present).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
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
    /// Manage the plugins of a running server (through its admin API).
    #[command(subcommand)]
    Plugin(PluginCommand),
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
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    #[command(flatten)]
    Admin(switchboard::admin_client::PluginAdminCommand),
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
    /// Deactivate an account and end its sessions.
    Deactivate { name: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            Command::Plugin(PluginCommand::Admin(command)) => {
                switchboard::admin_client::run(command).await
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
                (switchboard::auth::random_token(18), true)
            };
            let user = switchboard::api::account::new_account(
                store.as_ref(),
                name,
                password.clone(),
                display_name,
                admin,
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
        UserCommand::Deactivate { name } => {
            let (user, _) = store.user_by_name(&name).await?.context("no such user")?;
            store.set_user_active(user.id, false).await?;
            let ended = store.revoke_user_sessions(user.id).await?;
            store
                .append_audit(
                    "system:cli",
                    "user.deactivate",
                    &format!("user:{}", user.id),
                    &serde_json::json!({}),
                )
                .await?;
            println!("deactivated `{name}`; ended {} session(s)", ended.len());
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
