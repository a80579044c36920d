//! `--coordinate db`: chunk leases in the source database, so any number of
//! processes on any number of hosts share one recovery.
//!
//! Two tables (prefix `esync_recover` by default):
//! - `<prefix>_runs`: one row per run name with its plan (JSON); the first
//!   process inserts it together with every chunk row in one transaction, the
//!   others wait on that insert and then read the plan;
//! - `<prefix>_chunks`: one row per chunk, `pending`, `leased` (by `owner`
//!   until `lease_until`) or `done`;
//! - `<prefix>_control`: the run's control record (`esync-recover ctl`),
//!   which every worker polls; cleared when the run is planned.
//!
//! A worker claims the first pending chunk, or a leased one whose lease ran
//! out, with `FOR UPDATE SKIP LOCKED` (PostgreSQL, MySQL 8, MariaDB 10.6+), so
//! claims never wait on each other. It renews its lease while it works; a
//! worker that dies stops renewing, and once `lease_until` has passed another
//! worker takes the chunk over. Times are the database's clock (`now()`), so
//! the hosts' clocks do not matter.

use crate::db::exec::{self, Param};
use crate::db::{Database, Dialect, quote_identifier};
use crate::document::Row;
use crate::recover::checkpoint::{Plan, Request, Totals, check_resume};
use crate::recover::connect::Connected;
use crate::recover::plan::{RangeRequest, make_plan};
use crate::recover::store::create_text_table;
use anyhow::Context as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of the lease tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Table name prefix.
    pub table_prefix: String,
    /// How long a lease lasts without renewal.
    pub lease_timeout: Duration,
    /// This process's name; each parallel worker leases as
    /// `<worker_id>/<worker number>` (see [`LeaseBoard::owner`]).
    pub worker_id: String,
}

/// This machine's name, for worker ids and `ctl`'s operator name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// A default worker id: `host:pid:random`.
pub fn default_worker_id() -> String {
    format!(
        "{}:{}:{:04x}",
        hostname(),
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The control table of the lease tables with `table_prefix`.
pub fn control_table(table_prefix: &str) -> String {
    format!("{table_prefix}_control")
}

/// Chunk counts of a run in the lease tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// Chunks done.
    pub chunks_done: u64,
    /// Chunks pending or leased.
    pub chunks_left: u64,
}

/// What the lease tables with `table_prefix` hold about `run_name`, read
/// without creating anything (for `ctl`): `None` when there is no such run,
/// or no lease tables at all.
pub async fn find_run(
    database: &Database,
    table_prefix: &str,
    run_name: &str,
) -> Result<Option<RunProgress>, sqlx::Error> {
    let sql = LeaseSql::new(
        database.dialect(),
        &format!("{table_prefix}_runs"),
        &format!("{table_prefix}_chunks"),
    );
    let name = [Param::Text(run_name.to_owned())];
    match database.fetch_optional(&sql.select_run(), &name).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(error) if crate::db::is_undefined_table(&error) => return Ok(None),
        Err(error) => return Err(error),
    }
    let row = database
        .fetch_optional(&sql.progress(), &name)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let (done, left) = (exec::int(&row, 0)?, exec::int(&row, 1)?);
    Ok(Some(RunProgress {
        chunks_done: done.max(0) as u64,
        chunks_left: left.max(0) as u64,
    }))
}

/// A chunk leased by this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedChunk {
    /// Plan entry number.
    pub mapping: usize,
    /// Chunk number.
    pub chunk: u64,
    /// How many times the chunk was claimed, this time included.
    pub attempt: u32,
    /// The `owner` the lease is held under (one per worker, see
    /// [`LeaseBoard::owner`]).
    pub owner: String,
}

/// The lease tables of one run.
#[derive(Debug, Clone)]
pub struct LeaseBoard {
    database: Database,
    settings: LeaseSettings,
    run_name: String,
    runs: String,
    chunks: String,
    control: String,
}

/// The SQL of the lease tables, per dialect (pure, tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSql {
    dialect: Dialect,
    runs: String,
    chunks: String,
}

