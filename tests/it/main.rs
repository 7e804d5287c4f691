//! The integration suite: one test binary (one link of the whole dependency tree, where
//! there were 30), a module per area. Each starts the real `infergate` binary, real Redis
//! and real PostgreSQL where it needs them (`support`), and speaks real HTTPS to it;
//! `harness` drives in-process gateways over an in-memory pipe (`support::in_process`).
//! `tests/otlp.rs` stays its own binary: it needs the `otlp` feature.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

mod auth;
mod bad_input;
mod cache;
mod check_socket;
mod cli;
mod config;
mod cuda_build;
mod deadlines;
mod fd_limits;
mod harness;
mod hostile;
mod http_api;
mod image_api;
mod image_parity;
mod io_backend;
mod model;
mod mtls;
mod oip;
mod on_demand;
mod onnx_images;
mod onnx_models;
mod oip_clients;
mod openapi;
mod overload;
mod pages;
mod parking;
mod precision;
mod prediction_log;
mod protected_mode;
mod rate_limit;
mod readme;
mod redirect;
mod redis_cache;
mod refusals;
mod repository;
mod request_logs;
mod shutdown;
mod socket_activation;
mod standby;
mod timeouts;
mod tidy;
mod tls_reload;
