//! The queue message decoder against 10,000 mutations of valid messages:
//! nulls, dropped fields, swapped types, odd timestamps, extra fields, a
//! byte-order mark, truncation. It never panics and always answers with a
//! typed result; an element whose required fields (`messageType`,
//! `runnerRequestId`) were left alone always decodes.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use runway_controller::github::Error;
use runway_controller::github::queue::decode_message;
use runway_controller::github::wire::JobMessage;
use serde_json::{Value, json};

const TYPES: [&str; 5] = [
    "JobAvailable",
    "JobAssigned",
    "JobStarted",
    "JobCompleted",
    "JobSomethingNew",
];

use runway_controller::github::wire::{
    JOB_MESSAGE_FIELDS as FIELDS, JOB_MESSAGE_REQUIRED as REQUIRED,
};

const ENVELOPE: [&str; 4] = ["messageId", "messageType", "body", "statistics"];

const ODD_TIMES: [&str; 10] = [
    "2024-05-01T12:00:00.1234567Z",
    "2024-05-01T12:00:00.1234567",
    "2024-05-01T12:00:00+02:00",
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00Z",
    "2024-05-01",
    "05/01/2024 12:00:00",
    "",
    "9999-99-99T99:99:99Z",
    "2024-05-01T12:00:00.12345678901234Z",
];

fn element(message_type: &str, id: i64) -> Value {
    let mut element = json!({
        "messageType": message_type, "runnerRequestId": id,
        "repositoryName": "app", "ownerName": "my-org", "jobId": format!("job-{id}"),
        "jobWorkflowRef": "my-org/app/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": "build", "workflowRunId": 9001, "eventName": "push",
        "requestLabels": ["linux"], "queueTime": "2024-05-01T12:00:00.1234567Z",
        "scaleSetAssignTime": "0001-01-01T00:00:00Z", "runnerAssignTime": "0001-01-01T00:00:00Z",
        "finishTime": "0001-01-01T00:00:00Z",
    });
    let extra = match message_type {
        "JobAvailable" => json!({"acquireJobUrl": "https://pipelines.example/acquirejobs"}),
        "JobStarted" => json!({"runnerId": 17, "runnerName": "arm-abc12"}),
        "JobCompleted" => json!({"result": "succeeded", "runnerId": 17, "runnerName": "arm-abc12"}),
        _ => json!({}),
    };
    if let (Some(element), Value::Object(extra)) = (element.as_object_mut(), extra) {
        element.extend(extra);
    }
    element
}

