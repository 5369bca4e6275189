//! `crates/daemon/openapi.yaml` kept honest: it parses, carries the crate and protocol
//! versions, documents exactly the routes `routes.rs` registers (read from its source), its
//! references resolve, and a real daemon serves it without a token and answers every
//! documented parameterless GET.
#![allow(clippy::unwrap_used)]

mod common;

use common::Lab;
use imagelab_core::api::{ApiError, PROTOCOL_VERSION};
use serde_yaml::Value;
use std::collections::BTreeSet;

const SPEC: &str = include_str!("../openapi.yaml");
const ROUTES_RS: &str = include_str!("../src/routes.rs");

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn spec() -> Value {
    serde_yaml::from_str(SPEC).unwrap_or_else(|e| panic!("openapi.yaml does not parse: {e}"))
}

/// `(METHOD, path)` pairs, e.g. `("GET", "/v1/jobs/{id}")`.
type Routes = BTreeSet<(String, String)>;

/// `{name:regex}` → `{name}`: actix's parameter syntax as OpenAPI writes it.
fn openapi_path(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|i| open + i).unwrap_or_else(|| {
            panic!("unclosed {{ in route path {path:?}");
        });
        let inner = &rest[open + 1..close];
        let name = inner.split(':').next().unwrap();
        out.push('{');
        out.push_str(name);
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The string literal at the start of `text` (after whitespace) and what follows it.
fn string_literal(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some((&text[..end], &text[end + 1..]))
}

/// Every `.route("path", web::method()…)` in `source`, with the path under the
/// `web::scope("…")` that precedes it (routes before the scope are app-level, with their
/// full path). Line comments are dropped first so a commented-out route does not count.
fn registered_routes(source: &str) -> Routes {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let scopes: Vec<(usize, String)> = code
        .match_indices("web::scope(")
        .map(|(at, m)| {
            let (prefix, _) = string_literal(&code[at + m.len()..])
                .unwrap_or_else(|| panic!("web::scope( without a string literal at byte {at}"));
            (at, prefix.to_string())
        })
        .collect();
    assert_eq!(
        scopes.len(),
        1,
        "the parser knows one scope (`/v1`); routes.rs has {scopes:?}: teach it nesting"
    );
    let mut routes = Routes::new();
    for (at, m) in code.match_indices(".route(") {
        let after = &code[at + m.len()..];
        let (path, rest) = string_literal(after)
            .unwrap_or_else(|| panic!("a .route( without a path literal: {:.60}", after));
        let rest = rest
            .trim_start()
            .strip_prefix(',')
            .unwrap_or_else(|| panic!("route {path:?}: expected `, web::method()` after the path"));
        let method = rest
            .trim_start()
            .strip_prefix("web::")
            .and_then(|r| r.split_once("()"))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| panic!("route {path:?}: expected web::<method>() after the path"));
        assert!(
            METHODS.contains(&method.as_str()),
            "route {path:?}: unknown method web::{method}()"
        );
        let prefix = scopes
            .iter()
            .rev()
            .find(|(start, _)| *start < at)
            .map_or("", |(_, prefix)| prefix.as_str());
        routes.insert((
            method.to_ascii_uppercase(),
            openapi_path(&format!("{prefix}{path}")),
        ));
    }
    routes
}

fn documented_routes(spec: &Value) -> Routes {
    let paths = spec["paths"]
        .as_mapping()
        .expect("openapi.yaml has a `paths` mapping");
    let mut routes = Routes::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path keys are strings");
        let item = item.as_mapping().expect("a path item is a mapping");
        for key in item.keys().filter_map(Value::as_str) {
            if METHODS.contains(&key) {
                routes.insert((key.to_ascii_uppercase(), path.to_string()));
            }
        }
    }
    routes
}

fn show(routes: &[&(String, String)]) -> String {
    routes
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_description_parses_and_carries_the_crate_and_protocol_versions() {
    let spec = spec();
    let openapi = spec["openapi"].as_str().unwrap_or_default();
    assert!(openapi.starts_with("3.1."), "openapi: {openapi:?}");
    assert!(
        SPEC.starts_with('#'),
        "openapi.yaml opens with a comment saying what it is"
    );
    assert_eq!(
        spec["info"]["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "info.version must be the daemon crate's version"
    );
    assert_eq!(
        spec["info"]["x-protocol-version"].as_u64(),
        Some(u64::from(PROTOCOL_VERSION)),
        "info.x-protocol-version must be imagelab_core::api::PROTOCOL_VERSION"
    );
}

#[test]
fn the_route_parser_reads_multi_line_routes_scopes_and_regex_parameters() {
    let source = r#"
        .route("/v1/health", web::get().to(health))
        // .route("/v1/gone", web::get().to(gone))
        .service(
            web::scope("/v1")
                .route("/jobs", web::post().to(submit))
                .route(
                    "/jobs/{id}/priority",
                    web::post().to(crate::queue_routes::set_priority),
                )
                .route("/outputs/{name:.*}", web::get().to(files::output))
        )
    "#;
    let routes: Vec<String> = registered_routes(source)
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        routes,
        [
            "GET /v1/health",
            "GET /v1/outputs/{name}",
            "POST /v1/jobs",
            "POST /v1/jobs/{id}/priority",
        ]
    );
}

#[test]
fn every_registered_route_is_documented_and_every_documented_one_is_registered() {
    let registered = registered_routes(ROUTES_RS);
    assert!(
        registered.len() >= 20,
        "the parser found only {} routes in routes.rs: {registered:?}",
        registered.len()
    );
    let documented = documented_routes(&spec());
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "routes.rs and openapi.yaml disagree.\n  registered but not documented: [{}]\n  documented but not registered: [{}]",
        show(&undocumented),
        show(&unregistered)
    );
}

