//! Hardening: what an attacker tries after the basics hold. A bad row must not fail its
//! batch-mates, login budgets must hold under concurrency, ended sessions must end
//! everywhere, slow connections must be cut, and no input may produce a 500.
//!
//! Where storage is involved each test runs on SQLite and on PostgreSQL.

mod batch;
mod connections;
mod endpoints;
mod inputs;
mod login;
mod sessions;

use switchboard::config::{Config, Secret};

use crate::cluster::PgDb;
use crate::support::TestServer;

/// The two stores every storage-touching test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A server on `backend`; the PostgreSQL database lives as long as the returned guard.
pub async fn start_on(
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
) -> (TestServer, Option<PgDb>) {
    match backend {
        Backend::Sqlite => (TestServer::start_with(tweak).await, None),
        Backend::Postgres => {
            let db = PgDb::create().await;
            let url = db.url.clone();
            let server = TestServer::start_with(move |c| {
                c.database_url = Some(Secret(url));
                tweak(c);
            })
            .await;
            (server, Some(db))
        }
    }
}
