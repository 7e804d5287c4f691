//! infergate: an edge inference gateway in one process.
//!
//! Modules are declared in the order one request meets them.
#![forbid(unsafe_code)]

pub mod infer;
