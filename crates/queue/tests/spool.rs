//! Behaviour of the spool through its public API: durability across reopen, per-recipient
//! states, scheduling, bounces, quarantine, admin actions, compaction.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{
    AdminAction, AdminRequest, DeadPolicy, DeliveryError, FailureScope, Filter, LaneStatus,
    QueueState, QueueView, RcptState, RetryPolicy, Route, Spool, SpoolOptions, StatusCode,
};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000 + secs)
}

fn addr(s: &str) -> EmailAddress {
    s.parse().unwrap()
}

fn options() -> SpoolOptions {
    SpoolOptions {
        retry: RetryPolicy {
            retry: vec![Duration::from_secs(60), Duration::from_secs(600)],
            max_lifetime: Duration::from_secs(86_400),
        },
        quarantine_after: 2,
        attempt_timeout: Duration::from_secs(30),
        lanes: HashMap::from([(Lane::Legacy.into(), 2)]),
        default_concurrency: 10,
        dead: DeadPolicy {
            dead_after: 2,
            cooloff: Duration::from_secs(300),
            max_cooloff: Duration::from_secs(3600),
        },
        reporting_mta: "gw.example.com".to_owned(),
        ..SpoolOptions::default()
    }
}

fn open(dir: &Path) -> Spool {
    Spool::open(dir, options()).unwrap()
}

fn body(n: usize) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: test {n}\r\n\r\nhello {n}\r\n").into_bytes()
}

/// Queues a message from `sender` with one recipient per (address, lane).
fn enqueue(spool: &Spool, sender: &str, rcpts: &[(&str, Lane)], at: SystemTime) -> QueueId {
    let envelope = Envelope {
        sender: sender.parse::<ReversePath>().unwrap(),
        recipients: rcpts.iter().map(|(a, _)| addr(a)).collect(),
    };
    let routes: Vec<Route> = rcpts.iter().map(|(a, l)| Route::new(*l, addr(a))).collect();
    spool.enqueue(&envelope, &routes, &body(1), at).unwrap()
}

/// Queues a message for one recipient in `lane` under the ledger key `key`.
fn enqueue_keyed(spool: &Spool, key: &str, lane: Lane) -> QueueId {
    let rcpt = addr("keyed@example.com");
    let envelope = Envelope {
        sender: "a@example.com".parse::<ReversePath>().unwrap(),
        recipients: vec![rcpt.clone()],
    };
    spool
        .enqueue_keyed(
            QueueId::generate(),
            &[key],
            &envelope,
            &[Route::new(lane, rcpt)],
            &body(1),
            t(0),
        )
        .unwrap()
}

fn state_of(spool: &Spool, id: QueueId, now: SystemTime) -> Vec<RcptState> {
    spool
        .show(id, now)
        .unwrap()
        .info
        .recipients
        .iter()
        .map(|r| r.state)
        .collect()
}

#[test]
fn acknowledged_mail_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (id, bytes) = {
        let spool = open(dir.path());
        let id = enqueue(
            &spool,
            "a@example.com",
            &[("b@example.com", Lane::Modern)],
            t(0),
        );
        (id, spool.show(id, t(0)).unwrap().body)
    };
    assert_eq!(bytes, body(1));
    let spool = open(dir.path());
    assert!(
        spool.recovery_report().is_clean(),
        "{:?}",
        spool.recovery_report()
    );
    assert_eq!(spool.len(), 1);
    let detail = spool.show(id, t(1)).unwrap();
    assert_eq!(detail.body, body(1));
    assert_eq!(detail.info.sender, "a@example.com");
    assert_eq!(detail.info.queue_name, QueueState::Active);
    assert!(!detail.history.is_empty());
}

#[test]
fn delivered_message_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "a@example.com",
        &[
            ("b@example.com", Lane::Modern),
            ("c@example.com", Lane::Legacy),
        ],
        t(0),
    );
    let leases = spool.lease(Lane::Modern, 10, t(1)).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].queue_id, id);
    assert_eq!(spool.lease_body(&leases[0]).unwrap(), body(1));
    let done = spool.complete(leases[0].clone(), &[Ok(())], t(2)).unwrap();
    assert!(!done.finished);
    assert_eq!(
        state_of(&spool, id, t(2)),
        [RcptState::Delivered, RcptState::Pending]
    );
    let leases = spool.lease(Lane::Legacy, 10, t(3)).unwrap();
    let done = spool.complete(leases[0].clone(), &[Ok(())], t(4)).unwrap();
    assert!(done.finished && done.bounce.is_none());
    assert!(spool.is_empty());
    drop(spool);
    assert!(open(dir.path()).is_empty());
}

#[test]
fn transient_failure_defers_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    let lease = spool.lease(Lane::Modern, 1, t(0)).unwrap().remove(0);
    let err = DeliveryError::transient(FailureScope::Recipient, "mailbox busy")
        .with_status(StatusCode::new(4, 2, 1).unwrap());
    spool.complete(lease, &[Err(err)], t(10)).unwrap();
    let info = spool.show(id, t(10)).unwrap().info;
    let r = &info.recipients[0];
    assert_eq!((r.state, r.attempts), (RcptState::Deferred, 1));
    assert_eq!(r.status.as_deref(), Some("4.2.1"));
    assert_eq!(info.queue_name, QueueState::Deferred);
    // First retry after 60 s +-20 %.
    let next = r.next_attempt.unwrap();
    let base = t(10).duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!((base + 47..=base + 72).contains(&next), "{next} vs {base}");
    assert!(spool.lease(Lane::Modern, 1, t(40)).unwrap().is_empty());
    let lease = spool.lease(Lane::Modern, 1, t(100)).unwrap().remove(0);
    assert_eq!(lease.recipients[0].attempts, 1);
    // Survives a restart with the same schedule.
    spool.abandon(lease).unwrap();
    drop(spool);
    let spool = open(dir.path());
    assert_eq!(spool.lease(Lane::Modern, 1, t(100)).unwrap().len(), 1);
}

