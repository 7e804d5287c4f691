//! Tidy: the invariants of ARCHITECTURE.md that a machine can check, read from `src/` as
//! text (rust-analyzer's `tidy` tests are the model). Each check names the file and line
//! it objects to.
//!
//! - Imports run down the request path, never back up it ([`LAYERS`]).
//! - No import circle: two modules under one parent never import each other, directly or
//!   round a ring (a child using its own parent's items is not a circle).
//! - Below HTTP, nothing names `hyper`, `http` or `hyper_util`.
//! - Only `src/http/error.rs` picks an error status (4xx, 5xx).
//! - Only the io_uring listener (`src/server/uring*`) names `tokio_uring`.
//! - Nothing names `std::time::Instant` (clippy.toml bans it; paused-time tests need
//!   tokio's).
//!
//! Unit-test modules are left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The request path's top-level modules as layers, in the order a request meets them: a
/// module may import its own layer and those below it, never one above. The last layer is
/// what the read-through calls (and the side paths it hands work to).
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["http"],
    &["auth", "rate_limit"],
    &["predict"],
    &[
        "admission",
        "imaging",
        "cache",
        "coalesce",
        "batch",
        "infer",
        "encode",
        "deadline",
        "trace_context",
        "shadow",
        "prediction_log",
        "repository",
        "stats",
    ],
];

fn layer(path: &[String]) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top(path)))
}

/// Modules that know nothing of HTTP: below the HTTP layer, and the side paths. Not
/// `deadline` nor `trace_context`: values that travel down the path, read from the
/// request's headers where they are made.
const BELOW_HTTP: &[&str] = &[
    "predict",
    "admission",
    "imaging",
    "cache",
    "coalesce",
    "batch",
    "infer",
    "encode",
    "prediction_log",
    "shadow",
    "repository",
    "stats",
    "background",
];

