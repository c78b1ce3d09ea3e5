//! Where `thoth enforcer serve` keeps what must outlive a replica: holds and their
//! approvals, the session memory of progressive mode, the decision log and the
//! ingested telemetry. One code path over sqlx's `Any` driver: SQLite (a file under
//! the server's profile) when nothing is configured, PostgreSQL (`--database-url`) for
//! several replicas behind a load balancer.
//!
//! What must never be lost is committed before its answer leaves: a hold before the
//! STEP_UP that names it, an approval before its confirmation, an event batch before
//! its 202. Decision-log rows are queued and written in batches (a replica killed
//! mid-batch loses at most one flush interval of log rows, never a decision). Rows
//! older than the retention are purged at start and every hour. This module stores and
//! reads; it decides nothing, and it never logs argument text.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;

use crate::enforce::Verdict;

/// Schema versions, each a list of statements per dialect (checked in, run at start).
const MIGRATIONS: [(i64, &str, &str); 1] = [(
    1,
    include_str!("migrations/postgres/0001_state.sql"),
    include_str!("migrations/sqlite/0001_state.sql"),
)];

/// Decision-log rows waiting for the writer at most (past it they are counted, dropped).
const LOG_QUEUE: usize = 16_384;
/// Rows written in one statement at most.
const LOG_BATCH: usize = 256;
/// How often retention is applied.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The PostgreSQL advisory lock replicas take to migrate one at a time ("thoth").
const MIGRATION_LOCK: i64 = 0x74_68_6f_74_68;
/// Characters of an approver's claimed name kept at most.
pub const MAX_APPROVER_NAME: usize = 128;
/// Open holds at most, all agents together (agents are named by their callers).
const MAX_OPEN_HOLDS: i64 = 100_000;
/// Events stored from one batch at most.
pub const MAX_EVENTS: usize = 1000;
/// Rows one retention statement deletes at most (SQLite has one writer for every
/// replica: a long delete would stall them).
const PURGE_CHUNK: i64 = 5000;
/// Connections per replica at most.
const POOL_SIZE: u32 = 16;

/// A store failure (the request it served fails closed: 503, never a guess).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database URL: {0}")]
    Url(String),
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub token: String,
    pub agent: String,
    pub tool: String,
    /// The call's arguments as the approver sees them (pretty JSON, bounded).
    pub arguments: String,
    pub reason: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub expires_at: String,
    pub resolution: Option<Verdict>,
    /// Who approved or denied it, by the name they gave (`thoth approve --as NAME`).
    pub approver: Option<String>,
    pub resolved_ms: Option<i64>,
}

/// How a resolution went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Done(Box<Hold>),
    NotFound,
    Expired,
    Already(Verdict),
}

/// One decision-log row.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub at_ms: i64,
    pub session_id: String,
    pub agent: String,
    pub tenant: String,
    pub tool: String,
    pub decision: &'static str,
    pub reason: String,
    pub code: Option<String>,
    pub rule_ids: String,
}

/// The server's state store.
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    log: mpsc::Sender<DecisionRow>,
    dropped: std::sync::atomic::AtomicU64,
    /// Told when the server stops (the writer then drains the queue and ends).
    closing: std::sync::Arc<tokio::sync::Notify>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn verdict_of(text: Option<String>) -> Option<Verdict> {
    match text.as_deref() {
        Some("ALLOW") => Some(Verdict::Allow),
        // Anything else stored as a resolution denies.
        Some(_) => Some(Verdict::Block),
        None => None,
    }
}

fn hold_of(row: &AnyRow) -> Result<Hold, sqlx::Error> {
    Ok(Hold {
        token: row.try_get("token")?,
        agent: row.try_get("agent")?,
        tool: row.try_get("tool")?,
        arguments: row.try_get("arguments")?,
        reason: row.try_get("reason")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        expires_at: row.try_get("expires_at")?,
        resolution: verdict_of(row.try_get("resolution")?),
        approver: row.try_get("approver")?,
        resolved_ms: row.try_get("resolved_ms")?,
    })
}

