//! `RunnerScaleSet`s decoded one by one, as the manager's watch delivers
//! them untyped: a typed watch fails as a whole when one object does not
//! decode, and the API server accepts anything in `spec.template` (its
//! schema preserves unknown fields, see `crd.rs`), so one bad object would
//! stop every scale set, also after a restart.
//!
//! An object whose full decode fails is kept in a lenient form (the same
//! object with an empty template) with the error naming the field path:
//! the manager runs no supervisor for it, says why on the object, and can
//! still run the cleanup of its deletion (which needs no template).

use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;

use crate::crd::RunnerScaleSet;

/// The RunnerScaleSet resource, for untyped requests.
pub fn api_resource() -> ApiResource {
    ApiResource::erase::<RunnerScaleSet>(&())
}

/// One object as the manager keeps it.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The object; when `invalid`, decoded with an empty `spec.template`.
    pub rss: RunnerScaleSet,
    /// Why the object as stored does not decode: `<field path>: <error>`.
    pub invalid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not reachable through an API server that enforces the CRD's schema:
    /// every field but the template is typed there.
    #[error("RunnerScaleSet {namespace}/{name} cannot be read even without its template: {error}")]
    Unreadable {
        namespace: String,
        name: String,
        error: String,
    },
}

/// Decodes `object`; see the module docs.
pub fn decode(object: &DynamicObject) -> Result<Decoded, DecodeError> {
    let unreadable = |error: String| DecodeError::Unreadable {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        error,
    };
    let mut value = serde_json::to_value(object).map_err(|e| unreadable(e.to_string()))?;
    let invalid = match with_path(&value) {
        Ok(rss) => return Ok(Decoded { rss, invalid: None }),
        Err(error) => error,
    };
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("template".into(), Value::Object(Default::default()));
    }
    let rss = with_path(&value).map_err(unreadable)?;
    Ok(Decoded {
        rss,
        invalid: Some(invalid),
    })
}

/// Decodes `value`; an error says `<field path>: <what is wrong>`.
fn with_path(value: &Value) -> Result<RunnerScaleSet, String> {
    let result: Result<RunnerScaleSet, _> = serde_path_to_error::deserialize(value);
    result.map_err(|error| format!("{}: {}", error.path(), error.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(template: Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "actions.runway.dev/v1alpha1",
            "kind": "RunnerScaleSet",
            "metadata": {
                "name": "arm",
                "namespace": "ci",
                "uid": "u1",
                "generation": 3,
                "finalizers": ["actions.runway.dev/cleanup"],
            },
            "spec": {
                "githubConfigUrl": "https://github.com/my-org",
                "githubConfigSecret": "github",
                "minRunners": 1,
                "template": template,
            },
            "status": { "scaleSetId": 7 },
        }))
        .expect("a DynamicObject")
    }

    #[test]
    fn a_valid_object_decodes_whole() {
        let template = serde_json::json!({
            "spec": { "containers": [{ "name": "runner", "image": "runner:1" }] }
        });
        let decoded = decode(&object(template)).expect("decodes");
        assert_eq!(decoded.invalid, None);
        let containers = &decoded.rss.spec.template.spec.as_ref().unwrap().containers;
        assert_eq!(containers[0].image.as_deref(), Some("runner:1"));
    }

    #[test]
    fn a_bad_template_names_its_field_and_keeps_the_rest_for_the_cleanup() {
        // Field path, template: each one the API server stores as is.
        let cases = [
            (
                "spec.template.spec.containers",
                serde_json::json!({ "spec": { "containers": "runner" } }),
            ),
            (
                "spec.template.spec.containers[0].image",
                serde_json::json!({ "spec": { "containers": [{ "name": "runner", "image": 5 }] } }),
            ),
            (
                "spec.template.metadata.labels.team",
                serde_json::json!({ "metadata": { "labels": { "team": ["a"] } } }),
            ),
        ];
        for (path, template) in cases {
            let decoded = decode(&object(template)).expect("kept in a lenient form");
            let message = decoded.invalid.expect("invalid");
            assert!(message.starts_with(&format!("{path}: ")), "{message}");
            let rss = decoded.rss;
            assert_eq!(rss.metadata.uid.as_deref(), Some("u1"));
            assert_eq!(rss.metadata.generation, Some(3));
            assert_eq!(rss.metadata.finalizers.as_ref().map(Vec::len), Some(1));
            assert_eq!(rss.spec.github_config_secret, "github");
            assert_eq!(rss.status.and_then(|s| s.scale_set_id), Some(7));
            assert_eq!(rss.spec.template, Default::default());
        }
    }

    #[test]
    fn an_object_unreadable_beyond_its_template_is_an_error_naming_it() {
        let mut object = object(serde_json::json!({}));
        object.data["spec"]["githubConfigUrl"] = serde_json::json!(42);
        let error = decode(&object).expect_err("unreadable").to_string();
        assert!(error.contains("ci/arm"), "{error}");
        assert!(error.contains("spec.githubConfigUrl"), "{error}");
    }
}
