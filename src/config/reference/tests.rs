//! The generated files against the sections: current, complete, and true to the defaults.

use std::collections::BTreeSet;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};

use super::*;

/// What regenerates the files.
const REGENERATE: &str = "UPDATE_GENERATED=1 cargo test --lib config::reference";

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Compares `path` with `expected`; rewrites it instead with `UPDATE_GENERATED=1`.
fn ensure_current(path: &str, expected: &str) {
    let file = repo_file(path);
    let actual = std::fs::read_to_string(&file).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&file, expected).unwrap();
        return;
    }
    let line = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .map_or(actual.lines().count().min(expected.lines().count()), |i| i);
    panic!(
        "{path} is not what the sections in src/config/ generate (first difference at line \
         {}); regenerate it with `{REGENERATE}`",
        line + 1
    );
}

#[test]
fn generated_files_are_current() {
    ensure_current("config/default.toml", &defaults_toml());
    let docs = std::fs::read_to_string(repo_file("docs/configuration.md")).unwrap();
    let spliced = splice(&docs, &reference_markdown()).unwrap_or_else(|| {
        panic!("docs/configuration.md lacks the lines {BEGIN_MARKER} and {END_MARKER}")
    });
    ensure_current("docs/configuration.md", &spliced);
}

/// Every key path in `value`, dotted; arrays of tables as `key[].field`.
fn key_paths(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (name, value) in table {
        let path = match prefix {
            "" => name.clone(),
            _ => format!("{prefix}.{name}"),
        };
        if let toml::Value::Table(inner) = value {
            key_paths(&path, inner, out);
        } else {
            out.insert(path);
        }
    }
}

#[test]
fn every_key_is_documented_and_has_a_default_or_an_example() {
    let defaults = defaults();
    let mut documented = BTreeSet::new();
    for table in tables() {
        assert!(!table.doc.trim().is_empty(), "[{}] has no doc", table.path);
        for key in table.keys(&defaults) {
            assert!(
                key.doc.iter().any(|l| !l.trim().is_empty()),
                "{} has no doc comment",
                key.path
            );
            assert!(
                table.is_array_element() || key.default.is_some() || key.example.is_some(),
                "{} has no default, so its doc needs an `Example: `VALUE`` line",
                key.path
            );
            if !key.is_table {
                documented.insert(key.path);
            }
        }
    }
    let mut keys = BTreeSet::new();
    key_paths("", &defaults, &mut keys);
    let undocumented: Vec<_> = keys.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from reference::tables(): {undocumented:?}"
    );
}

#[test]
fn default_toml_is_the_built_in_defaults_and_every_example_is_a_valid_value() {
    let built_in = toml::to_string(&Config::default()).unwrap();
    let generated = defaults_toml();
    let from_file: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&generated))
        .extract()
        .unwrap();
    assert_eq!(toml::to_string(&from_file).unwrap(), built_in);
    // Uncommenting an example gives a value of the key's type.
    let defaults = defaults();
    for table in tables().iter().filter(|t| !t.is_array_element()) {
        for key in table.keys(&defaults) {
            let Some(example) = key.example else { continue };
            let text = format!("[{}]\n{} = {example}\n", table.path, key.name);
            let parsed = Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(&text))
                .extract::<Config>();
            assert!(
                parsed.is_ok(),
                "{}: example {example}: {parsed:?}",
                key.path
            );
        }
    }
}

#[test]
fn a_key_shows_its_flag_secret_and_environment_variable() {
    let reference = reference_markdown();
    let row = |name: &str| {
        reference
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` ")))
            .unwrap_or_default()
            .to_owned()
    };
    let listen = row("listen");
    assert!(listen.contains("`INFERGATE_SERVER__LISTEN`"), "{listen}");
    assert!(listen.contains("Flag: `--listen`"), "{listen}");
    assert!(row("cert").contains("Docker secret: `tls_cert`"));
    assert!(reference.contains("`INFERGATE_CACHE__L1__MAX_ENTRIES`"));
    let toml = defaults_toml();
    assert!(toml.contains("\n[cache.l1]\n"), "{toml}");
    assert!(toml.contains("# check_socket = \"/run/infergate/check.sock\"\n"));
}

#[test]
fn splice_replaces_only_between_the_markers() {
    let doc = format!("# T\n\ntext\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n\nafter\n");
    assert_eq!(
        splice(&doc, "new").unwrap(),
        format!("# T\n\ntext\n\n{BEGIN_MARKER}\nnew\n{END_MARKER}\n\nafter\n")
    );
    assert_eq!(splice("no markers", "new"), None);
}