#[test]
fn permanent_failure_bounces_to_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &[
            ("bob@example.com", Lane::Legacy),
            ("carol@example.com", Lane::Legacy),
        ],
        t(0),
    );
    let lease = spool.lease(Lane::Legacy, 1, t(1)).unwrap().remove(0);
    assert_eq!(lease.recipients.len(), 2);
    let no_user = DeliveryError::permanent(FailureScope::Recipient, "no such user")
        .with_status(StatusCode::new(5, 1, 1).unwrap())
        .with_diagnostic("550 5.1.1 no such user");
    let done = spool
        .complete(lease, &[Err(no_user), Ok(())], t(2))
        .unwrap();
    let bounce = done.bounce.expect("a bounce");
    assert!(
        done.finished,
        "the original leaves once its bounce is queued"
    );
    assert!(spool.show(id, t(2)).is_err());

    // The bounce waits for the router, from <> to the original sender.
    let unrouted = spool.unrouted(10);
    assert_eq!(unrouted.len(), 1);
    assert_eq!(unrouted[0].queue_id, bounce);
    assert_eq!(unrouted[0].sender, ReversePath::Null);
    assert_eq!(unrouted[0].recipients, [(0, addr("alice@example.com"))]);
    let dsn = String::from_utf8(spool.show(bounce, t(2)).unwrap().body).unwrap();
    for needle in [
        "report-type=delivery-status",
        "Final-Recipient: rfc822; bob@example.com",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user",
        "Subject: test 1",
    ] {
        assert!(dsn.contains(needle), "{needle} missing in {dsn}");
    }
    assert!(
        !dsn.contains("carol@"),
        "only failed recipients are reported"
    );

    spool
        .route(
            bounce,
            &[(0, Route::new(Lane::Modern, addr("alice@example.com")))],
            t(3),
        )
        .unwrap();
    assert!(spool.unrouted(10).is_empty());
    // The bounce itself fails: no bounce of a bounce.
    let lease = spool.lease(Lane::Modern, 1, t(4)).unwrap().remove(0);
    assert_eq!(lease.bounce_of, Some(id));
    assert_eq!(lease.sender, ReversePath::Null);
    let gone = DeliveryError::permanent(FailureScope::Recipient, "gone");
    let done = spool.complete(lease, &[Err(gone)], t(5)).unwrap();
    assert!(done.finished && done.bounce.is_none());
    assert!(spool.is_empty());
}

/// Fails every recipient of the next lease of `lane` with 5.1.1; returns the bounce queued.
fn fail_next(spool: &Spool, lane: Lane, at: SystemTime) -> Option<QueueId> {
    let lease = spool.lease(lane, 1, at).unwrap().remove(0);
    let results: Vec<_> = lease
        .recipients
        .iter()
        .map(|_| {
            Err(
                DeliveryError::permanent(FailureScope::Recipient, "no such user")
                    .with_status(StatusCode::new(5, 1, 1).unwrap()),
            )
        })
        .collect();
    spool.complete(lease, &results, at).unwrap().bounce
}

// Issue 13: no backscatter, no loops.
#[test]
fn bounces_to_robots_auto_submitted_mail_and_second_bounces_are_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let robot = enqueue(
        &spool,
        "MAILER-DAEMON@far.test",
        &[("bob@example.com", Lane::Legacy)],
        t(0),
    );
    let bounce = fail_next(&spool, Lane::Legacy, t(1)).expect("queued, to be suppressed");
    let listed = spool.list(&Filter::default(), t(1));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].queue_id, bounce.to_string());
    assert!(spool.show(robot, t(1)).is_err(), "the original leaves");
    assert!(
        spool.unrouted(10).is_empty(),
        "a suppressed bounce is never routed"
    );
    assert_eq!(listed[0].recipients[0].destination, Lane::Suppressed);
    let lease = spool.lease(Lane::Suppressed, 1, t(2)).unwrap().remove(0);
    assert_eq!(lease.bounce_of, Some(robot));
    let text = String::from_utf8(spool.lease_body(&lease).unwrap()).unwrap();
    assert_eq!(
        ccgate_queue::suppressed_reason(text.as_bytes()).as_deref(),
        Some("the sender is MAILER-DAEMON, a mail system's address"),
        "{text}"
    );
    let done = spool
        .complete(
            lease,
            &[Err(DeliveryError::permanent(
                FailureScope::Recipient,
                Lane::Suppressed,
            ))],
            t(3),
        )
        .unwrap();
    assert!(
        done.finished && done.bounce.is_none(),
        "no bounce of a bounce"
    );
    assert!(spool.is_empty());

    // Auto-Submitted mail.
    let envelope = Envelope {
        sender: "list@example.org".parse::<ReversePath>().unwrap(),
        recipients: vec![addr("carol@example.com")],
    };
    spool
        .enqueue(
            &envelope,
            &[Route::new(Lane::Legacy, addr("carol@example.com"))],
            b"From: list@example.org\r\nAuto-Submitted: auto-generated\r\n\r\nx\r\n",
            t(10),
        )
        .unwrap();
    fail_next(&spool, Lane::Legacy, t(11)).expect("queued, to be suppressed");
    assert!(spool.unrouted(10).is_empty());
    let lease = spool.lease(Lane::Suppressed, 1, t(12)).unwrap().remove(0);
    let text = spool.lease_body(&lease).unwrap();
    assert_eq!(
        ccgate_queue::suppressed_reason(&text).as_deref(),
        Some("the message is Auto-Submitted: auto-generated")
    );
    spool
        .complete(
            lease,
            &[Err(DeliveryError::permanent(FailureScope::Recipient, "x"))],
            t(13),
        )
        .unwrap();

    // One message, two failures at different times: one bounce, the second suppressed.
    let two = enqueue(
        &spool,
        "alice@example.com",
        &[
            ("bob@example.com", Lane::Legacy),
            ("dan@example.com", Lane::Modern),
        ],
        t(20),
    );
    fail_next(&spool, Lane::Legacy, t(21)).expect("the first bounce");
    assert_eq!(
        spool.unrouted(10).len(),
        1,
        "the first bounce is routed and sent"
    );
    fail_next(&spool, Lane::Modern, t(22)).expect("queued, to be suppressed");
    assert!(spool.show(two, t(22)).is_err());
    assert_eq!(spool.unrouted(10).len(), 1, "the second is not routed");
    let lease = spool.lease(Lane::Suppressed, 1, t(23)).unwrap().remove(0);
    assert_eq!(lease.bounce_of, Some(two));
    assert_eq!(
        ccgate_queue::suppressed_reason(&spool.lease_body(&lease).unwrap()).as_deref(),
        Some("a bounce was already sent for this message")
    );
}

