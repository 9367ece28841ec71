use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::*;
use crate::decide::released;

const ME: &str = "me_abc";
const OTHER: &str = "other_xyz";

fn cfg() -> LeaderConfig {
    LeaderConfig::new("ns", "runway-leader", ME)
}

fn record(holder: Option<&str>, duration: Option<i32>, transitions: i32) -> LeaseRecord {
    LeaseRecord {
        holder: holder.map(str::to_string),
        lease_duration_seconds: duration,
        transitions,
        acquire_time: Some(Timestamp::from_second(1_000).unwrap()),
        renew_time: Some(Timestamp::from_second(2_000).unwrap()),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn decide_table() {
    let t0 = Instant::now();
    let seen = |holder: Option<&str>, duration: Option<i32>| Observed::Seen {
        record: record(holder, duration, 3),
        since: t0,
    };
    let wait = |until: Duration| Decision::Wait {
        holder: OTHER.into(),
        until: t0 + until,
    };
    let take = |from: Option<&str>| Decision::TakeOver {
        from: from.map(str::to_string),
    };
    // (case, observed, seconds after `since`, expected)
    let table = [
        ("missing: create", Observed::Missing, 0, Decision::Create),
        ("ours: renew", seen(Some(ME), Some(15)), 0, Decision::Renew),
        (
            "ours, long unrenewed: still renew",
            seen(Some(ME), Some(15)),
            100,
            Decision::Renew,
        ),
        (
            "released (no holder): take over at once",
            seen(None, Some(1)),
            0,
            take(None),
        ),
        (
            "held, fresh: wait until since + its duration",
            seen(Some(OTHER), Some(15)),
            0,
            wait(secs(15)),
        ),
        (
            "held, just before expiry: wait",
            seen(Some(OTHER), Some(15)),
            14,
            wait(secs(15)),
        ),
        (
            "held, expired by our clock: take over",
            seen(Some(OTHER), Some(15)),
            15,
            take(Some(OTHER)),
        ),
        (
            "held, the holder's own duration counts",
            seen(Some(OTHER), Some(5)),
            5,
            take(Some(OTHER)),
        ),
        (
            "held, no duration written: ours (15 s)",
            seen(Some(OTHER), None),
            10,
            wait(secs(15)),
        ),
        (
            "held, nonsense duration: ours",
            seen(Some(OTHER), Some(-4)),
            10,
            wait(secs(15)),
        ),
    ];
    for (case, observed, after, expected) in table {
        assert_eq!(
            decide(&observed, ME, t0 + secs(after), &cfg()),
            expected,
            "{case}"
        );
    }
}

#[test]
fn remote_renew_time_is_not_trusted() {
    // A record whose renewTime is decades old but that we only just saw is
    // valid for a full duration from now.
    let t0 = Instant::now();
    let mut stale = record(Some(OTHER), Some(15), 0);
    stale.renew_time = Some(Timestamp::from_second(0).unwrap());
    let observed = observe(&Observed::Missing, Some(stale), t0);
    assert_eq!(
        decide(&observed, ME, t0 + secs(1), &cfg()),
        Decision::Wait {
            holder: OTHER.into(),
            until: t0 + secs(15)
        }
    );
}

#[test]
fn observe_keeps_the_clock_only_while_the_record_is_unchanged() {
    let t0 = Instant::now();
    let t1 = t0 + secs(3);
    let a = record(Some(OTHER), Some(15), 0);
    let mut renewed = a.clone();
    renewed.renew_time = Some(Timestamp::from_second(2_003).unwrap());
    let seen_a = Observed::Seen {
        record: a.clone(),
        since: t0,
    };
    let table = [
        (
            "first sight",
            Observed::Missing,
            Some(a.clone()),
            Observed::Seen {
                record: a.clone(),
                since: t1,
            },
        ),
        ("unchanged", seen_a.clone(), Some(a.clone()), seen_a.clone()),
        (
            "renewed",
            seen_a.clone(),
            Some(renewed.clone()),
            Observed::Seen {
                record: renewed,
                since: t1,
            },
        ),
        ("deleted", seen_a.clone(), None, Observed::Missing),
        ("still missing", Observed::Missing, None, Observed::Missing),
    ];
    for (case, previous, current, expected) in table {
        assert_eq!(observe(&previous, current, t1), expected, "{case}");
    }
}

#[test]
fn claim_table() {
    let now = Timestamp::from_second(5_000).unwrap();
    let earlier = Timestamp::from_second(1_000).unwrap();
    let ours = record(Some(ME), Some(15), 4);
    let theirs = record(Some(OTHER), Some(15), 4);
    let free = record(None, Some(1), 4);
    // (case, current, expected transitions, expected acquire time)
    let table = [
        ("new Lease", None, 0, now),
        (
            "renewal keeps acquire time and count",
            Some(&ours),
            4,
            earlier,
        ),
        ("takeover counts a transition", Some(&theirs), 5, now),
        ("released Lease counts a transition", Some(&free), 5, now),
    ];
    for (case, current, transitions, acquired) in table {
        let spec = claim(current, ME, now, &cfg());
        assert_eq!(spec.holder_identity.as_deref(), Some(ME), "{case}");
        assert_eq!(spec.lease_duration_seconds, Some(15), "{case}");
        assert_eq!(spec.lease_transitions, Some(transitions), "{case}");
        assert_eq!(spec.acquire_time, Some(MicroTime(acquired)), "{case}");
        assert_eq!(spec.renew_time, Some(MicroTime(now)), "{case}");
    }
}

#[test]
fn released_clears_the_holder_and_shortens_the_lease() {
    let now = Timestamp::from_second(5_000).unwrap();
    let spec = released(&record(Some(ME), Some(15), 7), now);
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(spec.lease_transitions, Some(7));
    assert_eq!(spec.renew_time, Some(MicroTime(now)));
    // ...and a candidate takes it at once.
    let observed = observe(
        &Observed::Missing,
        Some(LeaseRecord::of(&Lease {
            spec: Some(spec),
            ..Lease::default()
        })),
        Instant::now(),
    );
    assert_eq!(
        decide(&observed, OTHER, Instant::now(), &cfg()),
        Decision::TakeOver { from: None }
    );
}

#[test]
fn empty_holder_reads_as_none() {
    let lease = Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        }),
        ..Lease::default()
    };
    assert_eq!(LeaseRecord::of(&lease).holder, None);
    assert_eq!(LeaseRecord::of(&Lease::default()).transitions, 0);
}

