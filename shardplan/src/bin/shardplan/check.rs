//! `shardplan check`: read a live cluster and report what breaks the shard
//! rules. Fetching lives here; the analysis is `shardplan::cluster`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use shardplan::cluster::{
    CheckOptions, CheckReport, ClusterState, PlannedNodes, add_allocation, add_node_attributes,
    check_cluster, parse_cat_nodes, parse_cat_shards, parse_index_settings,
    parse_max_shards_per_node,
};
use shardplan::report::{Table, render_findings};
use shardplan::{ByteSize, Severity};

use crate::Outcome;
use crate::cli::{CheckCommand, load_config};
use crate::es::EsClient;
use crate::output::print_report;

/// `shardplan check`.
pub fn run(command: &CheckCommand) -> anyhow::Result<Outcome> {
    let options = options(command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let client = EsClient::connect(
        &command.cluster.url,
        Duration::from_secs(command.cluster.request_timeout_secs),
    )?;
    let state = runtime.block_on(fetch_state(&client))?;
    let report = check_cluster(&state, &options);
    print_report(command.format, &report, || render_check(&report))?;
    let serious = report
        .findings
        .iter()
        .any(|finding| finding.severity >= Severity::Warning);
    Ok(if command.strict && serious {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn options(command: &CheckCommand) -> anyhow::Result<CheckOptions> {
    let mut options = CheckOptions {
        index_prefix: command.prefix.clone(),
        include_hidden: command.include_hidden,
        min_index_size: command.min_index_size,
        max_shards_per_node: command.max_shards_per_node,
        ..CheckOptions::default()
    };
    if let Some(path) = &command.config {
        let input = load_config(Some(path))?;
        options.planned_nodes = Some(PlannedNodes {
            hot: input.hot.nodes,
            warm: input.warm.nodes,
            cold: input.cold.nodes,
        });
        options.max_shard_size = input.max_shard_size;
        options.max_docs_per_shard = input.max_docs_per_shard;
        options.shards_per_heap_gb = input.shards_per_heap_gb;
        options.tier_attribute = input.tier_attribute;
        options.watermark_low_percent = input.watermark_low * 100.0;
        options.watermark_high_percent = input.watermark_high * 100.0;
    }
    if let Some(size) = command.max_shard_size {
        options.max_shard_size = size;
    }
    if let Some(docs) = command.max_docs_per_shard {
        options.max_docs_per_shard = docs;
    }
    if let Some(attribute) = &command.tier_attribute {
        options.tier_attribute = attribute.clone();
    }
    Ok(options)
}

/// Reads nodes, attributes, shards, allocation, index settings and the
/// shard limit.
async fn fetch_state(client: &EsClient) -> anyhow::Result<ClusterState> {
    let json = ("format", "json");
    let bytes = ("bytes", "b");
    let nodes_body = client
        .get(
            "/_cat/nodes",
            &[json, bytes, ("h", "name,node.role,heap.max,disk.total")],
        )
        .await
        .context("failed to read _cat/nodes")?;
    let mut nodes = parse_cat_nodes(&nodes_body)?;
    let attributes = client
        .get("/_cat/nodeattrs", &[json, ("h", "node,attr,value")])
        .await
        .context("failed to read _cat/nodeattrs")?;
    add_node_attributes(&mut nodes, &attributes)?;
    let allocation = client
        .get(
            "/_cat/allocation",
            &[json, bytes, ("h", "node,disk.percent,disk.total")],
        )
        .await
        .context("failed to read _cat/allocation")?;
    add_allocation(&mut nodes, &allocation)?;
    let shards_body = client
        .get(
            "/_cat/shards",
            &[
                json,
                bytes,
                ("h", "index,shard,prirep,state,docs,store,node"),
            ],
        )
        .await
        .context("failed to read _cat/shards")?;
    let shards = parse_cat_shards(&shards_body)?;
    let settings = client
        .get(
            "/_all/_settings/index.number_of_shards,index.number_of_replicas,index.hidden,index.routing.allocation.*",
            &[("flat_settings", "true"), ("expand_wildcards", "all")],
        )
        .await
        .context("failed to read index settings")?;
    let indices = parse_index_settings(&settings)?;
    let cluster_settings = client
        .get(
            "/_cluster/settings",
            &[("include_defaults", "true"), ("flat_settings", "true")],
        )
        .await
        .context("failed to read _cluster/settings")?;
    Ok(ClusterState {
        nodes,
        shards,
        indices,
        max_shards_per_node: parse_max_shards_per_node(&cluster_settings),
    })
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn render_check(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut patterns = Table::new([
        "pattern",
        "indexes",
        "primaries",
        "replicas",
        "tier",
        "nodes",
        "largest shard",
        "most docs",
        "findings",
    ]);
    for pattern in &report.patterns {
        patterns.row([
            pattern.pattern.clone(),
            pattern.indexes.to_string(),
            join(&pattern.primaries),
            join(&pattern.replicas),
            join(&pattern.tiers),
            join(&pattern.nodes),
            pattern.largest_shard.to_string(),
            pattern.most_docs.to_string(),
            pattern.findings.to_string(),
        ]);
    }
    if patterns.is_empty() {
        out.push_str("no indexes matched\n");
    } else {
        out.push_str(&patterns.render());
    }
    out.push('\n');
    let mut nodes = Table::new(["node", "tier", "shards", "store", "disk used", "heap limit"]);
    for node in &report.nodes {
        nodes.row([
            node.name.clone(),
            node.tier.clone(),
            node.shards.to_string(),
            ByteSize::to_string(&node.store),
            node.disk_percent
                .map_or_else(|| "-".to_string(), |percent| format!("{percent}%")),
            node.heap_shard_limit
                .map_or_else(|| "-".to_string(), |limit| limit.to_string()),
        ]);
    }
    out.push_str(&nodes.render());
    let _ = writeln!(
        out,
        "shard limit per node: {}\n",
        report.max_shards_per_node
    );
    out.push_str(&render_findings(&report.findings));
    out
}
