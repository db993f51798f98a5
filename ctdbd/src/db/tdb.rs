//! Our binding of libtdb (Debian's `libtdb1`), the library smbd uses on the same
//! files: the clustered database files must be real TDB files, locked the way
//! libtdb locks them, so we call libtdb rather than reimplement its format
//! (reference/ctdb-protocol-samba.md §2.5, §2.8).
//!
//! The C declarations below are written by hand from `/usr/include/tdb.h` (libtdb
//! 1.4.8) and cover only what ctdbd needs. Everything else in the crate uses the
//! safe [`Tdb`] handle; this module is one of the few places with `unsafe`, and each
//! block says why it is sound.
//!
//! Every call here may block on a lock held by another process (smbd), so callers
//! run them on a database thread, never on the async runtime. Blocking lock waits
//! that could last (a chain smbd holds, the freeze) belong in the lock helper
//! process instead ([`super::lock_helper`]).
//!
//! # Locks belong to a process, or to a thread
//! Chain locks are fcntl byte-range locks, or with [`flags::MUTEX_LOCKING`] robust
//! pthread mutexes in the file. An fcntl lock is the process's: two threads never
//! exclude each other, and closing any descriptor of the file drops all of them.
//! libtdb therefore refuses to open one file twice in a process
//! ([`TdbError::Open`] with `EBUSY`). A mutex is the thread's: release it on the
//! thread that took it. [`Tdb`] is `Send` (a database thread may own it) but not
//! `Sync`.

#![allow(unsafe_code)]