/// A source file as a module: its path in the crate (`server::conn`) and its code lines
/// (comments dropped), numbered from 1.
struct Module {
    file: PathBuf,
    path: Vec<String>,
    lines: Vec<(usize, String)>,
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| !f.starts_with(src.join("bin")) && !f.ends_with("main.rs"))
        .map(|file| {
            let rel = file.strip_prefix(&src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "lib" || l == "mod") {
                path.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests (a `#[cfg(test)] mod` at the end of a file) are not the house.
            let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or(&text);
            let lines = code
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
                .map(|(i, l)| (i + 1, l.split(" // ").next().unwrap_or(l).to_owned()))
                .collect();
            Module { file, path, lines }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate paths `module` names (`use crate::a::{b, c::d}`, `crate::x::y(..)`, `super::`),
/// each with its line, resolved to the deepest module that exists.
fn imports(module: &Module, known: &BTreeSet<Vec<String>>) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    // Whole `use` items, which may span lines and nest braces.
    let code: String = module
        .lines
        .iter()
        .map(|(n, l)| format!("\u{1}{n}\u{2}{l}\n"))
        .collect();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = code[..at].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == ':' {
                continue;
            }
            let line = code[..at]
                .rfind('\u{1}')
                .map(|i| {
                    code[i + 1..]
                        .split('\u{2}')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .unwrap();
            let tree: String = code[at..]
                .chars()
                .take_while(|c| !matches!(c, ';' | '(' | '<' | '!' | '=' | ')' | '>' | '\n'))
                .collect();
            let base: Vec<String> = if start == "super::" {
                module.path[..module.path.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            let tree = tree.trim_start_matches(start).replace(' ', "");
            for path in expand(&tree) {
                let mut full = base.clone();
                full.extend(
                    path.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                while !full.is_empty() && !known.contains(&full) {
                    full.pop();
                }
                if !full.is_empty() {
                    found.push((line, full));
                }
            }
        }
    }
    found
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.trim_end_matches("::").to_owned()];
    };
    let prefix = &tree[..open];
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut part = String::new();
    for c in tree[open + 1..].chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(c);
    }
    parts.push(part);
    parts
        .iter()
        .filter(|p| !p.is_empty() && p.as_str() != "self")
        .flat_map(|p| expand(p))
        .map(|p| format!("{prefix}{p}"))
        .chain(std::iter::once(prefix.trim_end_matches("::").to_owned()))
        .collect()
}

fn at(module: &Module, line: usize) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    format!(
        "{}:{line}",
        module.file.strip_prefix(root).unwrap().display()
    )
}

fn top(path: &[String]) -> &str {
    path.first().map_or("", String::as_str)
}

#[test]
fn imports_run_down_the_request_path() {
    let modules = modules();
    let known: BTreeSet<_> = modules.iter().map(|m| m.path.clone()).collect();
    let mut wrong = Vec::new();
    for module in &modules {
        let Some(here) = layer(&module.path) else {
            continue;
        };
        for (line, target) in imports(module, &known) {
            if let Some(there) = layer(&target)
                && there < here
            {
                wrong.push(format!(
                    "{}: imports {} (back up the path)",
                    at(module, line),
                    target.join("::")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports back up the request path:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let modules = modules();
    let known: BTreeSet<_> = modules.iter().map(|m| m.path.clone()).collect();
    // Edges between siblings: the children of the deepest module holding both ends.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, String>> = BTreeMap::new();
    for module in &modules {
        for (line, target) in imports(module, &known) {
            let common = module
                .path
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.path.len() || common == target.len() {
                continue; // within one module, or a parent and its child
            }
            let from = module.path[..=common].to_vec();
            let to = target[..=common].to_vec();
            edges
                .entry(from)
                .or_default()
                .entry(to)
                .or_insert_with(|| at(module, line));
        }
    }
    let mut circles = Vec::new();
    for (from, tos) in &edges {
        for (to, line) in tos {
            // A path back from `to` to `from` closes a circle.
            let mut seen = BTreeSet::new();
            let mut stack = vec![to.clone()];
            while let Some(next) = stack.pop() {
                if &next == from {
                    circles.push(format!(
                        "{} -> {} ({line}) and back",
                        from.join("::"),
                        to.join("::")
                    ));
                    break;
                }
                if seen.insert(next.clone()) {
                    stack.extend(edges.get(&next).into_iter().flat_map(|t| t.keys().cloned()));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// `code` names crate `name` (`name::…`, not `crate::name::…` nor `x_name::…`).
fn names_crate(code: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    code.match_indices(&needle).any(|(i, _)| {
        let before = code[..i].chars().next_back().unwrap_or(' ');
        !(before.is_alphanumeric() || before == '_' || before == ':')
    })
}

#[test]
fn nothing_below_http_names_http_types() {
    let mut wrong = Vec::new();
    for module in modules()
        .iter()
        .filter(|m| BELOW_HTTP.contains(&top(&m.path)))
    {
        for (line, code) in &module.lines {
            for name in ["hyper", "http", "hyper_util"] {
                if names_crate(code, name) {
                    wrong.push(format!("{}: names `{name}`", at(module, *line)));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "HTTP below the HTTP layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_error_module_picks_an_error_status() {
    let errors = [
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "REQUEST_TIMEOUT",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "UNPROCESSABLE_ENTITY",
        "TOO_MANY_REQUESTS",
        "INTERNAL_SERVER_ERROR",
        "SERVICE_UNAVAILABLE",
        "GATEWAY_TIMEOUT",
        "NOT_ACCEPTABLE",
        "CONFLICT",
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
        "URI_TOO_LONG",
        "LENGTH_REQUIRED",
        "NOT_IMPLEMENTED",
        "BAD_GATEWAY",
    ];
    let mut wrong = Vec::new();
    for module in modules().iter().filter(|m| m.path != ["http", "error"]) {
        for (line, code) in &module.lines {
            if errors
                .iter()
                .any(|e| code.contains(&format!("StatusCode::{e}")))
                || code.contains("StatusCode::from_u16")
            {
                wrong.push(at(module, *line));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "an error status picked outside src/http/error.rs (add a variant there):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_uring_listener_names_tokio_uring_and_nothing_names_std_instant() {
    let mut wrong = Vec::new();
    for module in &modules() {
        let uring = module
            .path
            .starts_with(&["server".to_owned(), "uring".to_owned()]);
        for (line, code) in &module.lines {
            if !uring && names_crate(code, "tokio_uring") {
                wrong.push(format!("{}: names tokio_uring", at(module, *line)));
            }
            let std_time = code.contains("std::time::Instant")
                || (code.contains("std::time::{") && code.contains("Instant"));
            if std_time {
                wrong.push(format!(
                    "{}: std::time::Instant (use tokio's)",
                    at(module, *line)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
