//! The API key file: one key per line, `NAME SCOPES sha256:HEX`, holding a SHA-256 of each
//! key and never the key itself; and the lookup of a presented key, in constant time.
//!
//! ```text
//! # infergate API keys (infergate hash-key prints a line to add)
//! mobile-app  predict        sha256:9f2c...64 hex digits
//! prometheus  admin          sha256:1b7e...
//! ops         predict,admin  sha256:c0d4...
//! ```
//!
//! Keys are 256 random bits (`infergate hash-key` makes them), so one fast hash is enough:
//! nothing about a key's digest can be guessed short of guessing the key. A presented key
//! is found by its digest in a hash map: whatever the lookup's timing tells is about the
//! digest of the attacker's own input, which says nothing about any stored key's bytes
//! (a digest's prefix is no step towards its preimage); the entry found is then compared
//! with the digest in constant time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::hex;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `POST /predict`.
    Predict,
    /// `/metrics`, `/stats` and every other route; implies `predict`.
    Admin,
}

impl Scope {
    /// The scope's name in the key file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "predict" => Some(Self::Predict),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The scopes one key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    predict: bool,
    admin: bool,
}

impl Scopes {
    /// Scopes from a list.
    pub fn of(list: &[Scope]) -> Self {
        let mut s = Self::default();
        for scope in list {
            match scope {
                Scope::Predict => s.predict = true,
                Scope::Admin => s.admin = true,
            }
        }
        s
    }

    /// Whether these scopes allow what `needed` guards (`admin` allows everything).
    pub fn allow(self, needed: Scope) -> bool {
        self.admin || (needed == Scope::Predict && self.predict)
    }

    /// The scopes as the key file writes them (`predict,admin`).
    pub fn render(self) -> String {
        [(self.predict, Scope::Predict), (self.admin, Scope::Admin)]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A SHA-256 digest of a key.
pub type KeyDigest = [u8; 32];

/// One configured key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its name: what logs, spans and metrics show (never the key).
    pub name: Arc<str>,
    /// What it may do.
    pub scopes: Scopes,
    digest: KeyDigest,
}

/// The keys in force. Empty is a valid set: every guarded route is refused.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    entries: Vec<KeyEntry>,
    /// Entry index by digest.
    by_digest: HashMap<KeyDigest, usize>,
}

/// A line of the key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct KeyFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Most bytes of a key name: it goes into logs, spans and log rows.
const MAX_NAME: usize = 64;

impl KeySet {
    /// Parses the key file's text. Blank lines and `#` comments are skipped; every other
    /// line is `NAME SCOPES sha256:HEX`. Names and digests must be unique.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        let mut by_digest = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let err = |message: String| KeyFileError { line, message };
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, scopes, hash] = fields[..] else {
                return Err(err(format!(
                    "expected `NAME SCOPES sha256:HEX`, got {} fields",
                    fields.len()
                )));
            };
            if name.len() > MAX_NAME
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            {
                return Err(err(format!(
                    "the name {name:?} must be 1 to {MAX_NAME} letters, digits, '-', '_', '.' or '@'"
                )));
            }
            let mut list = Vec::new();
            for s in scopes.split(',') {
                match Scope::parse(s) {
                    Some(scope) => list.push(scope),
                    None => {
                        return Err(err(format!(
                            "unknown scope {s:?} (scopes: predict, admin; comma-separated)"
                        )));
                    }
                }
            }
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(parse_hex)
                .ok_or_else(|| {
                    err("the hash must be `sha256:` and 64 hex digits (infergate hash-key prints it)"
                        .to_owned())
                })?;
            if !names.insert(name.to_owned()) {
                return Err(err(format!("the name {name:?} is used twice")));
            }
            if by_digest.insert(digest, entries.len()).is_some() {
                return Err(err("this hash is already given to another key".to_owned()));
            }
            entries.push(KeyEntry {
                name: Arc::from(name),
                scopes: Scopes::of(&list),
                digest,
            });
        }
        Ok(Self { entries, by_digest })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key `presented` is, if any. Time does not depend on how much of a stored key
    /// `presented` matches: it is hashed first, and only digests are compared (see the
    /// module doc).
    pub fn find(&self, presented: &[u8]) -> Option<&KeyEntry> {
        self.find_digest(&digest(presented))
    }

    fn find_digest(&self, digest: &KeyDigest) -> Option<&KeyEntry> {
        let entry = &self.entries[*self.by_digest.get(digest)?];
        bool::from(entry.digest.ct_eq(digest)).then_some(entry)
    }
}

