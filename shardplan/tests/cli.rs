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