use std::any::Any;
use std::ffi::{c_int, c_uint, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use thiserror::Error;

/// The declarations of `tdb.h` that we use, word for word in meaning.
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void};
    use std::marker::{PhantomData, PhantomPinned};

    /// `struct tdb_context`: opaque, only ever behind a pointer libtdb gave us.
    #[repr(C)]
    pub struct TdbContext {
        _opaque: [u8; 0],
        _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
    }

    /// `TDB_DATA`: a pointer and a length, passed by value.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct TdbData {
        pub dptr: *mut u8,
        pub dsize: usize,
    }

    /// `tdb_traverse_func`.
    pub type TraverseFn =
        unsafe extern "C" fn(*mut TdbContext, TdbData, TdbData, *mut c_void) -> c_int;

    /// The per-record callback of `tdb_check` (no tdb argument, unlike traverse).
    pub type CheckFn = unsafe extern "C" fn(TdbData, TdbData, *mut c_void) -> c_int;

    #[link(name = "tdb")]
    extern "C" {
        pub fn tdb_open(
            name: *const c_char,
            hash_size: c_int,
            tdb_flags: c_int,
            open_flags: c_int,
            mode: libc::mode_t,
        ) -> *mut TdbContext;
        pub fn tdb_close(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_error(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_errorstr(tdb: *mut TdbContext) -> *const c_char;
        pub fn tdb_fetch(tdb: *mut TdbContext, key: TdbData) -> TdbData;
        pub fn tdb_store(tdb: *mut TdbContext, key: TdbData, dbuf: TdbData, flag: c_int) -> c_int;
        pub fn tdb_delete(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_traverse_read(
            tdb: *mut TdbContext,
            func: Option<TraverseFn>,
            private_data: *mut c_void,
        ) -> c_int;
        pub fn tdb_chainlock(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_chainlock_nonblock(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_chainunlock(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_chainlock_mark(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_chainlock_unmark(tdb: *mut TdbContext, key: TdbData) -> c_int;
        pub fn tdb_lockall(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_lockall_nonblock(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_unlockall(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_lockall_mark(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_lockall_unmark(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_fd(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_transaction_start(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_transaction_commit(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_transaction_cancel(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_get_flags(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_add_flags(tdb: *mut TdbContext, flag: c_uint);
        pub fn tdb_remove_flags(tdb: *mut TdbContext, flag: c_uint);
        pub fn tdb_get_seqnum(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_increment_seqnum_nonblock(tdb: *mut TdbContext);
        pub fn tdb_wipe_all(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_repack(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_freelist_size(tdb: *mut TdbContext) -> c_int;
        pub fn tdb_check(
            tdb: *mut TdbContext,
            check: Option<CheckFn>,
            private_data: *mut c_void,
        ) -> c_int;
        pub fn tdb_jenkins_hash(key: *mut TdbData) -> c_uint;
        pub fn tdb_runtime_check_for_robust_mutexes() -> bool;
    }
}

/// TDB open flags (`tdb_flags` of `tdb_open`, and what `tdb_get_flags` reports),
/// named as in `tdb.h` and §2.5.
pub mod flags {
    /// No flag.
    pub const DEFAULT: u32 = 0;
    /// The first opener wipes the file; every opener holds a shared lock on the
    /// file's active byte while open, which stops later openers from wiping it.
    pub const CLEAR_IF_FIRST: u32 = 1;
    /// In memory only.
    pub const INTERNAL: u32 = 2;
    /// No locking at all.
    pub const NOLOCK: u32 = 4;
    /// Read and write with pread/pwrite instead of mmap.
    pub const NOMMAP: u32 = 8;
    /// Convert endianness (libtdb sets it itself).
    pub const CONVERT: u32 = 16;
    /// The header is big-endian (libtdb sets it itself).
    pub const BIGENDIAN: u32 = 32;
    /// No fsync in transactions.
    pub const NOSYNC: u32 = 64;
    /// Keep a sequence number in the header, bumped by every store and delete.
    pub const SEQNUM: u32 = 128;
    /// Per-chain freelist of dead records.
    pub const VOLATILE: u32 = 256;
    /// Transactions may nest (libtdb's default when DISALLOW_NESTING is absent).
    pub const ALLOW_NESTING: u32 = 512;
    /// Transactions may not nest.
    pub const DISALLOW_NESTING: u32 = 1024;
    /// Chains hashed with Jenkins' lookup3 (older libtdb cannot open the file).
    pub const INCOMPATIBLE_HASH: u32 = 2048;
    /// Chain locks are robust process-shared mutexes in the file; only where
    /// [`super::runtime_check_for_robust_mutexes`] passes. A file made with it can
    /// only be opened for locking with it (§2.8).
    pub const MUTEX_LOCKING: u32 = 4096;

    /// A volatile database as ctdbd opens it (§2.5), without mutexes.
    pub const VOLATILE_DB: u32 = NOSYNC | CLEAR_IF_FIRST | INCOMPATIBLE_HASH | DISALLOW_NESTING;
    /// A persistent database as ctdbd opens it (§2.5).
    pub const PERSISTENT_DB: u32 = DEFAULT | DISALLOW_NESTING;
}

/// How [`Tdb::store`] treats an existing record (`TDB_REPLACE`, `TDB_INSERT`,
/// `TDB_MODIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Create or overwrite.
    Replace = 1,
    /// Create only; an existing record is [`ErrorCode::Exists`].
    Insert = 2,
    /// Overwrite only; a missing record is [`ErrorCode::NoExist`].
    Modify = 3,
}

/// The outcome of a lock attempt that does not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryLock {
    /// The lock is ours now; release it.
    Held,
    /// Another process (or, with mutexes, thread) holds a conflicting lock;
    /// nothing is held.
    Busy,
}

/// libtdb's error codes (`enum TDB_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `TDB_ERR_CORRUPT`.
    Corrupt,
    /// `TDB_ERR_IO`.
    Io,
    /// `TDB_ERR_LOCK`.
    Lock,
    /// `TDB_ERR_OOM`.
    OutOfMemory,
    /// `TDB_ERR_EXISTS`: an insert found the record.
    Exists,
    /// `TDB_ERR_NOLOCK`: an unlock of a lock not held.
    NoLock,
    /// `TDB_ERR_LOCK_TIMEOUT`.
    LockTimeout,
    /// `TDB_ERR_NOEXIST`: the record is not there.
    NoExist,
    /// `TDB_ERR_EINVAL`.
    Invalid,
    /// `TDB_ERR_RDONLY`.
    ReadOnly,
    /// `TDB_ERR_NESTING`: a transaction inside a transaction.
    Nesting,
    /// A code this binding does not know (including `TDB_SUCCESS` reported with a
    /// failing return value).
    Other(i32),
}

impl ErrorCode {
    fn from_raw(code: c_int) -> Self {
        match code {
            1 => ErrorCode::Corrupt,
            2 => ErrorCode::Io,
            3 => ErrorCode::Lock,
            4 => ErrorCode::OutOfMemory,
            5 => ErrorCode::Exists,
            6 => ErrorCode::NoLock,
            7 => ErrorCode::LockTimeout,
            8 => ErrorCode::NoExist,
            9 => ErrorCode::Invalid,
            10 => ErrorCode::ReadOnly,
            11 => ErrorCode::Nesting,
            other => ErrorCode::Other(other),
        }
    }
}

/// Why a libtdb call failed.
#[derive(Debug, Error)]
pub enum TdbError {
    /// The path holds a NUL byte and cannot be given to C; nothing was opened.
    #[error("tdb path {path:?} contains a NUL byte")]
    NulInPath {
        /// The path as given.
        path: PathBuf,
    },
    /// `tdb_open` failed (errno says why: open(2)'s error, `EBUSY` if this process
    /// has the file open already, `EINVAL` for flags libtdb refuses, `EIO` for a
    /// file that is not a TDB); nothing is open.
    #[error("cannot open tdb {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// errno from libtdb.
        #[source]
        source: std::io::Error,
    },
    /// The open lock could not be taken by hand (`fcntl` failed; see
    /// [`Tdb::with_locking_off`]); nothing was done.
    #[error("cannot take the open lock of tdb {path}: {source}")]
    OpenLock {
        /// The file.
        path: PathBuf,
        /// fcntl's error.
        #[source]
        source: std::io::Error,
    },
    /// A call on an open database failed; libtdb's message says why. The call had
    /// no effect unless the code is [`ErrorCode::Io`] or [`ErrorCode::Corrupt`].
    #[error("tdb {operation} on {path}: {message}")]
    Call {
        /// The libtdb function, without its `tdb_` prefix.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// libtdb's error code.
        code: ErrorCode,
        /// libtdb's `tdb_errorstr` text, with errno when it tells more.
        message: String,
    },
}

impl TdbError {
    /// libtdb's code, for a failed call on an open database.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TdbError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// `tdb_open` and `tdb_close` link and unlink the handle in libtdb's process-wide
/// list of open files, which has no lock of its own; this one serialises them.
static OPEN_LIST: Mutex<()> = Mutex::new(());

/// An open TDB file. Closed on drop, which also drops every lock this process holds
/// on the file through this handle.
pub struct Tdb {
    /// Non-null, from a successful `tdb_open`, closed only in `Drop`.
    context: NonNull<ffi::TdbContext>,
    path: PathBuf,
    /// `Send` but not `Sync`: libtdb's calls on one handle may not run at once.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: a tdb_context has no tie to the thread that opened it: libtdb keeps no
// thread-local state for it, and the only process-wide state it touches (the list
// of open files) is guarded by `OPEN_LIST`. Moving the handle to another thread is
// therefore sound; concurrent use is not, which `Tdb: !Sync` forbids. (A robust
// mutex chain lock must be released by the thread that took it; releasing it
// elsewhere is an error that libtdb reports, not undefined behaviour.)
unsafe impl Send for Tdb {}

/// A `TDB_DATA` that lends `bytes` to libtdb for the length of one call.
fn lend(bytes: &[u8]) -> ffi::TdbData {
    ffi::TdbData {
        // libtdb takes keys and values as `unsigned char *` but only reads them.
        dptr: bytes.as_ptr().cast_mut(),
        dsize: bytes.len(),
    }
}

/// The bytes of a `TDB_DATA` that libtdb lends us for the length of a callback.
///
/// # Safety
/// `data.dptr` must point to `data.dsize` readable bytes that stay valid and
/// unchanged for `'a`, or be null.
unsafe fn borrowed<'a>(data: ffi::TdbData) -> &'a [u8] {
    if data.dptr.is_null() || data.dsize == 0 {
        &[]
    } else {
        // SAFETY: non-null, and the caller vouches for length and lifetime.
        unsafe { std::slice::from_raw_parts(data.dptr, data.dsize) }
    }
}

/// Whether errno after a failed non-waiting lock means "someone else holds it":
/// fcntl's F_SETLK says EAGAIN or EACCES; libtdb's mutex path says EAGAIN (or
/// EBUSY from pthread_mutex_trylock).
fn is_contention(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EAGAIN | libc::EACCES | libc::EBUSY))
}

impl Tdb {
    /// Opens (with `O_CREAT` in `open_flags`, creates) the TDB file `path`:
    /// `tdb_open(path, hash_size, tdb_flags, open_flags, mode)`. `hash_size` 0 is
    /// libtdb's default; it only matters when the file is created or wiped.
    pub fn open(
        path: &Path,
        hash_size: u32,
        tdb_flags: u32,
        open_flags: c_int,
        mode: libc::mode_t,
    ) -> Result<Tdb, TdbError> {
        let c_path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| TdbError::NulInPath {
                path: path.to_path_buf(),
            })?;
        let (context, errno) = {
            let _list = OPEN_LIST
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // SAFETY: `c_path` is a NUL-terminated string that outlives the call
            // (libtdb copies it); the other arguments are plain integers (the casts
            // reinterpret bits as tdb.h's `int`, which is what C callers pass). The
            // open-list lock is held, as `OPEN_LIST` requires.
            let context = unsafe {
                ffi::tdb_open(
                    c_path.as_ptr(),
                    hash_size as c_int,
                    tdb_flags as c_int,
                    open_flags,
                    mode,
                )
            };
            // Read errno before anything else can change it.
            (context, std::io::Error::last_os_error())
        };
        match NonNull::new(context) {
            Some(context) => Ok(Tdb {
                context,
                path: path.to_path_buf(),
                _not_sync: PhantomData,
            }),
            None => Err(TdbError::Open {
                path: path.to_path_buf(),
                source: errno,
            }),
        }
    }

    /// The file this handle has open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn raw(&self) -> *mut ffi::TdbContext {
        self.context.as_ptr()
    }

    /// The error of the call that just failed, with libtdb's code and text. Call it
    /// right after the failing call.
    fn last_error(&self, operation: &'static str) -> TdbError {
        let errno = std::io::Error::last_os_error();
        // SAFETY: `raw()` is a live context (see `Tdb::context`); tdb_error only
        // reads the code stored in it.
        let code = ErrorCode::from_raw(unsafe { ffi::tdb_error(self.raw()) });
        // SAFETY: as above; tdb_errorstr returns a pointer to a static,
        // NUL-terminated string (or null, which we check), never freed.
        let text = unsafe {
            let text = ffi::tdb_errorstr(self.raw());
            if text.is_null() {
                String::from("unknown error")
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        let message = match (code, errno.raw_os_error()) {
            // For I/O and lock failures the system error is the useful part.
            (ErrorCode::Io | ErrorCode::Lock, Some(n)) if n != 0 => format!("{text} ({errno})"),
            _ => text,
        };
        TdbError::Call {
            operation,
            path: self.path.clone(),
            code,
            message,
        }
    }

    /// Turns a C status (0 ok, -1 failed) into a result.
    fn check(&self, status: c_int, operation: &'static str) -> Result<(), TdbError> {
        if status == 0 {
            Ok(())
        } else {
            Err(self.last_error(operation))
        }
    }

    /// Turns the status of a non-waiting lock call into held / busy / error.
    fn check_try(&self, status: c_int, operation: &'static str) -> Result<TryLock, TdbError> {
        if status == 0 {
            return Ok(TryLock::Held);
        }
        let errno = std::io::Error::last_os_error().raw_os_error();
        let error = self.last_error(operation);
        if error.code() == Some(ErrorCode::Lock) && is_contention(errno) {
            Ok(TryLock::Busy)
        } else {
            Err(error)
        }
    }

    /// The value stored under `key`, or `None` if there is none.
    pub fn fetch(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TdbError> {
        // SAFETY: the context is live; `lend(key)` points to `key`, which outlives
        // the call and which libtdb only reads.
        let data = unsafe { ffi::tdb_fetch(self.raw(), lend(key)) };
        if data.dptr.is_null() {
            // SAFETY: live context; reads the code of the fetch that just failed.
            let code = ErrorCode::from_raw(unsafe { ffi::tdb_error(self.raw()) });
            return match code {
                ErrorCode::NoExist => Ok(None),
                _ => Err(self.last_error("fetch")),
            };
        }
        // SAFETY: on success tdb_fetch returns a buffer it malloc'ed for us, of
        // `dsize` bytes; we copy it out and free it exactly once with the C
        // allocator's free, as tdb.h asks of the caller.
        let value = unsafe {
            let value = borrowed(data).to_vec();
            libc::free(data.dptr.cast::<c_void>());
            value
        };
        Ok(Some(value))
    }

    /// Stores `value` under `key`.
    pub fn store(&self, key: &[u8], value: &[u8], mode: StoreMode) -> Result<(), TdbError> {
        // SAFETY: live context; both buffers outlive the call and are only read.
        let status = unsafe { ffi::tdb_store(self.raw(), lend(key), lend(value), mode as c_int) };
        self.check(status, "store")
    }

    /// Deletes the record `key`; `false` if there was none.
    pub fn delete(&self, key: &[u8]) -> Result<bool, TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_delete(self.raw(), lend(key)) };
        match self.check(status, "delete") {
            Ok(()) => Ok(true),
            Err(error) if error.code() == Some(ErrorCode::NoExist) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Calls `visit(key, value)` for every record, under read locks (writers wait,
    /// readers do not), until it returns `Break`. Returns how many records it was
    /// given. A panic in `visit` stops the walk and is resumed here.
    pub fn traverse_read<F>(&self, mut visit: F) -> Result<usize, TdbError>
    where
        F: FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    {
        /// What a traverse callback is given: the caller's visitor.
        type Visitor<'f> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'f;
        struct Walk<'f> {
            visit: &'f mut Visitor<'f>,
            panic: Option<Box<dyn Any + Send>>,
        }

        /// Called by libtdb once per record with `private` = our `Walk`.
        unsafe extern "C" fn each(
            _tdb: *mut ffi::TdbContext,
            key: ffi::TdbData,
            value: ffi::TdbData,
            private: *mut c_void,
        ) -> c_int {
            // SAFETY: `private` is the `&mut Walk` passed to tdb_traverse_read
            // below, alive and not otherwise used during the traverse. libtdb lends
            // key and value (a buffer it allocated for this record) until we return.
            let (walk, key, value) = unsafe {
                (
                    &mut *private.cast::<Walk<'_>>(),
                    borrowed(key),
                    borrowed(value),
                )
            };
            // A panic must not unwind into C: catch it, stop, resume it in Rust.
            match catch_unwind(AssertUnwindSafe(|| (walk.visit)(key, value))) {
                Ok(ControlFlow::Continue(())) => 0,
                Ok(ControlFlow::Break(())) => 1,
                Err(panic) => {
                    walk.panic = Some(panic);
                    1
                }
            }
        }

        let mut walk = Walk {
            visit: &mut visit,
            panic: None,
        };
        // SAFETY: live context; `each` matches tdb_traverse_func, and `walk`
        // outlives the call (libtdb keeps no pointer to it afterwards).
        let count = unsafe {
            ffi::tdb_traverse_read(
                self.raw(),
                Some(each),
                std::ptr::from_mut(&mut walk).cast::<c_void>(),
            )
        };
        if let Some(panic) = walk.panic.take() {
            resume_unwind(panic);
        }
        if count < 0 {
            return Err(self.last_error("traverse_read"));
        }
        Ok(count as usize)
    }

    /// Takes the chain lock of `key`, waiting as long as it takes. Only for chains
    /// nobody outside ctdbd holds for long; smbd's chains go to the lock helper.
    pub fn chainlock(&self, key: &[u8]) -> Result<(), TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_chainlock(self.raw(), lend(key)) };
        self.check(status, "chainlock")
    }

    /// Takes the chain lock of `key` if nobody holds it.
    pub fn chainlock_nonblock(&self, key: &[u8]) -> Result<TryLock, TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_chainlock_nonblock(self.raw(), lend(key)) };
        self.check_try(status, "chainlock_nonblock")
    }

    /// Releases the chain lock of `key`.
    pub fn chainunlock(&self, key: &[u8]) -> Result<(), TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_chainunlock(self.raw(), lend(key)) };
        self.check(status, "chainunlock")
    }

    /// Records in this handle that the chain of `key` is locked, without locking
    /// it: for when the lock helper holds it on our behalf, so that our own stores
    /// and deletes on the chain do not wait for it (§2.8).
    pub fn chainlock_mark(&self, key: &[u8]) -> Result<(), TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_chainlock_mark(self.raw(), lend(key)) };
        self.check(status, "chainlock_mark")
    }

    /// Undoes [`Tdb::chainlock_mark`].
    pub fn chainlock_unmark(&self, key: &[u8]) -> Result<(), TdbError> {
        // SAFETY: live context; `key` outlives the call and is only read.
        let status = unsafe { ffi::tdb_chainlock_unmark(self.raw(), lend(key)) };
        self.check(status, "chainlock_unmark")
    }

    /// Takes the all-record write lock (every chain), waiting as long as it takes.
    pub fn lockall(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_lockall(self.raw()) };
        self.check(status, "lockall")
    }

    /// Takes the all-record write lock if no chain is held by anyone.
    pub fn lockall_nonblock(&self) -> Result<TryLock, TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_lockall_nonblock(self.raw()) };
        self.check_try(status, "lockall_nonblock")
    }

    /// Releases the all-record lock.
    pub fn unlockall(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_unlockall(self.raw()) };
        self.check(status, "unlockall")
    }

    /// Records in this handle that the all-record lock is held (by the lock helper,
    /// during a freeze), without taking it.
    pub fn lockall_mark(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_lockall_mark(self.raw()) };
        self.check(status, "lockall_mark")
    }

    /// Undoes [`Tdb::lockall_mark`].
    pub fn lockall_unmark(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_lockall_unmark(self.raw()) };
        self.check(status, "lockall_unmark")
    }

    /// Runs `body` with this handle's locking switched off, while the
    /// all-record lock is held for it: by this process ([`Tdb::lockall`]) or by a
    /// lock helper and marked ([`Tdb::lockall_mark`]). libtdb starts no
    /// transaction on a handle that holds locks, yet a frozen database must be
    /// rewritten in one (a recovery's push); the lock stays held throughout, so
    /// no other process can read or write records meanwhile. The mark is restored
    /// after.
    ///
    /// The all-record lock does not keep out a process that *opens* the file: its
    /// open rolls back any transaction whose recovery area is still marked valid,
    /// under libtdb's open lock alone. A commit normally holds that lock against
    /// this; with locking off it would not, and an open in the middle of our commit
    /// would undo it. So the open lock is held here, by hand, for the whole body.
    pub fn with_locking_off<R>(&self, body: impl FnOnce(&Tdb) -> R) -> Result<R, TdbError> {
        let _open_lock = OpenLock::take(self)?;
        self.lockall_unmark()?;
        self.add_flags(flags::NOLOCK);
        let result = body(self);
        // SAFETY: live context; clears bits in a field.
        unsafe { ffi::tdb_remove_flags(self.raw(), flags::NOLOCK as c_uint) };
        self.lockall_mark()?;
        Ok(result)
    }

    /// Starts a transaction on a frozen database that stays open across calls
    /// until [`Tdb::finish_frozen_transaction`]: as [`Tdb::with_locking_off`]
    /// around a transaction, but held between the events of a recovery's push
    /// (its records come in batches, and only its confirm commits them).
    /// The open lock is held all along, so a process that opens the file
    /// meanwhile waits rather than rolls the transaction back.
    pub fn start_frozen_transaction(&self) -> Result<FrozenTransaction, TdbError> {
        let open_lock = OpenLock::take(self)?;
        self.lockall_unmark()?;
        self.add_flags(flags::NOLOCK);
        if let Err(e) = self.transaction_start() {
            self.locking_back_on();
            return Err(e);
        }
        Ok(FrozenTransaction {
            _open_lock: open_lock,
        })
    }

    /// Commits (`commit`) or cancels a transaction of
    /// [`Tdb::start_frozen_transaction`]; locking is as before it either way.
    pub fn finish_frozen_transaction(
        &self,
        transaction: FrozenTransaction,
        commit: bool,
    ) -> Result<(), TdbError> {
        let result = if commit {
            self.transaction_commit()
        } else {
            self.transaction_cancel()
        };
        self.locking_back_on();
        drop(transaction);
        result
    }

    fn locking_back_on(&self) {
        // SAFETY: live context; clears bits in a field.
        unsafe { ffi::tdb_remove_flags(self.raw(), flags::NOLOCK as c_uint) };
        if let Err(e) = self.lockall_mark() {
            tracing::error!(error = %e, "re-marking the all-record lock failed");
        }
    }

    /// Starts a transaction (waits for other writers' transactions).
    pub fn transaction_start(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_transaction_start(self.raw()) };
        self.check(status, "transaction_start")
    }

    /// Commits the transaction. On failure libtdb has cancelled it.
    pub fn transaction_commit(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_transaction_commit(self.raw()) };
        self.check(status, "transaction_commit")
    }

    /// Cancels the transaction; nothing written in it stays.
    pub fn transaction_cancel(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_transaction_cancel(self.raw()) };
        self.check(status, "transaction_cancel")
    }

    /// The handle's flags as libtdb reports them (what `DB_OPEN_FLAGS` returns,
    /// including bits libtdb adds itself).
    pub fn get_flags(&self) -> u32 {
        // SAFETY: live context; reads a field.
        unsafe { ffi::tdb_get_flags(self.raw()) as u32 }
    }

    /// The flags another process must open this file with (what `DB_OPEN_FLAGS`
    /// answers, and what a lock helper gets): the handle's flags without
    /// [`flags::NOLOCK`], which [`Tdb::with_locking_off`] and
    /// [`Tdb::start_frozen_transaction`] set for a while. An opener given NOLOCK
    /// together with CLEAR_IF_FIRST skips the lock that tells it whether anyone
    /// else has the file open, believes it is the first, and wipes the file under
    /// every other process's map: the daemon then dies of SIGBUS at its next
    /// access (a `ctdb writekey` racing a recovery's push did exactly this).
    pub fn client_open_flags(&self) -> u32 {
        self.get_flags() & !flags::NOLOCK
    }

    /// Adds `flags` to the handle (e.g. [`flags::SEQNUM`] for `ENABLE_SEQNUM`).
    pub fn add_flags(&self, flags: u32) {
        // SAFETY: live context; sets bits in a field.
        unsafe { ffi::tdb_add_flags(self.raw(), flags as c_uint) }
    }

    /// The file's 32-bit sequence number (bumped by writers with
    /// [`flags::SEQNUM`]).
    pub fn get_seqnum(&self) -> u32 {
        // SAFETY: live context; reads the header word.
        unsafe { ffi::tdb_get_seqnum(self.raw()) as u32 }
    }

    /// Bumps the sequence number once, unless its lock is busy (then nothing
    /// happens): how a remote `UPDATE_SEQNUM` is applied (§2.6).
    pub fn increment_seqnum_nonblock(&self) {
        // SAFETY: live context.
        unsafe { ffi::tdb_increment_seqnum_nonblock(self.raw()) }
    }

    /// Deletes every record.
    pub fn wipe_all(&self) -> Result<(), TdbError> {
        // SAFETY: live context.
        let status = unsafe { ffi::tdb_wipe_all(self.raw()) };
        self.check(status, "wipe_all")
    }

    /// How many free blocks the file's free list holds (`tdb_freelist_size`):
    /// what a repack would merge into one.
    pub fn freelist_size(&self) -> Result<u32, TdbError> {
        // SAFETY: live context; takes and drops the free-list lock itself.
        let size = unsafe { ffi::tdb_freelist_size(self.raw()) };
        self.check(size.min(0), "freelist_size")?;
        Ok(size as u32)
    }

    /// Rewrites the file's records in one transaction so that its free space
    /// becomes one block (`tdb_repack`). The file keeps its size; what it gains
    /// is no fragmentation. Waits, at commit, for every chain lock to be free.
    pub fn repack(&self) -> Result<(), TdbError> {
        // SAFETY: live context; libtdb runs its own transaction and temporary
        // in-memory database.
        let status = unsafe { ffi::tdb_repack(self.raw()) };
        self.check(status, "repack")
    }
}

