//! The scale-set chart's RBAC table (`templates/_kube_actions.tpl`) and the
//! Rust one (`runway_agent::kube::rbac`) can never drift: for every
//! (resource, verb) the catalog supports, the chart is rendered with the
//! real Helm SDK for `kubernetesActions: {<resource>: [<verb>]}` and the
//! (apiGroup, resource, verb) triples of its actions Role/ClusterRole(s)
//! must be exactly `permissions(r, v)` plus the audit permission, and
//! `runway`'s own parser must read the rendered allowlist back as that pair.
//!
//! Renders spawn Helm through Python (about 0.7 s each), so they run on a
//! few threads; the time taken is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use runway_agent::kube::allowlist::Allowlist;
use runway_agent::kube::catalog::{Resource, Verb};
use runway_agent::kube::rbac::{Permission, audit_permissions, permissions, permissions_for};
use runway_sandbox::helm;
use serde::Deserialize;
use serde_json::{Value, json};

const RELEASE: &str = "arm-builders";
const NAMESPACE: &str = "runners";
/// Helm renders run as separate processes, mostly waiting on start-up.
const THREADS: usize = 6;

fn chart() -> PathBuf {
    helm::chart_path("runway-scale-set")
}

/// A cluster-scoped resource (or drain, which reaches pods in every
/// namespace) needs `roleType: ClusterRole`.
fn needs_cluster_role(resource: Resource, verb: Verb) -> bool {
    resource.location().is_some_and(|l| !l.namespaced) || verb == Verb::Drain
}

fn values(actions: Value, cluster_role: bool, extra: Value) -> Value {
    let mut v = json!({
        "githubConfigUrl": "https://github.com/acme-corp",
        "githubConfigSecret": { "github_token": "ghp_exampleExampleExample" },
        "kubernetesActions": actions,
        "roleType": if cluster_role { "ClusterRole" } else { "Role" },
    });
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, extra) {
        map.extend(extra);
    }
    v
}

/// Every object of the rendered `kube-actions.yaml`, parsed.
fn kube_actions_objects(values: &Value) -> Vec<Value> {
    let files = helm::render(&chart(), values, RELEASE, NAMESPACE)
        .unwrap_or_else(|e| panic!("render with {values}: {e}"));
    let text = files
        .iter()
        .find(|(path, _)| path.ends_with("templates/kube-actions.yaml"))
        .map(|(_, text)| text)
        .unwrap_or_else(|| panic!("no kube-actions.yaml rendered for {values}"));
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|o| !o.is_null())
        .collect()
}

/// The kube-actions Roles and ClusterRoles (not Runway's own state Roles).
fn action_roles(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| {
            matches!(o["kind"].as_str(), Some("Role" | "ClusterRole"))
                && o["metadata"]["name"].as_str().is_some_and(|n| {
                    !n.ends_with("-runway-state") && !n.ends_with("-runway-state-jobs")
                })
        })
        .cloned()
        .collect()
}

/// The rendered allowlist, read by `runway`'s own parser.
fn allowlist(objects: &[Value]) -> Allowlist {
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("the allowlist ConfigMap");
    let text = cm["data"]["allowlist.yaml"]
        .as_str()
        .expect("allowlist.yaml");
    Allowlist::parse(text).unwrap_or_else(|e| panic!("runway refuses the allowlist: {e}\n{text}"))
}

/// Every (apiGroup, resource, verb) the roles grant. Rules naming objects
/// (resourceNames) would be narrower than the table says: refused here.
fn granted(roles: &[Value]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for role in roles {
        for rule in role["rules"].as_array().expect("rules") {
            assert!(
                rule.get("resourceNames").is_none(),
                "a table rule with resourceNames: {rule}"
            );
            let list = |key: &str| -> Vec<&str> {
                rule[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                    .iter()
                    .map(|v| v.as_str().expect("string"))
                    .collect()
            };
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        out.insert(Permission::new(g, r, v));
                    }
                }
            }
        }
    }
    out
}

fn show(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(|p| format!("{}/{}:{}", p.group, p.resource, p.verb))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One render to compare: what it is, its values, the expected grant.
struct Case {
    what: String,
    values: Value,
    expected: BTreeSet<Permission>,
    /// What `runway` must read from the rendered allowlist.
    actions: BTreeMap<Resource, BTreeSet<Verb>>,
}

/// Renders every case on [`THREADS`] threads; the mismatches, both sides
/// shown.
fn mismatches(cases: &[Case]) -> Vec<String> {
    let next = Mutex::new(0usize);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(case) = cases.get(i) else { break };
                    let objects = kube_actions_objects(&case.values);
                    let read = allowlist(&objects).actions;
                    if read != case.actions {
                        found.lock().unwrap().push(format!(
                            "{}: runway reads the allowlist as {read:?}",
                            case.what
                        ));
                    }
                    let got = granted(&action_roles(&objects));
                    if got != case.expected {
                        found.lock().unwrap().push(format!(
                            "{}:\n  chart: {}\n  rust:  {}",
                            case.what,
                            show(&got),
                            show(&case.expected)
                        ));
                    }
                }
            });
        }
    });
    let mut found = found.into_inner().unwrap();
    found.sort();
    found
}