impl Store {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://…`), brings the schema
    /// up to date, and starts the decision-log writer (`flush`: its interval). Returns
    /// the store and the writer, to await at shutdown.
    pub async fn open(
        url: &str,
        flush: Duration,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres && !url.starts_with("sqlite:") {
            return Err(StoreError::Url(
                "only postgres:// (or postgresql://) and sqlite: URLs are supported".into(),
            ));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { POOL_SIZE } else { 4 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !postgres {
                        // Several replicas (processes) may share one file.
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        migrate(&pool, postgres).await?;
        let (log, queue) = mpsc::channel(LOG_QUEUE);
        let closing = std::sync::Arc::new(tokio::sync::Notify::new());
        let writer = tokio::spawn(write_log(pool.clone(), queue, flush, closing.clone()));
        Ok((
            Self {
                pool,
                postgres,
                log,
                dropped: std::sync::atomic::AtomicU64::new(0),
                closing,
            },
            writer,
        ))
    }

    /// Stores a new hold, unless its agent has `max_open` unresolved, unexpired holds
    /// already, or the server [`MAX_OPEN_HOLDS`] (false). One statement checks and
    /// inserts (atomic on SQLite), under a per-agent transaction lock on PostgreSQL,
    /// so concurrent STEP_UPs on any replicas cannot pass the quota together.
    /// Committed when this returns.
    pub async fn create_hold(&self, hold: &Hold, max_open: usize) -> Result<bool, StoreError> {
        let max_open = i64::try_from(max_open).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&hold.agent)
                .execute(&mut *tx)
                .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO thoth_holds (token, agent, tool, arguments, reason, created_ms, expires_ms, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE (SELECT COUNT(*) FROM thoth_holds WHERE agent = $9 AND resolution IS NULL AND expires_ms > $10) < $11 \
             AND (SELECT COUNT(*) FROM thoth_holds WHERE resolution IS NULL AND expires_ms > $12) < $13",
        )
        .bind(&hold.token)
        .bind(&hold.agent)
        .bind(&hold.tool)
        .bind(&hold.arguments)
        .bind(&hold.reason)
        .bind(hold.created_ms)
        .bind(hold.expires_ms)
        .bind(&hold.expires_at)
        .bind(&hold.agent)
        .bind(hold.created_ms)
        .bind(max_open)
        .bind(hold.created_ms)
        .bind(MAX_OPEN_HOLDS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// The hold named by `token`.
    pub async fn hold(&self, token: &str) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT token, agent, tool, arguments, reason, created_ms, expires_ms, expires_at, resolution, approver, resolved_ms",
            " FROM thoth_holds WHERE token = $1"
        ))
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(hold_of).transpose()?)
    }

    /// Resolves a pending, unexpired hold (once: the first resolution on any replica
    /// wins), recording who did it and when. Committed when this returns.
    pub async fn resolve(
        &self,
        token: &str,
        verdict: Verdict,
        approver: &str,
        now: i64,
    ) -> Result<Resolved, StoreError> {
        let changed = sqlx::query(
            "UPDATE thoth_holds SET resolution = $1, approver = $2, resolved_ms = $3 WHERE token = $4 AND resolution IS NULL AND expires_ms > $5",
        )
        .bind(verdict.as_str())
        .bind(approver)
        .bind(now)
        .bind(token)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let Some(hold) = self.hold(token).await? else {
            return Ok(Resolved::NotFound);
        };
        Ok(if changed == 1 {
            Resolved::Done(Box::new(hold))
        } else if hold.expires_ms <= now {
            Resolved::Expired
        } else {
            match hold.resolution {
                Some(resolution) => Resolved::Already(resolution),
                // (Not changed, not expired, not resolved: resolved and purged
                // between the two statements cannot leave this; fail closed.)
                None => Resolved::Expired,
            }
        })
    }

    /// Whether this is the session's first soft denial for `key` (progressive mode),
    /// remembered across replicas.
    pub async fn first_soft_denial(&self, session: &str, key: &str) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO thoth_soft_denials (session_id, decision_key, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(session)
        .bind(key)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Queues a decision-log row (never waits; a full queue drops it, counted).
    pub fn log_decision(&self, row: DecisionRow) {
        if self.log.try_send(row).is_err() {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                tracing::warn!("the decision log falls behind: {dropped} rows dropped so far");
            }
        }
    }