#[test]
fn lease_duration_is_written_in_whole_seconds_rounded_up() {
    let table = [(1_000, 1), (2_000, 2), (2_001, 3), (15_000, 15)];
    for (millis, expected) in table {
        let cfg = LeaderConfig {
            lease_duration: Duration::from_millis(millis),
            ..cfg()
        };
        assert_eq!(cfg.lease_duration_seconds(), expected, "{millis} ms");
    }
}

#[test]
fn validate_table() {
    let ms = Duration::from_millis;
    let with = |lease: u64, renew: u64, retry: u64| LeaderConfig {
        lease_duration: ms(lease),
        renew_deadline: ms(renew),
        retry_period: ms(retry),
        ..cfg()
    };
    let table = [
        ("defaults", cfg(), None),
        ("test timing", with(2_000, 1_500, 200), None),
        (
            "under a second",
            with(900, 500, 100),
            Some("lease_duration"),
        ),
        (
            "renew = lease",
            with(2_000, 2_000, 200),
            Some("renew_deadline"),
        ),
        (
            "retry too close",
            with(2_000, 1_000, 900),
            Some("retry_period"),
        ),
        ("zero retry", with(2_000, 1_000, 0), Some("retry_period")),
        (
            "no identity",
            LeaderConfig {
                identity: String::new(),
                ..cfg()
            },
            Some("identity"),
        ),
    ];
    for (case, cfg, problem) in table {
        match (cfg.validate(), problem) {
            (Ok(()), None) => {}
            (Err(error), Some(setting)) => {
                let text = error.to_string();
                assert!(text.contains(setting), "{case}: {text}");
                assert!(text.contains("ns/runway-leader"), "{case}: {text}");
            }
            (outcome, expected) => panic!("{case}: {outcome:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn default_identity_is_unique_per_process() {
    let a = default_identity();
    let b = default_identity();
    assert_ne!(a, b);
    let (base, suffix) = a.rsplit_once('_').unwrap();
    assert!(!base.is_empty());
    assert_eq!(suffix.len(), 8);
}