#[test]
fn every_resource_and_verb_renders_exactly_the_rust_tables_rbac() {
    let mut cases = Vec::new();
    for r in Resource::ALL {
        if r == Resource::CustomObjects {
            continue;
        }
        for v in r.verbs() {
            let mut expected = permissions(r, v);
            expected.extend(audit_permissions());
            let cluster = needs_cluster_role(r, v);
            let actions = json!({ r.key(): [v.key()] });
            let read = BTreeMap::from([(r, BTreeSet::from([v]))]);
            // The chart refuses secrets where the scale set's own Secrets
            // live: they are granted in a namespace apart only.
            let apart = if r == Resource::Secrets {
                json!({ "kubernetesActionsNamespaces": ["team-a"] })
            } else {
                json!({})
            };
            cases.push(Case {
                what: format!("kubernetesActions: {{{r}: [{v}]}}"),
                values: values(actions.clone(), cluster, apart),
                expected: expected.clone(),
                actions: read.clone(),
            });
            // With listed namespaces, the rules of a ClusterRole split in
            // two (cluster-scoped ones apart); together they are the same.
            if cluster {
                cases.push(Case {
                    what: format!("kubernetesActions: {{{r}: [{v}]}} in namespaces [team-a]"),
                    values: values(
                        actions,
                        true,
                        json!({ "kubernetesActionsNamespaces": ["team-a"] }),
                    ),
                    expected,
                    actions: read,
                });
            }
        }
    }
    assert!(cases.len() > 150, "only {} cases", cases.len());
    let started = Instant::now();
    let bad = mismatches(&cases);
    eprintln!(
        "rendered {} cases in {:.1} s on {THREADS} threads",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "the chart's RBAC differs from runway_agent::kube::rbac for {} case(s):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_whole_catalog_at_once_merges_to_the_rust_union() {
    let mut actions = serde_json::Map::new();
    let mut verbs_by_resource = Vec::new();
    for r in Resource::ALL {
        let verbs: BTreeSet<Verb> = r.verbs().collect();
        actions.insert(
            r.key().to_string(),
            verbs.iter().map(|v| json!(v.key())).collect(),
        );
        verbs_by_resource.push((r, verbs));
    }
    let expected = permissions_for(verbs_by_resource.iter().map(|(r, v)| (*r, v)));
    // Listed namespaces (the chart refuses secrets in the release namespace):
    // the ClusterRole splits, cluster-scoped rules apart.
    let objects = kube_actions_objects(&values(
        Value::Object(actions),
        true,
        json!({ "kubernetesActionsNamespaces": ["team-a"] }),
    ));
    let read = allowlist(&objects);
    assert_eq!(
        read.actions,
        verbs_by_resource
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>(),
        "runway reads back every resource and verb"
    );
    assert_eq!(read.namespaces, BTreeSet::from(["team-a".to_string()]));
    let roles = action_roles(&objects);
    assert_eq!(
        roles.len(),
        2,
        "two ClusterRoles: namespaced and cluster-scoped rules"
    );
    // Merged: one rule per (apiGroup, resource).
    for role in &roles {
        let rules = role["rules"].as_array().unwrap();
        let pairs: BTreeSet<(String, String)> = rules
            .iter()
            .map(|r| (r["apiGroups"].to_string(), r["resources"].to_string()))
            .collect();
        assert_eq!(pairs.len(), rules.len(), "rules not merged: {rules:#?}");
    }
    let got = granted(&roles);
    assert_eq!(
        got,
        expected,
        "\n  chart: {}\n  rust:  {}",
        show(&got),
        show(&expected)
    );
}

#[test]
fn custom_objects_get_the_raw_rules_and_nothing_else() {
    let raw = json!([
        { "apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "list"] },
        { "apiGroups": ["example.com"], "resources": ["widgets", "gadgets"], "verbs": ["delete"] },
    ]);
    let all_verbs: Vec<&str> = Resource::CustomObjects.verbs().map(Verb::key).collect();
    let roles = action_roles(&kube_actions_objects(&values(
        json!({ "customObjects": all_verbs }),
        false,
        json!({ "kubernetesPermissions": raw.clone() }),
    )));
    assert_eq!(roles.len(), 1);
    let rules = roles[0]["rules"].as_array().unwrap();
    // The audit rule from the table, then the raw rules exactly as given.
    assert_eq!(rules[1..], raw.as_array().unwrap()[..], "{rules:#?}");
    let mut expected = audit_permissions();
    for (g, r, v) in [
        ("argoproj.io", "rollouts", "get"),
        ("argoproj.io", "rollouts", "list"),
        ("example.com", "widgets", "delete"),
        ("example.com", "gadgets", "delete"),
    ] {
        expected.insert(Permission::new(g, r, v));
    }
    assert_eq!(granted(&roles), expected);
}

#[test]
fn runway_reads_the_rendered_namespaces_and_protected_namespaces() {
    let objects = kube_actions_objects(&values(
        json!({ "pods": ["get"] }),
        false,
        json!({
            "kubernetesActionsNamespaces": ["team-a", "kube-system"],
            "kubernetesActionsProtectedNamespaces": ["prod-db"],
        }),
    ));
    let read = allowlist(&objects);
    assert_eq!(
        read.namespaces,
        BTreeSet::from(["team-a".to_string(), "kube-system".to_string()])
    );
    assert!(read.protected.contains("prod-db"), "{:?}", read.protected);
    assert_eq!(
        read.check(Resource::Pods, Verb::Get, Some("kube-system")),
        Ok(())
    );
    assert!(
        read.check(Resource::Pods, Verb::Get, Some("elsewhere"))
            .is_err()
    );

    // roleType Role without namespaces: the release namespace only.
    let objects = kube_actions_objects(&values(json!({ "pods": ["get"] }), false, json!({})));
    let read = allowlist(&objects);
    assert_eq!(read.namespaces, BTreeSet::from([NAMESPACE.to_string()]));
    assert!(
        read.check(Resource::Pods, Verb::Get, Some("elsewhere"))
            .is_err()
    );
}

/// The chart README's table "What each verb grants", as verb -> cell.
fn readme_verb_table() -> BTreeMap<String, String> {
    let path = chart().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = text
        .split("### What each verb grants")
        .nth(1)
        .expect("the README has a section \"What each verb grants\"");
    let mut rows = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        let Some(row) = line.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let verb = cells[0].trim_matches('`');
        if verb == "Verb" || verb.starts_with("---") {
            continue;
        }
        let earlier = rows.insert(verb.to_string(), cells[1].to_string());
        assert!(earlier.is_none(), "verb {verb} twice in the README table");
    }
    rows
}

/// What the README says one (resource, verb) grants, from the Rust table:
/// "`<resource>`: get, patch; `pods`: list", the resource itself first.
fn readme_cell(resource: Resource, verb: Verb) -> String {
    let loc = resource.location().expect("a catalog resource");
    let scale = format!("{}/scale", loc.plural);
    let mut by_target: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    for p in permissions(resource, verb) {
        let (other, name) = if p.group == loc.group && p.resource == loc.plural {
            (false, "<resource>".to_string())
        } else if p.group == loc.group && p.resource == scale {
            (false, "<resource>/scale".to_string())
        } else if p.group.is_empty() {
            (true, p.resource.clone())
        } else {
            (true, format!("{}/{}", p.group, p.resource))
        };
        by_target.entry((other, name)).or_default().push(p.verb);
    }
    by_target
        .into_iter()
        .map(|((_, name), mut verbs)| {
            verbs.sort();
            format!("`{name}`: {}", verbs.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn the_readme_says_what_each_verb_really_grants() {
    let readme = readme_verb_table();
    let mut bad = Vec::new();
    for v in Verb::ALL {
        let Some(said) = readme.get(v.key()) else {
            bad.push(format!("{v}: not in the README table"));
            continue;
        };
        for r in Resource::ALL {
            if r == Resource::CustomObjects || !r.supports(v) {
                continue;
            }
            let real = readme_cell(r, v);
            if *said != real {
                bad.push(format!(
                    "{v} on {r}: README says {said:?}, the table grants {real:?}"
                ));
            }
        }
    }
    let known: BTreeSet<&str> = Verb::ALL.iter().map(|v| v.key()).collect();
    for verb in readme.keys() {
        if !known.contains(verb.as_str()) {
            bad.push(format!("{verb}: in the README table but no verb"));
        }
    }
    assert!(
        bad.is_empty(),
        "the chart README's verb table is wrong:\n{}",
        bad.join("\n")
    );
}
