//! `config/default.toml` and the configuration reference (docs/configuration.md), generated
//! from the sections: each key's doc comment (kept for run time by `documented`), its
//! built-in default, and the environment variable, flag and secret file that set it.
//!
//! A key's doc comment may end with a line `Example: `VALUE``: the key is then written
//! commented out, with that value (a key without a default needs one; a key whose default
//! depends on the build has one, so the file never pins it).
//!
//! After changing a section, regenerate both files with
//! `UPDATE_GENERATED=1 cargo test --lib config::reference` (the test fails when either
//! drifts); `infergate print-config --defaults` and `--reference` print them.

use std::fmt::Write as _;

use documented::{Documented, DocumentedFields};

use crate::config::layers::{FLAGS, env_var_name};
use crate::config::secrets::KNOWN_SECRETS;
use crate::config::{
    AdmissionSection, AuthSection, BatchSection, CacheSection, CoalesceSection, ComputeSection,
    Config, DatabaseSection, HttpSection, ImageModelSection, ImageSection, L1Section, LogSection,
    ModelSection, OtlpSection, PredictionLogSection, RateLimitSection, ReadySection,
    RedirectSection, RedisSection, RepositorySection, SecretsSection, ServerSection, ShadowSection,
    ShutdownSection, TlsSection, UiSection,
};

/// The marker lines docs/configuration.md holds the reference between.
pub const BEGIN_MARKER: &str = "<!-- BEGIN GENERATED CONFIG REFERENCE -->";
/// See [`BEGIN_MARKER`].
pub const END_MARKER: &str = "<!-- END GENERATED CONFIG REFERENCE -->";

/// One table of keys: a section, a table inside one (`cache.l1`), or the element of an
/// array of tables (`image.models[]`).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Dotted path: `server`, `cache.l1`, `image.models[]`.
    pub path: &'static str,
    /// The table's type's doc comment.
    pub doc: &'static str,
    /// Its keys, in declaration order.
    pub keys: &'static [&'static str],
    /// Each key's doc comment, in the same order.
    pub docs: &'static [&'static str],
}

fn table<T: Documented + DocumentedFields>(path: &'static str) -> Table {
    Table {
        path,
        doc: T::DOCS,
        keys: T::FIELD_NAMES,
        docs: T::FIELD_DOCS,
    }
}

/// Every table, in the order of [`Config`]'s fields; a new section joins here.
pub fn tables() -> [Table; 26] {
    [
        table::<ServerSection>("server"),
        table::<TlsSection>("tls"),
        table::<RedirectSection>("redirect"),
        table::<HttpSection>("http"),
        table::<AuthSection>("auth"),
        table::<UiSection>("ui"),
        table::<RateLimitSection>("rate_limit"),
        table::<AdmissionSection>("admission"),
        table::<ComputeSection>("compute"),
        table::<ModelSection>("model"),
        table::<ImageSection>("image"),
        table::<ImageModelSection>("image.models[]"),
        table::<RepositorySection>("repository"),
        table::<ShadowSection>("shadow"),
        table::<CacheSection>("cache"),
        table::<L1Section>("cache.l1"),
        table::<RedisSection>("redis"),
        table::<BatchSection>("batch"),
        table::<CoalesceSection>("coalesce"),
        table::<DatabaseSection>("database"),
        table::<PredictionLogSection>("prediction_log"),
        table::<ReadySection>("ready"),
        table::<LogSection>("log"),
        table::<OtlpSection>("otlp"),
        table::<ShutdownSection>("shutdown"),
        table::<SecretsSection>("secrets"),
    ]
}

/// One key as the generated files show it.
#[derive(Debug, Clone)]
pub struct Key {
    /// Dotted path (`server.listen`, `image.models[].path`).
    pub path: String,
    /// Its name in its table (`listen`).
    pub name: &'static str,
    /// The doc comment's lines, the `Example:` line left out.
    pub doc: Vec<&'static str>,
    /// The value of the `Example:` line.
    pub example: Option<&'static str>,
    /// The built-in default; `None` when unset by default (or in an array's element).
    pub default: Option<toml::Value>,
    /// Set by a table of its own (`cache.l1`), documented there.
    pub is_table: bool,
}

impl Table {
    /// The table's keys, with their defaults looked up in `defaults`.
    pub fn keys(&self, defaults: &toml::Table) -> Vec<Key> {
        let own = self.path.split('.').try_fold(defaults, |t, part| {
            t.get(part).and_then(toml::Value::as_table)
        });
        self.keys
            .iter()
            .zip(self.docs)
            .map(|(&name, doc)| {
                let default = own.and_then(|t| t.get(name)).cloned();
                let example = doc.lines().find_map(|l| {
                    let value = l.strip_prefix("Example: `")?;
                    value.strip_suffix('`')
                });
                Key {
                    path: format!("{}.{name}", self.path),
                    name,
                    doc: doc
                        .lines()
                        .filter(|l| !l.starts_with("Example: "))
                        .collect(),
                    example,
                    is_table: default.as_ref().is_some_and(toml::Value::is_table),
                    default,
                }
            })
            .collect()
    }

