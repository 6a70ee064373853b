//! `pconnect-hub migrate --from <data dir> --to postgres://...`: moves a single hub's SQLite store
//! into PostgreSQL, everything as stored (ids, token and code hashes, links' subdomains, released
//! names, the audit log, the hub key), so the same tokens log in, the same share codes join and
//! the same link URLs serve once hubs start with `--store`. Read in one SQLite transaction,
//! written in one PostgreSQL transaction: all or nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::members::is_running;
use crate::store::snapshot::SnapshotCounts;
use crate::store::{ImportError, PostgresStore, PostgresUrl, STORE_FILE, SqliteStore};

/// What `migrate` did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The SQLite file read.
    pub from: PathBuf,
    /// The database written (its password masked).
    pub to: String,
    /// Rows copied, per kind.
    pub counts: SnapshotCounts,
    /// Whether `--force` allowed replacing data the target held.
    pub force: bool,
}

/// Copies the store of the (stopped) hub in `data_dir` into the database at `to`. The database
/// must hold no data unless `replace`, which deletes what it holds first (in the same transaction).
pub async fn migrate(data_dir: &Path, to: &PostgresUrl, replace: bool) -> Result<Migrated> {
    let from = data_dir.join(STORE_FILE);
    anyhow::ensure!(
        from.is_file(),
        "{} holds no hub store ({STORE_FILE}): pass the --data directory the hub ran with as --from",
        data_dir.display()
    );
    anyhow::ensure!(
        !is_running(data_dir).await,
        "a hub is running on {}: stop it first (migrate copies the store as it is; whatever the hub wrote \
         afterwards would be lost), then run migrate again and start the hub with --store",
        data_dir.display()
    );
    let sqlite = SqliteStore::open(&from).await.with_context(|| format!("cannot open {}", from.display()))?;
    let snapshot = sqlite.export().await.with_context(|| format!("cannot read {}", from.display()));
    sqlite.close().await;
    let snapshot = snapshot?;

    let postgres = PostgresStore::open(to).await?;
    let imported = postgres.import(&snapshot, replace).await;
    postgres.close().await;
    let counts = imported.map_err(|e| match e {
        ImportError::NotEmpty(_) => anyhow::anyhow!(
            "{e}: nothing was copied. Migrate into an empty database, or pass --force to replace everything in it"
        ),
        ImportError::Store(e) => anyhow::Error::new(e).context(format!("nothing was copied into {to}")),
    })?;
    Ok(Migrated { from, to: to.to_string(), counts, force: replace })
}
