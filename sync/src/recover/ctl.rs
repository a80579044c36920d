//! `esync-recover ctl`: finds a run by the options it was started with,
//! shows its state, and changes its limit or pauses it by writing its control
//! record, which every process of the run follows within a second.
//!
//! Where a run keeps its state decides where its control record is
//! ([`RunLocation::control_place`]): the lease tables' `<prefix>_control`
//! for `--coordinate db`, `<checkpoint table>_control` for
//! `--checkpoint-store db`, `<checkpoint file>.ctl` otherwise. Nothing is
//! created for a run that does not exist.

use crate::db::{Database, is_undefined_table};
use crate::recover::control::{Action, ControlRecord};
use crate::recover::lease;
use crate::recover::run::CheckpointPlace;
use crate::recover::store::{CheckpointStore, ControlPlace, ControlStore, StoreError};
use chrono::{DateTime, Utc};

/// A run as the command line names it: what `run` and `ctl` share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLocation {
    /// `--run-name`.
    pub run_name: String,
    /// The checkpoint (without coordination).
    pub checkpoint: CheckpointPlace,
    /// `--coordinate db`: the lease tables' prefix.
    pub lease_table_prefix: Option<String>,
}

impl RunLocation {
    /// Where the run's control record is.
    pub fn control_place(&self) -> ControlPlace {
        match (&self.lease_table_prefix, &self.checkpoint) {
            (Some(prefix), _) => ControlPlace::Table(lease::control_table(prefix)),
            (None, CheckpointPlace::Table(table)) => {
                ControlPlace::Table(format!("{table}_control"))
            }
            (None, CheckpointPlace::File(path)) => ControlPlace::beside(path),
        }
    }

    /// Whether reaching the run needs the source database.
    pub fn needs_database(&self) -> bool {
        self.lease_table_prefix.is_some() || matches!(self.checkpoint, CheckpointPlace::Table(_))
    }

    /// Where the run's state is, for messages.
    pub fn describe(&self) -> String {
        match (&self.lease_table_prefix, &self.checkpoint) {
            (Some(prefix), _) => format!("lease table {prefix}_runs"),
            (None, CheckpointPlace::Table(table)) => format!("checkpoint table {table}"),
            (None, CheckpointPlace::File(path)) => format!("checkpoint file {}", path.display()),
        }
    }
}

/// Why `ctl` failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The run is not where the options say.
    #[error(
        "no recovery run named {run_name:?} in {place}; give ctl the --run-name, --checkpoint-store/--checkpoint/--checkpoint-table and --coordinate/--lease-table-prefix the run was started with"
    )]
    NoSuchRun {
        /// The name asked for.
        run_name: String,
        /// Where it was looked for.
        place: String,
    },
    /// The checkpoint there is another run's.
    #[error("{place} belongs to run {found:?}, not {run_name:?}")]
    OtherRun {
        /// The name asked for.
        run_name: String,
        /// The checkpoint.
        place: String,
        /// The run it holds.
        found: String,
    },
    /// Nothing is left to control.
    #[error("recovery {run_name:?} already finished; nothing to {action}")]
    Finished {
        /// The run.
        run_name: String,
        /// What was asked.
        action: Action,
    },
    /// The run's database is needed but was not given.
    #[error("{0} is in the source database; ctl needs --config to reach it")]
    NoDatabase(String),
    /// Reading or writing the checkpoint or the control record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the lease tables failed.
    #[error("cannot read {place}: {source}")]
    Database {
        /// The tables.
        place: String,
        /// The driver error.
        source: sqlx::Error,
    },
}

/// What `ctl` found (and set).
#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    /// The run.
    pub run_name: String,
    /// Where its state is.
    pub place: String,
    /// Chunks done.
    pub chunks_done: u64,
    /// Chunks in the plan.
    pub chunks_total: u64,
    /// When it finished (checkpoints record it; coordinated runs only say
    /// whether).
    pub finished: Option<Option<DateTime<Utc>>>,
    /// The control record (`None`: never controlled since it started).
    pub control: Option<ControlRecord>,
    /// Why the stored control record cannot be read, if it cannot; a new
    /// command replaces it.
    pub control_problem: Option<String>,
}

