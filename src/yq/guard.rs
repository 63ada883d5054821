//! Stopping an evaluation thread that reaches a bound: it is parked (it
//! cannot be killed), and its watcher in [`super::eval_with`] reports the bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicIsize, AtomicU8};
use std::sync::{Arc, Once, OnceLock};

use nix::libc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parked {
    /// Its stack overflowed.
    Stack,
    /// It would have exceeded its memory budget.
    Memory,
    /// It was told to stop (its time is up).
    Stopped,
}

const RUNNING: u8 = 0;
const STACK: u8 = 1;
const MEMORY: u8 = 2;
const STOPPED: u8 = 3;

/// What an evaluation thread and its watcher share.
pub struct Shared {
    parked: AtomicU8,
    /// Bytes allocated minus bytes freed by the thread.
    used: AtomicIsize,
    limit: isize,
    stop: AtomicBool,
    tid: AtomicI32,
}

impl Shared {
    pub fn new(limit: usize) -> Shared {
        Shared {
            parked: AtomicU8::new(RUNNING),
            used: AtomicIsize::new(0),
            limit: isize::try_from(limit).unwrap_or(isize::MAX),
            stop: AtomicBool::new(false),
            tid: AtomicI32::new(0),
        }
    }

    pub fn parked(&self) -> Option<Parked> {
        match self.parked.load(Acquire) {
            STACK => Some(Parked::Stack),
            MEMORY => Some(Parked::Memory),
            STOPPED => Some(Parked::Stopped),
            _ => None,
        }
    }

    /// Tells the thread to park at its next allocation, and gives it
    /// the lowest CPU priority in case it loops without allocating.
    pub fn stop(&self) {
        self.stop.store(true, Release);
        let tid = self.tid.load(Acquire);
        if tid > 0 {
            // Lowering a thread's priority needs no privilege; should it
            // fail, the thread only keeps its priority.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
        }
    }
}

thread_local! {
    /// The evaluation this thread runs, when it is an evaluation thread.
    /// (Const-initialised without destructor: readable from the
    /// allocator and from a signal handler.)
    static WATCHED: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
    /// Addresses around the guard page below this thread's stack.
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Marks the current thread as running the evaluation of `shared`.
pub struct Watched {
    _shared: Arc<Shared>,
    altstack: Option<Vec<u8>>,
}

impl Watched {
    pub fn enter(shared: Arc<Shared>) -> Watched {
        shared.tid.store(nix::unistd::gettid().as_raw(), Release);
        let altstack = ensure_altstack();
        if let Some(range) = guard_range() {
            GUARD.set(range);
        }
        WATCHED.set(Arc::as_ptr(&shared));
        Watched {
            _shared: shared,
            altstack,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        WATCHED.set(std::ptr::null());
        GUARD.set((0, 0));
        if self.altstack.is_some() {
            let off = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) };
        }
    }
}

/// A SIGSEGV handler runs on the alternate signal stack (the thread's
/// own is exhausted). Rust gives its threads one; should this one have
/// none, it gets one for as long as it is watched.
fn ensure_altstack() -> Option<Vec<u8>> {
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut current) != 0
            || current.ss_flags & libc::SS_DISABLE == 0
        {
            return None;
        }
        let mut stack = vec![0u8; libc::SIGSTKSZ.max(64 << 10)];
        let new = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: stack.len(),
        };
        (libc::sigaltstack(&new, std::ptr::null_mut()) == 0).then_some(stack)
    }
}

/// Where a fault means "this thread's stack overflowed": around the
/// lowest address of its stack. glibc before 2.27 put the guard page
/// inside the reported stack, later ones below it; both are taken, as
/// Rust's own handler does.
fn guard_range() -> Option<(usize, usize)> {
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut addr, mut size, mut guard) = (std::ptr::null_mut(), 0, 0);
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
        let guard = guard.max(page);
        let low = addr as usize;
        ok.then(|| (low.saturating_sub(guard), low + guard))
    }
}

/// Parks the calling thread for good.
fn park() -> ! {
    loop {
        // nanosleep(2): allocates nothing, holds no lock.
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// The system allocator, counting what evaluation threads hold: the
/// only way to bound the memory of code (jaq's) that has no hook for
/// it. Other threads pay one thread-local read per call.
pub struct CountingAlloc;

fn charge(bytes: isize) {
    let Ok(watched) = WATCHED.try_with(Cell::get) else {
        return;
    };
    if watched.is_null() {
        return;
    }
    // Valid: `Watched` holds the Arc while the pointer is set.
    let shared = unsafe { &*watched };
    let used = shared.used.fetch_add(bytes, Relaxed) + bytes;
    // A panicking thread is let through: its panic hook holds the stderr
    // lock while it allocates, and parking there would block every
    // other thread's output.
    if bytes <= 0 || std::thread::panicking() {
        return;
    }
    let why = if used > shared.limit {
        MEMORY
    } else if shared.stop.load(Relaxed) {
        STOPPED
    } else {
        return;
    };
    shared.parked.store(why, Release);
    park()
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        charge(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        charge(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

static INSTALL: Once = Once::new();
/// The SIGSEGV action before ours (Rust's stack overflow reporter).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the SIGSEGV handler that parks an evaluation thread whose
/// stack overflowed. Without it, Rust's handler reports the overflow
/// and aborts the whole process; every other fault still goes to it.
pub fn install() {
    INSTALL.call_once(|| unsafe {
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) != 0 {
            return;
        }
        let _ = PREVIOUS.set(previous);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_segv as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // Every signal stays blocked while the handler runs, so that a
        // parked thread never runs another handler.
        libc::sigfillset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
    });
}

extern "C" fn on_segv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let addr = unsafe { (*info).si_addr() } as usize;
    let watched = WATCHED.try_with(Cell::get).unwrap_or(std::ptr::null());
    let (low, high) = GUARD.try_with(Cell::get).unwrap_or((0, 0));
    if !watched.is_null() && low <= addr && addr < high {
        unsafe { (*watched).parked.store(STACK, Release) };
        // All signals are blocked here (sa_mask): pause(2) never returns.
        loop {
            unsafe { libc::pause() };
        }
    }
    // Not an evaluation's overflow: what would have happened without us.
    match PREVIOUS.get() {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => unsafe {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(p.sa_sigaction);
                f(sig, info, ctx)
            } else {
                let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                f(sig)
            }
        },
        _ => unsafe {
            // The default action: returning re-runs the faulting
            // instruction, which now kills the process.
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        },
    }
}
