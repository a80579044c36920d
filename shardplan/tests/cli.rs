//! Black-box tests of the `shardplan` binary: run it on fixture input and
//! compare stdout with the files in `tests/golden/`.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change
//! (then review the diff).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    crate_dir()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn shardplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardplan"))
        .args(args)
        .env_remove("ESYNC_ES_URL")
        .env_remove("ESYNC_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .output()
        .expect("the shardplan binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let output = shardplan(args);
    assert!(
        output.status.success(),
        "shardplan {args:?} failed with {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn assert_golden(name: &str, actual: &str) {
    let path: PathBuf = crate_dir().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "missing golden file {} ({error}); run with UPDATE_GOLDEN=1",
            Path::new(name).display()
        )
    });
    assert_eq!(actual, expected, "stdout differs from tests/golden/{name}");
}

#[test]
fn golden_outputs() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("plan_hot_warm.txt", &["plan"], "hot_warm.yaml"),
        (
            "plan_hot_warm.json",
            &["plan", "--format", "json"],
            "hot_warm.yaml",
        ),
        ("template_hot_warm.json", &["template"], "hot_warm.yaml"),
        ("ilm_hot_warm.json", &["ilm"], "hot_warm.yaml"),
        (
            "plan_shrink_attribute.txt",
            &["plan"],
            "shrink_attribute.yaml",
        ),
        (
            "template_shrink_attribute.json",
            &["template"],
            "shrink_attribute.yaml",
        ),
        (
            "ilm_shrink_attribute.json",
            &["ilm"],
            "shrink_attribute.yaml",
        ),
        ("plan_lcm_explosion.txt", &["plan"], "lcm_explosion.yaml"),
        ("plan_growing.txt", &["plan"], "growing.yaml"),
        (
            "plan_growing.yaml",
            &["plan", "--format", "yaml"],
            "growing.yaml",
        ),
        ("template_growing.json", &["template"], "growing.yaml"),
        ("ilm_growing.json", &["ilm"], "growing.yaml"),
        ("simulate_small.txt", &["simulate"], "simulate_small.yaml"),
        (
            "simulate_small.json",
            &["simulate", "--format", "json"],
            "simulate_small.yaml",
        ),
    ];
    for (golden, args, config) in cases {
        let config = fixture(config);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", config.as_str()]);
        assert_golden(golden, &stdout_of(&all));
    }
}

#[test]
fn flags_give_the_same_plan_as_yaml() {
    let from_flags = stdout_of(&[
        "plan",
        "--hot-nodes=3",
        "--hot-disk=2tb",
        "--warm-nodes=4",
        "--warm-disk=8tb",
        "--daily-ingest=300gb",
        "--daily-docs=600000000",
        "--hot-days=7",
        "--warm-days=30",
    ]);
    assert_golden("plan_hot_warm.txt", &from_flags);
}

#[test]
fn log_format_flag_takes_text_or_json_anywhere() {
    let config = fixture("hot_warm.yaml");
    for format in ["text", "json"] {
        let before = stdout_of(&["--log-format", format, "plan", "--config", &config]);
        let after = stdout_of(&["plan", "--config", &config, "--log-format", format]);
        assert_golden("plan_hot_warm.txt", &before);
        assert_golden("plan_hot_warm.txt", &after);
    }
    let output = shardplan(&["--log-format", "yaml", "plan", "--config", &config]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'yaml' for '--log-format"),
        "{stderr}"
    );
}

