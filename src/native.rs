//! Settings the native shells (command line, benchmarks) make for themselves; the page's wasm
//! keeps its own allocator.

/// mimalloc's `purge_delay` option: its index in `mi_option_t`, the same in mimalloc v2 and v3
/// (libmimalloc-sys names the options before it only).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc (the shells' global allocator) never to return freed memory to the system.
/// A meta-step frees and allocates the same large tensors every iteration; by default mimalloc
/// gives freed pages back after a delay and the next step faults them in again, zeroed
/// (bench/HISTORY.md, change 14). The cost is that the process keeps its peak memory.
pub fn keep_freed_memory() {
    // SAFETY: sets an integer option; mimalloc reads it when it next considers purging.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // The option's default is a delay in milliseconds (10 in v2, 1000 in v3's options.c);
        // the index is right if that is what it read before and -1 after. (No other test of
        // this binary sets it, so -1 before would mean the index is wrong.)
        let before = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert!(before == 10 || before == 1000, "{before}");
        super::keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }, -1);
    }
}