impl Tdb {
    /// Checks the whole file's structure (`tdb_check`: header, hash chains, free
    /// list, every record's length and magic, no byte claimed twice) without a
    /// per-record callback. Takes the all-record read lock for the walk, so writers
    /// wait; it reads every byte of the file once. An error (code
    /// [`ErrorCode::Corrupt`] for a damaged file) names the file.
    pub fn check_consistency(&self) -> Result<(), TdbError> {
        // SAFETY: live context; no callback, so the private pointer is never read.
        let status = unsafe { ffi::tdb_check(self.raw(), None, std::ptr::null_mut()) };
        self.check(status, "check")
    }
}

impl Drop for Tdb {
    fn drop(&mut self) {
        let _list = OPEN_LIST
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the context is live and this is the only place that closes it;
        // after this `self` is gone. The open-list lock is held, as `OPEN_LIST`
        // requires. A failing close(2) leaves nothing for us to undo.
        unsafe {
            ffi::tdb_close(self.raw());
        }
    }
}

impl std::fmt::Debug for Tdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tdb").field("path", &self.path).finish()
    }
}

/// libtdb's own lookup3 (`tdb_jenkins_hash`), for checking ours against it.
pub fn jenkins_hash(bytes: &[u8]) -> u32 {
    let mut key = lend(bytes);
    // SAFETY: `key` lends `bytes`, alive for the call; tdb_jenkins_hash only reads
    // through the pointer it is given (it takes `TDB_DATA *` for its hash-function
    // signature, not to write).
    unsafe { ffi::tdb_jenkins_hash(&mut key) }
}

