//! One jemalloc arena for every load on demand. jemalloc gives each new thread one of its
//! arenas in turn, and freed pages wait in the arena they came from (for its decay time,
//! 10 s) before going back to the OS: a model evicted in one arena left its pages there,
//! where the next load, on another blocking thread in another arena, could not reuse them,
//! and under churn the process held several models' worth of freed pages. In one arena the
//! next load takes the pages the last eviction freed: fewer page faults, and RSS near what
//! is loaded.

use std::sync::OnceLock;

use tikv_jemalloc_ctl::{Access, AsName};

/// The loads' arena, made at the first [`enter`]; `None` where jemalloc is not the
/// allocator or refuses.
static ARENA: OnceLock<Option<u32>> = OnceLock::new();

/// Makes this thread allocate from the loads' arena from now on; whether it does.
pub fn enter() -> bool {
    let Some(arena) = *ARENA.get_or_init(|| b"arenas.create\0".name().read().ok()) else {
        return false;
    };
    b"thread.arena\0".name().write(arena).is_ok()
}

/// The arena this thread allocates from.
#[cfg(test)]
fn current() -> Option<u32> {
    b"thread.arena\0".name().read().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_load_thread_allocates_from_the_same_arena_of_its_own() {
        // The library's tests run on jemalloc (lib.rs), as the binary does.
        let mine = current().expect("jemalloc answers");
        let arenas: Vec<Option<u32>> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    assert!(enter());
                    let kept = vec![7u8; 1 << 20];
                    assert_eq!(kept.len(), 1 << 20);
                    current()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(
            arenas.iter().all(|a| a.is_some() && *a == arenas[0]),
            "{arenas:?}"
        );
        assert_ne!(
            arenas[0],
            Some(mine),
            "an arena of its own, not this thread's"
        );
    }
}