#[test]
fn expired_mail_fails_and_is_bounced() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    let lease = spool.lease(Lane::Modern, 1, t(0)).unwrap().remove(0);
    let err = DeliveryError::transient(FailureScope::Recipient, "try later");
    spool.complete(lease, &[Err(err)], t(10)).unwrap();
    // Past max_lifetime (1 day) at its next due time: fails without an attempt.
    assert!(spool.lease(Lane::Modern, 1, t(90_000)).unwrap().is_empty());
    let tick = spool.tick(t(90_001)).unwrap();
    assert_eq!(tick.bounces.len(), 1);
    let bounce = spool.show(tick.bounces[0], t(90_001)).unwrap();
    let text = String::from_utf8(bounce.body).unwrap();
    assert!(text.contains("Status: 4.4.7"), "{text}");
    assert!(text.contains("expired after 1d"), "{text}");
    assert_eq!(spool.len(), 1, "only the bounce is left");
}

#[test]
fn lanes_have_concurrency_limits() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    for i in 0..5 {
        enqueue(
            &spool,
            "a@example.com",
            &[(&format!("u{i}@example.com"), Lane::Legacy)],
            t(0),
        );
    }
    let first = spool.lease(Lane::Legacy, 10, t(1)).unwrap();
    assert_eq!(first.len(), 2, "legacy allows 2 at once");
    assert!(spool.lease(Lane::Legacy, 10, t(1)).unwrap().is_empty());
    spool.complete(first[0].clone(), &[Ok(())], t(2)).unwrap();
    assert_eq!(spool.lease(Lane::Legacy, 10, t(2)).unwrap().len(), 1);
    assert!(spool.lease("nonexistent", 10, t(2)).unwrap().is_empty());
}

#[test]
fn dead_destination_is_skipped_while_others_flow() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    for i in 0..4 {
        enqueue(
            &spool,
            "a@example.com",
            &[(&format!("u{i}@example.com"), Lane::Legacy)],
            t(0),
        );
    }
    let modern = enqueue(
        &spool,
        "a@example.com",
        &[("m@example.com", Lane::Modern)],
        t(0),
    );
    let refused = || DeliveryError::transient(FailureScope::Destination, "connection refused");
    for lease in spool.lease(Lane::Legacy, 2, t(1)).unwrap() {
        spool.complete(lease, &[Err(refused())], t(2)).unwrap();
    }
    let lanes = spool.lanes(t(3));
    let legacy = lanes.iter().find(|l| l.name == Lane::Legacy).unwrap();
    assert_eq!(
        legacy.status,
        LaneStatus::Dead {
            until_ms: 1_750_000_002_000 + 300_000
        }
    );
    // Its due mail is deferred without attempts; the other lane flows.
    assert!(spool.lease(Lane::Legacy, 10, t(3)).unwrap().is_empty());
    let listed = spool.list(&Filter::default(), t(3));
    let deferred = listed
        .iter()
        .filter(|m| m.queue_name == QueueState::Deferred)
        .count();
    assert_eq!(deferred, 4);
    assert!(listed.iter().any(|m| {
        m.recipients[0]
            .delay_reason
            .as_deref()
            .is_some_and(|r| r.contains("not responding"))
    }));
    let lease = spool.lease(Lane::Modern, 10, t(3)).unwrap().remove(0);
    assert_eq!(lease.queue_id, modern);
    // The dead state survives a restart (it is journaled).
    drop(lease);
    drop(spool);
    let spool = open(dir.path());
    assert!(spool.lease(Lane::Legacy, 10, t(4)).unwrap().is_empty());
    // After the cool-off: one probe at a time; success revives the lane.
    let probe = spool.lease(Lane::Legacy, 10, t(400)).unwrap();
    assert_eq!(probe.len(), 1);
    spool.complete(probe[0].clone(), &[Ok(())], t(401)).unwrap();
    assert_eq!(
        spool
            .lanes(t(401))
            .iter()
            .find(|l| l.name == Lane::Legacy)
            .unwrap()
            .status,
        LaneStatus::Alive
    );
    assert_eq!(spool.lease(Lane::Legacy, 10, t(402)).unwrap().len(), 2);
}

#[test]
fn hung_attempts_time_out_and_repeat_offenders_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let bad = enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    let good = enqueue(
        &spool,
        "a@example.com",
        &[("c@example.com", Lane::Modern)],
        t(0),
    );
    let leases = spool.lease(Lane::Modern, 10, t(0)).unwrap();
    assert_eq!(leases.len(), 2);
    // `good` completes; `bad` hangs past its 30 s deadline.
    let good_lease = leases.iter().find(|l| l.queue_id == good).unwrap().clone();
    spool.complete(good_lease, &[Ok(())], t(5)).unwrap();
    let tick = spool.tick(t(31)).unwrap();
    assert_eq!(tick.timed_out, [bad]);
    assert!(tick.quarantined.is_empty());
    // Second hang: quarantined (quarantine_after = 2).
    let lease = spool.lease(Lane::Modern, 10, t(200)).unwrap().remove(0);
    assert_eq!(lease.queue_id, bad);
    let tick = spool.tick(t(231)).unwrap();
    assert_eq!(tick.quarantined, [bad]);
    let info = spool.show(bad, t(232)).unwrap().info;
    assert_eq!(info.queue_name, QueueState::Quarantined);
    assert!(
        info.quarantine_reason
            .unwrap()
            .contains("did not finish within 30s")
    );
    // Never retried by itself.
    assert!(
        spool
            .lease(Lane::Modern, 10, t(100_000))
            .unwrap()
            .is_empty()
    );
    // A late completion of the timed-out attempt still records the delivery.
    let release = AdminRequest {
        action: AdminAction::Release,
        ids: vec![bad.to_string()],
        all: false,
        filter: Filter::default(),
    };
    assert_eq!(
        spool.admin(&release, t(300)).unwrap().affected,
        [bad.to_string()]
    );
    let lease = spool.lease(Lane::Modern, 10, t(300)).unwrap().remove(0);
    spool.tick(t(400)).unwrap();
    let done = spool.complete(lease, &[Ok(())], t(401)).unwrap();
    assert!(done.late && done.finished);
    assert!(spool.is_empty());
}

