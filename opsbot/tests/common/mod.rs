//! A fake operations engine for the bot tests: canned cluster answers, a
//! record of started rolls and slow-log filters. A started roll runs the
//! real state machine (`opsbot::roll`) against a cluster where every step
//! succeeds (after the scripted health answers, if any), so the progress
//! lines are the ones opsbot really posts.

use chrono::Utc;
use opsbot::bot::HandlerSettings;
use opsbot::cluster::{
    AllocationSetting, ClusterHealth, ClusterNode, HealthStatus, PlannedNode, ShardRow, Target,
    plan_order,
};
use opsbot::command::{AccessPolicy, Role};
use opsbot::driver::ProgressSink;
use opsbot::es::EsError;
use opsbot::ops::{Operations, OpsError};
use opsbot::roll::{Action, Next, Observation, RollSettings, RollState, Step};
use opsbot::slowlog::digest::{Digest, DigestFilter, DigestReport, GroupBy, Grouping};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct FakeOps {
    pub fail_health: AtomicBool,
    pub started: Mutex<Vec<(Target, bool)>>,
    pub state: Mutex<Option<RollState>>,
    pub slowlog_filters: Mutex<Vec<DigestFilter>>,
    /// Answers of the coming health checks (health and shard table, one per
    /// check); green once they have run out.
    pub health_script: Mutex<VecDeque<(HealthStatus, Vec<ShardRow>)>>,
}

/// Runs a roll to its end on a cluster where every step succeeds, posting
/// the milestones as the driver does; health checks take their answers from
/// `script` first.
fn simulate_roll(
    mut state: RollState,
    progress: &ProgressSink,
    script: &mut VecDeque<(HealthStatus, Vec<ShardRow>)>,
) -> RollState {
    let mut shards: Vec<ShardRow> = Vec::new();
    let mut now = state.started_at;
    for _ in 0..1_000 {
        let before = state.position();
        match state.poll(now) {
            Next::Finished => {
                if let Some(message) = state.milestone(before) {
                    progress(&message);
                }
                return state;
            }
            Next::SleepUntil(at) => now = at,
            Next::Do(action) => {
                let observation = match action {
                    Action::CheckHealth => match script.pop_front() {
                        Some((health, rows)) => {
                            shards = rows;
                            Observation::Health(health)
                        }
                        None => Observation::Health(HealthStatus::Green),
                    },
                    Action::ListShards => Observation::Shards(shards.clone()),
                    Action::ReadAllocation => Observation::Allocation(AllocationSetting::default()),
                    Action::ListNodes if state.step == Step::WaitLeave => {
                        Observation::Nodes(vec![])
                    }
                    Action::ListNodes => Observation::Nodes(
                        nodes()
                            .into_iter()
                            .map(|node| ClusterNode {
                                uptime_ms: None,
                                ..node
                            })
                            .collect(),
                    ),
                    _ => Observation::Done,
                };
                now += chrono::Duration::seconds(1);
                state.observe(observation, now);
                if let Some(message) = state.milestone(before) {
                    progress(&message);
                }
            }
        }
    }
    panic!("simulated roll did not finish");
}

/// The bot's settings in the tests: `chat` is allowed, `viewer` and
/// `operator` have those roles, the rest are the defaults.
pub fn handler_settings(
    chat: i64,
    viewer: u64,
    operator: u64,
    bot_username: Option<&str>,
) -> HandlerSettings {
    HandlerSettings {
        policy: AccessPolicy {
            chats: [chat].into_iter().collect(),
            users: [(viewer, Role::Viewer), (operator, Role::Operator)]
                .into_iter()
                .collect(),
        },
        confirm_ttl: std::time::Duration::from_secs(60),
        default_window: std::time::Duration::from_secs(3600),
        slowlog_top: 5,
        roll_settings: RollSettings::default(),
        bot_username: bot_username.map(str::to_owned),
    }
}

pub fn nodes() -> Vec<ClusterNode> {
    vec![
        ClusterNode {
            name: "es-master-1".into(),
            ip: "10.0.0.1".into(),
            roles: "m".into(),
            elected_master: true,
            uptime_ms: Some(1_000),
        },
        ClusterNode {
            name: "es-data-1".into(),
            ip: "10.0.0.2".into(),
            roles: "d".into(),
            elected_master: false,
            uptime_ms: Some(1_000),
        },
    ]
}

