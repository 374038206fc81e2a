use clap::Parser;

/// jemalloc instead of glibc's malloc: a cycle over many portals allocates a lot for a
/// moment and frees it, and glibc keeps most of that high-water mark for the life of
/// the process (scattered small survivors pin its pages; measured at 1 000 portals:
/// 8 MiB in use, 40 MiB held). jemalloc packs objects by size and a background thread
/// returns freed pages about a second later.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (its `MALLOC_CONF`, read at start-up; `_RJEM_MALLOC_CONF` in the
/// environment overrides them): purge freed pages after ~1 s from a background thread;
/// two arenas and no per-thread caches — the work is network-bound, so those would buy
/// only memory (the caches alone held ~2 MiB at 1 000 portals).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: ConfString = ConfString(
    c"background_thread:true,narenas:2,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr(),
);

/// A C string pointer jemalloc reads once at start-up (`const char *malloc_conf`).
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: the pointer is to an immutable 'static byte string; nothing writes through it.
unsafe impl Sync for ConfString {}

fn main() -> std::process::ExitCode {
    let cli = authsync::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authsync: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(authsync::commands::run(cli))
}
