//! JSON patches (RFC 6902) for the few writes that must not race: adding and
//! removing one finalizer, and the busy mark of a runner pod.
//!
//! A merge patch replaces a whole list, so a finalizer list written that way
//! can drop someone else's finalizer added meanwhile. These patches touch one
//! entry, guarded by a `test` of its position: a concurrent change fails the
//! patch (422) instead, and the next pass reads the object again.

use kube::api::ObjectMeta;
use serde::Serialize;

/// One RFC 6902 operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub op: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

impl Op {
    pub fn add(path: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        Op {
            op: "add",
            path: path.into(),
            value: Some(value.into()),
        }
    }
}

/// Removes `finalizer` from `meta`; empty if it is not there.
pub fn remove_finalizer(meta: &ObjectMeta, finalizer: &str) -> Vec<Op> {
    let Some(index) = meta
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == finalizer)
    else {
        return Vec::new();
    };
    let path = format!("/metadata/finalizers/{index}");
    vec![
        Op {
            op: "test",
            path: path.clone(),
            value: Some(finalizer.into()),
        },
        Op {
            op: "remove",
            path,
            value: None,
        },
    ]
}

/// Adds `finalizer` to `meta`; empty if it is there already.
pub fn add_finalizer(meta: &ObjectMeta, finalizer: &str) -> Vec<Op> {
    match &meta.finalizers {
        Some(list) if list.iter().any(|f| f == finalizer) => Vec::new(),
        // Appending cannot drop anything; a missing list is created.
        Some(_) => vec![Op::add("/metadata/finalizers/-", finalizer)],
        None => vec![Op::add(
            "/metadata/finalizers",
            serde_json::json!([finalizer]),
        )],
    }
}

/// Sets annotations, creating the map if `meta` has none.
pub fn set_annotations<'a>(
    meta: &ObjectMeta,
    annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Op> {
    let pairs: Vec<(&str, &str)> = annotations.into_iter().collect();
    if meta.annotations.is_none() {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        return vec![Op::add("/metadata/annotations", map)];
    }
    pairs
        .into_iter()
        .map(|(k, v)| Op::add(format!("/metadata/annotations/{}", escape(k)), v))
        .collect()
}

/// RFC 6901: `~` is `~0` and `/` is `~1` inside a JSON pointer segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `ops` as kube's JSON patch type `P` (inferred from `Patch::Json`).
pub fn json_patch<P: serde::de::DeserializeOwned>(ops: Vec<Op>) -> Result<P, kube::Error> {
    serde_json::to_value(ops)
        .and_then(serde_json::from_value)
        .map_err(kube::Error::SerdeError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(finalizers: Option<&[&str]>, annotated: bool) -> ObjectMeta {
        ObjectMeta {
            finalizers: finalizers.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
            annotations: annotated.then(Default::default),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn removes_only_the_named_finalizer_at_its_tested_position() {
        let ops = remove_finalizer(&meta(Some(&["other", "ours"]), false), "ours");
        assert_eq!(
            serde_json::to_value(ops).unwrap(),
            json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": "ours"},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ])
        );
        assert!(remove_finalizer(&meta(Some(&["other"]), false), "ours").is_empty());
        assert!(remove_finalizer(&meta(None, false), "ours").is_empty());
    }

    #[test]
    fn adds_a_finalizer_once_creating_the_list_if_needed() {
        assert_eq!(
            serde_json::to_value(add_finalizer(&meta(None, false), "ours")).unwrap(),
            json!([{"op": "add", "path": "/metadata/finalizers", "value": ["ours"]}])
        );
        assert_eq!(
            serde_json::to_value(add_finalizer(&meta(Some(&["x"]), false), "ours")).unwrap(),
            json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "ours"}])
        );
        assert!(add_finalizer(&meta(Some(&["ours"]), false), "ours").is_empty());
    }

    #[test]
    fn annotations_are_escaped_or_created_whole() {
        assert_eq!(
            serde_json::to_value(set_annotations(&meta(None, true), [("a.io/b", "1")])).unwrap(),
            json!([{"op": "add", "path": "/metadata/annotations/a.io~1b", "value": "1"}])
        );
        assert_eq!(
            serde_json::to_value(set_annotations(&meta(None, false), [("a.io/b", "1")])).unwrap(),
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"a.io/b": "1"}}])
        );
        assert_eq!(escape("a/b~c"), "a~1b~0c");
    }
}
