//! Reading a YAML configuration so that every problem is reported in one
//! run, each once, at its path in the file.
//!
//! serde stops at the first bad value. [`parse`] reads the text into a
//! [`serde_yaml::Value`], deserializes it, and on an error records the
//! problem, removes the value at fault (its default then applies) and tries
//! again, until the rest parses or nothing can be removed. A required field
//! removed this way makes its parent fail as "missing": that is a
//! consequence, not a new problem, so the parent is removed silently.
//! Semantic checks then run on what parsed; [`Parsed::add_checked`] drops
//! their findings about values already reported (an empty list whose only
//! entry was removed is not a second problem) and renumbers list positions
//! back to the file's.
//!
//! Pure; every binary of the workspace reads its config with it.

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One problem in the file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path in the file, e.g. `mappings[0].version.kind`; empty for
    /// the file as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(formatter, "{}", self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

/// Renders problems one per line, indented, for an error message.
pub fn problem_list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bound on parse attempts: each removes one value, so a file would need
/// this many mistakes to hit it.
const MAX_ATTEMPTS: usize = 200;

/// One step of a path: a key of a map or a position in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path as steps; rendered `a.b[2].c`.
type Steps = Vec<Step>;

fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Reads a rendered path back into steps (keys holding dots become several
/// keys, which render the same).
fn steps_of(path: &str) -> Steps {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (key, mut rest) = part
            .split_once('[')
            .map_or((part, ""), |(key, rest)| (key, rest));
        if !key.is_empty() {
            steps.push(Step::Key(key.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            match index.parse() {
                Ok(index) => steps.push(Step::Index(index)),
                Err(_) => steps.push(Step::Key(format!("[{index}]"))),
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

fn is_ancestor_or_same(ancestor: &[Step], path: &[Step]) -> bool {
    path.starts_with(ancestor)
}

/// Whether two paths are about the same value (one contains the other).
fn related(first: &[Step], second: &[Step]) -> bool {
    is_ancestor_or_same(first, second) || is_ancestor_or_same(second, first)
}

/// List entries removed while parsing, by the list's path in the file, so
/// later positions can be renumbered to the file's.
#[derive(Debug, Default)]
struct Removals {
    by_list: BTreeMap<String, Vec<usize>>,
}

impl Removals {
    /// The file's path of `current`, a path in the value after removals.
    fn original(&self, current: &[Step]) -> Steps {
        let mut original = Vec::with_capacity(current.len());
        for step in current {
            let step = match step {
                Step::Index(position) => {
                    let removed = self.by_list.get(&render(&original));
                    let is_removed =
                        |index: &usize| removed.is_some_and(|list| list.contains(index));
                    let index = (0..)
                        .filter(|index| !is_removed(index))
                        .nth(*position)
                        .unwrap_or(*position);
                    Step::Index(index)
                }
                key => key.clone(),
            };
            original.push(step);
        }
        original
    }

    fn record(&mut self, original: &[Step]) {
        if let Some((Step::Index(index), list)) = original.split_last() {
            self.by_list.entry(render(list)).or_default().push(*index);
        }
    }
}

/// The outcome of [`parse`].
#[derive(Debug)]
pub struct Parsed<T> {
    /// What parsed, bad values replaced by their defaults; `None` when the
    /// text is not YAML or a required part is unusable.
    pub value: Option<T>,
    /// Every problem found so far, in the order found.
    pub problems: Vec<ConfigProblem>,
    /// Paths (in the file) of the bad values found while parsing (unknown
    /// keys change no value, so they are not among them).
    reported: Vec<Steps>,
    removals: Removals,
}

impl<T> Parsed<T> {
    /// Adds problems found by checking [`Parsed::value`]: their paths are
    /// renumbered to the file's, and those about a value already reported
    /// (or about what contains it) are dropped as consequences.
    pub fn add_checked(&mut self, problems: impl IntoIterator<Item = ConfigProblem>) {
        for problem in problems {
            let original = self.removals.original(&steps_of(&problem.path));
            if self
                .reported
                .iter()
                .any(|reported| related(reported, &original))
            {
                continue;
            }
            self.problems.push(ConfigProblem {
                path: render(&original),
                message: problem.message,
            });
        }
    }

    /// The value when no problem was found, else every problem.
    pub fn into_result(self) -> Result<T, Vec<ConfigProblem>> {
        match self.value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => Err(self.problems),
        }
    }
}

/// Parses `text`, reporting every problem serde can find (unknown keys
/// included, whether the types deny them or not).
pub fn parse<T: DeserializeOwned>(text: &str) -> Parsed<T> {
    let mut parsed = Parsed {
        value: None,
        problems: Vec::new(),
        reported: Vec::new(),
        removals: Removals::default(),
    };
    let mut root: Value = match serde_yaml::from_str(text) {
        Ok(root) => root,
        Err(error) => {
            parsed
                .problems
                .push(ConfigProblem::new("", error.to_string()));
            return parsed;
        }
    };
    // Paths (in the file) of values removed; a "missing field" in one of
    // their parents is their consequence.
    let mut removed: Vec<Steps> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut unknown: Vec<Steps> = Vec::new();
        let attempt: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(root.clone(), &mut |path: serde_ignored::Path<'_>| {
                unknown.push(ignored_steps(&path))
            }),
        );
        for path in unknown {
            let problem =
                ConfigProblem::new(render(&parsed.removals.original(&path)), "unknown key");
            // seen again on every attempt
            if !parsed.problems.contains(&problem) {
                parsed.problems.push(problem);
            }
        }
        let error = match attempt {
            Ok(value) => {
                parsed.value = Some(value);
                return parsed;
            }
            Err(error) => error,
        };
        let current = error_steps(error.path());
        let original = parsed.removals.original(&current);
        let message = error.into_inner().to_string();
        let consequence = message.starts_with("missing field")
            && removed
                .iter()
                .any(|path| is_ancestor_or_same(&original, path));
        if !consequence {
            parsed
                .problems
                .push(ConfigProblem::new(render(&original), message));
            parsed.reported.push(original.clone());
        }
        if !remove(&mut root, &current) {
            return parsed;
        }
        parsed.removals.record(&original);
        removed.push(original);
    }
    parsed
}

fn error_steps(path: &serde_path_to_error::Path) -> Steps {
    use serde_path_to_error::Segment;
    let mut steps = Vec::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => steps.push(Step::Index(*index)),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                steps.push(Step::Key(key.clone()))
            }
            // inside an untracked value (e.g. a tagged enum): its container is at fault
            Segment::Unknown => break,
        }
    }
    steps
}