/// Whether robust process-shared mutexes work here, so that
/// [`flags::MUTEX_LOCKING`] may be used (libtdb refuses it otherwise).
///
/// libtdb's check forks a child and installs a SIGCHLD handler of its own, which it
/// leaves in place and which passes other signals on to the previous handler as a
/// plain one-argument handler. Call this once at start-up, before the async runtime
/// or anything else installs a SIGCHLD handler or starts children; the answer is
/// kept (by libtdb too, so the check inside `tdb_open` does not run it again).
pub fn runtime_check_for_robust_mutexes() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    // SAFETY: no arguments; OnceLock makes sure only one thread runs the check.
    *ANSWER.get_or_init(|| unsafe { ffi::tdb_runtime_check_for_robust_mutexes() })
}

/// libtdb's open lock (a write lock on byte 0 of the file, `OPEN_LOCK`), taken by
/// hand for [`Tdb::with_locking_off`]; released when dropped.
/// A transaction of [`Tdb::start_frozen_transaction`], open until given back to
/// [`Tdb::finish_frozen_transaction`]. Dropped otherwise (the handle closed
/// first), libtdb's close has cancelled it; drop it before the handle, whose
/// descriptor its lock is on.
#[derive(Debug)]
pub struct FrozenTransaction {
    _open_lock: OpenLock,
}