/// Every `{name}` in a documented path is declared as a path parameter of each operation
/// (or of the path item).
#[test]
fn every_path_parameter_is_declared() {
    let spec = spec();
    let mut problems = Vec::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(n, _)| n))
            .collect();
        let declared = |params: &Value| -> BTreeSet<String> {
            params
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| resolve(&spec, p))
                .filter(|p| p["in"].as_str() == Some("path"))
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        };
        let shared = declared(&item["parameters"]);
        for method in METHODS {
            let op = &item[*method];
            if op.is_null() {
                continue;
            }
            let mine = declared(&op["parameters"]);
            for name in &names {
                if !shared.contains(*name) && !mine.contains(*name) {
                    problems.push(format!("{} {path}: {{{name}}}", method.to_uppercase()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "undeclared path parameters: {problems:?}"
    );
}

/// `value` itself, or what its `$ref` points at.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => lookup(spec, reference)
            .unwrap_or_else(|| panic!("$ref {reference:?} points at nothing")),
        None => value,
    }
}

/// A local JSON pointer (`#/components/schemas/JobView`) into the description.
fn lookup<'a>(spec: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix("#/")?;
    pointer.split('/').try_fold(spec, |node, part| {
        let part = part.replace("~1", "/").replace("~0", "~");
        node.as_mapping()?.get(Value::from(part))
    })
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                match (key.as_str(), child.as_str()) {
                    (Some("$ref"), Some(target)) => out.push(target),
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let spec = spec();
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(!refs.is_empty());
    let broken: Vec<_> = refs
        .into_iter()
        .filter(|r| lookup(&spec, r).is_none())
        .collect();
    assert!(broken.is_empty(), "$refs that point at nothing: {broken:?}");
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

#[test]
fn a_running_daemon_serves_the_description_and_answers_every_documented_get() {
    let lab = Lab::new();
    let daemon = lab.start();
    let base = format!("http://{}", daemon.address());
    let agent = agent();

    // Without a token: the same bytes, as YAML.
    let mut answer = agent.get(format!("{base}/v1/openapi.yaml")).call().unwrap();
    assert_eq!(
        answer.status().as_u16(),
        200,
        "GET /v1/openapi.yaml without a token"
    );
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/yaml"),
        "content type {content_type:?}"
    );
    let body = answer.body_mut().read_to_string().unwrap();
    assert!(
        body == SPEC,
        "GET /v1/openapi.yaml differs from openapi.yaml"
    );

    // With the token, every documented GET without path parameters reaches a handler:
    // neither 405 nor the daemon's "no such endpoint" 404. (A handler's own 404, such as
    // `GET /v1/night` before any run, names what is missing instead.)
    let auth = format!("Bearer {}", daemon.token());
    let gets: Vec<String> = documented_routes(&spec())
        .into_iter()
        .filter(|(method, path)| method == "GET" && !path.contains('{'))
        .map(|(_, path)| path)
        .collect();
    assert!(gets.len() >= 10, "{gets:?}");
    let mut missing = Vec::new();
    for path in &gets {
        let mut answer = agent
            .get(format!("{base}{path}"))
            .header("Authorization", &auth)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = answer.status().as_u16();
        if path == "/v1/events" {
            // A stream that never ends: its status and type are the answer.
            let sse = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/event-stream"));
            if status != 200 || !sse {
                missing.push(format!("GET {path}: {status}, not an event stream"));
            }
            continue;
        }
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        let no_such_endpoint = status == 404
            && serde_json::from_str::<ApiError>(&text)
                .map_or(true, |e| e.error.starts_with("no such endpoint"));
        if status == 405 || no_such_endpoint {
            missing.push(format!("GET {path}: {status} {text}"));
        }
    }
    assert!(
        missing.is_empty(),
        "documented GETs the daemon does not route: {missing:?}"
    );
    daemon.stop().unwrap();
}
