//! Secret values never leave `runway` unless the allowlist has
//! `secrets: [getData]`. Keys stay visible (they are not secret and help
//! debugging); values, `stringData` and the last-applied annotation (which
//! holds the values too) are replaced.

use serde_json::Value;

pub const HIDDEN: &str = "(hidden: add \"getData\" to kubernetesActions.secrets to show)";

/// Hides the values of every Secret in `value`: a Secret, a list of them,
/// or anything holding them under `items`.
pub fn hide_secret_values(value: &mut Value) {
    if value.get("kind").and_then(Value::as_str) == Some("Secret") {
        hide_one(value);
    }
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            hide_secret_values(item);
        }
    }
    if let Some(object) = value.get_mut("object") {
        hide_secret_values(object);
    }
}

fn hide_one(secret: &mut Value) {
    for key in ["data", "stringData"] {
        if let Some(map) = secret.get_mut(key).and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                *v = Value::String(HIDDEN.into());
            }
        }
    }
    if let Some(v) = secret
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.get_mut("kubectl.kubernetes.io/last-applied-configuration"))
    {
        *v = Value::String(HIDDEN.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_hidden_in_objects_and_lists() {
        let mut list = json!({"items": [
            {"kind": "Secret", "data": {"token": "c2VjcmV0"}, "stringData": {"p": "x"},
             "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"token\":\"c2VjcmV0\"}}", "team": "a"}}},
            {"kind": "ConfigMap", "data": {"k": "v"}}
        ]});
        hide_secret_values(&mut list);
        let text = list.to_string();
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert_eq!(list["items"][0]["data"]["token"], HIDDEN);
        assert_eq!(list["items"][0]["stringData"]["p"], HIDDEN);
        assert_eq!(list["items"][0]["metadata"]["annotations"]["team"], "a");
        assert_eq!(list["items"][1]["data"]["k"], "v", "other kinds untouched");
    }
}
