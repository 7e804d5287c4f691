//! Configuration precedence, end to end through the real binary: defaults < default.toml
//! < <profile>.toml < --config FILE < environment < secret file < flag. Each layer
//! overrides the one below, and a bad value in each layer is reported naming that layer.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::bin;

/// One temp config directory and the layers set in it.
struct Layers {
    dir: tempfile::TempDir,
    profile: bool,
    config_file: bool,
    env: Option<String>,
    secret: Option<String>,
    flag: Option<String>,
}

impl Layers {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            profile: false,
            config_file: false,
            env: None,
            secret: None,
            flag: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, io_threads: &str) -> &Self {
        std::fs::write(
            self.path(name),
            format!("[server]\nio_threads = {io_threads}\n"),
        )
        .unwrap();
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.arg("--config-dir").arg(self.dir.path()).args(args);
        cmd.env("INFERGATE_SECRETS__DIR", self.path("secrets"));
        for var in [
            "INFERGATE_SERVER__IO_THREADS",
            "INFERGATE_SERVER__IO_THREADS_FILE",
            "INFERGATE_PROFILE",
            "INFERGATE_CONFIG",
            "INFERGATE_CONFIG_DIR",
        ] {
            cmd.env_remove(var);
        }
        if self.profile {
            cmd.args(["--profile", "edge"]);
        }
        if self.config_file {
            cmd.arg("--config").arg(self.path("extra.toml"));
        }
        if let Some(v) = &self.env {
            cmd.env("INFERGATE_SERVER__IO_THREADS", v);
        }
        if let Some(v) = &self.secret {
            std::fs::write(self.path("io_threads.secret"), format!("{v}\n")).unwrap();
            cmd.env(
                "INFERGATE_SERVER__IO_THREADS_FILE",
                self.path("io_threads.secret"),
            );
        }
        if let Some(v) = &self.flag {
            cmd.args(["--io-threads", v]);
        }
        cmd.output().unwrap()
    }

    /// `server.io_threads` and the source comment above it, from `print-config --sources`.
    fn io_threads(&self) -> (i64, String) {
        let out = self.run(&["print-config", "--sources"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table: toml::Table = toml::from_str(&stdout).unwrap();
        let value = table["server"]["io_threads"].as_integer().unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("io_threads ="))
            .unwrap();
        (value, lines[at - 1].to_owned())
    }

    /// `print-config --sources`, which must succeed.
    fn printed(&self) -> String {
        let out = self.run(&["print-config", "--sources"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn error(&self) -> String {
        let out = self.run(&["check-config"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn shows(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn each_layer_overrides_the_one_below() {
    let mut l = Layers::new();
    let (v, src) = l.io_threads();
    assert_eq!(v, 0);
    assert!(src.contains("built-in default"), "{src}");

    l.file("default.toml", "2");
    let (v, src) = l.io_threads();
    assert_eq!(v, 2);
    assert!(src.contains(&shows(l.dir.path(), "default.toml")), "{src}");

    l.file("edge.toml", "3");
    l.profile = true;
    let (v, src) = l.io_threads();
    assert_eq!(v, 3);
    assert!(src.contains("edge.toml"), "{src}");

    l.file("extra.toml", "4");
    l.config_file = true;
    let (v, src) = l.io_threads();
    assert_eq!(v, 4);
    assert!(src.contains("extra.toml"), "{src}");

    l.env = Some("5".into());
    let (v, src) = l.io_threads();
    assert_eq!(v, 5);
    assert!(src.contains("INFERGATE_SERVER__IO_THREADS"), "{src}");

    l.secret = Some("6".into());
    let (v, src) = l.io_threads();
    assert_eq!(
        v, 6,
        "the secret file (trailing newline stripped) wins over the env"
    );
    assert!(src.contains("io_threads.secret"), "{src}");

    l.flag = Some("7".into());
    let (v, src) = l.io_threads();
    assert_eq!(v, 7);
    assert!(src.contains("--io-threads"), "{src}");
}

#[test]
fn a_bad_value_in_each_layer_names_that_layer() {
    let l = Layers::new();
    l.file("default.toml", "\"two\"");
    let e = l.error();
    assert!(
        e.contains(&shows(l.dir.path(), "default.toml")) && e.contains("io_threads"),
        "{e}"
    );

    let mut l = Layers::new();
    l.file("edge.toml", "-3");
    l.profile = true;
    let e = l.error();
    assert!(e.contains("edge.toml") && e.contains("io_threads"), "{e}");

    let mut l = Layers::new();
    l.file("extra.toml", "[1]");
    l.config_file = true;
    let e = l.error();
    assert!(e.contains("extra.toml") && e.contains("io_threads"), "{e}");

    let mut l = Layers::new();
    l.env = Some("five".into());
    let e = l.error();
    assert!(e.contains("INFERGATE_SERVER__IO_THREADS"), "{e}");

    let mut l = Layers::new();
    l.secret = Some("six".into());
    let e = l.error();
    assert!(
        e.contains("io_threads.secret") && e.contains("Docker secret"),
        "{e}"
    );

    let mut l = Layers::new();
    l.flag = Some("seven".into());
    let e = l.error();
    assert!(e.contains("--io-threads"), "{e}");

    // Out of range (valid type): named by the layer that set it.
    let mut l = Layers::new();
    l.env = Some("100000".into());
    let e = l.error();
    assert!(
        e.contains("INFERGATE_SERVER__IO_THREADS") && e.contains("at most"),
        "{e}"
    );
}

#[test]
fn secrets_directory_files_are_read_and_never_printed() {
    let l = Layers::new();
    let secrets = l.path("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("tls_key"), "PRIVATE-KEY-MATERIAL\n").unwrap();
    std::fs::write(secrets.join("tls_cert"), "CERT-TEXT\n").unwrap();
    let stdout = l.printed();
    assert!(!stdout.contains("PRIVATE-KEY-MATERIAL"), "{stdout}");
    assert!(stdout.contains("key = \"[redacted]\""), "{stdout}");
    assert!(
        stdout.contains("cert = \"CERT-TEXT\""),
        "trailing newline stripped: {stdout}"
    );
    assert!(stdout.contains(&shows(&secrets, "tls_key")), "{stdout}");
}

#[test]
fn unknown_keys_are_errors() {
    let l = Layers::new();
    std::fs::write(l.path("default.toml"), "[server]\nmax_body_byte = 5\n").unwrap();
    let e = l.error();
    assert!(e.contains("max_body_byte"), "{e}");
}

#[test]
fn database_secrets_are_read_never_printed_and_bad_values_name_their_source() {
    let l = Layers::new();
    let secrets = l.path("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("database_url"),
        "postgres://infergate:URL-PASSWORD@db:5432/infergate\n",
    )
    .unwrap();
    std::fs::write(secrets.join("database_password"), "PG-PASSWORD\n").unwrap();
    let stdout = l.printed();
    assert!(
        !stdout.contains("URL-PASSWORD") && !stdout.contains("PG-PASSWORD"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&shows(&secrets, "database_url")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&shows(&secrets, "database_password")),
        "{stdout}"
    );

    // Not a connection string, from a file: the file and key are named.
    std::fs::write(secrets.join("database_url"), "this is not a url\n").unwrap();
    let e = l.error();
    assert!(
        e.contains("database.url") && e.contains("database_url"),
        "{e}"
    );
    std::fs::remove_file(secrets.join("database_url")).unwrap();
    std::fs::write(
        l.path("default.toml"),
        "[prediction_log]\nbatch_rows = 0\nspool_max_bytes = 10\n",
    )
    .unwrap();
    let e = l.error();
    assert!(
        e.contains("prediction_log.batch_rows") && e.contains("default.toml"),
        "{e}"
    );
    assert!(e.contains("prediction_log.spool_max_bytes"), "{e}");
}

#[test]
fn print_config_defaults_and_reference_are_the_committed_files() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let print = |flag: &str| {
        // A config directory that does not parse: the generated files read no configuration.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), "not toml [").unwrap();
        let out = Command::new(bin())
            .arg("--config-dir")
            .arg(dir.path())
            .args(["print-config", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let committed = std::fs::read_to_string(repo.join("config/default.toml")).unwrap();
    assert_eq!(
        print("--defaults"),
        committed,
        "regenerate config/default.toml"
    );
    let docs = std::fs::read_to_string(repo.join("docs/configuration.md")).unwrap();
    let reference = print("--reference");
    assert!(
        docs.contains(reference.trim()),
        "regenerate the reference in docs/configuration.md"
    );
}