impl LeaseSql {
    /// SQL for tables `runs` and `chunks` (unquoted names).
    pub fn new(dialect: Dialect, runs: &str, chunks: &str) -> LeaseSql {
        LeaseSql {
            dialect,
            runs: quote_identifier(dialect, runs),
            chunks: quote_identifier(dialect, chunks),
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for both tables.
    pub fn create_tables(&self) -> [String; 2] {
        let (text, time) = if self.dialect == Dialect::MySql {
            ("LONGTEXT", "DATETIME(6)")
        } else {
            ("TEXT", "TIMESTAMPTZ")
        };
        [
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_name VARCHAR(191) NOT NULL PRIMARY KEY, plan {text} NOT NULL, \
                 created_at {time} NOT NULL, finished_at {time} NULL)",
                self.runs
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_name VARCHAR(191) NOT NULL, mapping_index INT NOT NULL, chunk_index BIGINT NOT NULL, \
                 state VARCHAR(16) NOT NULL, owner VARCHAR(191) NULL, lease_until {time} NULL, attempts INT NOT NULL, \
                 rows_walked BIGINT NULL, docs BIGINT NULL, conflicts BIGINT NULL, failed BIGINT NULL, \
                 PRIMARY KEY (run_name, mapping_index, chunk_index))",
                self.chunks
            ),
        ]
    }

    fn now(&self) -> &'static str {
        if self.dialect == Dialect::MySql {
            "NOW(6)"
        } else {
            "now()"
        }
    }

    /// The database time `placeholder` microseconds from now.
    fn now_plus(&self, placeholder: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("NOW(6) + INTERVAL {placeholder} MICROSECOND"),
            _ => format!("now() + CAST({placeholder} AS BIGINT) * interval '1 microsecond'"),
        }
    }

    /// Inserts the run row unless it exists: `(run_name, plan)`.
    pub fn insert_run(&self) -> String {
        match self.dialect {
            Dialect::MySql => format!(
                "INSERT IGNORE INTO {} (run_name, plan, created_at) VALUES (?, ?, NOW(6))",
                self.runs
            ),
            _ => format!(
                "INSERT INTO {} (run_name, plan, created_at) VALUES ($1, $2, now()) ON CONFLICT (run_name) DO NOTHING",
                self.runs
            ),
        }
    }

    /// The plan of a run: `(run_name)`.
    pub fn select_run(&self) -> String {
        format!(
            "SELECT plan FROM {} WHERE run_name = {}",
            self.runs,
            self.dialect.placeholder(1)
        )
    }

    /// Pending chunk rows for `rows` (mapping, chunk) pairs; the run name is
    /// bound once per row.
    pub fn insert_chunks(&self, rows: &[(usize, u64)]) -> String {
        let values: Vec<String> = rows
            .iter()
            .map(|(mapping, chunk)| {
                let name = self.dialect.placeholder(1);
                format!("({name}, {mapping}, {chunk}, 'pending', 0)")
            })
            .collect();
        format!(
            "INSERT INTO {} (run_name, mapping_index, chunk_index, state, attempts) VALUES {}",
            self.chunks,
            values.join(", ")
        )
    }

    /// Deletes a run: `(run_name)` for each statement.
    pub fn delete_run(&self) -> [String; 2] {
        [
            format!(
                "DELETE FROM {} WHERE run_name = {}",
                self.chunks,
                self.dialect.placeholder(1)
            ),
            format!(
                "DELETE FROM {} WHERE run_name = {}",
                self.runs,
                self.dialect.placeholder(1)
            ),
        ]
    }

    /// The claimable condition: pending, or leased with an expired lease.
    fn claimable(&self) -> String {
        format!(
            "run_name = {} AND (state = 'pending' OR (state = 'leased' AND lease_until < {}))",
            self.dialect.placeholder(1),
            self.now()
        )
    }

    /// Postgres: claims one chunk in one statement: `(run_name, owner,
    /// lease_micros)` -> `(mapping_index, chunk_index, attempts)`. The locking
    /// sub-select is a `MATERIALIZED` CTE (PostgreSQL 12+): as a plain
    /// sub-query in `FROM`, the planner may rescan it per joined row, and every
    /// rescan skips to the next row, leasing many chunks at once.
    pub fn claim_postgres(&self) -> String {
        format!(
            "WITH next AS MATERIALIZED (SELECT mapping_index, chunk_index FROM {chunks} WHERE {claimable} \
             ORDER BY mapping_index, chunk_index LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE {chunks} AS c SET state = 'leased', owner = $2, lease_until = {until}, attempts = c.attempts + 1 \
             FROM next WHERE c.run_name = $1 AND c.mapping_index = next.mapping_index AND c.chunk_index = next.chunk_index \
             RETURNING c.mapping_index, c.chunk_index, c.attempts",
            chunks = self.chunks,
            until = self.now_plus("$3"),
            claimable = self.claimable(),
        )
    }

    /// MySQL/MariaDB, first of two statements in one transaction: `(run_name)`
    /// -> `(mapping_index, chunk_index, attempts)`, locked.
    pub fn claim_select_mysql(&self) -> String {
        format!(
            "SELECT mapping_index, chunk_index, attempts FROM {} WHERE {} ORDER BY mapping_index, chunk_index LIMIT 1 FOR UPDATE SKIP LOCKED",
            self.chunks,
            self.claimable()
        )
    }

    /// MySQL/MariaDB, second statement: `(owner, lease_micros, run_name,
    /// mapping_index, chunk_index)`.
    pub fn claim_update_mysql(&self) -> String {
        format!(
            "UPDATE {} SET state = 'leased', owner = ?, lease_until = {}, attempts = attempts + 1 \
             WHERE run_name = ? AND mapping_index = ? AND chunk_index = ?",
            self.chunks,
            self.now_plus("?")
        )
    }

    /// Renews a lease: `(lease_micros, run_name, mapping_index, chunk_index, owner)`.
    pub fn renew(&self) -> String {
        format!(
            "UPDATE {} SET lease_until = {} WHERE run_name = {} AND mapping_index = {} AND chunk_index = {} AND owner = {} AND state = 'leased'",
            self.chunks,
            self.now_plus(&self.dialect.placeholder(1)),
            self.dialect.placeholder(2),
            self.dialect.placeholder(3),
            self.dialect.placeholder(4),
            self.dialect.placeholder(5)
        )
    }

    /// Marks a chunk done: `(owner, rows, docs, conflicts, failed, run_name,
    /// mapping_index, chunk_index)`.
    pub fn complete(&self) -> String {
        format!(
            "UPDATE {} SET state = 'done', owner = {}, lease_until = NULL, rows_walked = {}, docs = {}, conflicts = {}, failed = {} \
             WHERE run_name = {} AND mapping_index = {} AND chunk_index = {} AND state <> 'done'",
            self.chunks,
            self.dialect.placeholder(1),
            self.dialect.placeholder(2),
            self.dialect.placeholder(3),
            self.dialect.placeholder(4),
            self.dialect.placeholder(5),
            self.dialect.placeholder(6),
            self.dialect.placeholder(7),
            self.dialect.placeholder(8)
        )
    }

    /// Gives a lease back: `(run_name, mapping_index, chunk_index, owner)`.
    pub fn release(&self) -> String {
        format!(
            "UPDATE {} SET state = 'pending', owner = NULL, lease_until = NULL \
             WHERE run_name = {} AND mapping_index = {} AND chunk_index = {} AND owner = {} AND state = 'leased'",
            self.chunks,
            self.dialect.placeholder(1),
            self.dialect.placeholder(2),
            self.dialect.placeholder(3),
            self.dialect.placeholder(4)
        )
    }

    /// Counts chunks in and not in state done: `(run_name)` -> `(done, not_done)`.
    pub fn progress(&self) -> String {
        format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS {int}), \
             CAST(COALESCE(SUM(CASE WHEN state <> 'done' THEN 1 ELSE 0 END), 0) AS {int}) FROM {} WHERE run_name = {}",
            self.chunks,
            self.dialect.placeholder(1),
            int = if self.dialect == Dialect::MySql {
                "SIGNED"
            } else {
                "BIGINT"
            }
        )
    }

    /// Records the end of a run: `(run_name)`.
    pub fn finish_run(&self) -> String {
        format!(
            "UPDATE {} SET finished_at = {} WHERE run_name = {} AND finished_at IS NULL",
            self.runs,
            self.now(),
            self.dialect.placeholder(1)
        )
    }
}