#[test]
fn interrupted_attempts_count_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let spool = open(dir.path());
        let id = enqueue(
            &spool,
            "a@example.com",
            &[("b@example.com", Lane::Modern)],
            t(0),
        );
        let _lease = spool.lease(Lane::Modern, 1, t(0)).unwrap();
        spool.close().unwrap();
        id
    };
    let spool = open(dir.path());
    assert_eq!(spool.recovery_report().interrupted, [id]);
    let info = spool.show(id, t(1)).unwrap().info;
    assert_eq!(info.crashes, 1);
    assert_eq!(info.recipients[0].state, RcptState::Deferred);
    drop(spool);
    // Counted once, not at every restart.
    let spool = open(dir.path());
    assert!(spool.recovery_report().interrupted.is_empty());
    assert_eq!(spool.show(id, t(1)).unwrap().info.crashes, 1);
}

#[test]
fn a_first_interruption_is_retried_at_once_a_second_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || SpoolOptions {
        quarantine_after: 5,
        ..options()
    };
    let now = ccgate_queue::now;
    let spool = Spool::open(dir.path(), opts()).unwrap();
    let id = enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        now(),
    );
    let _lease = spool.lease(Lane::Modern, 1, now()).unwrap();
    spool.close().unwrap();
    // The process stopped, not the message: due again straight after the restart.
    let spool = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(spool.recovery_report().interrupted, [id]);
    let leases = spool.lease(Lane::Modern, 1, now()).unwrap();
    assert_eq!(leases.len(), 1, "due again straight after the restart");
    spool.close().unwrap();
    // Interrupted again: now it waits for the retry schedule (60 s +-20 % here).
    let spool = Spool::open(dir.path(), opts()).unwrap();
    assert_eq!(spool.recovery_report().interrupted, [id]);
    let info = spool.show(id, now()).unwrap().info;
    assert_eq!(info.crashes, 2);
    assert_eq!(info.queue_name, QueueState::Deferred);
    assert!(
        spool.lease(Lane::Modern, 1, now()).unwrap().is_empty(),
        "a message interrupted twice backs off"
    );
}

#[test]
fn admin_actions_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = enqueue(
        &spool,
        "x@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    let b = enqueue(
        &spool,
        "y@example.com",
        &[("c@example.com", Lane::Legacy)],
        t(600),
    );
    let req = |action, ids: Vec<String>, all, filter| AdminRequest {
        action,
        ids,
        all,
        filter,
    };
    let by_sender = Filter {
        sender: Some("X@EXAMPLE.COM".into()),
        ..Filter::default()
    };
    assert_eq!(spool.list(&by_sender, t(700)).len(), 1);
    let old = Filter {
        older_than: Some(Duration::from_secs(300)),
        ..Filter::default()
    };
    assert_eq!(spool.list(&old, t(700)).len(), 1);
    let report = spool
        .admin(
            &req(AdminAction::Hold, vec![], true, by_sender.clone()),
            t(700),
        )
        .unwrap();
    assert_eq!(report.affected, [a.to_string()]);
    let held = Filter {
        state: Some(QueueState::Held),
        ..Filter::default()
    };
    assert_eq!(spool.list(&held, t(700))[0].queue_id, a.to_string());
    assert!(spool.lease(Lane::Modern, 10, t(700)).unwrap().is_empty());
    // Held mail never expires.
    assert!(
        spool
            .lease(Lane::Modern, 10, t(1_000_000))
            .unwrap()
            .is_empty()
    );
    assert_eq!(spool.len(), 2);
    let report = spool
        .admin(
            &req(
                AdminAction::Release,
                vec![
                    a.to_string(),
                    "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
                    "junk".into(),
                ],
                false,
                Filter::default(),
            ),
            t(800),
        )
        .unwrap();
    assert_eq!(report.affected, [a.to_string()]);
    assert_eq!(report.not_found.len(), 2);
    assert_eq!(spool.lease(Lane::Modern, 10, t(800)).unwrap().len(), 1);

    // Requeue: waits for the router; the router's answer makes it due again.
    let dest = Filter {
        destination: Some(Lane::Legacy.into()),
        ..Filter::default()
    };
    spool
        .admin(&req(AdminAction::Requeue, vec![], true, dest), t(900))
        .unwrap();
    assert!(spool.lease(Lane::Legacy, 10, t(900)).unwrap().is_empty());
    let unrouted = spool.unrouted(10);
    assert_eq!(unrouted[0].queue_id, b);
    spool
        .route(
            b,
            &[(0, Route::new(Lane::Modern, addr("c@modern.example.com")))],
            t(901),
        )
        .unwrap();
    let info = spool.show(b, t(901)).unwrap().info;
    assert_eq!(info.recipients[0].destination, Lane::Modern);
    assert_eq!(
        info.recipients[0].orig_address.as_deref(),
        Some("c@example.com")
    );
    let by_rcpt = Filter {
        recipient: Some("c@example.com".into()),
        ..Filter::default()
    };
    assert_eq!(spool.list(&by_rcpt, t(901)).len(), 1);

    let summary = spool.summary(t(901));
    assert_eq!(summary.rows[0].destination, "TOTAL");
    assert_eq!(summary.rows[0].counts[0], 2);
    assert!(summary.to_string().contains(Lane::Modern.as_str()));

    spool
        .admin(
            &req(
                AdminAction::Delete,
                vec![b.to_string()],
                false,
                Filter::default(),
            ),
            t(902),
        )
        .unwrap();
    drop(spool);
    let view = QueueView::open(dir.path()).unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(
        view.list(&Filter::default(), t(903))[0].queue_id,
        a.to_string()
    );
}

#[test]
fn summary_counts_by_destination_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    enqueue(
        &spool,
        "a@example.com",
        &[
            ("c@example.com", Lane::Legacy),
            ("d@example.com", Lane::Modern),
        ],
        t(3000),
    );
    let s = spool.summary(t(3060));
    let row = |name: &str| {
        s.rows
            .iter()
            .find(|r| r.destination == name)
            .unwrap()
            .counts
            .clone()
    };
    // Ages: 51 minutes (column "80") and 1 minute (column "5").
    assert_eq!(row("TOTAL"), [2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(row(Lane::Modern.as_str())[0], 2);
    assert_eq!(
        row(Lane::Legacy.as_str()),
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn concurrent_enqueues_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for th in 0..8 {
            let spool = &spool;
            let ids = &ids;
            s.spawn(move || {
                for i in 0..25 {
                    let id = enqueue(
                        spool,
                        "a@example.com",
                        &[(&format!("t{th}-{i}@example.com"), Lane::Modern)],
                        t(0),
                    );
                    ids.lock().unwrap().push(id);
                }
            });
        }
    });
    drop(spool);
    let spool = open(dir.path());
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 200);
    assert_eq!(spool.len(), 200);
    for id in ids {
        assert_eq!(spool.show(id, t(1)).unwrap().body, body(1));
    }
}

