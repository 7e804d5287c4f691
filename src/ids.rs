//! Time-ordered ids (UUIDv7) for requests and predictions, made from a context of the
//! calling thread's own. `Uuid::now_v7` takes one process-wide mutex per id, shared by every
//! I/O thread, and a request makes two (its request id, its prediction id). Ids stay unique
//! across threads (after the millisecond, 74 bits of counter seeded at random and random
//! tail) and ordered within each thread.

use uuid::{ContextV7, Timestamp, Uuid};

thread_local! {
    static CONTEXT: ContextV7 = const { ContextV7::new() };
}

/// A new UUIDv7: now, after every id this thread made before.
pub fn uuid_v7() -> Uuid {
    CONTEXT.with(|context| Uuid::new_v7(Timestamp::now(context)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_ordered_per_thread_and_unique_across_threads() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| uuid_v7()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ordered within a thread"
        );
        let other: Vec<Uuid> = std::thread::spawn(|| (0..10_000).map(|_| uuid_v7()).collect())
            .join()
            .unwrap();
        let all: std::collections::HashSet<Uuid> = ids.iter().chain(&other).copied().collect();
        assert_eq!(all.len(), 20_000);
    }
}