impl LeaseBoard {
    /// The lease tables of `run_name` (created when missing).
    pub async fn open(
        database: Database,
        settings: LeaseSettings,
        run_name: &str,
    ) -> anyhow::Result<LeaseBoard> {
        if database.dialect() == Dialect::Sqlite {
            anyhow::bail!(
                "--coordinate db needs PostgreSQL or MySQL 8/MariaDB 10.6+ (FOR UPDATE SKIP LOCKED); SQLite has no row locks"
            );
        }
        let board = LeaseBoard {
            runs: format!("{}_runs", settings.table_prefix),
            chunks: format!("{}_chunks", settings.table_prefix),
            control: control_table(&settings.table_prefix),
            database,
            settings,
            run_name: run_name.to_owned(),
        };
        let control = create_text_table(
            board.database.dialect(),
            &quote_identifier(board.database.dialect(), &board.control),
        );
        for statement in board.sql().create_tables().into_iter().chain([control]) {
            crate::db::create_if_missing(&board.database, &statement)
                .await
                .with_context(|| format!("cannot create lease table for {}", board.chunks))?;
        }
        Ok(board)
    }

    /// The table of the run's control record (see [`control_table`]).
    pub fn control_table(&self) -> &str {
        &self.control
    }

    fn sql(&self) -> LeaseSql {
        LeaseSql::new(self.database.dialect(), &self.runs, &self.chunks)
    }