#[test]
fn compaction_keeps_live_state_and_frees_segments() {
    let dir = tempfile::tempdir().unwrap();
    let small = SpoolOptions {
        journal_segment_bytes: 4096,
        data_segment_bytes: 4096,
        ..options()
    };
    let spool = Spool::open(dir.path(), small.clone()).unwrap();
    // Ledger keys ride in the message record: kept while the message is queued (through the
    // snapshots compaction writes), gone with it once it is delivered.
    let mut kept = vec![enqueue_keyed(&spool, "<kept@legacy>", Lane::Legacy)];
    let gone = enqueue_keyed(&spool, "<gone@legacy>", Lane::Modern);
    spool.confirm_keyed(&[kept[0], gone]);
    assert_eq!(spool.origins().len(), 2);
    for round in 0..40 {
        let keep = enqueue(
            &spool,
            "a@example.com",
            &[("k@example.com", Lane::Legacy)],
            t(round),
        );
        kept.push(keep);
        for _ in 0..5 {
            enqueue(
                &spool,
                "a@example.com",
                &[("d@example.com", Lane::Modern)],
                t(round),
            );
        }
        for lease in spool.lease(Lane::Modern, 100, t(round)).unwrap() {
            spool.complete(lease, &[Ok(())], t(round)).unwrap();
        }
        spool.tick(t(round)).unwrap();
    }
    // Defer one kept message so compaction must carry its state.
    let lease = spool.lease(Lane::Legacy, 1, t(100)).unwrap().remove(0);
    let deferred = lease.queue_id;
    spool
        .complete(
            lease,
            &[Err(DeliveryError::transient(
                FailureScope::Recipient,
                "later",
            ))],
            t(100),
        )
        .unwrap();
    let mut compacted = 0;
    for i in 0..40 {
        for _ in 0..5 {
            enqueue(
                &spool,
                "a@example.com",
                &[("d@example.com", Lane::Modern)],
                t(200 + i),
            );
        }
        for lease in spool.lease(Lane::Modern, 100, t(200 + i)).unwrap() {
            spool.complete(lease, &[Ok(())], t(200 + i)).unwrap();
        }
        let report = spool.tick(t(200 + i)).unwrap();
        compacted += report.compacted_segments;
    }
    assert!(compacted > 0, "the journal was never compacted");
    let before = spool.list(&Filter::default(), t(300));
    drop(spool);
    let journal_files = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .count();
    assert!(journal_files < 30, "{journal_files} journal segments left");
    let spool = Spool::open(dir.path(), small).unwrap();
    assert!(
        spool.recovery_report().is_clean(),
        "{:?}",
        spool.recovery_report()
    );
    assert_eq!(spool.list(&Filter::default(), t(300)), before);
    assert_eq!(spool.len(), 41);
    assert_eq!(spool.origins(), vec!["<kept@legacy>".to_owned()]);
    let info = spool.show(deferred, t(300)).unwrap().info;
    assert_eq!(info.recipients[0].state, RcptState::Deferred);
    for id in kept {
        assert_eq!(spool.show(id, t(300)).unwrap().body, body(1));
    }
}

#[test]
fn held_route_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let envelope = Envelope {
        sender: ReversePath::Null,
        recipients: vec![addr("m@example.com")],
    };
    assert!(spool.enqueue(&envelope, &[], b"x", t(0)).is_err());
    let empty = Envelope {
        sender: ReversePath::Null,
        recipients: vec![],
    };
    assert!(spool.enqueue(&empty, &[], b"x", t(0)).is_err());
    let id = spool
        .enqueue(
            &envelope,
            &[Route::new(Lane::Modern, addr("m@example.com")).held()],
            b"x",
            t(0),
        )
        .unwrap();
    assert_eq!(state_of(&spool, id, t(0)), [RcptState::Held]);
    assert!(spool.lease(Lane::Modern, 1, t(0)).unwrap().is_empty());
    assert!(matches!(
        Spool::open(dir.path(), options()),
        Err(ccgate_queue::QueueError::Locked { .. })
    ));
}

#[test]
fn enqueue_with_a_chosen_id_and_duplicates_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let env = Envelope {
        sender: ReversePath::Null,
        recipients: vec![addr("a@legacy.example.com")],
    };
    let routes = [Route::new(Lane::Legacy, addr("a@legacy.example.com"))];
    let id = QueueId::generate();
    assert_eq!(
        spool
            .enqueue_with_id(id, &env, &routes, &body(10), t(0))
            .unwrap(),
        id
    );
    let again = spool
        .enqueue_with_id(id, &env, &routes, &body(10), t(1))
        .unwrap_err();
    assert!(
        matches!(again, ccgate_queue::QueueError::DuplicateId { .. }),
        "{again}"
    );
    assert!(!again.is_disk_full());
    drop(spool);
    let reopened = open(dir.path());
    assert_eq!(state_of(&reopened, id, t(2)), vec![RcptState::Pending]);
}

/// Recipients counted by (destination, state) in a depth report.
fn depth_of(spool: &Spool, now: SystemTime) -> HashMap<(String, QueueState), u64> {
    spool
        .depth(now)
        .recipients
        .into_iter()
        .map(|row| ((row.destination, row.state), row.recipients))
        .collect()
}

