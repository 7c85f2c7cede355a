//! The delete decision, one row per rule of docs/fetch.md. Each row is
//! also run perturbed: renumbered and renamed (which must change nothing),
//! and with the one input the rule rests on turned around (which must
//! change the step to the row's `flipped` answer).

use super::*;

const DAY: u64 = 86_400;
const NOW: u64 = 1_000 * DAY;

fn num(n: usize) -> MsgNum {
    MsgNum::from_index(n - 1).unwrap()
}

/// One message, one ledger, one set of rules.
#[derive(Clone, Debug)]
struct Case {
    message: Listed,
    ledger: HashMap<String, Entry>,
    rules: Rules,
    fetched: usize,
}

impl Case {
    /// A new message `uid-1` of 1000 octets, an account that deletes.
    fn new() -> Case {
        Case {
            message: Listed {
                number: num(1),
                size: 1000,
                key: Some("uid-1".into()),
                trusted: true,
            },
            ledger: HashMap::new(),
            rules: Rules {
                policy: Policy::default(),
                may_delete: true,
                dry_run: false,
                now: NOW,
            },
            fetched: 0,
        }
    }

    /// The ledger has this message as `kind`, fetched `days_ago`.
    fn recorded(mut self, kind: Kind, days_ago: u64) -> Case {
        let key = self.message.key.clone().unwrap();
        self.ledger.insert(
            key,
            Entry {
                first_fetched: NOW - days_ago * DAY,
                kind,
                size: self.message.size,
            },
        );
        self
    }

    fn step(&self) -> Step {
        step(&self.message, &self.ledger, &self.rules, self.fetched)
    }
}

/// A rule: its case and answer, and the case with the deciding input
/// turned around and that answer.
struct Row {
    rule: &'static str,
    case: Case,
    expected: Step,
    flip: fn(&mut Case),
    flipped: Step,
}

fn fetch(size: u64) -> Step {
    Step::Fetch {
        room: room_for(size),
    }
}

const LEAVE: Step = Step::Leave {
    broke_earlier: false,
};

