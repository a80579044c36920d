//! Grouping shard executions into requests.
//!
//! Elasticsearch writes one search slow-log line per shard (and phase) that
//! was slow, on the node that ran it: a search slow on 6 shards is 6 lines.
//! Counted as they are, a wide query ranks 6 times too high and its
//! "latency" is a shard's, not what the client waited for. Nothing in a line
//! names its request, so lines are grouped by a heuristic:
//!
//! - same kind (query or fetch phase), same exact source, same `id`
//!   (`X-Opaque-Id`, when the client sent one) and same node;
//! - each line is placed at its *start*, the log time minus `took` (a line
//!   is written when its shard finishes, so a slow shard logs late);
//! - a line joins a request whose shards on that node started or ran within
//!   `window` of it (the gap between the end of one execution and the start
//!   of the next is at most `window`), so a request whose shards queue
//!   behind each other (`max_concurrent_shard_requests`) stays one, and so
//!   does one whose lines straddle a clock second or minute;
//! - a request runs on a shard at most once, so a second line for the same
//!   index and shard starts another request (two users running the same
//!   dashboard query at the same moment count as two).
//!
//! A request's latency is its slowest shard's. Limits: shards of one
//! request on different nodes count as one request per node (nothing in
//! the lines ties them together; the `X-Opaque-Id` is often one value per
//! application, not per request); identical queries from one client on one
//! node within `window` whose slow shards do not overlap merge into one;
//! lines without a timestamp or a shard number, and indexing lines (one per
//! document), are a request each.
//!
//! Pure: executions in, request numbers out.

/// One shard execution, as the grouping needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    /// Equal for lines that may belong to one request: a hash of kind,
    /// exact source, id and node. `None`: a request of its own.
    pub request_key: Option<u64>,
    /// When the shard started (log time minus took), ms since the epoch.
    pub start_ms: i64,
    /// When it finished (the log time), ms since the epoch.
    pub end_ms: i64,
    /// Equal for the same index and shard number.
    pub shard_key: u64,
}

/// Request numbers of executions: `request_of[i]` is the request of
/// `executions[i]`, numbered `0..requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requests {
    /// The request of each execution, in the order given.
    pub request_of: Vec<u32>,
    /// How many requests there are.
    pub requests: u32,
}

/// A request still open to more shards while the sweep goes on.
struct Open {
    request: u32,
    end_ms: i64,
    shards: Vec<u64>,
}

/// Groups executions into requests (see the module documentation); the
/// result does not depend on the order of `executions`.
pub fn group_requests(executions: &[Execution], window_ms: i64) -> Requests {
    let mut request_of = vec![u32::MAX; executions.len()];
    let mut requests: u32 = 0;
    // Lines of one key next to each other, by start: then a request can only
    // be joined by lines that come after its first one. Plain tuples sort
    // fastest; lines without a key are requests of their own.
    let mut keyed: Vec<(u64, i64, i64, u32)> = Vec::with_capacity(executions.len());
    for (position, execution) in executions.iter().enumerate() {
        match execution.request_key {
            Some(key) => keyed.push((
                key,
                execution.start_ms,
                execution.end_ms,
                u32::try_from(position).unwrap_or(u32::MAX),
            )),
            None => {
                request_of[position] = requests;
                requests += 1;
            }
        }
    }
    keyed.sort_unstable();
    let mut open: Vec<Open> = Vec::new();
    let mut current_key: Option<u64> = None;
    for (key, start_ms, end_ms, position) in keyed {
        let shard_key = executions[position as usize].shard_key;
        if current_key != Some(key) {
            open.clear();
            current_key = Some(key);
        }
        // Requests that ended more than the window before this start can
        // take no later line either (later lines start later).
        open.retain(|request| start_ms <= request.end_ms.saturating_add(window_ms));
        let joined = open
            .iter_mut()
            .find(|request| !request.shards.contains(&shard_key));
        request_of[position as usize] = match joined {
            Some(request) => {
                request.shards.push(shard_key);
                request.end_ms = request.end_ms.max(end_ms);
                request.request
            }
            None => {
                let number = requests;
                requests += 1;
                open.push(Open {
                    request: number,
                    end_ms,
                    shards: vec![shard_key],
                });
                number
            }
        };
    }
    Requests {
        request_of,
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: u64, start_ms: i64, took_ms: i64, shard: u64) -> Execution {
        Execution {
            request_key: Some(key),
            start_ms,
            end_ms: start_ms + took_ms,
            shard_key: shard,
        }
    }

    /// Requests as sets of positions, in a canonical order.
    fn grouped(executions: &[Execution], window_ms: i64) -> Vec<Vec<usize>> {
        let requests = group_requests(executions, window_ms);
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); requests.requests as usize];
        for (position, request) in requests.request_of.iter().enumerate() {
            groups[*request as usize].push(position);
        }
        groups.sort();
        groups
    }

    #[test]
    fn shards_of_one_request_are_one_whatever_their_order_and_took() {
        // Six shards started together; the slow ones log seconds later.
        let executions: Vec<Execution> = (0..6)
            .map(|shard| run(1, 10_000 + shard as i64, 500 * (6 - shard as i64), shard))
            .rev()
            .collect();
        assert_eq!(grouped(&executions, 1_000), [vec![0, 1, 2, 3, 4, 5]]);
    }

    #[test]
    fn queued_shards_chain_but_a_repeated_shard_starts_a_new_request() {
        let executions = [
            run(1, 0, 2_000, 0),
            run(1, 0, 2_000, 1),
            // queued behind shard 0: starts when it ends
            run(1, 2_010, 1_000, 2),
            // the same query again on the same shards
            run(1, 3_100, 2_000, 0),
            run(1, 3_100, 2_000, 1),
        ];
        assert_eq!(grouped(&executions, 500), [vec![0, 1, 2], vec![3, 4]]);
    }

    #[test]
    fn a_gap_longer_than_the_window_splits() {
        let executions = [run(1, 0, 100, 0), run(1, 700, 100, 1)];
        assert_eq!(grouped(&executions, 500), [vec![0], vec![1]]);
        assert_eq!(grouped(&executions, 600), [vec![0, 1]]);
    }

    #[test]
    fn other_keys_and_unkeyed_lines_never_join() {
        let mut unkeyed = run(1, 0, 100, 3);
        unkeyed.request_key = None;
        let executions = [run(1, 0, 100, 0), run(2, 0, 100, 1), unkeyed, unkeyed];
        assert_eq!(
            grouped(&executions, 1_000),
            [vec![0], vec![1], vec![2], vec![3]]
        );
    }

    #[test]
    fn concurrent_identical_requests_count_twice() {
        let executions = [
            run(1, 0, 900, 0),
            run(1, 5, 900, 0),
            run(1, 1, 800, 1),
            run(1, 6, 800, 1),
        ];
        let requests = group_requests(&executions, 1_000);
        assert_eq!(requests.requests, 2);
        assert_ne!(requests.request_of[0], requests.request_of[1]);
        assert_ne!(requests.request_of[2], requests.request_of[3]);
    }
}