    fn lease_micros(&self) -> i64 {
        i64::try_from(self.settings.lease_timeout.as_micros()).unwrap_or(i64::MAX)
    }

    async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, sqlx::Error> {
        self.database.execute(sql, params).await
    }

    fn run_param(&self) -> Param {
        Param::Text(self.run_name.clone())
    }

    async fn stored_plan(&self) -> anyhow::Result<Option<Plan>> {
        let plan = self
            .database
            .fetch_optional(&self.sql().select_run(), &[self.run_param()])
            .await
            .and_then(|row| row.map(|row| exec::text(&row, 0)).transpose())
            .with_context(|| format!("cannot read run {:?} from {}", self.run_name, self.runs))?;
        plan.map(|plan| {
            serde_json::from_str(&plan).with_context(|| {
                format!(
                    "run {:?} in {} holds no usable plan",
                    self.run_name, self.runs
                )
            })
        })
        .transpose()
    }

    /// (done, not done) chunks.
    async fn progress(&self) -> anyhow::Result<(u64, u64)> {
        let (done, not_done) = self
            .database
            .fetch_optional(&self.sql().progress(), &[self.run_param()])
            .await
            .and_then(|row| {
                let row = row.ok_or(sqlx::Error::RowNotFound)?;
                Ok((exec::int(&row, 0)?, exec::int(&row, 1)?))
            })
            .with_context(|| format!("cannot read the chunks of run {:?}", self.run_name))?;
        Ok((done.max(0) as u64, not_done.max(0) as u64))
    }

    /// Chunks done by every worker.
    pub async fn chunks_done(&self) -> anyhow::Result<u64> {
        Ok(self.progress().await?.0)
    }

    /// Whether every chunk is done.
    pub async fn is_finished(&self) -> anyhow::Result<bool> {
        Ok(self.progress().await?.1 == 0)
    }

