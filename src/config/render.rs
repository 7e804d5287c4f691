//! `infergate print-config`: the merged configuration as TOML, secrets redacted,
//! optionally with each value's source as a comment.

use std::fmt::Write as _;

use crate::config::Loaded;
use crate::config::layers::describe_key;

/// Renders the merged configuration as a TOML document. Secrets show as `[redacted]`
/// (their type serializes that way); with `sources`, a comment above each key says
/// which layer set it.
pub fn render_toml(loaded: &Loaded, sources: bool) -> String {
    let table = match toml::Table::try_from(&loaded.config) {
        Ok(table) => table,
        // Every config type serializes to TOML; this is only a safety net.
        Err(e) => return format!("# cannot render configuration: {e}\n"),
    };
    let mut out = String::from("# infergate configuration, merged from every layer\n");
    for (section, value) in &table {
        let toml::Value::Table(keys) = value else {
            line(&mut out, loaded, sources, section, section, value);
            continue;
        };
        let _ = write!(out, "\n[{section}]\n");
        for (key, value) in keys {
            let dotted = format!("{section}.{key}");
            line(&mut out, loaded, sources, &dotted, key, value);
        }
    }
    out
}

fn line(
    out: &mut String,
    loaded: &Loaded,
    sources: bool,
    dotted: &str,
    key: &str,
    value: &toml::Value,
) {
    if sources {
        let _ = writeln!(out, "# from {}", describe_key(&loaded.figment, dotted));
    }
    let _ = writeln!(out, "{key} = {value}");
}
