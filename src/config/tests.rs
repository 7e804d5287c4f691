//! Loading as a whole: layers, validation across sections, errors naming their source.

use std::path::Path;
use std::time::Duration;

use super::*;

#[test]
fn defaults_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(loaded.config.server.listen.port(), 8443);
    assert_eq!(loaded.config.server.max_body_bytes, 10 * 1024 * 1024);
    assert!(loaded.config.tls.enabled);
}

#[test]
fn semantic_errors_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[compute]\nqueue_capacity = 0\n[tls]\ncert_path = \"/x.pem\"\n",
    )
    .unwrap();
    let errors = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    })
    .unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("compute.queue_capacity"), "{text}");
    assert!(text.contains("tls.cert"), "{text}");
    assert!(text.contains("default.toml"), "{text}");
}

#[test]
fn rollout_knobs_default_off_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    })
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.check_socket, None);
    assert!(!c.server.standby);
    assert_eq!(c.server.idle_exit(), None);
    assert_eq!(c.shutdown.linger(), Duration::from_millis(1000));

    std::fs::write(
        dir.path().join("default.toml"),
        format!(
            "[server]\ncheck_socket = \"/run/{}.sock\"\nidle_exit_s = 99999999999\n\
             [shutdown]\ndrain_timeout_ms = 500\nlinger_ms = 500\n",
            "x".repeat(120)
        ),
    )
    .unwrap();
    let text = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(text.contains("server.check_socket"), "{text}");
    assert!(text.contains("server.idle_exit_s"), "{text}");
    assert!(text.contains("shutdown.linger_ms"), "{text}");
}

#[test]
fn standby_and_idle_exit_flags_are_the_top_layer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[server]\nstandby = false\nidle_exit_s = 5\ncheck_socket = \"/tmp/c.sock\"\n",
    )
    .unwrap();
    let loaded = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        flags: FlagOverrides {
            standby: Some(true),
            idle_exit_s: Some(300),
            ..FlagOverrides::default()
        },
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(loaded.config.server.standby);
    assert_eq!(
        loaded.config.server.idle_exit(),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        loaded.config.server.check_socket.as_deref(),
        Some(Path::new("/tmp/c.sock"))
    );
}

#[test]
fn missing_profile_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let errors = load(&LoadOptions {
        config_dir: dir.path().to_owned(),
        profile: Some("nope".to_owned()),
        ..LoadOptions::default()
    })
    .unwrap_err();
    assert!(errors.to_string().contains("nope.toml"), "{errors}");
}
