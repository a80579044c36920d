//! The `esync index` commands: create, status, rebuild, rollback, prune,
//! abort. Each reads the state from Elasticsearch first, so every command
//! can be run again after a crash and continues where the cluster stands.
//!
//! A rebuild (and a rollback, which is a rebuild into the previous index):
//! 1. create `<alias>-v<N+1>` from the configured definition, announced by
//!    `<alias>.next` in the same call, so every esync writer starts writing
//!    to it too (see [`super::targets`]);
//! 2. wait [`ANNOUNCEMENT_SETTLE`];
//! 3. fill it: a backfill through the recover engine (checkpointed; a
//!    killed rebuild continues with `--resume`), or, for a rollback, a
//!    verification that repairs what changed since the swap;
//! 4. verify it against the table, repairing differences, until clean;
//! 5. swap the alias in one `_aliases` call that also retracts `.next`.
//!
//! The alias points at a complete index before, during and after.

use super::admin::{self, AdminError};
use super::family::{CreatePlan, announce_actions, create_body, plan_create, swap_actions};
use super::names::next_alias;
use super::targets::ANNOUNCEMENT_SETTLE;
use crate::config::{LoadedConfig, MappingConfig};
use crate::es::EsClient;
use crate::recover::connect::{Connected, select_mappings};
use crate::recover::plan::RangeRequest;
use crate::recover::progress::ProgressMode;
use crate::recover::run::{self as recover_run, CheckpointPlace, RunOutcome, RunSettings};
use crate::recover::store::ControlPlace;
use crate::recover::verify::{self, FixMode, OutputFormat, VerifySettings};
use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a rebuild backfills and verifies.
#[derive(Debug, Clone)]
pub struct FillSettings {
    /// Rows per keyset page and `_bulk` request.
    pub batch_size: usize,
    /// Ids (integer ids) or rows (string ids) per chunk.
    pub chunk_size: u64,
    /// Chunks at once.
    pub parallel: usize,
    /// Rows per second at most (`None`: unlimited, still adaptive).
    pub max_rate: Option<f64>,
    /// Directory of the backfill checkpoint (`esync-rebuild-<index>.json`).
    pub checkpoint_dir: PathBuf,
    /// Table to walk for a mapping with a custom re-read query.
    pub table: Option<String>,
    /// Progress display.
    pub progress: ProgressMode,
    /// Verification passes (each repairing what it finds) before giving up.
    pub verify_passes: u32,
}

/// How a rebuild ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// The alias now points at `to`.
    Swapped {
        /// The index that was live.
        from: Option<String>,
        /// The new live index.
        to: String,
    },
    /// Stopped by a signal; `--resume` continues.
    Interrupted,
}

fn now() -> Value {
    json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The mappings named (all with an `index_definition` when empty).
fn selected<'a>(
    loaded: &'a LoadedConfig,
    names: &[String],
) -> anyhow::Result<Vec<&'a MappingConfig>> {
    let mappings = &loaded.config.mappings;
    let chosen: Vec<&MappingConfig> = select_mappings(mappings, names)?
        .into_iter()
        .map(|index| &mappings[index])
        .filter(|mapping| !names.is_empty() || mapping.index_definition.is_some())
        .collect();
    if chosen.is_empty() {
        bail!(
            "no mapping has an index_definition; add one to manage its index (see README \"Index lifecycle\")"
        );
    }
    Ok(chosen)
}

fn definition(mapping: &MappingConfig) -> anyhow::Result<Value> {
    mapping
        .index_definition
        .as_ref()
        .map(|definition| definition.create_body())
        .with_context(|| {
            format!(
                "mapping {:?} has no index_definition; esync needs its settings and mappings to create an index",
                mapping.display_name()
            )
        })
}

fn client(loaded: &LoadedConfig) -> anyhow::Result<EsClient> {
    EsClient::new(&loaded.config.elasticsearch, &loaded.secrets)
        .context("cannot set up the elasticsearch client")
}

