//! Tests of the pipeline runner.
//!
//! 1. Stages run in order: gates, sources, filters, scorers, selector, inline throttles.
//! 2. A filter's removed count and ids are recorded in the trace.
//! 3. A stage error surfaces as a typed `Error::Stage` naming the stage, keeping its class.
//! 4. Non-finite scores never take a slot and are reported.
//! 5. A gate throttle stops the request with a card and no items, before any source runs.
//! 6. Candidates proposed by two sources are deduplicated (first source wins).
//! 7. Inline cards are kept with positions inside the page.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use steerfeed_core::{
    Candidate, Card, CardKind, Error, ErrorClass, FeedContext, FeedRequest, Filter, Filtered,
    Pipeline, Reason, Result, Role, Scorer, Selector, Source, Throttle, ThrottleAction, Timestamp,
    User, UserId, Video, VideoId,
};

type Log = Arc<Mutex<Vec<String>>>;

fn ctx(limit: u32) -> FeedContext {
    let user = UserId::new("viewer").unwrap();
    FeedContext::new(
        FeedRequest::new(user.clone(), limit).unwrap(),
        User::new(user),
        Timestamp::UNIX_EPOCH,
    )
}

fn video(id: &str) -> Arc<Video> {
    Arc::new(Video::new(
        VideoId::new(id).unwrap(),
        UserId::new("creator").unwrap(),
        Timestamp::UNIX_EPOCH,
        10.0,
    ))
}

struct ListSource {
    name: &'static str,
    ids: Vec<&'static str>,
    log: Log,
}