    /// Joins the run, or plans it when it does not exist yet (or `force`
    /// replaces a finished one). Joining an unfinished run needs no
    /// `--resume`: sharing one run is the point of coordination.
    pub async fn join_or_plan(
        &self,
        connected: &Connected,
        range: &RangeRequest,
        request: &Request,
        _resume: bool,
        force: bool,
    ) -> anyhow::Result<Plan> {
        if let Some(plan) = self.stored_plan().await? {
            let (done, not_done) = self.progress().await?;
            if not_done == 0 && !force {
                anyhow::bail!(
                    "recovery {:?} already finished ({done} chunks, table {}); pass --force to run it again",
                    self.run_name,
                    self.chunks
                );
            }
            if not_done > 0 {
                check_resume(&plan, request).map_err(|problems| {
                    anyhow::anyhow!(
                        "run {:?} in {} is another recovery: {}; use another --run-name",
                        self.run_name,
                        self.runs,
                        problems.join("; ")
                    )
                })?;
                tracing::info!(run = %self.run_name, done, left = not_done, "joining the recovery");
                return Ok(plan);
            }
            for statement in self.sql().delete_run() {
                self.execute(&statement, &[self.run_param()])
                    .await
                    .with_context(|| format!("cannot delete finished run {:?}", self.run_name))?;
            }
        }
        let plan = make_plan(connected, range).await?;
        if self.insert_plan(&plan).await? {
            tracing::info!(run = %self.run_name, chunks = plan.chunk_count(), "planned the recovery");
            return Ok(plan);
        }
        // another process planned it first: use its plan
        let stored = self
            .stored_plan()
            .await?
            .context("the run row vanished while joining")?;
        tracing::info!(run = %self.run_name, "joining the recovery another worker planned");
        Ok(stored)
    }

    /// Inserts the run and its chunks in one transaction; false when another
    /// process inserted the run first.
    async fn insert_plan(&self, plan: &Plan) -> anyhow::Result<bool> {
        let sql = self.sql();
        let plan_json = serde_json::to_string(plan).expect("plans serialise");
        let mut rows = Vec::new();
        for (mapping, mapping_plan) in plan.mappings.iter().enumerate() {
            rows.extend((0..mapping_plan.layout.chunk_count()).map(|chunk| (mapping, chunk)));
        }
        let result: Result<bool, sqlx::Error> = async {
            let mut transaction = self.database.begin().await?;
            let inserted = transaction
                .execute(
                    &sql.insert_run(),
                    &[self.run_param(), Param::Text(plan_json)],
                )
                .await?;
            if inserted == 0 {
                transaction.rollback().await?;
                return Ok(false);
            }
            for batch in rows.chunks(500) {
                // Postgres numbers its one placeholder; the others repeat `?`
                let binds = if self.database.dialect() == Dialect::Postgres {
                    1
                } else {
                    batch.len()
                };
                let params = vec![self.run_param(); binds];
                let _ = transaction
                    .execute(&sql.insert_chunks(batch), &params)
                    .await?;
            }
            if rows.is_empty() {
                let _ = transaction
                    .execute(&sql.finish_run(), &[self.run_param()])
                    .await?;
            }
            // a fresh plan starts without an earlier run's pause or limit
            let clear_control = format!(
                "DELETE FROM {} WHERE run_name = {}",
                quote_identifier(self.database.dialect(), &self.control),
                self.database.dialect().placeholder(1)
            );
            let _ = transaction
                .execute(&clear_control, &[self.run_param()])
                .await?;
            transaction.commit().await?;
            Ok(true)
        }
        .await;
        result.with_context(|| {
            format!(
                "cannot store the plan of run {:?} in {}",
                self.run_name, self.runs
            )
        })
    }

    /// The lease owner of worker number `worker` of this process:
    /// `<worker_id>/<worker>`. Each parallel worker needs its own owner: with
    /// one owner per process, a worker whose lease expired and was taken over
    /// by a sibling still renewed it (the row still named its owner) and both
    /// walked the chunk.
    pub fn owner(&self, worker: usize) -> String {
        format!("{}/{worker}", self.settings.worker_id)
    }