/// `esync index create`: creates `<index>-v1` behind the alias for every
/// mapping whose alias serves nothing yet. Idempotent.
pub async fn create(
    loaded: &LoadedConfig,
    names: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let es = client(loaded)?;
    for mapping in selected(loaded, names)? {
        let alias = &mapping.index;
        let body = definition(mapping)?;
        // a concurrent create wins the race: read again and report it
        for attempt in 0..2 {
            let family = admin::fetch_family(&es, alias).await?;
            match plan_create(&family) {
                CreatePlan::AlreadyServed(index) => {
                    writeln!(
                        out,
                        "{alias}: the alias already serves {index}; nothing to do"
                    )?;
                    break;
                }
                CreatePlan::Refuse(reason) => bail!("{alias}: {reason}"),
                CreatePlan::Create(index) => {
                    let meta = json!({"created_at": now(), "live_since": now()});
                    let aliases = json!({ alias.as_str(): {"is_write_index": true} });
                    match admin::create_index(&es, &index, &create_body(&body, meta, aliases)).await
                    {
                        Ok(()) => {
                            writeln!(out, "{alias}: created {index} behind the alias {alias}")?;
                            break;
                        }
                        Err(error) if attempt == 0 && already_exists(&error) => continue,
                        Err(error) => {
                            return Err(error).with_context(|| format!("cannot create {index}"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn already_exists(error: &AdminError) -> bool {
    matches!(error, AdminError::Es(crate::es::EsError::Status { status: 400, body, .. }) if body.contains("already_exists"))
}

/// `esync index status`: per mapping, the live index, the one being built
/// and the older ones, with document counts and swap times.
pub async fn status(
    loaded: &LoadedConfig,
    names: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let es = client(loaded)?;
    for mapping in selected(loaded, names)? {
        let alias = &mapping.index;
        let family = admin::fetch_family(&es, alias).await?;
        let counts = admin::doc_counts(&es, alias).await?;
        let docs = |index: &str| {
            counts
                .get(index)
                .map_or_else(|| "? docs".to_owned(), |count| format!("{count} docs"))
        };
        match family.live_index() {
            Some(live) => {
                let since = family
                    .versions
                    .iter()
                    .find(|index| index.name == live)
                    .and_then(|index| index.meta["live_since"].as_str())
                    .map(|at| format!(", live since {at}"))
                    .unwrap_or_default();
                writeln!(out, "{alias}: live {live} ({}{since})", docs(live))?;
            }
            None => writeln!(out, "{alias}: no live index (run `esync index create`)")?,
        }
        if let Some(building) = family.building() {
            let live_docs = family.live_index().and_then(|live| counts.get(live));
            let progress = match (counts.get(&building.name), live_docs) {
                (Some(built), Some(live)) if *live > 0 => {
                    format!(
                        "{built} of ~{live} docs, {:.0}%",
                        (*built as f64 / *live as f64 * 100.0).min(100.0)
                    )
                }
                _ => docs(&building.name),
            };
            let stage = if building.meta["backfilled_at"].is_string() {
                "backfilled, verifying"
            } else {
                "filling"
            };
            writeln!(
                out,
                "  building {} ({stage}; {progress}); esync writers write to both through {}",
                building.name,
                next_alias(alias)
            )?;
        }
        for index in &family.versions {
            if Some(index.name.as_str()) != family.live_index()
                && family
                    .building()
                    .is_none_or(|building| building.name != index.name)
            {
                let retired = index.meta["retired_at"]
                    .as_str()
                    .map(|at| format!(", retired {at}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  older {} ({}{retired})",
                    index.name,
                    docs(&index.name)
                )?;
            }
        }
    }
    Ok(())
}

/// `esync index prune --keep N`: deletes older versioned indexes that no
/// alias points at, keeping the `keep` newest of them for rollbacks.
pub async fn prune(
    loaded: &LoadedConfig,
    names: &[String],
    keep: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let es = client(loaded)?;
    for mapping in selected(loaded, names)? {
        let family = admin::fetch_family(&es, &mapping.index).await?;
        let candidates = family.prune_candidates(keep);
        if candidates.is_empty() {
            writeln!(out, "{}: nothing to prune", mapping.index)?;
        }
        for index in candidates {
            admin::delete_index(&es, &index).await?;
            writeln!(out, "{}: deleted {index}", mapping.index)?;
        }
    }
    Ok(())
}

/// `esync index abort`: stops a rebuild: retracts the announcement and
/// deletes the index being built. The live index is untouched.
pub async fn abort(loaded: &LoadedConfig, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let es = client(loaded)?;
    let mapping = selected(loaded, &[name.to_owned()])?[0];
    let family = admin::fetch_family(&es, &mapping.index).await?;
    let Some(building) = family.building() else {
        writeln!(out, "{}: no rebuild in progress", mapping.index)?;
        return Ok(());
    };
    let retract = json!({"actions": [{"remove": {"index": building.name, "alias": next_alias(&mapping.index)}}]});
    admin::update_aliases(&es, &retract).await?;
    if building.meta["rollback"] == json!(true) {
        writeln!(
            out,
            "{}: rollback into {} stopped; the index is kept",
            mapping.index, building.name
        )?;
    } else {
        admin::delete_index(&es, &building.name).await?;
        writeln!(
            out,
            "{}: rebuild stopped; deleted {}",
            mapping.index, building.name
        )?;
    }
    Ok(())
}

/// What a rebuild fills its index with.
enum Fill {
    /// Every row, through the checkpointed backfill.
    Backfill,
    /// Only what differs (a rollback into an index that was complete when
    /// it was swapped out).
    Repair,
}

/// `esync index rebuild`: builds the next index from the configured
/// definition and swaps the alias to it.
pub async fn rebuild(
    loaded: &LoadedConfig,
    name: &str,
    resume: bool,
    settings: &FillSettings,
    stop: &CancellationToken,
    abort: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<RebuildOutcome> {
    let es = client(loaded)?;
    let mapping = selected(loaded, &[name.to_owned()])?[0];
    let alias = &mapping.index;
    let body = definition(mapping)?;
    let family = admin::fetch_family(&es, alias).await?;
    let (building, fill) = match (family.building(), resume) {
        (Some(building), true) => {
            let fill = if building.meta["rollback"] == json!(true) {
                Fill::Repair
            } else {
                Fill::Backfill
            };
            writeln!(out, "{alias}: resuming the rebuild into {}", building.name)?;
            (building.name.clone(), fill)
        }
        (Some(building), false) => bail!(
            "{alias}: a rebuild into {} is in progress; pass --resume to continue it, or stop it with `esync index abort`",
            building.name
        ),
        (None, true) => bail!("{alias}: no rebuild in progress to resume"),
        (None, false) => {
            let index = family.next_index_name();
            let meta = json!({"created_at": now()});
            let aliases = json!({ next_alias(alias): {} });
            admin::create_index(&es, &index, &create_body(&body, meta, aliases))
                .await
                .with_context(|| format!("cannot create {index}"))?;
            writeln!(
                out,
                "{alias}: created {index}, announced as {}",
                next_alias(alias)
            )?;
            (index, Fill::Backfill)
        }
    };
    fill_and_swap(
        loaded, &es, alias, &building, fill, settings, stop, abort, out,
    )
    .await
}

/// `esync index rollback`: makes the previous index live again, after
/// repairing what changed while it was not live.
pub async fn rollback(
    loaded: &LoadedConfig,
    name: &str,
    settings: &FillSettings,
    stop: &CancellationToken,
    abort: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<RebuildOutcome> {
    let es = client(loaded)?;
    let mapping = selected(loaded, &[name.to_owned()])?[0];
    let alias = &mapping.index;
    let family = admin::fetch_family(&es, alias).await?;
    if let Some(building) = family.building() {
        bail!(
            "{alias}: a rebuild into {} is in progress; finish it (`esync index rebuild --resume`) or stop it (`esync index abort`) first",
            building.name
        );
    }
    let previous = family
        .previous()
        .with_context(|| format!("{alias}: no older versioned index to roll back to"))?
        .name
        .clone();
    admin::merge_meta(&es, &previous, &[("rollback", json!(true))]).await?;
    admin::update_aliases(&es, &announce_actions(&family, &previous)).await?;
    writeln!(
        out,
        "{alias}: rolling back to {previous}: announced as {}; repairing what changed since it was live",
        next_alias(alias)
    )?;
    fill_and_swap(
        loaded,
        &es,
        alias,
        &previous,
        Fill::Repair,
        settings,
        stop,
        abort,
        out,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn fill_and_swap(
    loaded: &LoadedConfig,
    es: &EsClient,
    alias: &str,
    building: &str,
    fill: Fill,
    settings: &FillSettings,
    stop: &CancellationToken,
    abort: &CancellationToken,
    out: &mut dyn Write,
) -> anyhow::Result<RebuildOutcome> {
    writeln!(
        out,
        "{alias}: waiting {} for every esync writer to write to {building} too",
        humantime::format_duration(ANNOUNCEMENT_SETTLE)
    )?;
    out.flush()?;
    if crate::cancel::sleep_or_abort(ANNOUNCEMENT_SETTLE, stop)
        .await
        .is_err()
    {
        return Ok(RebuildOutcome::Interrupted);
    }
    // the recover engine, aimed at the new index; rows the new mapping
    // refuses are not dead-lettered (the live index has them): the
    // verification reports them and the swap does not happen
    let mut target = loaded.clone();
    target.config.dead_letter = None;
    let mapping_name = {
        let mapping = target
            .config
            .mappings
            .iter_mut()
            .find(|mapping| mapping.index == alias)
            .context("the mapping disappeared from the config")?;
        mapping.index = building.to_owned();
        mapping.display_name().to_owned()
    };
    let connections = u32::try_from(settings.parallel * 2 + 2).unwrap_or(u32::MAX);
    let connected = Connected::connect(target, connections).await?;
    let range = RangeRequest {
        mappings: vec![mapping_name.clone()],
        from: None,
        to: None,
        chunk_size: settings.chunk_size,
        table: settings.table.clone(),
    };
    let family = admin::fetch_family(es, alias).await?;
    let backfilled = family
        .versions
        .iter()
        .any(|index| index.name == building && index.meta["backfilled_at"].is_string());
    let run_name = format!("rebuild-{building}");
    let checkpoint = settings
        .checkpoint_dir
        .join(format!("esync-rebuild-{building}.json"));
    let control = ControlPlace::beside(&checkpoint);
    if matches!(fill, Fill::Backfill) && !backfilled {
        writeln!(
            out,
            "{alias}: backfilling {building}; throttle it with `esync-recover ctl --run-name {run_name} --checkpoint {} rate N|pause|resume`",
            checkpoint.display()
        )?;
        let run = RunSettings {
            run_name: run_name.clone(),
            range: range.clone(),
            batch_size: settings.batch_size,
            parallel: settings.parallel,
            max_rate: settings.max_rate,
            db_latency_threshold: Duration::from_millis(500),
            checkpoint: CheckpointPlace::File(checkpoint.clone()),
            resume: true,
            force: false,
            coordinate: None,
            progress: settings.progress,
            progress_interval: Duration::from_secs(5),
            control: Some(control.clone()),
        };
        match recover_run::run(connected.clone(), run, stop.clone(), abort.clone())
            .await
            .context("backfill failed")?
        {
            RunOutcome::Finished(snapshot) => {
                writeln!(out, "{}", snapshot.summary_text(&run_name, "finished"))?;
                admin::merge_meta(es, building, &[("backfilled_at", now())]).await?;
            }
            RunOutcome::Interrupted(snapshot) => {
                writeln!(out, "{}", snapshot.summary_text(&run_name, "interrupted"))?;
                return Ok(RebuildOutcome::Interrupted);
            }
        }
    }
    let verify_settings = VerifySettings {
        range,
        batch_size: settings.batch_size,
        parallel: settings.parallel,
        samples: 5,
        fix: FixMode::Reindex,
        format: OutputFormat::Text,
        all_ranges: false,
        refresh: true,
    };
    let mut clean = false;
    for pass in 1..=settings.verify_passes.max(1) {
        if stop.is_cancelled() {
            return Ok(RebuildOutcome::Interrupted);
        }
        writeln!(
            out,
            "{alias}: verifying {building} against the table (pass {pass})"
        )?;
        let report = verify::verify(&connected, &verify_settings, out).await?;
        if report.is_clean_after_fix() {
            clean = true;
            break;
        }
    }
    if !clean {
        bail!(
            "{alias}: {building} still differs from the table after {} verification passes; the alias stays where it is. See the differences above (a document the new mapping refuses is reported by the daemons' logs and esync_dual_writes_total{{outcome=\"rejected\"}}), fix, and run `esync index rebuild --resume`",
            settings.verify_passes
        );
    }
    // swap on the state as it is now: the alias may have moved
    let family = admin::fetch_family(es, alias).await?;
    let from = family.live_index().map(str::to_owned);
    admin::update_aliases(es, &swap_actions(&family, building)).await?;
    admin::merge_meta(
        es,
        building,
        &[("live_since", now()), ("rollback", Value::Null)],
    )
    .await?;
    if let Some(from) = &from
        && from != alias
    {
        admin::merge_meta(es, from, &[("retired_at", now())]).await?;
    }
    // the backfill's checkpoint and control record have served their purpose
    let mut files = vec![checkpoint];
    if let ControlPlace::File(path) = control {
        files.push(path);
    }
    for file in files {
        if let Err(error) = std::fs::remove_file(&file)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %file.display(), error = %error, "cannot remove the rebuild's checkpoint");
        }
    }
    writeln!(
        out,
        "{alias}: swapped: the alias now points at {building}{}; writers stop writing twice within seconds",
        from.as_deref()
            .map(|from| format!(" (was {from}; `esync index rollback` returns to it)"))
            .unwrap_or_default()
    )?;
    Ok(RebuildOutcome::Swapped {
        from,
        to: building.to_owned(),
    })
}
