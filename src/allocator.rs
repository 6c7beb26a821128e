//! Allocator settings for training on the CPU.
//!
//! A training step allocates and frees the same large buffers (activations, gradients, logits)
//! every step. glibc serves blocks over its mmap threshold (128 KiB, adapting up to 32 MiB) with
//! fresh `mmap`s and unmaps them on free, so every step faults in and zeroes those pages again:
//! measured 25% of a `small_100m` step on 2 cores (`examples/train` and the benches call
//! [`keep_freed_memory`]). The library never changes process-wide settings on its own; binaries
//! that link it choose to.

/// Makes glibc's malloc serve large blocks from its heap and keep freed memory for reuse instead
/// of returning it to the OS. Peak memory is unchanged (the pages were in use at the peak); the
/// process keeps its high-water mark until exit. Returns whether the settings took effect (false
/// off glibc, where it does nothing).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only updates malloc's tunables; it is safe to call at any time.
        let threshold = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) };
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) };
        let ok = threshold == 1 && trim == 1;
        tracing::debug!(ok, "malloc: large blocks from the heap, freed memory kept");
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