impl FakeOps {
    fn plan(&self, target: &Target) -> Result<Vec<PlannedNode>, OpsError> {
        Ok(plan_order(&nodes(), target, |node| node.ip.clone())?)
    }
}

impl Operations for FakeOps {
    type Claim = RollState;

    async fn health(&self) -> Result<ClusterHealth, OpsError> {
        if self.fail_health.load(Ordering::SeqCst) {
            return Err(OpsError::Cluster(EsError::Status {
                endpoint: "GET /_cluster/health".into(),
                status: 500,
                body: "secret internal stack trace at 10.9.9.9".into(),
            }));
        }
        Ok(ClusterHealth {
            cluster_name: "test".into(),
            status: HealthStatus::Green,
            number_of_nodes: 2,
            number_of_data_nodes: 1,
            active_primary_shards: 1,
            active_shards: 2,
            relocating_shards: 0,
            initializing_shards: 0,
            unassigned_shards: 0,
            active_shards_percent_as_number: 100.0,
        })
    }

    async fn nodes(&self) -> Result<Vec<ClusterNode>, OpsError> {
        Ok(nodes())
    }

    async fn shards(&self, index: Option<&str>) -> Result<Vec<ShardRow>, OpsError> {
        Ok(vec![ShardRow {
            index: index.unwrap_or("logs").to_string(),
            shard: "0".into(),
            prirep: "p".into(),
            state: "STARTED".into(),
            docs: Some("10".into()),
            store: Some("1000".into()),
            node: Some("es-data-1".into()),
        }])
    }

    async fn plan_restart(&self, target: &Target) -> Result<Vec<PlannedNode>, OpsError> {
        self.plan(target)
    }

    async fn new_roll(
        &self,
        target: &Target,
        allow_yellow: bool,
        _force: bool,
    ) -> Result<RollState, OpsError> {
        let plan = self.plan(target)?;
        self.started
            .lock()
            .expect("lock")
            .push((target.clone(), allow_yellow));
        let settings = RollSettings {
            allow_yellow,
            ..RollSettings::default()
        };
        Ok(RollState::new(plan, settings, Utc::now()))
    }

    async fn resumable_roll(&self) -> Result<RollState, OpsError> {
        self.state
            .lock()
            .expect("lock")
            .clone()
            .ok_or(OpsError::NoRoll)
    }

    async fn run_roll(
        &self,
        claim: RollState,
        progress: &ProgressSink,
        _cancel: &CancellationToken,
    ) -> Result<RollState, OpsError> {
        let mut script = self.health_script.lock().expect("lock");
        let finished = simulate_roll(claim, progress, &mut script);
        *self.state.lock().expect("lock") = Some(finished.clone());
        Ok(finished)
    }

    /// Runs the roll at once (a test has no background to wait for).
    fn spawn_roll(&self, claim: RollState, progress: Arc<ProgressSink>) -> Result<(), OpsError> {
        let mut script = self.health_script.lock().expect("lock");
        let finished = simulate_roll(claim, progress.as_ref(), &mut script);
        *self.state.lock().expect("lock") = Some(finished);
        Ok(())
    }

    async fn restart_status(&self) -> Result<Option<RollState>, OpsError> {
        Ok(self.state.lock().expect("lock").clone())
    }

    async fn abort_restart(&self) -> Result<RollState, OpsError> {
        let mut slot = self.state.lock().expect("lock");
        let state = slot.as_mut().ok_or(OpsError::NoRoll)?;
        state.request_abort(Utc::now())?;
        Ok(state.clone())
    }

    async fn slowlog_report(
        &self,
        _files: Vec<PathBuf>,
        filter: DigestFilter,
        by: GroupBy,
        top: usize,
    ) -> Result<DigestReport, OpsError> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/es9_slowlog.json");
        let text = std::fs::read_to_string(path).expect("fixture");
        self.slowlog_filters
            .lock()
            .expect("lock")
            .push(filter.clone());
        // The fixture is from 2025 and the handler's window is relative to
        // now: the window is checked on the recorded filter instead.
        let filter = DigestFilter {
            since: None,
            until: None,
            ..filter
        };
        let mut digest = Digest::with_grouping(
            filter,
            Grouping {
                by,
                ..Grouping::default()
            },
        );
        for line in text.lines() {
            digest.add_line(line, &|| "fixture".to_string());
        }
        Ok(digest.finish(top))
    }
}
