//! Connecting the adapters of one `esync.yaml`: the source database, the
//! Elasticsearch client and the esync [`Writer`] that both `run` and
//! `verify --fix` write through.
//!
//! This is application glue (anyhow errors naming the resource); the pure
//! decisions live in the other modules.

use crate::config::{LoadedConfig, MappingConfig};
use crate::db::Database;
use crate::es::EsClient;
use crate::metrics::Metrics;
use crate::recover::metrics::RecoverMetrics;
use crate::writer::{Mapping, Writer};
use anyhow::Context as _;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Connected adapters.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The configuration.
    pub loaded: LoadedConfig,
    /// The source database.
    pub database: Database,
    /// The Elasticsearch client.
    pub es: EsClient,
    /// The versioned writer (same external versions as the daemon).
    pub writer: Writer,
    /// The writer's counters (`esync_*`, served with `--metrics-listen`).
    pub metrics: Arc<Metrics>,
    /// The run's progress metrics (`esync_recover_*`).
    pub recover_metrics: Arc<RecoverMetrics>,
}

impl Connected {
    /// Connects to the database (a pool of at least `min_connections`) and
    /// builds the Elasticsearch client and the writer; its metrics are
    /// registered nowhere.
    pub async fn connect(loaded: LoadedConfig, min_connections: u32) -> anyhow::Result<Connected> {
        Connected::connect_with_registry(loaded, min_connections, &mut Registry::default()).await
    }

    /// [`Connected::connect`], with the writer's metrics (`esync_*`, the
    /// daemon's names) and the recovery metrics (`esync_recover_*`)
    /// registered in `registry`, for a process that serves them.
    pub async fn connect_with_registry(
        loaded: LoadedConfig,
        min_connections: u32,
        registry: &mut Registry,
    ) -> anyhow::Result<Connected> {
        let source = &loaded.config.source;
        let database = Database::connect(
            &loaded.secrets.database_url,
            source.max_connections.max(min_connections),
            source.connect_timeout,
        )
        .await
        .context("cannot connect to the source database")?;
        let es = EsClient::new(&loaded.config.elasticsearch, &loaded.secrets)
            .context("cannot set up the elasticsearch client")?;
        es.ping(loaded.config.elasticsearch.request_timeout)
            .await
            .context("elasticsearch does not answer")?;
        let metrics = Metrics::register(registry);
        let recover_metrics = RecoverMetrics::register(registry);
        let mappings = Arc::new(Mapping::all_from_config(&loaded.config, database.dialect()));
        let writer = Writer::new(
            database.clone(),
            es.clone(),
            mappings,
            loaded.config.retry,
            &loaded.config.elasticsearch,
            metrics.clone(),
        );
        Ok(Connected {
            loaded,
            database,
            es,
            writer,
            metrics,
            recover_metrics,
        })
    }

    /// Indexes into the config's mappings of `names` (all when empty).
    pub fn select_mappings(&self, names: &[String]) -> anyhow::Result<Vec<usize>> {
        select_mappings(&self.loaded.config.mappings, names)
    }
}

/// Indexes of the mappings called `names`, in the config's order; all of
/// them when `names` is empty.
pub fn select_mappings(mappings: &[MappingConfig], names: &[String]) -> anyhow::Result<Vec<usize>> {
    if names.is_empty() {
        return Ok((0..mappings.len()).collect());
    }
    let known: Vec<&str> = mappings.iter().map(MappingConfig::display_name).collect();
    for name in names {
        if !known.contains(&name.as_str()) {
            anyhow::bail!("no mapping named {name:?}; the config has {known:?}");
        }
    }
    Ok((0..mappings.len())
        .filter(|index| names.iter().any(|name| name == known[*index]))
        .collect())
}

/// The table a mapping's ids are walked in: its `table`, or `table_override`
/// for a mapping with a custom re-read query.
pub fn walk_table(mapping: &MappingConfig, table_override: Option<&str>) -> anyhow::Result<String> {
    match (table_override, &mapping.table) {
        (Some(table), _) => Ok(table.to_owned()),
        (None, Some(table)) => Ok(table.clone()),
        (None, None) => anyhow::bail!(
            "mapping {:?} re-reads with a custom query; name the table whose {:?} column to walk with --table",
            mapping.display_name(),
            mapping.id.column
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mappings() -> Vec<MappingConfig> {
        let yaml = r#"
- {name: orders, topics: [a], table: orders, index: orders, version: {column: v, kind: counter}}
- {name: items, topics: [b], query: "SELECT * FROM items WHERE id IN {ids}", index: items, version: {column: v, kind: counter}}
"#;
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn selects_mappings_by_name_in_config_order() {
        let mappings = mappings();
        assert_eq!(select_mappings(&mappings, &[]).unwrap(), vec![0, 1]);
        assert_eq!(
            select_mappings(&mappings, &["items".into(), "orders".into()]).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            select_mappings(&mappings, &["items".into()]).unwrap(),
            vec![1]
        );
        let error = select_mappings(&mappings, &["nope".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "no mapping named \"nope\"; the config has [\"orders\", \"items\"]"
        );
    }

    #[test]
    fn custom_query_mappings_need_a_table() {
        let mappings = mappings();
        assert_eq!(walk_table(&mappings[0], None).unwrap(), "orders");
        assert_eq!(walk_table(&mappings[1], Some("items")).unwrap(), "items");
        assert!(
            walk_table(&mappings[1], None)
                .unwrap_err()
                .to_string()
                .contains("--table")
        );
    }
}