impl RunStatus {
    /// Two lines for the operator.
    pub fn to_text(&self) -> String {
        let state = match self.finished {
            None => "not finished".to_owned(),
            Some(Some(at)) => format!(
                "finished at {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Some(None) => "finished".to_owned(),
        };
        let control = match (&self.control, &self.control_problem) {
            (Some(record), _) => record.describe(),
            (None, Some(problem)) => problem.clone(),
            (None, None) => {
                "never changed by ctl; each process runs at its own --max-rate".to_owned()
            }
        };
        format!(
            "recovery {:?} ({}): {} of {} chunks done, {state}\ncontrol: {control}",
            self.run_name, self.place, self.chunks_done, self.chunks_total
        )
    }
}

/// The run's progress and control record; an error when there is no such run.
pub async fn status(
    location: &RunLocation,
    database: Option<&Database>,
) -> Result<RunStatus, CtlError> {
    let place = location.describe();
    let database = match (location.needs_database(), database) {
        (true, None) => return Err(CtlError::NoDatabase(place)),
        (_, database) => database,
    };
    let no_such_run = || CtlError::NoSuchRun {
        run_name: location.run_name.clone(),
        place: place.clone(),
    };
    let (chunks_done, chunks_total, finished) = match (&location.lease_table_prefix, database) {
        (Some(prefix), Some(database)) => {
            let progress = lease::find_run(database, prefix, &location.run_name)
                .await
                .map_err(|source| CtlError::Database {
                    place: place.clone(),
                    source,
                })?
                .ok_or_else(no_such_run)?;
            let total = progress.chunks_done + progress.chunks_left;
            let finished = (progress.chunks_left == 0).then_some(None);
            (progress.chunks_done, total, finished)
        }
        _ => {
            let store = match (&location.checkpoint, database) {
                (CheckpointPlace::File(path), _) => CheckpointStore::File(path.clone()),
                (CheckpointPlace::Table(table), Some(database)) => CheckpointStore::Table {
                    database: database.clone(),
                    table: table.clone(),
                    run_name: location.run_name.clone(),
                },
                (CheckpointPlace::Table(_), None) => return Err(CtlError::NoDatabase(place)),
            };
            let checkpoint = match store.load().await {
                Err(StoreError::Table { source, .. }) if is_undefined_table(&source) => None,
                other => other?,
            }
            .ok_or_else(no_such_run)?;
            if checkpoint.run_name != location.run_name {
                return Err(CtlError::OtherRun {
                    run_name: location.run_name.clone(),
                    place,
                    found: checkpoint.run_name,
                });
            }
            (
                checkpoint.chunks_done(),
                checkpoint.plan.chunk_count(),
                checkpoint.finished_at.map(Some),
            )
        }
    };
    let (control, control_problem) = match control_store(location, database).load().await {
        Ok(control) => (control, None),
        Err(problem @ StoreError::BadControl { .. }) => (None, Some(problem.to_string())),
        Err(error) => return Err(error.into()),
    };
    Ok(RunStatus {
        run_name: location.run_name.clone(),
        place,
        chunks_done,
        chunks_total,
        finished,
        control,
        control_problem,
    })
}

/// Applies `action` to the run: writes its control record and returns the
/// state it set. `changed_by` names the operator.
pub async fn apply(
    location: &RunLocation,
    database: Option<&Database>,
    action: Action,
    changed_by: &str,
) -> Result<RunStatus, CtlError> {
    let mut status = status(location, database).await?;
    if status.finished.is_some() {
        return Err(CtlError::Finished {
            run_name: location.run_name.clone(),
            action,
        });
    }
    let record = ControlRecord::after(
        status.control.as_ref(),
        &location.run_name,
        action,
        changed_by,
        Utc::now(),
    );
    let store = control_store(location, database);
    store.prepare().await?;
    store.save(&record).await?;
    tracing::info!(run = %location.run_name, control = %store.location(), "{}", record.describe());
    status.control = Some(record);
    status.control_problem = None;
    Ok(status)
}

fn control_store(location: &RunLocation, database: Option<&Database>) -> ControlStore {
    ControlStore::new(
        location.control_place(),
        database.cloned(),
        &location.run_name,
    )
}

/// Who gives a command: `user@host`.
pub fn operator_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", lease::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdType;
    use crate::recover::checkpoint::{Checkpoint, ChunkLayout, MappingPlan, Plan, Totals};
    use std::path::PathBuf;

    fn four_chunks() -> Plan {
        Plan {
            mappings: vec![MappingPlan {
                mapping: "orders".into(),
                index: "orders".into(),
                table: "orders".into(),
                id_column: "id".into(),
                id_type: IdType::Integer,
                rows_estimate: 100,
                layout: ChunkLayout::Integer {
                    from: 1,
                    to: 100,
                    step: 25,
                },
            }],
        }
    }