fn rows() -> Vec<Row> {
    let keep_days = |days| Policy {
        retention: Retention::KeepDays(days),
        ..Policy::default()
    };
    vec![
        Row {
            rule: "a new message is fetched",
            case: Case::new(),
            expected: fetch(1000),
            flip: |c| *c = c.clone().recorded(Kind::Whole, 0),
            flipped: Step::Delete,
        },
        Row {
            rule: "a fetched message is deleted when the account deletes",
            case: Case::new().recorded(Kind::Whole, 0),
            expected: Step::Delete,
            flip: |c| c.rules.policy.retention = Retention::Keep,
            flipped: LEAVE,
        },
        Row {
            rule: "keep_days: deleted once the days have passed since the first fetch",
            case: Case {
                rules: Rules {
                    policy: keep_days(30),
                    ..Case::new().rules
                },
                ..Case::new().recorded(Kind::Whole, 30)
            },
            expected: Step::Delete,
            flip: |c| c.rules.now -= 1,
            flipped: LEAVE,
        },
        Row {
            rule: "a shared or malformed unique-id is never deleted",
            case: Case {
                message: Listed {
                    trusted: false,
                    ..Case::new().message
                },
                ..Case::new()
            }
            .recorded(Kind::Whole, 400),
            expected: LEAVE,
            flip: |c| c.message.trusted = true,
            flipped: Step::Delete,
        },
        Row {
            rule: "without UIDL a message is known by its headers and never deleted",
            case: Case {
                message: Listed {
                    key: Some("hdr:0123456789abcdef0123456789abcdef".into()),
                    trusted: false,
                    ..Case::new().message
                },
                ..Case::new()
            }
            .recorded(Kind::Whole, 1),
            expected: LEAVE,
            flip: |c| c.ledger.clear(),
            flipped: fetch(1000),
        },
        Row {
            rule: "a message not yet identified (no UIDL, no TOP) is fetched",
            case: Case {
                message: Listed {
                    key: None,
                    trusted: false,
                    ..Case::new().message
                },
                ..Case::new()
            },
            expected: fetch(1000),
            flip: |c| c.rules.policy.max_size = Some(999),
            flipped: Step::Skip {
                over_hard_limit: false,
            },
        },
        Row {
            rule: "a message that came short is recorded as kept and never deleted",
            case: Case::new().recorded(Kind::Kept, 400),
            expected: LEAVE,
            flip: |c| *c = Case::new().recorded(Kind::Whole, 400),
            flipped: Step::Delete,
        },
        Row {
            rule: "a known unique-id with another size is another message: fetched, not deleted",
            case: {
                let mut case = Case::new().recorded(Kind::Whole, 0);
                case.message.size = 1001;
                case
            },
            expected: fetch(1001),
            flip: |c| c.message.size = 1000,
            flipped: Step::Delete,
        },
        Row {
            rule: "headers only are never deleted while the message is too large",
            case: {
                let mut case = Case::new().recorded(Kind::HeadersOnly, 400);
                case.rules.policy.max_size = Some(500);
                case
            },
            expected: LEAVE,
            flip: |c| c.rules.policy.max_size = Some(1000),
            flipped: fetch(1000),
        },
        Row {
            rule: "a damaged ledger deletes nothing",
            case: Case {
                rules: Rules {
                    may_delete: false,
                    ..Case::new().rules
                },
                ..Case::new().recorded(Kind::Whole, 0)
            },
            expected: LEAVE,
            flip: |c| c.rules.may_delete = true,
            flipped: Step::Delete,
        },
        Row {
            rule: "a message that broke an earlier run is passed over",
            case: Case::new().recorded(Kind::Skipped, 0),
            expected: Step::Leave {
                broke_earlier: true,
            },
            flip: |c| *c = Case::new().recorded(Kind::Whole, 0),
            flipped: Step::Delete,
        },
        Row {
            rule: "over max_size with oversize = skip: left on the server",
            case: {
                let mut case = Case::new();
                case.rules.policy.max_size = Some(999);
                case
            },
            expected: Step::Skip {
                over_hard_limit: false,
            },
            flip: |c| c.rules.policy.oversize = Oversize::Headers,
            flipped: Step::HeadersOnly {
                over_hard_limit: false,
            },
        },
        Row {
            rule: "over max_size with oversize = headers, in a dry run: only counted as skipped",
            case: {
                let mut case = Case::new();
                case.rules.policy.max_size = Some(999);
                case.rules.policy.oversize = Oversize::Headers;
                case.rules.dry_run = true;
                case
            },
            expected: Step::Skip {
                over_hard_limit: false,
            },
            flip: |c| c.rules.dry_run = false,
            flipped: Step::HeadersOnly {
                over_hard_limit: false,
            },
        },
        Row {
            rule: "over 512 MiB nothing is fetched whole, whatever max_size says",
            case: {
                let mut case = Case::new();
                case.message.size = MAX_MESSAGE + 1;
                case
            },
            expected: Step::Skip {
                over_hard_limit: true,
            },
            flip: |c| c.message.size = MAX_MESSAGE,
            flipped: fetch(MAX_MESSAGE),
        },
        Row {
            rule: "limit: new messages past it wait for the next run",
            case: {
                let mut case = Case::new();
                case.rules.policy.limit = Some(2);
                case.fetched = 2;
                case
            },
            expected: Step::Defer,
            flip: |c| c.fetched = 1,
            flipped: fetch(1000),
        },
        Row {
            rule: "limit does not hold back deleting what was fetched before",
            case: {
                let mut case = Case::new().recorded(Kind::Whole, 0);
                case.rules.policy.limit = Some(0);
                case
            },
            expected: Step::Delete,
            flip: |c| c.ledger.clear(),
            flipped: Step::Defer,
        },
        Row {
            rule: "a dry run counts new messages and fetches nothing",
            case: Case {
                rules: Rules {
                    dry_run: true,
                    may_delete: false,
                    ..Case::new().rules
                },
                ..Case::new()
            },
            expected: Step::Count,
            flip: |c| c.rules.dry_run = false,
            flipped: fetch(1000),
        },
    ]
}

#[test]
fn every_rule_decides_as_documented() {
    for row in rows() {
        assert_eq!(row.case.step(), row.expected, "{}", row.rule);
    }
}

#[test]
fn turning_the_deciding_input_around_turns_the_answer() {
    for row in rows() {
        let mut case = row.case.clone();
        (row.flip)(&mut case);
        assert_eq!(case.step(), row.flipped, "{} (flipped)", row.rule);
        assert_ne!(
            row.flipped, row.expected,
            "{}: the flip decides nothing",
            row.rule
        );
    }
}