/// A value of another JSON type.
fn swapped(kind: u8) -> Value {
    match kind % 7 {
        0 => json!(42),
        1 => json!(-1.5),
        2 => json!("text"),
        3 => json!(true),
        4 => json!([1, "two", null]),
        5 => json!({"nested": {"deeper": null}}),
        _ => json!(i64::MAX),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Null {
        element: usize,
        field: usize,
    },
    Drop {
        element: usize,
        field: usize,
    },
    Swap {
        element: usize,
        field: usize,
        kind: u8,
    },
    OddTime {
        element: usize,
        field: usize,
        time: usize,
    },
    Extra {
        element: usize,
        kind: u8,
    },
    NullEnvelope(usize),
    DropEnvelope(usize),
    SwapEnvelope(usize, u8),
    /// A whole element replaced by a scalar.
    NotAnObject {
        element: usize,
        kind: u8,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let e = 0usize..8;
    let f = 0..FIELDS.len();
    prop_oneof![
        (e.clone(), f.clone()).prop_map(|(element, field)| Mutation::Null { element, field }),
        (e.clone(), f.clone()).prop_map(|(element, field)| Mutation::Drop { element, field }),
        (e.clone(), f.clone(), any::<u8>()).prop_map(|(element, field, kind)| Mutation::Swap {
            element,
            field,
            kind
        }),
        (e.clone(), 11usize..15, 0..ODD_TIMES.len()).prop_map(|(element, field, time)| {
            Mutation::OddTime {
                element,
                field,
                time,
            }
        }),
        (e.clone(), any::<u8>()).prop_map(|(element, kind)| Mutation::Extra { element, kind }),
        (0..ENVELOPE.len()).prop_map(Mutation::NullEnvelope),
        (0..ENVELOPE.len()).prop_map(Mutation::DropEnvelope),
        (0..ENVELOPE.len(), any::<u8>()).prop_map(|(f, k)| Mutation::SwapEnvelope(f, k)),
        (e, any::<u8>()).prop_map(|(element, kind)| Mutation::NotAnObject { element, kind }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    types: Vec<usize>,
    mutations: Vec<Mutation>,
    bom: bool,
    /// Keep only this share (per mille) of the bytes, if set.
    truncate: Option<u16>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(0..TYPES.len(), 0..8),
        prop::collection::vec(mutation(), 0..6),
        any::<bool>(),
        prop::option::weighted(0.1, 0u16..1000),
    )
        .prop_map(|(types, mutations, bom, truncate)| Case {
            types,
            mutations,
            bom,
            truncate,
        })
}

/// The bytes of the mutated message, and per element whether its required
/// fields are intact (then it must decode).
fn render(case: &Case) -> (Vec<u8>, Vec<bool>, bool) {
    let mut elements: Vec<Value> = case
        .types
        .iter()
        .enumerate()
        .map(|(i, t)| element(TYPES[*t], i as i64 + 1))
        .collect();
    let mut intact = vec![true; elements.len()];
    let mut envelope = json!({
        "messageId": 77, "messageType": "RunnerScaleSetJobMessages",
        "statistics": {"totalAssignedJobs": 3, "totalAvailableJobs": 1},
    });
    let mut envelope_intact = true;
    for mutation in &case.mutations {
        let mut set = |element: usize, field: usize, value: Option<Value>| {
            let Some(target) = elements.get_mut(element).and_then(Value::as_object_mut) else {
                return;
            };
            if field < REQUIRED {
                intact[element] = false;
            }
            match value {
                Some(value) => target.insert(FIELDS[field].to_string(), value),
                None => target.remove(FIELDS[field]),
            };
        };
        match mutation {
            Mutation::Null { element, field } => set(*element, *field, Some(Value::Null)),
            Mutation::Drop { element, field } => set(*element, *field, None),
            Mutation::Swap {
                element,
                field,
                kind,
            } => set(*element, *field, Some(swapped(*kind))),
            Mutation::OddTime {
                element,
                field,
                time,
            } => set(*element, *field, Some(json!(ODD_TIMES[*time]))),
            Mutation::Extra { element, kind } => {
                if let Some(target) = elements.get_mut(*element).and_then(Value::as_object_mut) {
                    target.insert(format!("newField{kind}"), swapped(*kind));
                }
            }
            Mutation::NotAnObject { element, kind } => {
                if let Some(target) = elements.get_mut(*element) {
                    *target = swapped(*kind % 4);
                    intact[*element] = false;
                }
            }
            Mutation::NullEnvelope(_) | Mutation::DropEnvelope(_) | Mutation::SwapEnvelope(..) => {}
        }
    }
    envelope["body"] = Value::String(Value::Array(elements).to_string());
    for mutation in &case.mutations {
        let (field, value) = match mutation {
            Mutation::NullEnvelope(f) => (*f, Some(Value::Null)),
            Mutation::DropEnvelope(f) => (*f, None),
            Mutation::SwapEnvelope(f, k) => (*f, Some(swapped(*k))),
            _ => continue,
        };
        // Statistics are optional: what happens to them never costs jobs.
        if ENVELOPE[field] != "statistics" {
            envelope_intact = false;
        }
        if let Some(envelope) = envelope.as_object_mut() {
            match value {
                Some(value) => envelope.insert(ENVELOPE[field].to_string(), value),
                None => envelope.remove(ENVELOPE[field]),
            };
        }
    }
    let mut bytes = envelope.to_string().into_bytes();
    if let Some(per_mille) = case.truncate {
        let keep = bytes.len() * usize::from(per_mille) / 1000;
        bytes.truncate(keep);
        envelope_intact = false;
    }
    if case.bom {
        bytes.splice(0..0, *b"\xEF\xBB\xBF");
    }
    (bytes, intact, envelope_intact)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_decode_to_a_typed_result(case in case()) {
        let (bytes, intact, envelope_intact) = render(&case);
        match decode_message("poll", &bytes) {
            Ok(message) => {
                if envelope_intact {
                    prop_assert_eq!(message.message_id, 77);
                    prop_assert_eq!(message.jobs.len(), intact.len());
                }
                for (job, intact) in message.jobs.iter().zip(&intact) {
                    if *intact {
                        prop_assert!(
                            !matches!(job, JobMessage::Undecodable(_)),
                            "an element with its required fields decodes: {:?}", job
                        );
                    }
                }
            }
            Err(
                Error::Decode { .. }
                | Error::Protocol { .. }
                | Error::UnexpectedMessageType { .. }
                | Error::UndecodableMessage { .. },
            ) => prop_assert!(!envelope_intact, "an intact envelope decodes"),
            Err(other) => prop_assert!(false, "untyped answer: {other:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_message("poll", &bytes);
    }
}