impl Source for ListSource {
    fn fetch(&self, _: &FeedContext) -> Result<Vec<Candidate>> {
        self.log
            .lock()
            .unwrap()
            .push(format!("source:{}", self.name));
        Ok(self
            .ids
            .iter()
            .map(|id| Candidate::new(video(id), self.name, 1.0, Reason::Popular))
            .collect())
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// Removes ids that start with the given prefix.
struct PrefixFilter {
    prefix: &'static str,
    log: Log,
}

impl Filter for PrefixFilter {
    fn filter(&self, _: &FeedContext, c: Vec<Candidate>) -> Result<Filtered> {
        self.log.lock().unwrap().push("filter".into());
        Ok(Filtered::partition(c, |c| {
            !c.id().as_str().starts_with(self.prefix)
        }))
    }
    fn name(&self) -> &'static str {
        "prefix"
    }
}

/// Scores by a table; ids not in it get NaN.
struct TableScorer {
    table: Vec<(&'static str, f32)>,
    log: Log,
}

impl Scorer for TableScorer {
    fn score(&self, _: &FeedContext, candidates: &mut [Candidate]) -> Result<()> {
        self.log.lock().unwrap().push("scorer".into());
        for c in candidates {
            c.score = self
                .table
                .iter()
                .find(|(id, _)| *id == c.id().as_str())
                .map_or(f32::NAN, |(_, s)| *s);
        }
        Ok(())
    }
}

struct LoggingSelector(Log);

impl Selector for LoggingSelector {
    fn select(&self, _: &FeedContext, c: Vec<Candidate>, limit: usize) -> Result<Vec<Candidate>> {
        self.0.lock().unwrap().push("selector".into());
        Ok(c.into_iter().take(limit).collect())
    }
}

struct FixedThrottle {
    action: ThrottleAction,
    log: Log,
    name: &'static str,
}

impl Throttle for FixedThrottle {
    fn check(&self, _: &FeedContext, page: &[Candidate]) -> Result<ThrottleAction> {
        self.log
            .lock()
            .unwrap()
            .push(format!("throttle:{}:{}", self.name, page.len()));
        Ok(self.action.clone())
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

struct FailingSource;

impl Source for FailingSource {
    fn fetch(&self, _: &FeedContext) -> Result<Vec<Candidate>> {
        Err(Error::WrongDimension {
            field: "interest",
            expected: 384,
            got: 3,
        })
    }
    fn name(&self) -> &'static str {
        "failing"
    }
}

fn card(kind: CardKind, position: usize) -> Card {
    Card {
        kind,
        position,
        message: format!("{kind:?}"),
    }
}

fn full_pipeline(log: &Log, gate: ThrottleAction) -> Pipeline {
    Pipeline::builder()
        .gate(FixedThrottle {
            action: gate,
            log: log.clone(),
            name: "gate",
        })
        .source(ListSource {
            name: "a",
            ids: vec!["v1", "x2", "v3", "v4"],
            log: log.clone(),
        })
        .source(ListSource {
            name: "b",
            ids: vec!["v3", "v5", "x6"],
            log: log.clone(),
        })
        .filter(PrefixFilter {
            prefix: "x",
            log: log.clone(),
        })
        .scorer(TableScorer {
            table: vec![("v1", 0.1), ("v3", 0.9), ("v4", 0.5)],
            log: log.clone(),
        })
        .selector(LoggingSelector(log.clone()))
        .inline(FixedThrottle {
            action: ThrottleAction::Insert(card(CardKind::Checkin, 99)),
            log: log.clone(),
            name: "inline",
        })
        .build()
        .unwrap()
}

#[test]
fn stages_run_in_order_and_the_page_is_sorted_by_score() {
    let log = Log::default();
    let out = full_pipeline(&log, ThrottleAction::Pass)
        .run(&ctx(10))
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "throttle:gate:0",
            "source:a",
            "source:b",
            "filter",
            "scorer",
            "selector",
            "throttle:inline:3"
        ]
    );
    let ids: Vec<&str> = out.items.iter().map(|c| c.id().as_str()).collect();
    assert_eq!(ids, vec!["v3", "v4", "v1"]);
    assert!(!out.stopped);
    let roles: Vec<Role> = out.trace.stages.iter().map(|s| s.role).collect();
    assert_eq!(roles.first(), Some(&Role::Throttle));
    assert_eq!(roles.last(), Some(&Role::Throttle));
}

#[test]
fn a_filter_records_what_it_removed() {
    let log = Log::default();
    let out = full_pipeline(&log, ThrottleAction::Pass)
        .run(&ctx(10))
        .unwrap();
    let report = out.trace.stage("prefix").unwrap();
    assert_eq!(report.role, Role::Filter);
    assert_eq!(report.input, 6, "v1 x2 v3 v4 from a, v5 x6 new from b");
    assert_eq!(report.output, 4);
    let removed: Vec<&str> = report.removed.iter().map(|v| v.as_str()).collect();
    assert_eq!(removed, vec!["x2", "x6"]);
    assert_eq!(out.trace.stage("a").unwrap().output, 4);
    assert_eq!(out.trace.stage("b").unwrap().output, 3);
}

#[test]
fn non_finite_scores_never_take_a_slot() {
    let log = Log::default();
    let out = full_pipeline(&log, ThrottleAction::Pass)
        .run(&ctx(10))
        .unwrap();
    assert!(out.items.iter().all(|c| c.score.is_finite()));
    assert!(out.items.iter().all(|c| c.id().as_str() != "v5"));
    let guard = out
        .trace
        .stage(steerfeed_core::pipeline::NON_FINITE_GUARD)
        .unwrap();
    assert_eq!(guard.removed.len(), 1);
    assert_eq!(guard.removed[0].as_str(), "v5");
}

#[test]
fn a_stage_error_surfaces_as_a_typed_error() {
    let err = Pipeline::builder()
        .source(FailingSource)
        .build()
        .unwrap()
        .run(&ctx(5))
        .unwrap_err();
    match &err {
        Error::Stage { stage, source } => {
            assert_eq!(*stage, "failing");
            assert!(matches!(**source, Error::WrongDimension { got: 3, .. }));
        }
        other => panic!("expected a stage error, got {other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::InvalidInput);
}

#[test]
fn a_gate_stops_the_request_before_any_source() {
    let log = Log::default();
    let out = full_pipeline(&log, ThrottleAction::Stop(card(CardKind::Bedtime, 7)))
        .run(&ctx(10))
        .unwrap();
    assert!(out.stopped);
    assert!(out.items.is_empty());
    assert_eq!(out.cards.len(), 1);
    assert_eq!(out.cards[0].kind, CardKind::Bedtime);
    assert_eq!(out.cards[0].position, 0);
    assert_eq!(*log.lock().unwrap(), vec!["throttle:gate:0"]);
}

#[test]
fn candidates_are_deduplicated_and_cards_stay_inside_the_page() {
    let log = Log::default();
    let out = full_pipeline(&log, ThrottleAction::Pass)
        .run(&ctx(2))
        .unwrap();
    assert_eq!(out.items.len(), 2);
    let v3: Vec<_> = out
        .items
        .iter()
        .filter(|c| c.id().as_str() == "v3")
        .collect();
    assert_eq!(v3.len(), 1);
    assert_eq!(v3[0].source, "a", "first source wins");
    assert_eq!(out.cards.len(), 1);
    assert_eq!(out.cards[0].position, 2);
}

#[test]
fn a_pipeline_needs_a_source() {
    assert!(Pipeline::builder().build().is_err());
}

#[test]
fn the_default_name_is_the_type_name() {
    struct Unnamed;
    impl Source for Unnamed {
        fn fetch(&self, _: &FeedContext) -> Result<Vec<Candidate>> {
            Ok(Vec::new())
        }
    }
    assert_eq!(Unnamed.name(), "Unnamed");
}