    /// Whether this is the element of an array of tables, documented but not written out.
    pub fn is_array_element(&self) -> bool {
        self.path.ends_with("[]")
    }
}

/// The built-in defaults as a TOML table.
pub fn defaults() -> toml::Table {
    // Every config type serializes to TOML (a test renders the defaults).
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

/// The command-line flag that sets `path`, if any.
fn flag(path: &str) -> Option<&'static str> {
    FLAGS.iter().find(|(k, _)| *k == path).map(|(_, f)| *f)
}

/// The file in the secrets directory that sets `path`, if any.
fn secret(path: &str) -> Option<&'static str> {
    KNOWN_SECRETS
        .iter()
        .find(|(_, k)| *k == path)
        .map(|(f, _)| *f)
}

const TOML_HEADER: &str = "\
# infergate configuration: every key, its default, and what it does.
# Generated from src/config/<section>.rs by `infergate print-config --defaults`: edit the
# doc comments and defaults there, then regenerate (see src/config/reference.rs).
#
# Layers, later wins: built-in defaults < this file < config/<profile>.toml (--profile) <
# --config FILE < INFERGATE_* environment variables (`__` nests: INFERGATE_SERVER__LISTEN) <
# Docker secrets (<secrets.dir>/tls_cert, tls_key, or INFERGATE_<KEY>_FILE=path) < flags.
# Check a change with `infergate check-config`; see the result with
# `infergate print-config --sources`.
";

/// `config/default.toml`: every key with its default (or, unset by default, an example,
/// commented out), each under its doc comment.
pub fn defaults_toml() -> String {
    let defaults = defaults();
    let mut out = String::from(TOML_HEADER);
    for table in tables().iter().filter(|t| !t.is_array_element()) {
        out.push('\n');
        comment(&mut out, table.doc.lines());
        let _ = writeln!(out, "[{}]", table.path);
        for key in table.keys(&defaults).iter().filter(|k| !k.is_table) {
            comment(&mut out, key.doc.iter().copied());
            if let Some(flag) = flag(&key.path) {
                let _ = writeln!(out, "# Flag: {flag}.");
            }
            if let Some(file) = secret(&key.path) {
                let _ = writeln!(out, "# Docker secret: {file}.");
            }
            let _ = match (&key.example, &key.default) {
                (Some(example), _) => writeln!(out, "# {} = {example}", key.name),
                (None, Some(value)) => writeln!(out, "{} = {value}", key.name),
                // Caught by a test: a key unset by default needs an example.
                (None, None) => writeln!(out, "# {} =", key.name),
            };
        }
    }
    out
}

fn comment<'a>(out: &mut String, lines: impl Iterator<Item = &'a str>) {
    for line in lines {
        match line.is_empty() {
            true => out.push_str("#\n"),
            false => {
                let _ = writeln!(out, "# {line}");
            }
        }
    }
}

/// The reference: one table per section (key, default, environment variable, what it
/// does), to go between [`BEGIN_MARKER`] and [`END_MARKER`].
pub fn reference_markdown() -> String {
    let defaults = defaults();
    let mut out = String::new();
    for table in tables() {
        let heading = match table.path.strip_suffix("[]") {
            Some(array) => format!("[[{array}]]"),
            None => format!("[{}]", table.path),
        };
        let _ = writeln!(
            out,
            "\n### `{heading}`\n\n{}\n",
            one_line(table.doc.lines())
        );
        out.push_str("| key | default | environment variable | what it does |\n");
        out.push_str("|---|---|---|---|\n");
        for key in table.keys(&defaults).iter().filter(|k| !k.is_table) {
            let default = match (&key.default, table.is_array_element()) {
                (_, true) => "—".to_owned(),
                (Some(value), false) => format!("`{value}`"),
                (None, false) => "unset".to_owned(),
            };
            let env = match table.is_array_element() {
                true => "—".to_owned(),
                false => format!(
                    "`{}`",
                    env_var_name(&key.path.split('.').collect::<Vec<_>>())
                ),
            };
            let mut what = one_line(key.doc.iter().copied());
            if let Some(example) = key.example {
                let _ = write!(what, " Example: `{example}`.");
            }
            if let Some(flag) = flag(&key.path) {
                let _ = write!(what, " Flag: `{flag}`.");
            }
            if let Some(file) = secret(&key.path) {
                let _ = write!(what, " Docker secret: `{file}`.");
            }
            let _ = writeln!(
                out,
                "| `{}` | {} | {env} | {} |",
                key.name,
                cell(&default),
                cell(&what)
            );
        }
    }
    out
}

/// Doc lines as one paragraph.
fn one_line<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text fit for a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `document` with the text between the markers replaced by `reference`; `None` when the
/// markers are missing.
pub fn splice(document: &str, reference: &str) -> Option<String> {
    let start = document.find(BEGIN_MARKER)? + BEGIN_MARKER.len();
    let end = document.find(END_MARKER)?;
    (start <= end).then(|| format!("{}\n{reference}\n{}", &document[..start], &document[end..]))
}

#[cfg(test)]
mod tests;
