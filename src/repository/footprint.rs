//! What a load keeps in memory: jemalloc's counts of the bytes this thread allocated and
//! freed, read before and after a load that runs on one thread. The difference is what the
//! model holds (weights, the engine's plan and buffers) as actually allocated, not its
//! files' size. What a compute thread later allocates for the model (a forward pass's
//! scratch, tract's plans per batch size) is not counted.
//!
//! With another allocator than jemalloc (a test binary or a fuzz target of another crate)
//! the counts stay at zero and [`Footprint::kept`] answers `None`.

use tikv_jemalloc_ctl::thread;

/// The counts of this thread at the start of a load.
pub struct Footprint {
    allocated: u64,
    freed: u64,
}

impl Footprint {
    /// Starts counting on this thread.
    pub fn start() -> Self {
        let (allocated, freed) = counts();
        Self { allocated, freed }
    }

    /// Bytes this thread allocated since [`Footprint::start`] and did not free; `None`
    /// where jemalloc does not count (not the allocator).
    pub fn kept(&self) -> Option<u64> {
        let (allocated, freed) = counts();
        if allocated == 0 {
            return None;
        }
        let grown = allocated.saturating_sub(self.allocated);
        let released = freed.saturating_sub(self.freed);
        Some(grown.saturating_sub(released))
    }
}

/// This thread's bytes allocated and freed so far (zeros where they cannot be read).
fn counts() -> (u64, u64) {
    let allocated = thread::allocatedp::read().map(|p| p.get()).unwrap_or(0);
    let freed = thread::deallocatedp::read().map(|p| p.get()).unwrap_or(0);
    (allocated, freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_thread_keeps_is_counted_and_what_it_frees_is_not() {
        // The library's tests run on jemalloc (lib.rs), as the binary does.
        let start = Footprint::start();
        let kept: Vec<u8> = vec![1; 8 << 20];
        let freed: Vec<u8> = vec![2; 4 << 20];
        drop(freed);
        let bytes = start.kept().expect("jemalloc counts");
        assert!(
            (8 << 20..(8 << 20) + (64 << 10)).contains(&bytes),
            "{bytes} bytes for 8 MiB kept and 4 MiB freed"
        );
        assert_eq!(kept.len(), 8 << 20);
    }
}
