use super::*;

const TICK: Duration = Duration::from_millis(10);

/// Heartbeats every 2 ticks (20 ms), election timeouts from 10 ticks: a
/// pause warns past 50 ms.
fn watch() -> (StallWatch, Arc<NodeMetrics>, Instant) {
    let metrics = Arc::new(NodeMetrics::default());
    let reporter = Arc::new(StallReporter::new(metrics.clone()));
    (
        StallWatch::new(reporter, TICK, 2, 10),
        metrics,
        Instant::now(),
    )
}

fn stalls(metrics: &NodeMetrics, kind: StallKind) -> u64 {
    let labels = StallLabels {
        kind: kind.label().to_owned(),
    };
    metrics.stalls.get_or_create(&labels).get()
}

fn ms(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds)
}

#[test]
fn a_tick_handled_late_past_half_an_election_timeout_warns() {
    let (mut watch, metrics, start) = watch();
    assert_eq!(watch.tick_handled(start, start + ms(50)), None);
    let stall = watch.tick_handled(start, start + ms(51)).expect("late");
    assert_eq!(stall.kind, StallKind::EventLoopLate);
    assert_eq!((stall.took, stall.expected), (ms(51), ms(50)));
    assert!(stall.to_string().starts_with(
        "the event loop handled its clock 51ms late (warns above 50ms): the process was not \
         scheduled"
    ));
    assert_eq!(stalls(&metrics, StallKind::EventLoopLate), 1);
    // A tick handled before it is due (clocks differ by a hair) is on time.
    assert_eq!(watch.tick_handled(start + ms(5), start), None);
}

#[test]
fn a_heartbeat_later_than_its_interval_by_half_an_election_timeout_warns() {
    let (mut watch, metrics, start) = watch();
    let peer = NodeId(2);
    // The first round of a term has nothing to be late against.
    assert_eq!(watch.heartbeat_sent(peer, Term(3), start), None);
    // 20 ms interval + 50 ms allowed.
    assert_eq!(watch.heartbeat_sent(peer, Term(3), start + ms(70)), None);
    let stall = watch
        .heartbeat_sent(peer, Term(3), start + ms(141))
        .expect("late");
    assert_eq!(stall.kind, StallKind::HeartbeatLate);
    assert_eq!(stall.took, ms(51));
    assert!(
        stall.to_string().starts_with(
            "leader failed to send out heartbeat on time: 51ms later than its interval (warns \
             above 50ms, half an election timeout); to n2, likely an overloaded CPU"
        ),
        "{stall}"
    );
    assert_eq!(stalls(&metrics, StallKind::HeartbeatLate), 1);
    // Each peer is timed on its own, and a new term starts afresh.
    assert_eq!(
        watch.heartbeat_sent(NodeId(3), Term(3), start + ms(500)),
        None
    );
    assert_eq!(watch.heartbeat_sent(peer, Term(4), start + ms(900)), None);
}

#[test]
fn a_late_heartbeat_after_a_slow_fdatasync_blames_the_disk() {
    let (mut watch, _, start) = watch();
    watch.reporter.fdatasync(ms(300), start);
    watch.heartbeat_sent(NodeId(2), Term(1), start);
    let stall = watch
        .heartbeat_sent(NodeId(2), Term(1), start + ms(400))
        .expect("late");
    assert!(
        stall
            .detail
            .contains("likely a slow disk: an fdatasync took 300ms"),
        "{stall}"
    );
    // The slow sync was taken into account once; the next late round is
    // put down to the CPU.
    let stall = watch
        .heartbeat_sent(NodeId(2), Term(1), start + ms(800))
        .expect("late");
    assert!(stall.detail.contains("overloaded CPU"), "{stall}");
}

#[test]
fn slow_fdatasyncs_and_applies_warn_past_etcds_thresholds() {
    let (watch, metrics, start) = watch();
    let reporter = &watch.reporter;
    assert_eq!(reporter.fdatasync(SLOW_FDATASYNC, start), None);
    let stall = reporter.fdatasync(ms(1500), start).expect("slow");
    assert_eq!(
        stall.to_string(),
        "slow fdatasync: took 1.5s, expected under 1s"
    );
    assert_eq!(reporter.applied(512, SLOW_APPLY, start), None);
    let stall = reporter.applied(512, ms(250), start).expect("slow");
    assert_eq!(
        stall.to_string(),
        "apply request took too long: 250ms, expected under 100ms (512 entries in one batch)"
    );
    assert_eq!(stalls(&metrics, StallKind::SlowFdatasync), 1);
    assert_eq!(stalls(&metrics, StallKind::SlowApply), 1);
}

#[test]
fn every_stall_is_counted_though_a_kind_is_logged_once_a_second() {
    let (watch, metrics, start) = watch();
    let reporter = &watch.reporter;
    let logged = |at: Instant| {
        let before = reporter.last_logged[StallKind::SlowApply.position()].load(Ordering::Relaxed);
        reporter.applied(1, ms(200), at);
        reporter.last_logged[StallKind::SlowApply.position()].load(Ordering::Relaxed) != before
    };
    assert!(logged(start));
    assert!(!logged(start + ms(999)));
    assert!(logged(start + ms(1000)));
    assert_eq!(stalls(&metrics, StallKind::SlowApply), 3);
}
