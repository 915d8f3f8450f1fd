//! Process-wide allocator settings for the engine's binaries.
//!
//! glibc gives busy threads arenas of their own, up to eight per core, and
//! an arena keeps what its thread freed. Parquet row groups and decoded
//! batches are freed on other threads than the ones that made them, so
//! resident memory grew to about twice the live heap. One arena per core
//! keeps it near the live heap at no measured cost in speed.
//!
//! glibc also serves blocks above a threshold (128 KiB, rising to 32 MiB as
//! such blocks are freed) with mmap, and returns them on free. Upload
//! buffers, compressed pages and row groups are megabytes each and made
//! anew all the time, so every one of them was faulted in and zeroed by the
//! kernel again: about a tenth of the engine's system time. Blocks under
//! 64 MiB now come from the heap, and the heap keeps up to 128 MiB free
//! at its top for the next ones, or a quarter of a task's memory pool when
//! that is less (a 128 MiB pool would otherwise leave RSS a pool's worth
//! above the live heap).

/// Blocks at least this large are mapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: i32 = 64 << 20;
/// Free bytes the heap keeps at its top before returning them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_BYTES: i32 = 128 << 20;

/// Free bytes the heap keeps at its top are at most this share of a
/// task's memory pool (1/4): with a small pool, the heap's free top would
/// otherwise be as large as the pool itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_SHARE_OF_POOL: u64 = 4;

/// Lowers what the heap keeps free to a share of a task's memory pool of
/// `pool_bytes`, when that is below the default; tasks of one process
/// share a node's pool size, so the last one set holds for all.
pub fn fit_free_heap_to_pool(pool_bytes: u64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let keep = (pool_bytes / TRIM_SHARE_OF_POOL).min(TRIM_THRESHOLD_BYTES as u64) as i32;
        // SAFETY: mallopt sets an allocator parameter under the allocator's
        // own lock; this one is safe to change while threads allocate.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, keep.max(1 << 20));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = pool_bytes;
}

/// Call first thing in `main`, before any thread starts.
pub fn configure_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = i32::try_from(cores).unwrap_or(i32::MAX).max(2);
        // SAFETY: mallopt only sets an allocator parameter; no thread has
        // started yet, so nothing allocates concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}