    /// Claims one chunk for `owner`; waits while every remaining chunk is
    /// leased by a live worker; `None` when all are done or `stop` fired.
    pub async fn claim(
        &self,
        owner: &str,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<LeasedChunk>> {
        let poll = (self.settings.lease_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            if let Some(lease) = self.try_claim(owner).await? {
                return Ok(Some(lease));
            }
            if self.is_finished().await? {
                return Ok(None);
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn try_claim(&self, owner: &str) -> anyhow::Result<Option<LeasedChunk>> {
        let sql = self.sql();
        let lease_micros = Param::Int(self.lease_micros());
        let row: Option<(i64, i64, i64)> = match self.database.dialect() {
            Dialect::Postgres => self
                .database
                .fetch_optional(
                    &sql.claim_postgres(),
                    &[self.run_param(), Param::from(owner), lease_micros],
                )
                .await
                .and_then(|row| row.map(|row| claimed(&row)).transpose())
                .context("cannot claim a chunk")?,
            Dialect::MySql => {
                let claimed: Result<Option<(i64, i64, i64)>, sqlx::Error> = async {
                    let mut transaction = self.database.begin().await?;
                    let row = transaction
                        .fetch_optional(&sql.claim_select_mysql(), &[self.run_param()])
                        .await?;
                    let Some((mapping, chunk, attempts)) =
                        row.map(|row| claimed(&row)).transpose()?
                    else {
                        transaction.rollback().await?;
                        return Ok(None);
                    };
                    let params = [
                        Param::from(owner),
                        lease_micros,
                        self.run_param(),
                        Param::Int(mapping),
                        Param::Int(chunk),
                    ];
                    let _ = transaction
                        .execute(&sql.claim_update_mysql(), &params)
                        .await?;
                    transaction.commit().await?;
                    Ok(Some((mapping, chunk, attempts + 1)))
                }
                .await;
                claimed.context("cannot claim a chunk")?
            }
            Dialect::Sqlite => unreachable!("refused in open"),
        };
        Ok(row.map(|(mapping, chunk, attempts)| LeasedChunk {
            mapping: usize::try_from(mapping).unwrap_or_default(),
            chunk: u64::try_from(chunk).unwrap_or_default(),
            attempt: u32::try_from(attempts).unwrap_or_default(),
            owner: owner.to_owned(),
        }))
    }

    fn key(&self, lease: &LeasedChunk) -> [Param; 3] {
        [
            self.run_param(),
            Param::Int(lease.mapping as i64),
            Param::Int(lease.chunk as i64),
        ]
    }

    /// Renews `lease` every third of the lease time until aborted; cancels
    /// `lost` when the lease is gone (expired and taken over).
    pub fn spawn_heartbeat(
        &self,
        lease: LeasedChunk,
        lost: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let board = self.clone();
        tokio::spawn(async move {
            let every = board.settings.lease_timeout / 3;
            loop {
                tokio::time::sleep(every).await;
                match board.renew(&lease).await {
                    Ok(false) => {
                        tracing::warn!(chunk = lease.chunk, "lease expired and was taken over");
                        lost.cancel();
                        return;
                    }
                    Ok(true) => {}
                    Err(error) => tracing::warn!(error = %error, "cannot renew a lease; retrying"),
                }
            }
        })
    }

    /// Extends `lease` by the lease time; false when it is no longer this
    /// owner's (it expired and another worker took the chunk over).
    pub async fn renew(&self, lease: &LeasedChunk) -> Result<bool, sqlx::Error> {
        let [name, mapping, chunk] = self.key(lease);
        let values = [
            Param::Int(self.lease_micros()),
            name,
            mapping,
            chunk,
            Param::Text(lease.owner.clone()),
        ];
        Ok(self.execute(&self.sql().renew(), &values).await? > 0)
    }

    /// Marks `lease`'s chunk done (even if the lease expired meanwhile: the
    /// chunk's rows are written either way).
    pub async fn complete(&self, lease: &LeasedChunk, totals: &Totals) -> anyhow::Result<()> {
        let [name, mapping, chunk] = self.key(lease);
        let as_int = |value: u64| Param::Int(i64::try_from(value).unwrap_or(i64::MAX));
        let values = [
            Param::Text(lease.owner.clone()),
            as_int(totals.rows),
            as_int(totals.docs()),
            as_int(totals.conflicts),
            as_int(totals.failed),
            name,
            mapping,
            chunk,
        ];
        self.execute(&self.sql().complete(), &values)
            .await
            .with_context(|| {
                format!(
                    "cannot mark chunk {} of run {:?} done",
                    lease.chunk, self.run_name
                )
            })?;
        if self.is_finished().await? {
            self.execute(&self.sql().finish_run(), &[self.run_param()])
                .await
                .with_context(|| format!("cannot mark run {:?} finished", self.run_name))?;
        }
        Ok(())
    }

    /// Gives an unfinished chunk back at once (on shutdown).
    pub async fn release(&self, lease: &LeasedChunk) -> anyhow::Result<()> {
        let [name, mapping, chunk] = self.key(lease);
        let values = [name, mapping, chunk, Param::Text(lease.owner.clone())];
        self.execute(&self.sql().release(), &values)
            .await
            .context("cannot release a lease")?;
        Ok(())
    }
}

/// `(mapping_index, chunk_index, attempts)` of a claimed chunk row.
fn claimed(row: &Row) -> Result<(i64, i64, i64), sqlx::Error> {
    Ok((exec::int(row, 0)?, exec::int(row, 1)?, exec::int(row, 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_skip_locked_rows_in_both_dialects() {
        let pg = LeaseSql::new(
            Dialect::Postgres,
            "esync_recover_runs",
            "esync_recover_chunks",
        );
        let claim = pg.claim_postgres();
        assert!(claim.contains("FOR UPDATE SKIP LOCKED"), "{claim}");
        assert!(claim.contains(r#"FROM "esync_recover_chunks" WHERE run_name = $1 AND (state = 'pending' OR (state = 'leased' AND lease_until < now()))"#), "{claim}");
        assert!(
            claim.contains("lease_until = now() + CAST($3 AS BIGINT) * interval '1 microsecond'"),
            "{claim}"
        );
        let mysql = LeaseSql::new(Dialect::MySql, "r", "c");
        assert_eq!(
            mysql.claim_select_mysql(),
            "SELECT mapping_index, chunk_index, attempts FROM `c` WHERE run_name = ? AND (state = 'pending' OR (state = 'leased' AND lease_until < NOW(6))) ORDER BY mapping_index, chunk_index LIMIT 1 FOR UPDATE SKIP LOCKED"
        );
        assert!(
            mysql
                .claim_update_mysql()
                .contains("lease_until = NOW(6) + INTERVAL ? MICROSECOND")
        );
        assert_eq!(
            mysql.insert_run(),
            "INSERT IGNORE INTO `r` (run_name, plan, created_at) VALUES (?, ?, NOW(6))"
        );
    }

    #[test]
    fn statements_number_their_placeholders() {
        let pg = LeaseSql::new(Dialect::Postgres, "r", "c");
        assert_eq!(
            pg.renew(),
            r#"UPDATE "c" SET lease_until = now() + CAST($1 AS BIGINT) * interval '1 microsecond' WHERE run_name = $2 AND mapping_index = $3 AND chunk_index = $4 AND owner = $5 AND state = 'leased'"#
        );
        assert!(pg.complete().ends_with(
            "WHERE run_name = $6 AND mapping_index = $7 AND chunk_index = $8 AND state <> 'done'"
        ));
        assert_eq!(
            pg.insert_chunks(&[(0, 0), (1, 7)]),
            r#"INSERT INTO "c" (run_name, mapping_index, chunk_index, state, attempts) VALUES ($1, 0, 0, 'pending', 0), ($1, 1, 7, 'pending', 0)"#
        );
        let mysql = LeaseSql::new(Dialect::MySql, "r", "c");
        assert_eq!(
            mysql.insert_chunks(&[(0, 1), (0, 2)]).matches('?').count(),
            2
        );
        assert!(mysql.create_tables()[1].contains("lease_until DATETIME(6) NULL"));
        assert!(
            pg.create_tables()[1].contains("PRIMARY KEY (run_name, mapping_index, chunk_index)")
        );
        assert!(default_worker_id().contains(&format!(":{}:", std::process::id())));
    }
}