    /// Stores a batch of telemetry events (their JSON text), in one transaction.
    pub async fn ingest(&self, events: &[serde_json::Value]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for event in events {
            sqlx::query("INSERT INTO thoth_events (received_ms, event) VALUES ($1, $2)")
                .bind(now)
                .bind(event.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes what is older than `retention` (holds by their expiry), in chunks of
    /// [`PURGE_CHUNK`] rows: rows removed.
    pub async fn purge(&self, retention: Duration) -> Result<u64, StoreError> {
        let cutoff =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut removed = 0;
        // (Names from this fixed list; the cutoff and the chunk are bound.)
        for (table, key, column) in [
            ("thoth_decisions", "id", "at_ms"),
            ("thoth_events", "id", "received_ms"),
            ("thoth_holds", "token", "expires_ms"),
            (
                "thoth_soft_denials",
                "session_id, decision_key",
                "created_ms",
            ),
        ] {
            let sql = format!(
                "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {column} < $1 LIMIT $2)"
            );
            loop {
                let n = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(cutoff)
                    .bind(PURGE_CHUNK)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                removed += n;
                if n < u64::try_from(PURGE_CHUNK).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Applies the retention now and every hour, for as long as the server runs.
    pub fn purge_every_hour(self: &std::sync::Arc<Self>, retention: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                match store.purge(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("retention: {n} old rows removed"),
                    Err(e) => tracing::warn!("retention: {e}"),
                }
                tokio::time::sleep(PURGE_EVERY).await;
            }
        });
    }

    /// Rows in a table (for tests).
    #[cfg(test)]
    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let allowed = [
            "thoth_holds",
            "thoth_decisions",
            "thoth_events",
            "thoth_soft_denials",
        ];
        if !allowed.contains(&table) {
            return Err(StoreError::Url(format!("no table {table}")));
        }
        // (A table from the fixed list above.)
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// The server stops: the writer writes what is queued and ends.
    pub fn close_log(&self) {
        self.closing.notify_one();
    }
}

/// Brings the schema up to date: each version once, in order, under PostgreSQL's
/// advisory lock (replicas may start together; SQLite serialises writers itself).
async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // (Before anything else: PostgreSQL's CREATE … IF NOT EXISTS races with itself.)
    if postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS thoth_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        for (version, pg, lite) in MIGRATIONS {
            let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM thoth_schema WHERE version = $1")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?
                .try_get("n")?;
            if done > 0 {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let script = if postgres { pg } else { lite };
            for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO thoth_schema (version, applied_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!("database schema at version {version}");
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    if postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    Ok(result?)
}

/// Writes queued decision-log rows in batches: at most [`LOG_BATCH`] per statement,
/// at least every `flush`. Ends (after writing what is queued) when the queue closes
/// or `closing` is told.
async fn write_log(
    pool: AnyPool,
    mut queue: mpsc::Receiver<DecisionRow>,
    flush: Duration,
    closing: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut batch: Vec<DecisionRow> = Vec::with_capacity(LOG_BATCH);
    let mut open = true;
    while open {
        // Asleep until a row comes (no timer while idle).
        tokio::select! {
            got = queue.recv_many(&mut batch, LOG_BATCH) => open = got > 0,
            () = closing.notified() => {
                queue.close();
                open = false;
            }
        }
        // Then more rows for up to `flush`, into one statement.
        let deadline = tokio::time::Instant::now() + flush;
        while open && batch.len() < LOG_BATCH {
            let room = LOG_BATCH - batch.len();
            match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                Ok(0) => open = false,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if !open {
            // What is still queued goes too.
            while let Ok(row) = queue.try_recv() {
                batch.push(row);
                if batch.len() == LOG_BATCH {
                    write_batch(&pool, &batch).await;
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            write_batch(&pool, &batch).await;
        }
        batch.clear();
    }
}

/// Writes a batch; when the batch statement fails, row by row, so one bad row (or a
/// passing failure) loses itself only. Rows that still fail are counted in the warning.
async fn write_batch(pool: &AnyPool, rows: &[DecisionRow]) {
    if insert_rows(pool, rows).await.is_ok() {
        return;
    }
    let mut lost = 0usize;
    let mut last = None;
    for row in rows {
        if let Err(e) = insert_rows(pool, std::slice::from_ref(row)).await {
            lost += 1;
            last = Some(e);
        }
    }
    if let Some(e) = last {
        tracing::warn!("the decision log lost {lost} of {} rows: {e}", rows.len());
    }
}

async fn insert_rows(pool: &AnyPool, rows: &[DecisionRow]) -> Result<(), sqlx::Error> {
    const COLUMNS: usize = 9;
    let values: Vec<String> = (0..rows.len())
        .map(|r| {
            let marks: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", r * COLUMNS + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO thoth_decisions (at_ms, session_id, agent, tenant, tool, decision, reason, code, rule_ids) VALUES {}",
        values.join(", ")
    );
    // (Only `$n` placeholders are generated; every value is bound.)
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        query = query
            .bind(row.at_ms)
            .bind(row.session_id.clone())
            .bind(row.agent.clone())
            .bind(row.tenant.clone())
            .bind(row.tool.clone())
            .bind(row.decision)
            .bind(row.reason.clone())
            .bind(row.code.clone())
            .bind(row.rule_ids.clone());
    }
    query.execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(token: &str, agent: &str, expires_ms: i64) -> Hold {
        Hold {
            token: token.into(),
            agent: agent.into(),
            tool: "t".into(),
            arguments: "{}".into(),
            reason: "r".into(),
            created_ms: now_ms(),
            expires_ms,
            expires_at: "later".into(),
            resolution: None,
            approver: None,
            resolved_ms: None,
        }
    }

    /// Runs the store tests on a fresh SQLite file, and on PostgreSQL when
    /// `THOTH_TEST_POSTGRES_URL` names one (`.ci/run` starts one).
    fn each_store(test: impl Fn(Store, bool) -> futures_like::BoxFuture) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let file = std::env::temp_dir().join(format!("thoth-store-{}.db", uuid::Uuid::new_v4()));
        let mut urls = vec![format!("sqlite://{}?mode=rwc", file.display())];
        if let Ok(url) = std::env::var("THOTH_TEST_POSTGRES_URL") {
            urls.push(url);
        }
        for url in urls {
            rt.block_on(async {
                let (store, _writer) = Store::open(&url, Duration::from_millis(20))
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                test(store, url.starts_with("sqlite")).await;
            });
        }
        let _ = std::fs::remove_file(&file);
    }

    mod futures_like {
        pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    }

    #[test]
    fn a_hold_is_resolved_once_and_never_after_its_expiry() {
        each_store(|store, _| {
            Box::pin(async move {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let now = now_ms();
                assert!(
                    store
                        .create_hold(&hold(&token, "a", now + 60_000), 8)
                        .await
                        .unwrap()
                );
                assert_eq!(store.hold(&token).await.unwrap().unwrap().resolution, None);
                let done = store
                    .resolve(&token, Verdict::Allow, "alice", now)
                    .await
                    .unwrap();
                let Resolved::Done(h) = done else {
                    panic!("{done:?}")
                };
                assert_eq!(
                    (h.resolution, h.approver.as_deref(), h.resolved_ms),
                    (Some(Verdict::Allow), Some("alice"), Some(now))
                );
                assert_eq!(
                    store
                        .resolve(&token, Verdict::Block, "bob", now + 1)
                        .await
                        .unwrap(),
                    Resolved::Already(Verdict::Allow)
                );
                let old = uuid::Uuid::new_v4().simple().to_string();
                assert!(
                    store
                        .create_hold(&hold(&old, "a", now - 1), 8)
                        .await
                        .unwrap()
                );
                assert_eq!(
                    store
                        .resolve(&old, Verdict::Allow, "alice", now)
                        .await
                        .unwrap(),
                    Resolved::Expired
                );
                assert_eq!(
                    store
                        .resolve("nope", Verdict::Allow, "alice", now)
                        .await
                        .unwrap(),
                    Resolved::NotFound
                );
            })
        });
    }

    #[test]
    fn an_agent_s_open_holds_are_bounded() {
        each_store(|store, _| {
            Box::pin(async move {
                let agent = uuid::Uuid::new_v4().to_string();
                let later = now_ms() + 60_000;
                for _ in 0..3 {
                    let token = uuid::Uuid::new_v4().simple().to_string();
                    assert!(
                        store
                            .create_hold(&hold(&token, &agent, later), 3)
                            .await
                            .unwrap()
                    );
                }
                let token = uuid::Uuid::new_v4().simple().to_string();
                assert!(
                    !store
                        .create_hold(&hold(&token, &agent, later), 3)
                        .await
                        .unwrap()
                );
            })
        });
    }

    #[test]
    fn concurrent_step_ups_never_pass_the_quota_together() {
        each_store(|store, _| {
            Box::pin(async move {
                let store = std::sync::Arc::new(store);
                let agent = uuid::Uuid::new_v4().to_string();
                let later = now_ms() + 60_000;
                let tries: Vec<_> = (0..16)
                    .map(|_| {
                        let (store, agent) = (store.clone(), agent.clone());
                        tokio::spawn(async move {
                            let token = uuid::Uuid::new_v4().simple().to_string();
                            // A busy database is an error, never a hold past the quota.
                            store
                                .create_hold(&hold(&token, &agent, later), 3)
                                .await
                                .unwrap_or(false)
                        })
                    })
                    .collect();
                let mut created = 0;
                for t in tries {
                    created += usize::from(t.await.unwrap_or(false));
                }
                assert!(created <= 3, "{created} holds past a quota of 3");
                assert!(created >= 1);
            })
        });
    }

    #[test]
    fn of_concurrent_resolutions_exactly_one_wins() {
        each_store(|store, _| {
            Box::pin(async move {
                let store = std::sync::Arc::new(store);
                let token = uuid::Uuid::new_v4().simple().to_string();
                let later = now_ms() + 60_000;
                assert!(
                    store
                        .create_hold(&hold(&token, "race", later), 8)
                        .await
                        .unwrap()
                );
                let tries: Vec<_> = (0..8)
                    .map(|i| {
                        let (store, token) = (store.clone(), token.clone());
                        let verdict = if i % 2 == 0 {
                            Verdict::Allow
                        } else {
                            Verdict::Block
                        };
                        tokio::spawn(async move {
                            store
                                .resolve(&token, verdict, &format!("approver{i}"), now_ms())
                                .await
                        })
                    })
                    .collect();
                let mut won = Vec::new();
                for t in tries {
                    if let Ok(Ok(Resolved::Done(h))) = t.await {
                        won.push(h);
                    }
                }
                assert_eq!(won.len(), 1, "{won:?}");
                let stored = store.hold(&token).await.unwrap().unwrap();
                assert_eq!(
                    stored.approver, won[0].approver,
                    "the winner is what is stored"
                );
            })
        });
    }

    #[test]
    fn progressive_memory_log_events_and_retention() {
        each_store(|store, own_database| {
            Box::pin(async move {
                let session = uuid::Uuid::new_v4().to_string();
                assert!(store.first_soft_denial(&session, "t").await.unwrap());
                assert!(!store.first_soft_denial(&session, "t").await.unwrap());
                assert!(store.first_soft_denial(&session, "u").await.unwrap());
                let before = store.count("thoth_decisions").await.unwrap();
                for i in 0..300 {
                    store.log_decision(DecisionRow {
                        at_ms: now_ms(),
                        session_id: session.clone(),
                        agent: "a".into(),
                        tenant: "t".into(),
                        tool: format!("tool{i}"),
                        decision: "ALLOW",
                        reason: "r".into(),
                        code: None,
                        rule_ids: "[]".into(),
                    });
                }
                let mut written = 0;
                for _ in 0..200 {
                    written = store.count("thoth_decisions").await.unwrap() - before;
                    if written == 300 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(written, 300, "batched, all written");
                store
                    .ingest(&[serde_json::json!({ "event_type": "TOOL_CALL_PRE" })])
                    .await
                    .unwrap();
                assert!(store.count("thoth_events").await.unwrap() >= 1);
                assert!(store.count("thoth_nothing").await.is_err());
                // Everything is younger than a day: a day's retention keeps it all,
                // none at all removes it (on a database of this test's own).
                if own_database {
                    assert_eq!(store.purge(Duration::from_secs(86_400)).await.unwrap(), 0);
                    assert!(store.purge(Duration::ZERO).await.unwrap() >= 300);
                }
            })
        });
    }
}
