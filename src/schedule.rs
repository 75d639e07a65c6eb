//! Which stage to start next, and which never to start: the decisions of `pipe run`, with no
//! threads, processes or output, so that they can be tested on their own and driven by any
//! executor (threads today).
//!
//! A stage starts once every upstream stage has completed, a job is free (`-j`) and, if it
//! uses the accelerator, so is an accelerator slot. A stage whose upstream failed or was
//! skipped is skipped. Without `--keep-going` the first failure stops the run: stages already
//! running finish, and no other stage starts.

use std::collections::BTreeMap;
use std::fmt;

/// A stage as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    /// Upstream stages, each one of the stages given before this one.
    pub deps: Vec<String>,
    /// Takes one of the accelerator slots while it runs.
    pub uses_accelerator: bool,
}

/// What the executor is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run this stage, then report it with [`Scheduler::finished`].
    Start(String),
    /// This stage will not run.
    Skip { stage: String, reason: SkipReason },
}

/// Why a stage will not run; its `Display` is the reason `pipe run` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// This upstream stage failed or was skipped.
    Upstream(String),
    /// An earlier stage failed, and the run is not `--keep-going`.
    Stopped,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Upstream(stage) => write!(f, "upstream `{stage}` did not complete"),
            SkipReason::Stopped => f.write_str(
                "not started: an earlier stage failed (use --keep-going to run independent stages)",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
}

/// The state of one run: each stage's progress, and the jobs and accelerator slots in use.
#[derive(Debug)]
pub struct Scheduler {
    /// In the order given: a topological order, in which events and reports come.
    stages: Vec<Stage>,
    states: Vec<State>,
    index: BTreeMap<String, usize>,
    jobs: usize,
    accelerator_slots: usize,
    keep_going: bool,
    running: usize,
    accelerators_in_use: usize,
    /// A stage failed and the run is not `--keep-going`: start nothing more.
    stopped: bool,
}

impl Scheduler {
    /// `stages` must be in a topological order (as `Spec::stages` is), each dep naming one of
    /// them. `jobs` and `accelerator_slots` count from 1: with none, nothing could start.
    pub fn new(
        stages: impl IntoIterator<Item = Stage>,
        jobs: usize,
        accelerator_slots: usize,
        keep_going: bool,
    ) -> Self {
        let stages: Vec<Stage> = stages.into_iter().collect();
        let index: BTreeMap<String, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        debug_assert!(
            stages
                .iter()
                .enumerate()
                .all(|(i, s)| s.deps.iter().all(|d| index.get(d).is_some_and(|&j| j < i))),
            "stages are not in a topological order"
        );
        Self {
            states: vec![State::Pending; stages.len()],
            stages,
            index,
            jobs: jobs.max(1),
            accelerator_slots: accelerator_slots.max(1),
            keep_going,
            running: 0,
            accelerators_in_use: 0,
            stopped: false,
        }
    }

    /// The stages to skip and to start now, in the order the stages were given. Each stage
    /// comes out once, in one event, over the whole run.
    pub fn poll(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        // One pass suffices: in a topological order a stage comes after everything it waits on.
        for i in 0..self.stages.len() {
            if self.states[i] != State::Pending {
                continue;
            }
            let stage = &self.stages[i];
            let upstream_failed = stage
                .deps
                .iter()
                .find(|d| matches!(self.state_of(d), Some(State::Failed | State::Skipped)));
            let reason = match upstream_failed {
                Some(d) => Some(SkipReason::Upstream(d.clone())),
                None if self.stopped => Some(SkipReason::Stopped),
                None => None,
            };
            if let Some(reason) = reason {
                events.push(Event::Skip {
                    stage: stage.name.clone(),
                    reason,
                });
                self.states[i] = State::Skipped;
                continue;
            }
            let ready = stage
                .deps
                .iter()
                .all(|d| self.state_of(d) == Some(State::Completed));
            let accelerator_free = self.accelerators_in_use < self.accelerator_slots;
            if !ready || self.running >= self.jobs || (stage.uses_accelerator && !accelerator_free)
            {
                continue;
            }
            events.push(Event::Start(stage.name.clone()));
            self.running += 1;
            self.accelerators_in_use += usize::from(stage.uses_accelerator);
            self.states[i] = State::Running;
        }
        events
    }

    /// A started stage has ended: `completed` if its artifact is there for its dependents.
    /// Frees its job (and accelerator slot); call [`Scheduler::poll`] next.
    pub fn finished(&mut self, stage: &str, completed: bool) {
        let Some(&i) = self.index.get(stage) else {
            debug_assert!(false, "`{stage}` is not a stage of this run");
            return;
        };
        if self.states[i] != State::Running {
            debug_assert!(false, "`{stage}` finished without having started");
            return;
        }
        self.states[i] = if completed {
            State::Completed
        } else {
            State::Failed
        };
        self.running -= 1;
        self.accelerators_in_use -= usize::from(self.stages[i].uses_accelerator);
        self.stopped |= !completed && !self.keep_going;
    }

