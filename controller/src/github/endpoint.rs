//! A stable, low-cardinality name for each scale-set service call, for the
//! `runway_github_requests_total{endpoint}` metric: derived from the method
//! and the URL path (ids and names dropped), the way the service routes it.

use http::Method;

/// The endpoint a request goes to; `other` for a path this client does not
/// call.
pub fn endpoint(method: &Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The message queue is at whatever URL the session names: known by its
    // `messages` segment.
    match (method.as_str(), segments.as_slice()) {
        ("GET", [.., "messages"]) => return "get_message",
        ("DELETE", [.., "messages", _]) => return "delete_message",
        _ => {}
    }
    // Everything after `_apis/`; the tenant prefix before it varies.
    let Some(start) = segments.iter().position(|s| *s == "_apis") else {
        return "other";
    };
    let rest: Vec<&str> = segments[start + 1..].to_vec();
    let m = method.as_str();
    match (m, rest.as_slice()) {
        ("GET", ["runtime", "runnergroups"]) => "runner_groups",
        ("GET", ["runtime", "runnerscalesets"]) => "scale_set_by_name",
        ("POST", ["runtime", "runnerscalesets"]) => "create_scale_set",
        ("GET", ["runtime", "runnerscalesets", _]) => "get_scale_set",
        ("PATCH", ["runtime", "runnerscalesets", _]) => "update_scale_set",
        ("DELETE", ["runtime", "runnerscalesets", _]) => "delete_scale_set",
        ("POST", ["runtime", "runnerscalesets", _, "generatejitconfig"]) => "generate_jit_config",
        ("POST", ["runtime", "runnerscalesets", _, "acquirejobs"]) => "acquire_jobs",
        ("POST", ["runtime", "runnerscalesets", _, "sessions"]) => "create_session",
        ("PATCH", ["runtime", "runnerscalesets", _, "sessions", _]) => "refresh_session",
        ("DELETE", ["runtime", "runnerscalesets", _, "sessions", _]) => "delete_session",
        ("GET", ["distributedtask", "pools", _, "agents"]) => "get_runner_by_name",
        ("GET", ["distributedtask", "pools", _, "agents", _]) => "get_runner",
        ("DELETE", ["distributedtask", "pools", _, "agents", _]) => "remove_runner",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_paths_name_their_endpoint() {
        let sets = "/_services/pipelines/tenant/_apis/runtime/runnerscalesets";
        let cases = [
            (
                Method::GET,
                "/tenant/_apis/runtime/runnergroups/",
                "runner_groups",
            ),
            (Method::GET, sets, "scale_set_by_name"),
            (Method::POST, sets, "create_scale_set"),
            (Method::GET, &format!("{sets}/7"), "get_scale_set"),
            (Method::PATCH, &format!("{sets}/7"), "update_scale_set"),
            (Method::DELETE, &format!("{sets}/7"), "delete_scale_set"),
            (
                Method::POST,
                &format!("{sets}/7/generatejitconfig"),
                "generate_jit_config",
            ),
            (
                Method::POST,
                &format!("{sets}/7/acquirejobs"),
                "acquire_jobs",
            ),
            (
                Method::POST,
                &format!("{sets}/7/sessions"),
                "create_session",
            ),
            (
                Method::PATCH,
                &format!("{sets}/7/sessions/abc"),
                "refresh_session",
            ),
            (
                Method::DELETE,
                &format!("{sets}/7/sessions/abc"),
                "delete_session",
            ),
            (Method::GET, &format!("{sets}/7/messages"), "get_message"),
            (
                Method::DELETE,
                &format!("{sets}/7/messages/12"),
                "delete_message",
            ),
            (
                Method::GET,
                "/x/_apis/distributedtask/pools/0/agents",
                "get_runner_by_name",
            ),
            (
                Method::GET,
                "/x/_apis/distributedtask/pools/0/agents/5",
                "get_runner",
            ),
            (
                Method::DELETE,
                "/x/_apis/distributedtask/pools/0/agents/5",
                "remove_runner",
            ),
            (Method::GET, "/queue/abc/messages", "get_message"),
            (Method::PUT, &format!("{sets}/7"), "other"),
            (Method::GET, "/api/v3/orgs/x", "other"),
        ];
        for (method, path, want) in cases {
            assert_eq!(endpoint(&method, path), want, "{method} {path}");
        }
    }
}