#[test]
fn flags_override_the_config() {
    let config = fixture("hot_warm.yaml");
    let json = stdout_of(&[
        "plan",
        "--config",
        &config,
        "--warm-nodes",
        "3",
        "--format",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json).expect("json");
    // lcm(6, 3) = 6; 300gb needs 6 primaries of 50gb.
    assert_eq!(plan["primaries"], 6);
}

#[test]
fn strict_exits_one_on_findings() {
    let config = fixture("lcm_explosion.yaml");
    let output = shardplan(&["plan", "--config", &config, "--strict"]);
    assert_eq!(output.status.code(), Some(1));
    let output = shardplan(&["plan", "--config", &fixture("growing.yaml"), "--strict"]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn errors_exit_two_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["plan", "--config", "/nonexistent/plan.yaml"],
            "failed to read config",
        ),
        (&["plan", "--daily-ingest", "300gb"], "hot.nodes"),
        (
            &["plan", "--hot-nodes", "3", "--daily-ingest", "lots"],
            "invalid byte size",
        ),
        (
            &["simulate", "--config", "GROWING"],
            "simulate needs a time_based workload",
        ),
        (&["plan", "--config", "UNKNOWN"], "unknown field `replica`"),
        (
            &["simulate", "--config", "SMALL", "--chart", "/tmp/chart.gif"],
            "only .svg charts",
        ),
    ];
    for (args, message) in cases {
        let growing = fixture("growing.yaml");
        let unknown = fixture("unknown_field.yaml");
        let small = fixture("simulate_small.yaml");
        let args: Vec<&str> = args
            .iter()
            .map(|arg| match *arg {
                "GROWING" => growing.as_str(),
                "UNKNOWN" => unknown.as_str(),
                "SMALL" => small.as_str(),
                other => other,
            })
            .collect();
        let output = shardplan(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn simulate_writes_an_svg_chart() {
    let directory = tempfile::tempdir().expect("temp dir");
    let chart = directory.path().join("spread.svg");
    let chart_arg = chart.to_string_lossy().into_owned();
    stdout_of(&[
        "simulate",
        "--config",
        &fixture("simulate_small.yaml"),
        "--chart",
        &chart_arg,
    ]);
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.starts_with("<svg"));
    for label in [
        "disk used per node",
        "shard copies per node",
        "hot-1",
        "warm-4",
    ] {
        assert!(svg.contains(label), "{label} missing from the chart");
    }
}

fn json_of(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&stdout_of(args)).expect("JSON output")
}

/// Days in an ILM `min_age` such as `36d` (`0ms` is 0).
fn min_age_days(phase: &serde_json::Value) -> u64 {
    let text = phase["min_age"].as_str().expect("min_age");
    if text == "0ms" {
        return 0;
    }
    text.strip_suffix('d')
        .and_then(|days| days.parse().ok())
        .unwrap_or_else(|| panic!("unexpected min_age {text}"))
}

/// A fixture and what its template and policy must say.
struct PolicyCase {
    name: &'static str,
    primaries: u64,
    max_shard_size: &'static str,
    shrink_to: Option<u64>,
    /// Hot, warm and cold days (all 0 for a growing index).
    days: [u64; 3],
}

impl PolicyCase {
    fn new(
        name: &'static str,
        primaries: u64,
        max_shard_size: &'static str,
        shrink_to: Option<u64>,
        days: [u64; 3],
    ) -> Self {
        Self {
            name,
            primaries,
            max_shard_size,
            shrink_to,
            days,
        }
    }
}

/// What a user PUTs must agree with the plan it came from, for every
/// fixture: the golden files only show the bytes, this checks the meaning.
#[test]
fn template_and_ilm_implement_the_plan() {
    let cases = [
        PolicyCase::new("hot_warm.yaml", 12, "50gb", None, [7, 30, 0]),
        PolicyCase::new("shrink_attribute.yaml", 12, "50gb", Some(4), [7, 30, 60]),
        PolicyCase::new("lcm_explosion.yaml", 70, "50gb", None, [7, 30, 0]),
        PolicyCase::new("growing.yaml", 30, "50gb", None, [0, 0, 0]),
        PolicyCase::new("simulate_small.yaml", 6, "20gb", Some(3), [2, 3, 0]),
    ];
    for case in &cases {
        let PolicyCase {
            name,
            primaries,
            max_shard_size,
            shrink_to,
            days: [hot_days, warm_days, cold_days],
        } = case;
        let config = fixture(name);
        let plan = json_of(&["plan", "--config", &config, "--format", "json"]);
        let template = json_of(&["template", "--config", &config]);
        let policy = json_of(&["ilm", "--config", &config]);
        assert_eq!(plan["primaries"], *primaries, "{name}");

        // Composable template body (PUT _index_template/<name>).
        let allowed = [
            "index_patterns",
            "template",
            "priority",
            "data_stream",
            "_meta",
        ];
        for key in template.as_object().expect("object").keys() {
            assert!(allowed.contains(&key.as_str()), "{name}: key {key}");
        }
        let base = plan["name"].as_str().expect("name");
        assert_eq!(
            template["index_patterns"],
            serde_json::json!([format!("{base}-*")])
        );
        let settings = &template["template"]["settings"];
        assert_eq!(
            settings["index.number_of_shards"], plan["primaries"],
            "{name}"
        );
        assert_eq!(
            settings["index.number_of_replicas"], plan["replicas"],
            "{name}"
        );
        assert_eq!(settings["index.lifecycle.name"], format!("{base}-policy"));

        // ILM policy body (PUT _ilm/policy/<name>-policy).
        let phases = &policy["policy"]["phases"];
        let rollover = &phases["hot"]["actions"]["rollover"];
        assert_eq!(
            rollover["max_primary_shard_size"], *max_shard_size,
            "{name}"
        );
        let shrink = &phases["warm"]["actions"]["shrink"]["number_of_shards"];
        match shrink_to {
            Some(target) => {
                assert_eq!(shrink, target, "{name}");
                assert_eq!(primaries % target, 0, "{name}: shrink must divide");
                assert!(target < primaries, "{name}");
            }
            None => assert!(shrink.is_null(), "{name}"),
        }
        if *hot_days == 0 {
            // A growing index only rolls over by size.
            assert_eq!(phases.as_object().expect("phases").len(), 1, "{name}");
            assert!(rollover.get("max_age").is_none(), "{name}");
            continue;
        }
        assert_eq!(rollover["max_age"], "1d", "{name}");
        // min_age counts from rollover at the end of the first day.
        let mut expected = vec![("hot", 0)];
        let mut before = *hot_days;
        for (phase, days) in [("warm", *warm_days), ("cold", *cold_days)] {
            if days > 0 {
                expected.push((phase, before - 1));
                before += days;
            }
        }
        expected.push(("delete", before - 1));
        let actual: Vec<(&str, u64)> = expected
            .iter()
            .map(|(phase, _)| (*phase, min_age_days(&phases[*phase])))
            .collect();
        assert_eq!(actual, expected, "{name}");
        assert_eq!(
            phases.as_object().expect("phases").len(),
            expected.len(),
            "{name}"
        );
    }
}

/// The simulation of `simulate_small.yaml`, checked by hand: 100gb a day in
/// 6 primaries (16.7gb) + 1 replica; 2 days on 3 hot nodes, then shrunk to 3
/// shards (33.3gb) on 4 warm nodes for 3 days.
#[test]
fn simulation_numbers_add_up() {
    let simulation = json_of(&[
        "simulate",
        "--config",
        &fixture("simulate_small.yaml"),
        "--format",
        "json",
    ]);
    let days = simulation["days"].as_array().expect("days");
    assert_eq!(days.len(), 5);
    let gb = 1_u64 << 30;
    for (day_index, day) in days.iter().enumerate() {
        let day_number = day_index as u64 + 1;
        let nodes = day["nodes"].as_array().expect("nodes");
        let shards: Vec<u64> = nodes
            .iter()
            .map(|node| node["shards"].as_u64().expect("shards"))
            .collect();
        let (hot, warm) = shards.split_at(3);
        // Every copy of every live index is on some node.
        let hot_indexes = day_number.min(2);
        let warm_indexes = day_number.saturating_sub(2);
        assert_eq!(
            hot.iter().sum::<u64>(),
            hot_indexes * 6 * 2,
            "day {day_number}"
        );
        assert_eq!(
            warm.iter().sum::<u64>(),
            warm_indexes * 3 * 2,
            "day {day_number}"
        );
        // 12 copies per index spread evenly over 3 hot nodes.
        assert!(hot.iter().all(|&count| count == hot_indexes * 4), "{hot:?}");
        assert_eq!(day["unassigned"], 0);
        // Disk: the sum over nodes is the stored data, replicas included.
        let disk: Vec<u64> = nodes
            .iter()
            .map(|node| {
                let text = node["disk"].as_str().expect("disk");
                text.parse::<shardplan::ByteSize>()
                    .unwrap_or_else(|error| panic!("disk {text}: {error}"))
                    .bytes()
            })
            .collect();
        let stored: u64 = disk.iter().sum();
        let expected = (hot_indexes + warm_indexes) * 100 * gb * 2;
        // Shard sizes are rounded up to whole bytes.
        assert!(
            stored >= expected && stored < expected + 100,
            "day {day_number}"
        );
    }
    // 6 shrunk copies cannot spread evenly over 4 warm nodes.
    assert_eq!(simulation["worst_shards"]["tier"], "warm");
    assert_eq!(simulation["worst_shards"]["min_shards"], 1);
    assert_eq!(simulation["worst_shards"]["max_shards"], 2);
}