/// The SHA-256 of a key.
pub fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

/// A fresh key: `ig_` and 256 random bits as 64 hex digits.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bits = [0u8; 32];
    getrandom::fill(&mut bits)?;
    Ok(format!("ig_{}", hex::encode(&bits)))
}

/// The key file line for `key`, named `name`, with `scopes`.
pub fn line(name: &str, scopes: Scopes, key: &str) -> String {
    format!(
        "{name} {} sha256:{}",
        scopes.render(),
        hex::encode(&digest(key.as_bytes()))
    )
}

fn parse_hex(s: &str) -> Option<KeyDigest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parses a comma-separated scope list, as `infergate hash-key --scopes` takes it.
pub fn parse_scopes(list: &str) -> Result<Scopes, String> {
    list.split(',')
        .map(|s| Scope::parse(s.trim()).ok_or_else(|| format!("unknown scope {s:?}")))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| Scopes::of(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ig_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn set() -> KeySet {
        let text = format!(
            "# comment\n\n{}\n{}  # trailing comment\n",
            line("app", Scopes::of(&[Scope::Predict]), KEY),
            line("ops", Scopes::of(&[Scope::Admin]), "ig_other"),
        );
        KeySet::parse(&text).unwrap()
    }

    #[test]
    fn finds_a_key_by_its_digest_and_nothing_else() {
        let keys = set();
        assert_eq!(keys.len(), 2);
        let app = keys.find(KEY.as_bytes()).unwrap();
        assert_eq!(&*app.name, "app");
        assert!(app.scopes.allow(Scope::Predict));
        assert!(!app.scopes.allow(Scope::Admin));
        let ops = keys.find(b"ig_other").unwrap();
        assert!(ops.scopes.allow(Scope::Predict), "admin implies predict");
        assert!(keys.find(b"").is_none());
        assert!(keys.find(&KEY.as_bytes()[..KEY.len() - 1]).is_none());
        // The file holds digests: the key itself is no key.
        let hashed = line("app", Scopes::of(&[Scope::Predict]), KEY);
        let hex = hashed.rsplit(':').next().unwrap();
        assert!(keys.find(hex.as_bytes()).is_none());
    }

    /// What is compared is a digest, so a presented key's leading bytes that match the real
    /// key's give no matching leading bytes to compare: for every length of shared prefix,
    /// the digests share no more than chance does (here, at most 2 leading bytes of 32).
    #[test]
    fn the_compare_does_not_depend_on_how_many_leading_bytes_match() {
        let real = digest(KEY.as_bytes());
        let mut longest = 0;
        for shared in 0..KEY.len() {
            let mut guess = KEY.as_bytes().to_vec();
            guess[shared] ^= 0x01;
            let d = digest(&guess);
            let common = real.iter().zip(&d).take_while(|(a, b)| a == b).count();
            longest = longest.max(common);
            assert!(set().find(&guess).is_none());
        }
        assert!(longest <= 2, "digests of near misses share {longest} bytes");
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        for (text, wants) in [
            ("a predict", "2 fields"),
            ("a predict sha256:00", "64 hex digits"),
            ("a root sha256:00", "unknown scope"),
            ("a b predict sha256:00", "4 fields"),
            ("bad/name predict sha256:00", "must be 1 to 64"),
        ] {
            let err = KeySet::parse(&format!("# one\n{text}\n")).unwrap_err();
            assert_eq!(err.line, 2, "{err}");
            assert!(err.to_string().contains(wants), "{err}");
        }
        let twice = format!(
            "{}\n{}\n",
            line("a", Scopes::of(&[Scope::Predict]), "k1"),
            line("a", Scopes::of(&[Scope::Predict]), "k2"),
        );
        assert!(KeySet::parse(&twice).unwrap_err().message.contains("twice"));
        let same = format!(
            "{}\n{}\n",
            line("a", Scopes::of(&[Scope::Predict]), "k1"),
            line("b", Scopes::of(&[Scope::Predict]), "k1"),
        );
        assert!(
            KeySet::parse(&same)
                .unwrap_err()
                .message
                .contains("already")
        );
    }

    #[test]
    fn generated_keys_are_fresh_and_hash_to_their_line() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        let keys = KeySet::parse(&line("new", Scopes::of(&[Scope::Admin]), &a)).unwrap();
        assert_eq!(&*keys.find(a.as_bytes()).unwrap().name, "new");
        assert_eq!(
            parse_scopes("predict, admin").unwrap().render(),
            "predict,admin"
        );
        assert!(parse_scopes("root").is_err());
    }
}