fn ignored_steps(path: &serde_ignored::Path<'_>) -> Steps {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut steps = ignored_steps(parent);
            steps.push(Step::Index(*index));
            steps
        }
        Path::Map { parent, key } => {
            let mut steps = ignored_steps(parent);
            steps.push(Step::Key(key.clone()));
            steps
        }
        // an Option or newtype level is not part of the file's path
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_steps(parent),
    }
}

/// Removes the value at `path`; false when there is nothing to remove (the
/// root, or a path that leads nowhere).
fn remove(root: &mut Value, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = root;
    for step in parents {
        let Some(child) = child(node, step) else {
            // the path runs into a value serde saw differently: drop that
            return false;
        };
        node = child;
    }
    let node = untagged(node);
    match (node, last) {
        (Value::Mapping(map), Step::Key(key)) => map.remove(key.as_str()).is_some(),
        (Value::Sequence(list), Step::Index(index)) if *index < list.len() => {
            list.remove(*index);
            true
        }
        _ => false,
    }
}

fn child<'v>(node: &'v mut Value, step: &Step) -> Option<&'v mut Value> {
    match (untagged(node), step) {
        (Value::Mapping(map), Step::Key(key)) => map.get_mut(key.as_str()),
        (Value::Sequence(list), Step::Index(index)) => list.get_mut(*index),
        _ => None,
    }
}

/// The value under a YAML tag (`!variant value`).
fn untagged(node: &mut Value) -> &mut Value {
    match node {
        Value::Tagged(tagged) => &mut tagged.value,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct File {
        name: String,
        #[serde(default)]
        workers: usize,
        #[serde(default)]
        ratio: Option<f64>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        label: String,
        #[serde(default)]
        kind: Kind,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        #[default]
        Plain,
        Fancy,
    }

    fn lines<T>(parsed: &Parsed<T>) -> Vec<String> {
        parsed.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_bad_value_is_reported_once_and_the_rest_parses() {
        let parsed: Parsed<File> = parse(
            "name: x\nworkers: -1\nratio: fast\ncolour: blue\nitems:\n  - {label: a, kind: fanci}\n  - {label: b, extra: 1}\n",
        );
        assert_eq!(
            lines(&parsed),
            [
                "workers: invalid value: integer `-1`, expected usize",
                "items[0].kind: unknown variant `fanci`, expected `plain` or `fancy`",
                "items[1].extra: unknown field `extra`, expected `label` or `kind`",
                "ratio: invalid type: string \"fast\", expected f64",
                "colour: unknown key",
            ]
        );
        let file = parsed.value.expect("the rest parses");
        assert_eq!((file.workers, file.ratio), (0, None));
        assert_eq!(file.items.len(), 2);
    }

    #[test]
    fn a_removed_required_value_is_not_reported_again_by_its_parents() {
        let mut parsed: Parsed<File> = parse(
            "name: x\nitems:\n  - {label: [1]}\n  - {label: ok, kind: fancy}\n  - {label: c, kind: 7}\n",
        );
        assert_eq!(
            lines(&parsed),
            [
                "items[0].label: invalid type: sequence, expected a string",
                "items[2].kind: invalid type: integer `7`, expected a Value::Tagged enum",
            ]
        );
        // a semantic check on what parsed: item 1 of the file is now at 0
        let file = parsed.value.as_ref().expect("parses");
        assert_eq!(file.items.len(), 2);
        parsed.add_checked([
            ConfigProblem::new("items[0].label", "must be longer"),
            ConfigProblem::new("items[1]", "about the bad kind again"),
            ConfigProblem::new("items", "must list two items"),
        ]);
        assert_eq!(parsed.problems.len(), 3);
        assert_eq!(
            parsed.problems[2].to_string(),
            "items[1].label: must be longer"
        );
    }

    #[test]
    fn a_missing_required_field_is_one_problem() {
        let parsed: Parsed<File> = parse("workers: 2\n");
        assert_eq!(lines(&parsed), ["missing field `name`"]);
        assert!(parsed.value.is_none());
        let parsed: Parsed<File> = parse("name: [unclosed\n");
        assert!(
            parsed.problems[0].message.contains("line 1"),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn paths_round_trip() {
        for path in [
            "a",
            "a.b[2].c",
            "x[0][1]",
            "kafka.options.enable.auto.commit",
        ] {
            assert_eq!(render(&steps_of(path)), path);
        }
        let mut removals = Removals::default();
        removals.record(&steps_of("m[0]"));
        removals.record(&steps_of("m[2]"));
        assert_eq!(render(&removals.original(&steps_of("m[0].x"))), "m[1].x");
        assert_eq!(render(&removals.original(&steps_of("m[1]"))), "m[3]");
    }
}
