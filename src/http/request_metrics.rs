//! The request counter and latency histogram, with their handles resolved once per I/O
//! thread and (route label, status): a `counter!` call hashes its name and labels and looks the
//! series up in the registry, and formats the status, on every request.

use std::cell::RefCell;
use std::collections::HashMap;

use metrics::{Counter, Histogram};

use crate::metrics::{REQUEST_DURATION, REQUESTS_TOTAL};

thread_local! {
    static COUNTERS: RefCell<HashMap<(&'static str, u16), Counter>> = RefCell::new(HashMap::new());
    static DURATIONS: RefCell<HashMap<&'static str, Histogram>> = RefCell::new(HashMap::new());
}

/// Counts one answered request on the route labelled `route` (the route table's label)
/// and records how long it took.
pub fn record(route: &'static str, status: u16, seconds: f64) {
    COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry((route, status))
            .or_insert_with(|| {
                metrics::counter!(
                    REQUESTS_TOTAL,
                    "route" => route,
                    "status" => status.to_string()
                )
            })
            .increment(1);
    });
    DURATIONS.with_borrow_mut(|durations| {
        durations
            .entry(route)
            .or_insert_with(|| metrics::histogram!(REQUEST_DURATION, "route" => route))
            .record(seconds);
    });
}