    fn location(checkpoint: CheckpointPlace, prefix: Option<&str>) -> RunLocation {
        RunLocation {
            run_name: "nightly".into(),
            checkpoint,
            lease_table_prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn the_control_record_sits_where_the_run_keeps_its_state() {
        let file = CheckpointPlace::File(PathBuf::from("/var/lib/esync/nightly.json"));
        let table = CheckpointPlace::Table("esync_recover_checkpoints".into());
        // (location, control place, needs the database, description)
        let cases = [
            (
                location(file.clone(), None),
                ControlPlace::File(PathBuf::from("/var/lib/esync/nightly.json.ctl")),
                false,
                "checkpoint file /var/lib/esync/nightly.json",
            ),
            (
                location(table.clone(), None),
                ControlPlace::Table("esync_recover_checkpoints_control".into()),
                true,
                "checkpoint table esync_recover_checkpoints",
            ),
            (
                location(file, Some("esync_recover")),
                ControlPlace::Table("esync_recover_control".into()),
                true,
                "lease table esync_recover_runs",
            ),
            (
                location(table, Some("rec")),
                ControlPlace::Table("rec_control".into()),
                true,
                "lease table rec_runs",
            ),
        ];
        for (location, place, needs_database, described) in cases {
            assert_eq!(location.control_place(), place, "{location:?}");
            assert_eq!(location.needs_database(), needs_database, "{location:?}");
            assert_eq!(location.describe(), described);
        }
    }

    #[tokio::test]
    async fn ctl_finds_file_runs_and_refuses_unknown_ones() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nightly.json");
        let run = location(CheckpointPlace::File(path.clone()), None);
        let missing = status(&run, None).await.unwrap_err().to_string();
        assert!(
            missing.starts_with(&format!(
                "no recovery run named \"nightly\" in checkpoint file {}",
                path.display()
            )),
            "{missing}"
        );
        assert!(
            !path.with_extension("json.ctl").exists(),
            "nothing is created for a run that does not exist"
        );
        let mut checkpoint = Checkpoint::new("nightly", four_chunks(), Utc::now());
        let store = CheckpointStore::File(path.clone());
        store.save(&checkpoint).await.unwrap();
        let found = status(&run, None).await.unwrap();
        assert_eq!((&found.control, found.finished), (&None, None));
        assert!(
            found.to_text().ends_with(
                "0 of 4 chunks done, not finished\ncontrol: never changed by ctl; each process runs at its own --max-rate"
            ),
            "{}",
            found.to_text()
        );
        let paused = apply(&run, None, Action::Pause, "ops@db1").await.unwrap();
        assert!(
            paused
                .to_text()
                .contains("control: paused (limit after resume: each process's own --max-rate); operator: pause via ctl at "),
            "{}",
            paused.to_text()
        );
        // a record spoilt by hand is reported, and the next command replaces it
        std::fs::write(
            directory.path().join("nightly.json.ctl"),
            "{\"paused\": tru",
        )
        .unwrap();
        let spoilt = status(&run, None).await.unwrap().to_text();
        assert!(
            spoilt.contains("nightly.json.ctl is unusable: not a control record")
                && spoilt.ends_with("; fix it or set it again with esync-recover ctl"),
            "{spoilt}"
        );
        let resumed = apply(&run, None, Action::Rate(250.0), "ops@db1")
            .await
            .unwrap();
        let record = resumed.control.expect("a record");
        assert_eq!((record.paused, record.action), (false, Action::Rate(250.0)));
        assert_eq!(status(&run, None).await.unwrap().control, Some(record));

        let other = location(CheckpointPlace::File(path.clone()), None);
        let other = RunLocation {
            run_name: "daily".into(),
            ..other
        };
        assert_eq!(
            status(&other, None).await.unwrap_err().to_string(),
            format!(
                "checkpoint file {} belongs to run \"nightly\", not \"daily\"",
                path.display()
            )
        );
        for chunk in 0..4 {
            checkpoint.complete(0, chunk, &Totals::default(), Utc::now());
        }
        store.save(&checkpoint).await.unwrap();
        assert!(
            status(&run, None)
                .await
                .unwrap()
                .to_text()
                .contains("4 of 4 chunks done, finished at ")
        );
        assert_eq!(
            apply(&run, None, Action::Resume, "ops@db1")
                .await
                .unwrap_err()
                .to_string(),
            "recovery \"nightly\" already finished; nothing to resume"
        );
        let in_db = location(CheckpointPlace::Table("t".into()), None);
        assert!(
            apply(&in_db, None, Action::Pause, "ops@db1")
                .await
                .unwrap_err()
                .to_string()
                .contains("needs --config")
        );
    }
}