#[test]
fn depth_counts_recipients_by_destination_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    // Active (due now) on two lanes.
    let a = enqueue(
        &spool,
        "a@example.com",
        &[
            ("b@example.com", Lane::Modern),
            ("c@example.com", Lane::Legacy),
        ],
        t(0),
    );
    // Deferred: one transient failure on modern.
    let b = enqueue(
        &spool,
        "a@example.com",
        &[("d@example.com", Lane::Modern)],
        t(0),
    );
    // Held by routing (the cutover lane).
    let c = enqueue(
        &spool,
        "a@example.com",
        &[("e@example.com", Lane::Cutover)],
        t(0),
    );
    spool
        .admin(
            &AdminRequest {
                action: AdminAction::Hold,
                ids: vec![c.to_string()],
                all: false,
                filter: Filter::default(),
            },
            t(1),
        )
        .unwrap();
    let leases = spool.lease(Lane::Modern, 10, t(1)).unwrap();
    let (to_b, rest): (Vec<_>, Vec<_>) = leases.into_iter().partition(|l| l.queue_id == b);
    for lease in to_b {
        let err = DeliveryError::transient(FailureScope::Recipient, "busy");
        spool.complete(lease, &[Err(err)], t(2)).unwrap();
    }
    // a's modern recipient stays in flight: active.
    let depth = depth_of(&spool, t(3));
    assert_eq!(depth[&(Lane::Modern.into(), QueueState::Active)], 1);
    assert_eq!(depth[&(Lane::Modern.into(), QueueState::Deferred)], 1);
    assert_eq!(depth[&(Lane::Legacy.into(), QueueState::Active)], 1);
    assert_eq!(depth[&(Lane::Cutover.into(), QueueState::Held)], 1);
    // Every known destination is listed with every state, zeros included.
    assert_eq!(depth[&(Lane::Legacy.into(), QueueState::Quarantined)], 0);
    assert_eq!(depth.values().sum::<u64>(), 4);
    let messages = spool.depth(t(3)).messages;
    assert_eq!(
        messages,
        [
            (QueueState::Active, 1),
            (QueueState::Deferred, 1),
            (QueueState::Held, 1),
            (QueueState::Quarantined, 0)
        ]
    );
    // Delivered recipients leave the counts; the same from a read-only view.
    for lease in rest {
        assert_eq!(lease.queue_id, a);
        spool.complete(lease, &[Ok(())], t(4)).unwrap();
    }
    drop(spool);
    let view = QueueView::open(dir.path()).unwrap();
    let depth: HashMap<_, _> = view
        .depth(t(5))
        .recipients
        .into_iter()
        .map(|row| ((row.destination, row.state), row.recipients))
        .collect();
    assert_eq!(depth[&(Lane::Modern.into(), QueueState::Active)], 0);
    assert_eq!(depth[&(Lane::Legacy.into(), QueueState::Active)], 1);
    assert_eq!(depth.values().sum::<u64>(), 3);
}

#[test]
fn a_renewed_lease_does_not_time_out_and_an_expired_one_cannot_be_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let a = enqueue(
        &spool,
        "s@example.com",
        &[("x@example.com", Lane::Modern)],
        t(0),
    );
    let b = enqueue(
        &spool,
        "s@example.com",
        &[("y@example.com", Lane::Modern)],
        t(0),
    );
    let mut leases = spool.lease(Lane::Modern, 2, t(0)).unwrap();
    assert_eq!(leases.len(), 2);
    let mut second = leases.pop().unwrap();
    let mut first = leases.pop().unwrap();
    // The first is renewed 20 s in (of 30): still its own at 40 s.
    assert!(spool.renew(&mut first, t(20)));
    assert_eq!(first.deadline, t(50));
    let report = spool.tick(t(40)).unwrap();
    assert_eq!(report.timed_out, vec![second.queue_id]);
    // The second timed out: it may be in another attempt now, so it cannot be renewed.
    assert!(!spool.renew(&mut second, t(41)));
    assert!(spool.complete(first, &[Ok(())], t(45)).unwrap().finished);
    assert!([a, b].contains(&second.queue_id));
    spool.close().unwrap();
}

#[test]
fn junk_in_the_control_folder_never_stops_housekeeping() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "s@example.com",
        &[("x@example.com", Lane::Modern)],
        t(0),
    );
    let control = dir.path().join("control");
    // A folder named like a request (unreadable as a file), garbage, and a real request
    // sorted after both.
    std::fs::create_dir(control.join("01-folder.req")).unwrap();
    std::fs::write(control.join("02-garbage.req"), b"\xff\xfe not json").unwrap();
    let hold = ccgate_queue::AdminRequest {
        action: ccgate_queue::AdminAction::Hold,
        ids: vec![id.to_string()],
        all: false,
        filter: ccgate_queue::Filter::default(),
    };
    std::fs::write(
        control.join("03-hold.req"),
        serde_json::to_vec(&hold).unwrap(),
    )
    .unwrap();

    let report = spool.tick(t(1)).unwrap();
    assert_eq!(report.control_requests, 3);
    assert_eq!(state_of(&spool, id, t(1)), vec![RcptState::Held]);
    for stem in ["01-folder", "02-garbage", "03-hold"] {
        assert!(
            control.join(format!("{stem}.done")).is_file(),
            "{stem} answered"
        );
    }
    let folder_answer = std::fs::read_to_string(control.join("01-folder.done")).unwrap();
    assert!(
        folder_answer.contains("cannot read the request"),
        "{folder_answer}"
    );
    // The folder was set aside, not retried at every tick; housekeeping goes on.
    assert!(control.join("01-folder.req.bad").is_dir());
    assert_eq!(spool.tick(t(2)).unwrap().control_requests, 0);
    spool.close().unwrap();
}

#[test]
fn spool_files_are_0600_and_folders_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("queue");
    let spool = open(&root);
    enqueue(
        &spool,
        "s@example.com",
        &[("x@example.com", Lane::Modern)],
        t(0),
    );
    spool.close().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    let mut files = 0;
    for sub in ["journal", "data", "tmp", "control"] {
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
    }
    assert_eq!(mode(&root.join("lock")), 0o600);
    assert!(files >= 2);
}