#[derive(Debug)]
struct OpenLock {
    fd: c_int,
}

impl OpenLock {
    /// Byte 0: where libtdb takes its open lock.
    const OFFSET: i64 = 0;

    /// Waits for the lock (an open in progress elsewhere holds it for moments).
    fn take(tdb: &Tdb) -> Result<Self, TdbError> {
        // SAFETY: live context; returns the handle's descriptor, which lives as
        // long as the handle, and `tdb` outlives the guard (it is held inside a
        // method of `tdb`).
        let fd = unsafe { ffi::tdb_fd(tdb.raw()) };
        let lock = OpenLock { fd };
        lock.set(libc::F_WRLCK, libc::F_SETLKW)
            .map_err(|source| TdbError::OpenLock {
                path: tdb.path.clone(),
                source,
            })?;
        Ok(lock)
    }

    fn set(&self, kind: c_int, cmd: c_int) -> std::io::Result<()> {
        // SAFETY: plain-old-data struct; every field we rely on is set below.
        let mut region: libc::flock = unsafe { std::mem::zeroed() };
        region.l_type = kind as libc::c_short;
        region.l_whence = libc::SEEK_SET as libc::c_short;
        region.l_start = Self::OFFSET;
        region.l_len = 1;
        loop {
            // SAFETY: a valid descriptor (see `take`) and a pointer to a live,
            // initialised flock.
            let status = unsafe { libc::fcntl(self.fd, cmd, &region) };
            if status == 0 {
                return Ok(());
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

impl Drop for OpenLock {
    fn drop(&mut self) {
        if let Err(e) = self.set(libc::F_UNLCK, libc::F_SETLK) {
            tracing::warn!(error = %e, "could not release the database's open lock");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn create(dir: &tempfile::TempDir, name: &str, tdb_flags: u32) -> Tdb {
        Tdb::open(
            &dir.path().join(name),
            0,
            tdb_flags,
            libc::O_CREAT | libc::O_RDWR,
            0o600,
        )
        .unwrap()
    }

    fn all_records(tdb: &Tdb) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut records = Vec::new();
        tdb.traverse_read(|key, value| {
            records.push((key.to_vec(), value.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        records.sort();
        records
    }

    /// Our lookup3 is libtdb's, on every length from 0 to 99 with pseudo-random
    /// bytes, and on whatever proptest makes up.
    #[test]
    fn our_hash_is_libtdbs() {
        let mut state = 0x1234_5678_9abc_def0_u64;
        for round in 0..20 {
            for len in 0..100 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        // xorshift64: enough to vary every byte.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                assert_eq!(
                    super::super::hash::lookup3(&bytes),
                    jenkins_hash(&bytes),
                    "round {round}, {len} bytes {bytes:02x?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn our_hash_is_libtdbs_on_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(super::super::hash::lookup3(&bytes), jenkins_hash(&bytes));
        }
    }

    #[test]
    fn store_fetch_delete_traverse() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "plain.tdb", flags::DEFAULT);
        assert_eq!(tdb.fetch(b"missing").unwrap(), None);
        tdb.store(b"k1", b"one", StoreMode::Insert).unwrap();
        tdb.store(b"k2", b"", StoreMode::Replace).unwrap();
        tdb.store(b"", b"empty key", StoreMode::Replace).unwrap();
        assert_eq!(tdb.fetch(b"k1").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(tdb.fetch(b"k2").unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(tdb.fetch(b"").unwrap().as_deref(), Some(&b"empty key"[..]));

        let exists = tdb.store(b"k1", b"again", StoreMode::Insert).unwrap_err();
        assert_eq!(exists.code(), Some(ErrorCode::Exists), "{exists}");
        let missing = tdb.store(b"k3", b"x", StoreMode::Modify).unwrap_err();
        assert_eq!(missing.code(), Some(ErrorCode::NoExist), "{missing}");
        assert!(missing.to_string().contains("plain.tdb"), "{missing}");
        tdb.store(b"k1", b"uno", StoreMode::Modify).unwrap();

        assert_eq!(
            all_records(&tdb),
            vec![
                (b"".to_vec(), b"empty key".to_vec()),
                (b"k1".to_vec(), b"uno".to_vec()),
                (b"k2".to_vec(), b"".to_vec()),
            ]
        );
        assert!(tdb.delete(b"k2").unwrap());
        assert!(!tdb.delete(b"k2").unwrap());
        assert_eq!(tdb.fetch(b"k2").unwrap(), None);
        assert_eq!(all_records(&tdb).len(), 2);

        tdb.wipe_all().unwrap();
        assert!(all_records(&tdb).is_empty());
    }

    #[test]
    fn traverse_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "stop.tdb", flags::DEFAULT);
        for i in 0..10u8 {
            tdb.store(&[i], &[i], StoreMode::Insert).unwrap();
        }
        let mut seen = 0;
        let count = tdb
            .traverse_read(|_, _| {
                seen += 1;
                if seen == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(seen, 3);
        assert_eq!(count, 3);
        assert_eq!(
            tdb.traverse_read(|_, _| ControlFlow::Continue(())).unwrap(),
            10
        );
    }

    #[test]
    fn a_panic_in_traverse_reaches_the_caller_and_leaves_the_handle_usable() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "panic.tdb", flags::DEFAULT);
        tdb.store(b"k", b"v", StoreMode::Insert).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            tdb.traverse_read(|_, _| panic!("visitor failed"))
        }));
        assert!(result.is_err());
        // The traverse's read locks are gone: a write works.
        tdb.store(b"k", b"w", StoreMode::Modify).unwrap();
    }

    #[test]
    fn data_survives_reopen_and_transactions_commit_or_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("persistent.tdb");
        {
            let tdb = create(&dir, "persistent.tdb", flags::PERSISTENT_DB);
            tdb.transaction_start().unwrap();
            tdb.store(b"kept", b"1", StoreMode::Insert).unwrap();
            tdb.transaction_commit().unwrap();
            tdb.transaction_start().unwrap();
            tdb.store(b"dropped", b"2", StoreMode::Insert).unwrap();
            assert!(tdb.fetch(b"dropped").unwrap().is_some());
            tdb.transaction_cancel().unwrap();
            assert_eq!(tdb.fetch(b"dropped").unwrap(), None);
            // DISALLOW_NESTING: a transaction inside a transaction is refused.
            tdb.transaction_start().unwrap();
            let nested = tdb.transaction_start().unwrap_err();
            assert_eq!(nested.code(), Some(ErrorCode::Nesting), "{nested}");
            tdb.transaction_cancel().unwrap();
        }
        let tdb = Tdb::open(&path, 0, flags::PERSISTENT_DB, libc::O_RDWR, 0).unwrap();
        assert_eq!(tdb.fetch(b"kept").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(tdb.fetch(b"dropped").unwrap(), None);
        assert_eq!(tdb.get_flags(), 0x0400, "§2.5: persistent reports 0x0400");
        tdb.add_flags(flags::SEQNUM);
        assert_eq!(tdb.get_flags(), 0x0480, "§2.5: persistent with seqnum");
    }

    /// CLEAR_IF_FIRST wipes the file when nobody else has it open.
    #[test]
    fn clear_if_first_wipes_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volatile.tdb");
        {
            let tdb = create(&dir, "volatile.tdb", flags::VOLATILE_DB);
            tdb.store(b"k", b"v", StoreMode::Insert).unwrap();
        }
        // Reopened without CLEAR_IF_FIRST the record is still there ...
        {
            let tdb = Tdb::open(
                &path,
                0,
                flags::VOLATILE_DB & !flags::CLEAR_IF_FIRST,
                libc::O_RDWR,
                0,
            )
            .unwrap();
            assert!(tdb.fetch(b"k").unwrap().is_some());
        }
        // ... and the first opener with it wipes it.
        let tdb = Tdb::open(&path, 0, flags::VOLATILE_DB, libc::O_RDWR, 0).unwrap();
        assert_eq!(tdb.fetch(b"k").unwrap(), None);
    }

    /// The volatile flags of §2.5 and what libtdb reports for them.
    #[test]
    fn volatile_flags_report_as_in_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "plain-volatile.tdb", flags::VOLATILE_DB);
        assert_eq!(tdb.get_flags(), 0x0C41);
        tdb.add_flags(flags::SEQNUM);
        assert_eq!(tdb.get_flags(), 0x0CC1);
    }

    #[test]
    fn seqnum_counts_writes_with_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "seqnum.tdb", flags::VOLATILE_DB);
        let start = tdb.get_seqnum();
        tdb.store(b"a", b"1", StoreMode::Insert).unwrap();
        assert_eq!(tdb.get_seqnum(), start, "no SEQNUM flag, no count");
        tdb.add_flags(flags::SEQNUM);
        tdb.store(b"a", b"2", StoreMode::Replace).unwrap();
        tdb.delete(b"a").unwrap();
        assert_eq!(tdb.get_seqnum(), start + 2);
        tdb.increment_seqnum_nonblock();
        assert_eq!(tdb.get_seqnum(), start + 3);
    }

    #[test]
    fn open_errors_name_the_path_and_errno() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.tdb");
        let error = Tdb::open(&missing, 0, flags::DEFAULT, libc::O_RDWR, 0).unwrap_err();
        match &error {
            TdbError::Open { path, source } => {
                assert_eq!(path, &missing);
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(error.to_string().contains("absent.tdb"), "{error}");

        // A second open of one file in one process is refused (fcntl locks would
        // not exclude the two handles).
        let _first = create(&dir, "once.tdb", flags::DEFAULT);
        let error = Tdb::open(
            &dir.path().join("once.tdb"),
            0,
            flags::DEFAULT,
            libc::O_RDWR,
            0,
        )
        .unwrap_err();
        assert!(
            matches!(&error, TdbError::Open { source, .. } if source.raw_os_error() == Some(libc::EBUSY)),
            "{error:?}"
        );

        // Not a TDB file.
        let junk = dir.path().join("junk.tdb");
        std::fs::write(&junk, b"not a tdb").unwrap();
        let error = Tdb::open(&junk, 0, flags::DEFAULT, libc::O_RDWR, 0).unwrap_err();
        assert!(matches!(error, TdbError::Open { .. }), "{error:?}");

        let error = Tdb::open(Path::new("nul\0.tdb"), 0, 0, libc::O_RDWR, 0).unwrap_err();
        assert!(matches!(error, TdbError::NulInPath { .. }), "{error:?}");
    }

    #[test]
    fn unlocking_what_is_not_locked_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let tdb = create(&dir, "unlock.tdb", flags::VOLATILE_DB);
        let error = tdb.chainunlock(b"never locked").unwrap_err();
        assert!(
            matches!(
                error,
                TdbError::Call {
                    operation: "chainunlock",
                    ..
                }
            ),
            "{error}"
        );
        tdb.lockall().unwrap();
        tdb.unlockall().unwrap();
        assert_eq!(tdb.lockall_nonblock().unwrap(), TryLock::Held);
        tdb.unlockall().unwrap();
    }

    /// Overwrites the 24-byte libtdb record header (next, rec_len, key_len,
    /// data_len, full_hash, magic) in front of the first copy of `key` in the file
    /// with `0xEE` bytes: a record in the middle of the file that libtdb can no
    /// longer follow, while the file header stays sound.
    pub(crate) fn damage_record_header(path: &Path, key: &[u8]) {
        let mut bytes = std::fs::read(path).unwrap();
        let at = bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("the key is in the file");
        assert!(at >= 24 + 168, "the key sits behind the header");
        bytes[at - 24..at].fill(0xEE);
        std::fs::write(path, bytes).unwrap();
    }

    /// A sound file passes the check; the same file with one record's header
    /// overwritten in the middle still opens (libtdb reads only the file header
    /// at open) but fails the check with `Corrupt`, naming the file.
    #[test]
    fn check_finds_a_damaged_record_that_open_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.tdb");
        {
            let tdb = create(&dir, "damaged.tdb", flags::PERSISTENT_DB);
            for i in 0..200u32 {
                tdb.store(
                    format!("key-{i:04}").as_bytes(),
                    &[i as u8; 40],
                    StoreMode::Insert,
                )
                .unwrap();
            }
            tdb.check_consistency().unwrap();
        }
        damage_record_header(&path, b"key-0100");
        let tdb = Tdb::open(&path, 0, flags::PERSISTENT_DB, libc::O_RDWR, 0)
            .expect("the file header is intact, so it opens");
        let error = tdb.check_consistency().unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::Corrupt), "{error}");
        assert!(error.to_string().contains("damaged.tdb"), "{error}");
    }

    /// Files we write are read by Debian's `tdbdump`.
    #[test]
    fn tdbdump_reads_our_files() {
        let dir = tempfile::tempdir().unwrap();
        for (name, tdb_flags) in [
            ("dump-persistent.tdb", flags::PERSISTENT_DB),
            ("dump-volatile.tdb", flags::VOLATILE_DB),
        ] {
            let tdb = create(&dir, name, tdb_flags);
            tdb.store(b"key one", b"value one", StoreMode::Insert)
                .unwrap();
            tdb.store(&[0, 1, 2], &[0xff, 0x00], StoreMode::Insert)
                .unwrap();
            // While our handle is open, as smbd would find the file.
            let output = std::process::Command::new("tdbdump")
                .arg(tdb.path())
                .output()
                .expect("tdbdump (Debian's tdb-tools) must be installed");
            assert!(output.status.success(), "{name}: {output:?}");
            let text = String::from_utf8(output.stdout).unwrap();
            assert!(text.contains("key(7) = \"key one\""), "{name}: {text}");
            assert!(text.contains("data(9) = \"value one\""), "{name}: {text}");
            assert!(text.contains("key(3) = \"\\00\\01\\02\""), "{name}: {text}");
            assert!(text.contains("data(2) = \"\\FF\\00\""), "{name}: {text}");
        }
    }
}
