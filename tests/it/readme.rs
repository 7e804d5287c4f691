//! The front page cannot lie: every command in README.md's "Try it" blocks runs, as
//! written, with curl against a gateway started on the defaults (the bundled models, a
//! development certificate), and its answer has what the comment under it shows: every
//! key, and every string or boolean value written out in full.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Gateway, Options};

/// One example: the command as the README writes it, and the answer it shows.
#[derive(Debug)]
struct Example {
    command: String,
    shown: String,
}

/// The examples of every ```sh block after the "Try it" heading.
fn examples(readme: &str) -> Vec<Example> {
    let try_it = readme
        .split("\n## Try it")
        .nth(1)
        .expect("README.md has a \"Try it\" section");
    let try_it = try_it.split("\n## ").next().unwrap_or(try_it);
    let mut examples: Vec<Example> = Vec::new();
    for block in try_it.split("```sh\n").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        let mut continued = false;
        for line in block.lines() {
            let line = line.trim_end();
            if let Some(shown) = line.strip_prefix('#') {
                if let Some(last) = examples.last_mut() {
                    last.shown.push_str(shown.trim());
                }
            } else if continued {
                let last = examples.last_mut().unwrap();
                last.command.push(' ');
                last.command
                    .push_str(line.trim().trim_end_matches('\\').trim_end());
                continued = line.ends_with('\\');
            } else if !line.is_empty() {
                examples.push(Example {
                    command: line.trim_end_matches('\\').trim_end().to_owned(),
                    shown: String::new(),
                });
                continued = line.ends_with('\\');
            }
        }
    }
    examples
}

/// The `"key":` names and the `"key":"value"` / `"key":true|false` pairs written out in
/// full (no `…`, no `<placeholder>`) in a shown answer.
fn expectations(shown: &str) -> (Vec<String>, Vec<(String, Value)>) {
    let mut keys = Vec::new();
    let mut pairs = Vec::new();
    let parts: Vec<&str> = shown.split('"').collect();
    // Odd indices are the insides of quotes.
    for i in (1..parts.len()).step_by(2) {
        let after = parts.get(i + 1).copied().unwrap_or("");
        if !after.starts_with(':') {
            continue;
        }
        let key = parts[i].to_owned();
        keys.push(key.clone());
        let rest = after[1..].trim_start();
        if rest.is_empty() {
            // A quoted value follows.
            let value = parts.get(i + 2).copied().unwrap_or("");
            if !value.contains('…') && !value.starts_with('<') {
                pairs.push((key, Value::String(value.to_owned())));
            }
        } else if rest.starts_with("true") || rest.starts_with("false") {
            pairs.push((key, Value::Bool(rest.starts_with("true"))));
        }
    }
    (keys, pairs)
}

/// Whether `json` has `key` (anywhere), with `value` when one is given.
fn has(json: &Value, key: &str, value: Option<&Value>) -> bool {
    match json {
        Value::Object(map) => {
            map.get(key)
                .is_some_and(|v| value.is_none_or(|want| v == want))
                || map.values().any(|v| has(v, key, value))
        }
        Value::Array(items) => items.iter().any(|v| has(v, key, value)),
        _ => false,
    }
}

#[test]
fn every_readme_example_runs_and_answers_what_it_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 5, "the README's examples: {examples:#?}");
    let gw = Gateway::start(Options {
        suite_key: false,
        ..Options::default()
    });
    let base = format!("https://localhost:{}", gw.addr.port());
    for example in &examples {
        assert!(
            example.command.starts_with("curl "),
            "a README example that is not a curl command: {}",
            example.command
        );
        assert!(
            !example.shown.is_empty(),
            "no answer shown for: {}",
            example.command
        );
        let command = example.command.replace("https://localhost:8443", &base);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{command} --silent --show-error --fail-with-body"))
            .current_dir(root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {stdout}"));
        let (keys, pairs) = expectations(&example.shown);
        assert!(
            !keys.is_empty(),
            "nothing to check in the answer shown for {command}"
        );
        for key in &keys {
            assert!(has(&json, key, None), "{command}: no {key:?} in {json}");
        }
        for (key, value) in &pairs {
            // The backend is the machine's to choose (epoll where io_uring is refused).
            if key == "io_backend" {
                continue;
            }
            assert!(
                has(&json, key, Some(value)),
                "{command}: {key:?} is not {value} in {json}"
            );
        }
    }
}

#[test]
fn the_examples_parse_as_the_readme_writes_them() {
    let readme = "intro\n## Try it\n```sh\ncurl -k https://localhost:8443/a -d \\\n  '{\"x\":1}'\n\
                  # {\"a\":\"b\",\"c\":true,\n#  \"d\":\"e…\"}\n```\n## Next\n```sh\ncurl no\n```\n";
    let found = examples(readme);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].command,
        "curl -k https://localhost:8443/a -d '{\"x\":1}'"
    );
    let (keys, pairs) = expectations(&found[0].shown);
    assert_eq!(keys, ["a", "c", "d"]);
    assert_eq!(
        pairs,
        [
            ("a".to_owned(), Value::String("b".into())),
            ("c".to_owned(), Value::Bool(true))
        ]
    );
}