#[test]
fn long_replies_are_capped_and_oversized_records_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "s@example.com",
        &[("x@example.com", Lane::Modern)],
        t(0),
    );
    let lease = spool.lease(Lane::Modern, 1, t(0)).unwrap().remove(0);
    let long = format!("450 {}", "busy ".repeat(20_000));
    let e = DeliveryError::transient(FailureScope::Recipient, long);
    spool.complete(lease, &[Err(e)], t(1)).unwrap();
    let reason = spool.show(id, t(2)).unwrap().info.recipients[0]
        .delay_reason
        .clone()
        .unwrap();
    assert!(
        reason.len() <= ccgate_queue::MAX_REPLY_TEXT,
        "{}",
        reason.len()
    );
    spool.close().unwrap();
    // Stored as capped: the same after recovery.
    let spool = open(dir.path());
    let again = spool.show(id, t(2)).unwrap().info.recipients[0]
        .delay_reason
        .clone();
    assert_eq!(again.as_deref(), Some(reason.as_str()));

    // So many recipients that the message's records could outgrow what recovery reads once
    // each carries an error: refused at enqueue, nothing written.
    let n = 9_000;
    let rcpts: Vec<EmailAddress> = (0..n).map(|i| addr(&format!("r{i}@example.com"))).collect();
    let envelope = Envelope {
        sender: "s@example.com".parse::<ReversePath>().unwrap(),
        recipients: rcpts.clone(),
    };
    let routes: Vec<Route> = rcpts
        .into_iter()
        .map(|r| Route::new(Lane::Modern, r))
        .collect();
    let err = spool
        .enqueue(&envelope, &routes, &body(1), t(3))
        .unwrap_err();
    assert!(
        matches!(err, ccgate_queue::QueueError::TooLarge { .. }),
        "{err}"
    );
    assert_eq!(spool.len(), 1);
    spool.close().unwrap();
}

#[test]
fn a_lane_is_woken_when_mail_becomes_due_in_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let counter = |lane: &str| {
        let n = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&n);
        spool.on_due(
            lane,
            Arc::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
        );
        n
    };
    let (legacy, modern) = (counter("legacy"), counter("modern"));
    enqueue(
        &spool,
        "a@example.com",
        &[("x@legacy.test", Lane::Legacy)],
        t(0),
    );
    assert_eq!(legacy.load(Ordering::SeqCst), 1, "queued to legacy");
    assert_eq!(modern.load(Ordering::SeqCst), 0, "nothing for modern");
    // Two recipients in one lane: one message, at least one wake-up.
    enqueue(
        &spool,
        "a@example.com",
        &[
            ("x@modern.test", Lane::Modern),
            ("y@modern.test", Lane::Modern),
        ],
        t(0),
    );
    assert!(modern.load(Ordering::SeqCst) >= 1);
    assert_eq!(legacy.load(Ordering::SeqCst), 1);
    // Held mail is not due: no wake-up.
    let envelope = Envelope {
        sender: ReversePath::Mailbox(addr("a@example.com")),
        recipients: vec![addr("z@legacy.test")],
    };
    spool
        .enqueue(
            &envelope,
            &[Route::new("legacy", addr("z@legacy.test")).held()],
            &body(1),
            t(0),
        )
        .unwrap();
    assert_eq!(legacy.load(Ordering::SeqCst), 1, "held: not woken");
    // Routed by the router (a message queued without a route) wakes its new lane.
    let envelope = Envelope {
        sender: ReversePath::Mailbox(addr("a@example.com")),
        recipients: vec![addr("w@legacy.test")],
    };
    let id = spool
        .enqueue(
            &envelope,
            &[Route::new("", addr("w@legacy.test"))],
            &body(2),
            t(0),
        )
        .unwrap();
    assert_eq!(legacy.load(Ordering::SeqCst), 1);
    spool
        .route(
            id,
            &[(0, Route::new("legacy", addr("w@legacy.test")))],
            t(1),
        )
        .unwrap();
    assert_eq!(legacy.load(Ordering::SeqCst), 2, "routed to legacy");
}

#[test]
fn outcomes_of_a_pass_recorded_together_are_as_if_recorded_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let delivered = enqueue(
        &spool,
        "alice@example.com",
        &[("bob@x.test", Lane::Modern)],
        t(0),
    );
    let bounced = enqueue(
        &spool,
        "alice@example.com",
        &[("cy@x.test", Lane::Modern)],
        t(0),
    );
    let deferred = enqueue(
        &spool,
        "alice@example.com",
        &[("di@x.test", Lane::Modern)],
        t(0),
    );
    let leases = spool.lease("modern", 10, t(1)).unwrap();
    assert_eq!(leases.len(), 3);
    let no_user = DeliveryError::permanent(FailureScope::Recipient, "no such user")
        .with_status(StatusCode::new(5, 1, 1).unwrap());
    let busy = DeliveryError::transient(FailureScope::Message, "try later");
    let done: Vec<_> = leases
        .into_iter()
        .map(|lease| {
            let result = if lease.queue_id == delivered {
                Ok(())
            } else if lease.queue_id == bounced {
                Err(no_user.clone())
            } else {
                Err(busy.clone())
            };
            (lease, vec![result])
        })
        .collect();
    let ids: Vec<QueueId> = done.iter().map(|(l, _)| l.queue_id).collect();
    let completions = spool.complete_all(done, t(2));
    assert_eq!(completions.len(), 3);
    for (id, completion) in ids.iter().zip(completions) {
        let completion = completion.unwrap();
        assert!(!completion.late);
        if *id == delivered {
            assert!(completion.finished && completion.bounce.is_none());
        } else if *id == bounced {
            assert!(
                completion.finished && completion.bounce.is_some(),
                "bounced"
            );
        } else {
            assert!(!completion.finished);
        }
    }
    // Durable: a reopened spool sees the same.
    drop(spool);
    let spool = open(dir.path());
    assert!(spool.show(delivered, t(3)).is_err());
    assert!(spool.show(bounced, t(3)).is_err());
    assert_eq!(state_of(&spool, deferred, t(3)), [RcptState::Deferred]);
    assert_eq!(spool.unrouted(10).len(), 1, "the bounce");
}