    /// How many started stages have not yet finished: while none have, there is nothing to
    /// wait for.
    pub fn in_flight(&self) -> usize {
        self.running
    }

    /// Every stage has finished or been skipped.
    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|s| !matches!(s, State::Pending | State::Running))
    }

    /// Per-stage values (reports) in the order the stages were given, whatever order they
    /// finished in; a stage without one is left out.
    pub fn in_order<T>(&self, mut by_stage: BTreeMap<String, T>) -> Vec<T> {
        self.stages
            .iter()
            .filter_map(|s| by_stage.remove(&s.name))
            .collect()
    }

    fn state_of(&self, stage: &str) -> Option<State> {
        self.index.get(stage).map(|&i| self.states[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOPPED: &str =
        "not started: an earlier stage failed (use --keep-going to run independent stages)";

    fn stage(name: &str, deps: &[&str], uses_accelerator: bool) -> Stage {
        Stage {
            name: name.to_string(),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            uses_accelerator,
        }
    }

    fn cpu(name: &str, deps: &[&str]) -> Stage {
        stage(name, deps, false)
    }

    fn gpu(name: &str, deps: &[&str]) -> Stage {
        stage(name, deps, true)
    }

    fn starts(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Start(s) => Some(s.as_str()),
                Event::Skip { .. } => None,
            })
            .collect()
    }

    fn skips(events: &[Event]) -> Vec<(&str, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Skip { stage, reason } => Some((stage.as_str(), reason.to_string())),
                Event::Start(_) => None,
            })
            .collect()
    }

    /// What happened to each stage, as `pipe run` would report it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Outcome {
        Completed,
        Failed,
        Skipped(String),
    }

    /// Drive a run to its end, finishing the most recently started stage first (so stages
    /// finish out of the given order), failing those in `failing`. Returns the outcomes in
    /// report order and the order in which stages ended.
    fn drive(mut s: Scheduler, failing: &[&str]) -> (Vec<(String, Outcome)>, Vec<String>) {
        let mut outcomes = BTreeMap::new();
        let mut ended = Vec::new();
        let mut running: Vec<String> = Vec::new();
        loop {
            for event in s.poll() {
                match event {
                    Event::Start(name) => running.push(name),
                    Event::Skip { stage, reason } => {
                        ended.push(stage.clone());
                        outcomes
                            .insert(stage.clone(), (stage, Outcome::Skipped(reason.to_string())));
                    }
                }
            }
            assert_eq!(s.in_flight(), running.len());
            let Some(name) = running.pop() else { break };
            let completed = !failing.contains(&name.as_str());
            s.finished(&name, completed);
            let outcome = if completed {
                Outcome::Completed
            } else {
                Outcome::Failed
            };
            ended.push(name.clone());
            outcomes.insert(name.clone(), (name, outcome));
        }
        assert!(s.is_done(), "nothing is left pending when nothing runs");
        (s.in_order(outcomes), ended)
    }

    #[test]
    fn independent_stages_start_up_to_the_job_limit() {
        let stages = ["a", "b", "c", "d"].map(|n| cpu(n, &[]));
        let mut s = Scheduler::new(stages, 2, 1, false);
        assert_eq!(starts(&s.poll()), ["a", "b"]);
        assert_eq!(s.poll(), [], "no job is free");
        s.finished("b", true);
        assert_eq!(starts(&s.poll()), ["c"]);
        s.finished("a", true);
        s.finished("c", true);
        assert_eq!(starts(&s.poll()), ["d"]);
        assert!(!s.is_done());
        s.finished("d", true);
        assert!(s.is_done());
        assert_eq!(s.poll(), []);
    }

    #[test]
    fn no_job_limit_below_one() {
        let mut s = Scheduler::new([cpu("a", &[]), cpu("b", &[])], 0, 1, false);
        assert_eq!(starts(&s.poll()), ["a"]);
    }

    #[test]
    fn a_stage_waits_for_all_its_upstream_stages() {
        let stages = [cpu("a", &[]), cpu("b", &[]), cpu("c", &["a", "b"])];
        let mut s = Scheduler::new(stages, 4, 1, false);
        assert_eq!(starts(&s.poll()), ["a", "b"]);
        s.finished("a", true);
        assert_eq!(s.poll(), []);
        s.finished("b", true);
        assert_eq!(starts(&s.poll()), ["c"]);
    }

    #[test]
    fn accelerator_stages_never_run_two_at_once() {
        let stages = [
            gpu("g1", &[]),
            cpu("c", &[]),
            gpu("g2", &[]),
            gpu("g3", &[]),
        ];
        let mut s = Scheduler::new(stages, 4, 1, false);
        assert_eq!(
            starts(&s.poll()),
            ["g1", "c"],
            "a free job does not start a second accelerator stage"
        );
        s.finished("c", true);
        assert_eq!(s.poll(), []);
        s.finished("g1", true);
        assert_eq!(starts(&s.poll()), ["g2"]);
        s.finished("g2", false);
        // Without --keep-going the failure stops the run; with it, g3 gets the freed slot.
        assert_eq!(skips(&s.poll()), [("g3", STOPPED.to_string())]);

        let stages = [gpu("g1", &[]), gpu("g2", &[])];
        let mut s = Scheduler::new(stages, 4, 1, true);
        assert_eq!(starts(&s.poll()), ["g1"]);
        s.finished("g1", false);
        assert_eq!(starts(&s.poll()), ["g2"], "a failed stage frees its slot");
    }

    #[test]
    fn more_accelerator_slots_run_more_accelerator_stages() {
        let stages = [gpu("g1", &[]), gpu("g2", &[]), gpu("g3", &[])];
        let mut s = Scheduler::new(stages, 4, 2, false);
        assert_eq!(starts(&s.poll()), ["g1", "g2"]);
        s.finished("g2", true);
        assert_eq!(starts(&s.poll()), ["g3"]);
    }

    #[test]
    fn a_failure_skips_every_descendant_naming_its_upstream() {
        // a → b → c, and d after both b and x.
        let stages = [
            cpu("a", &[]),
            cpu("x", &[]),
            cpu("b", &["a"]),
            cpu("c", &["b"]),
            cpu("d", &["x", "b"]),
        ];
        let (outcomes, _) = drive(Scheduler::new(stages, 1, 1, true), &["a"]);
        let upstream = |d: &str| Outcome::Skipped(format!("upstream `{d}` did not complete"));
        assert_eq!(
            outcomes,
            [
                ("a".to_string(), Outcome::Failed),
                ("x".to_string(), Outcome::Completed),
                ("b".to_string(), upstream("a")),
                ("c".to_string(), upstream("b")),
                ("d".to_string(), upstream("b")),
            ]
        );
    }

    #[test]
    fn without_keep_going_a_failure_starts_nothing_more_but_running_stages_finish() {
        // jobs 2: a and b run together; a fails while b runs.
        let stages = [
            cpu("a", &[]),
            cpu("b", &[]),
            cpu("c", &[]),
            cpu("d", &["c"]),
        ];
        let mut s = Scheduler::new(stages, 2, 1, false);
        assert_eq!(starts(&s.poll()), ["a", "b"]);
        s.finished("a", false);
        let events = s.poll();
        assert_eq!(starts(&events), Vec::<&str>::new());
        assert_eq!(
            skips(&events),
            [
                ("c", STOPPED.to_string()),
                ("d", "upstream `c` did not complete".to_string()),
            ],
            "an upstream skipped for the stop is named as the reason downstream"
        );
        assert!(!s.is_done(), "b is still running");
        assert_eq!(s.in_flight(), 1);
        s.finished("b", true);
        assert_eq!(s.poll(), []);
        assert!(s.is_done());
    }

    #[test]
    fn without_keep_going_stages_waiting_on_a_running_one_are_not_started() {
        let stages = [cpu("a", &[]), cpu("b", &[]), cpu("c", &["b"])];
        let mut s = Scheduler::new(stages, 2, 1, false);
        assert_eq!(starts(&s.poll()), ["a", "b"]);
        s.finished("a", false);
        assert_eq!(skips(&s.poll()), [("c", STOPPED.to_string())]);
        s.finished("b", true);
        assert_eq!(s.poll(), []);
    }

    #[test]
    fn with_keep_going_independent_branches_continue() {
        let stages = [
            cpu("a", &[]),
            cpu("b", &["a"]),
            cpu("c", &[]),
            cpu("d", &["c"]),
        ];
        let (outcomes, _) = drive(Scheduler::new(stages.clone(), 1, 1, true), &["a"]);
        assert_eq!(
            outcomes,
            [
                ("a".to_string(), Outcome::Failed),
                (
                    "b".to_string(),
                    Outcome::Skipped("upstream `a` did not complete".to_string())
                ),
                ("c".to_string(), Outcome::Completed),
                ("d".to_string(), Outcome::Completed),
            ]
        );
        // The same run without --keep-going stops at a.
        let (outcomes, _) = drive(Scheduler::new(stages, 1, 1, false), &["a"]);
        assert_eq!(
            outcomes[2],
            ("c".to_string(), Outcome::Skipped(STOPPED.to_string()))
        );
    }

    #[test]
    fn reports_come_in_the_given_order_whatever_order_stages_end_in() {
        let stages = [
            cpu("a", &[]),
            cpu("b", &[]),
            cpu("c", &["a"]),
            cpu("d", &["b"]),
            cpu("e", &[]),
        ];
        let (outcomes, ended) = drive(Scheduler::new(stages, 3, 1, true), &["b"]);
        let names: Vec<&str> = outcomes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_ne!(ended, names, "the run itself ended stages in another order");
    }
}