#[test]
fn numbers_and_names_decide_nothing() {
    for row in rows() {
        let mut case = row.case.clone();
        case.message.number = num(77);
        if let Some(key) = case.message.key.take() {
            let renamed = format!("{key}-renamed");
            if let Some(entry) = case.ledger.remove(&key) {
                case.ledger.insert(renamed.clone(), entry);
            }
            case.message.key = Some(renamed);
        }
        // An unrelated entry in the ledger changes nothing either.
        case.ledger.insert(
            "someone-else".into(),
            Entry {
                first_fetched: 0,
                kind: Kind::Whole,
                size: case.message.size,
            },
        );
        assert_eq!(case.step(), row.expected, "{} (renamed)", row.rule);
    }
}

/// Nothing but [`Step::Delete`] deletes, and no step deletes a message
/// the ledger has not recorded whole under a trusted id of the same size.
#[test]
fn only_a_whole_trusted_record_of_the_same_size_is_ever_deleted() {
    let kinds = [
        None,
        Some(Kind::Whole),
        Some(Kind::HeadersOnly),
        Some(Kind::Kept),
        Some(Kind::Skipped),
    ];
    let retentions = [
        Retention::Delete,
        Retention::Keep,
        Retention::KeepDays(0),
        Retention::KeepDays(7),
    ];
    for kind in kinds {
        for trusted in [true, false] {
            for same_size in [true, false] {
                for retention in retentions {
                    for may_delete in [true, false] {
                        let mut case = Case::new();
                        if let Some(kind) = kind {
                            case = case.recorded(kind, 3);
                        }
                        case.message.trusted = trusted;
                        if !same_size {
                            case.message.size += 1;
                        }
                        case.rules.policy.retention = retention;
                        case.rules.may_delete = may_delete;
                        let deletes = case.step() == Step::Delete;
                        let allowed = kind == Some(Kind::Whole)
                            && trusted
                            && same_size
                            && may_delete
                            && retention != Retention::Keep
                            && retention != Retention::KeepDays(7);
                        assert_eq!(deletes, allowed, "{case:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn after_retrieval_short_is_kept_and_longer_is_whole() {
    let case = Case::new();
    let at = |received, trusted, retention| {
        let mut case = case.clone();
        case.message.trusted = trusted;
        case.rules.policy.retention = retention;
        after_retrieval(&case.message, received, &case.rules)
    };
    let whole = |delete| Retrieved {
        kind: Kind::Whole,
        delete,
    };
    let kept = Retrieved {
        kind: Kind::Kept,
        delete: false,
    };
    assert_eq!(at(1000, true, Retention::Delete), whole(true));
    assert_eq!(
        at(1002, true, Retention::Delete),
        whole(true),
        "longer is fine"
    );
    assert_eq!(at(999, true, Retention::Delete), kept, "short is kept");
    assert_eq!(
        at(1000, false, Retention::Delete),
        whole(false),
        "untrusted"
    );
    assert_eq!(at(1000, true, Retention::Keep), whole(false));
    assert_eq!(
        at(1000, true, Retention::KeepDays(0)),
        whole(false),
        "due only next run"
    );
    let mut damaged = case.clone();
    damaged.rules.may_delete = false;
    assert_eq!(
        after_retrieval(&damaged.message, 1000, &damaged.rules),
        whole(false)
    );
}

#[test]
fn expected_counts_what_step_fetches_up_to_the_limit() {
    let mut rules = Case::new().rules;
    rules.policy.limit = Some(2);
    rules.policy.max_size = Some(5000);
    let message = |n: usize, size| Listed {
        number: num(n),
        size,
        key: Some(format!("u{n}")),
        trusted: true,
    };
    let messages = [
        message(1, 100),
        message(2, 9000), // too large
        message(3, 200),  // already fetched
        message(4, 300),
        message(5, 400), // past the limit
    ];
    let mut ledger = HashMap::new();
    ledger.insert(
        "u3".to_owned(),
        Entry {
            first_fetched: NOW,
            kind: Kind::Whole,
            size: 200,
        },
    );
    assert_eq!(expected(&messages, &ledger, &rules), (2, 400));
    rules.dry_run = true;
    assert_eq!(expected(&messages, &ledger, &rules), (2, 400), "dry run");
}

#[test]
fn quit_is_held_back_only_where_the_server_would_expire_a_short_message() {
    assert!(may_quit(false, false));
    assert!(may_quit(false, true));
    assert!(may_quit(true, false));
    assert!(!may_quit(true, true));
}

#[test]
fn deletion_is_suspended_by_damage_or_a_dry_run() {
    assert_eq!(deletion_suspended(None, false), None);
    assert_eq!(deletion_suspended(None, true).as_deref(), Some("dry run"));
    let damaged = deletion_suspended(Some("bad checksum"), true).unwrap();
    assert!(damaged.contains("bad checksum"), "{damaged}");
}

fn scan(entries: &[(usize, u64)], rejected: usize) -> Listing<ScanEntry> {
    Listing {
        entries: entries
            .iter()
            .map(|&(n, size)| ScanEntry {
                number: num(n),
                size,
            })
            .collect(),
        rejected,
    }
}

fn uids(entries: &[(usize, &str)], rejected: usize) -> Listing<UidEntry> {
    Listing {
        entries: entries
            .iter()
            .map(|&(n, uid)| UidEntry {
                number: num(n),
                uid: uid.into(),
            })
            .collect(),
        rejected,
    }
}

fn keys(inventory: &Inventory) -> Vec<(usize, Option<&str>, bool)> {
    inventory
        .messages
        .iter()
        .map(|m| (m.number.get() as usize, m.key.as_deref(), m.trusted))
        .collect()
}

#[test]
fn inventory_merges_list_and_uidl_in_number_order() {
    let merged = inventory(
        scan(&[(2, 20), (1, 10)], 0),
        Some(&uids(&[(1, "a"), (2, "b"), (9, "orphan")], 0)),
    );
    assert_eq!(keys(&merged), [(1, Some("a"), true), (2, Some("b"), true)]);
    assert!(merged.complete && merged.has_uidl);
    assert!(may_forget_absent(&merged));
}

#[test]
fn a_shared_uid_identifies_neither_message() {
    let merged = inventory(
        scan(&[(1, 10), (2, 20), (3, 30)], 0),
        Some(&uids(&[(1, "same"), (2, "same"), (3, "c")], 0)),
    );
    assert_eq!(
        keys(&merged),
        [(1, None, false), (2, None, false), (3, Some("c"), true)]
    );
    assert_eq!(merged.shared_uids, 1);
    assert!(
        !may_forget_absent(&merged),
        "not every message is identified"
    );
}

#[test]
fn a_number_uidl_lists_twice_has_no_id_and_the_listing_is_incomplete() {
    let merged = inventory(
        scan(&[(1, 10), (2, 20)], 0),
        Some(&uids(&[(1, "a"), (1, "a2"), (2, "b")], 0)),
    );
    assert_eq!(keys(&merged), [(1, None, false), (2, Some("b"), true)]);
    assert!(!merged.complete);
}

#[test]
fn a_number_list_repeats_is_a_rejected_line() {
    let merged = inventory(scan(&[(1, 10), (1, 99)], 1), Some(&uids(&[(1, "a")], 2)));
    assert_eq!(merged.messages.len(), 1);
    assert_eq!(merged.messages[0].size, 10, "the first entry counts");
    assert_eq!(merged.rejected_lines, 4);
    assert!(!merged.complete);
}

#[test]
fn without_uidl_nothing_is_identified_or_forgotten() {
    let mut merged = inventory(scan(&[(1, 10)], 0), None);
    assert_eq!(keys(&merged), [(1, None, false)]);
    assert!(!merged.has_uidl && !merged.complete);
    merged.messages[0].key = Some("hdr:x".into());
    assert!(!may_forget_absent(&merged), "identified by headers only");
}

#[test]
fn equal_headers_get_distinct_keys_in_listing_order() {
    let mut seen = HashMap::new();
    let first = header_key(b"Subject: x\r\n\r\n", 10, &mut seen);
    let second = header_key(b"Subject: x\r\n\r\n", 10, &mut seen);
    let other_size = header_key(b"Subject: x\r\n\r\n", 11, &mut seen);
    assert!(first.starts_with("hdr:") && first.len() == 36, "{first}");
    assert_eq!(second, format!("{first}#2"));
    assert_ne!(other_size, first);
    assert_eq!(headers_of(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
    assert_eq!(headers_of(b"A: b\r\n"), b"A: b\r\n");
}