/// `submit`: with nobody owning the spool the message is queued at once; next to an owner it
/// waits in the control folder, durable, until the owner's tick queues it under the same id
/// (and a submission left behind by a crash after queueing is only cleaned up).
#[test]
fn submit_queues_directly_or_through_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let envelope = Envelope {
        sender: ReversePath::Mailbox(addr("john@legacy.example.com")),
        recipients: vec![addr("bob@example.net")],
    };
    let routes = vec![Route::new(Lane::Modern, addr("bob@example.net"))];
    let first = QueueId::generate();
    let via =
        ccgate_queue::submit(dir.path(), &options(), first, &envelope, &routes, &body(1)).unwrap();
    assert_eq!(via, ccgate_queue::Via::Direct);

    let owner = open(dir.path());
    assert_eq!(owner.list(&Filter::default(), t(0)).len(), 1);
    let second = QueueId::generate();
    let via =
        ccgate_queue::submit(dir.path(), &options(), second, &envelope, &routes, &body(2)).unwrap();
    assert_eq!(via, ccgate_queue::Via::Owner);
    let control = dir.path().join("control");
    assert!(control.join(format!("{second}.sub")).is_file());
    assert!(control.join(format!("{second}.msg")).is_file());
    assert_eq!(
        owner.list(&Filter::default(), t(0)).len(),
        1,
        "not before the tick"
    );
    owner.tick(t(1)).unwrap();
    let ids: Vec<String> = owner
        .list(&Filter::default(), t(1))
        .into_iter()
        .map(|m| m.queue_id)
        .collect();
    assert!(ids.contains(&second.to_string()), "{ids:?}");
    assert_eq!(ids.len(), 2);
    assert!(!control.join(format!("{second}.sub")).exists());
    assert!(!control.join(format!("{second}.msg")).exists());
    let detail = owner.show(second, t(1)).unwrap();
    assert_eq!(detail.info.sender, "john@legacy.example.com");

    // Left behind after it was queued (a crash before the files went): cleaned up, not queued
    // twice. A submission that cannot be read is set aside.
    std::fs::write(control.join(format!("{second}.msg")), body(2)).unwrap();
    std::fs::write(
        control.join(format!("{second}.sub")),
        r#"{"sender":"john@legacy.example.com","recipients":[{"address":"bob@example.net","destination":"modern","deliver_to":"bob@example.net","hold":false}]}"#,
    )
    .unwrap();
    std::fs::write(control.join("junk.sub"), "not json").unwrap();
    owner.tick(t(2)).unwrap();
    assert_eq!(owner.list(&Filter::default(), t(2)).len(), 2);
    assert!(!control.join(format!("{second}.sub")).exists());
    assert!(control.join("junk.sub.bad").exists());
}

/// `set_retry` (a configuration reload): the next failure is scheduled and judged for expiry
/// by the new schedule and lifetime.
#[test]
fn a_new_retry_policy_applies_to_the_next_failure() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    spool.set_retry(RetryPolicy {
        retry: vec![Duration::from_secs(5)],
        max_lifetime: Duration::from_secs(3600),
    });
    let lease = spool.lease(Lane::Modern, 1, t(0)).unwrap().remove(0);
    let err = || DeliveryError::transient(FailureScope::Recipient, "try later");
    spool.complete(lease, &[Err(err())], t(1)).unwrap();
    // Due again after the new 5 s step (with its jitter), not the old first step of 60 s.
    let again = spool.lease(Lane::Modern, 1, t(20)).unwrap();
    assert_eq!(
        again.len(),
        1,
        "the new schedule's 5 s retry is due at 20 s: {:?}",
        spool.list(&Filter::default(), t(20))
    );
    // A second reload shortens the lifetime to 10 s: the next failure (at 21 s) is past it,
    // so the recipient fails and is bounced instead of being deferred.
    spool.set_retry(RetryPolicy {
        retry: vec![Duration::from_secs(5)],
        max_lifetime: Duration::from_secs(10),
    });
    let lease = again.into_iter().next().unwrap();
    spool.complete(lease, &[Err(err())], t(21)).unwrap();
    let listed = spool.list(&Filter::default(), t(22));
    assert_eq!(listed.len(), 1, "only the bounce is left: {listed:?}");
    assert!(listed[0].bounce_of.is_some(), "{listed:?}");
    let id: QueueId = listed[0].queue_id.parse().unwrap();
    let bounce = spool.show(id, t(22)).unwrap();
    let text = String::from_utf8(bounce.body).unwrap();
    assert!(text.contains("expired after 10s"), "{text}");
}

#[test]
fn a_corrupt_body_is_set_aside_at_once_not_retried_until_it_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let id = enqueue(
        &spool,
        "a@example.com",
        &[("b@example.com", Lane::Modern)],
        t(0),
    );
    // One byte of the stored text flipped on disk.
    let data = dir.path().join("data");
    let mut flipped = false;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(7).position(|w| w == b"hello 1") {
            bytes[at] ^= 0x20;
            std::fs::write(&path, bytes).unwrap();
            flipped = true;
        }
    }
    assert!(flipped, "the body was found in a data segment");
    let lease = spool.lease(Lane::Modern, 10, t(1)).unwrap().remove(0);
    let err = spool.lease_body(&lease).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    // Set aside with the reason, its envelope still shown; no further attempt, no bounce.
    let detail = spool.show(id, t(2)).unwrap();
    assert!(
        detail
            .body_error
            .as_deref()
            .is_some_and(|e| e.contains("checksum"))
    );
    let info = detail.info;
    let reason = info.quarantine_reason.expect("quarantined");
    assert!(reason.contains("corrupt"), "{reason}");
    assert_eq!(info.sender, "a@example.com");
    assert!(
        spool
            .lease(Lane::Modern, 10, t(100_000))
            .unwrap()
            .is_empty()
    );
    assert_eq!(spool.len(), 1, "kept, not bounced");
}

/// A keyed message is leased to no agent until its caller confirms its ledger write, so it
/// cannot be delivered and removed (key and all) before that write; a restart leases it
/// as any other (the key is in its record).
#[test]
fn a_keyed_message_waits_for_its_confirmation_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path());
    let first = enqueue_keyed(&spool, "<first@legacy>", Lane::Modern);
    let second = enqueue_keyed(&spool, "<second@legacy>", Lane::Modern);
    assert!(spool.lease(Lane::Modern, 10, t(1)).unwrap().is_empty());
    spool.confirm_keyed(&[first]);
    let leases = spool.lease(Lane::Modern, 10, t(1)).unwrap();
    assert_eq!(
        leases.iter().map(|l| l.queue_id).collect::<Vec<_>>(),
        [first]
    );
    for lease in leases {
        spool.complete(lease, &[Ok(())], t(1)).unwrap();
    }
    // The second was never confirmed: a restart hands it out, its key still in the record.
    drop(spool);
    let spool = open(dir.path());
    assert_eq!(spool.origins(), vec!["<second@legacy>".to_owned()]);
    let leases = spool.lease(Lane::Modern, 10, t(2)).unwrap();
    assert_eq!(
        leases.iter().map(|l| l.queue_id).collect::<Vec<_>>(),
        [second]
    );
}
