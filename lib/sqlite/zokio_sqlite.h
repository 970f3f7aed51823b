/* lib/sqlite/zokio_sqlite.h — the "zokio" SQLite VFS (libzokio_sqlite.so).
 *
 * SQLite's file I/O — reads, writes, syncs, truncation, size — goes through
 * Zokio's file calls (zokio/fs.h): from SQLite's own threads each call uses
 * that thread's private io_uring ring; from a Zokio task it suspends the
 * task. Opening, locking, shared memory (WAL index) and everything else are
 * SQLite's "unix" VFS, unchanged, so locking semantics and file formats are
 * exactly SQLite's.
 *
 * From Zokio tasks, open connections with SQLITE_OPEN_NOMUTEX and use each
 * from one task at a time: a task can resume on another worker thread, and
 * SQLite's per-connection mutex belongs to the thread that locked it.
 *
 * Two ways in:
 *   - the sqlite3 shell or sqlite3_load_extension(): `.load libzokio_sqlite`
 *     registers the VFS (not as the default) for the life of the process;
 *     open with `.open file:x.db?vfs=zokio` or sqlite3_open_v2(..., "zokio").
 *   - a C program: zk_sqlite_register(). libzokio_sqlite.so carries its own
 *     copy of the runtime (built without jemalloc so that it can be
 *     dlopen()ed), which is fine for SQLite's own threads; a program that
 *     also runs SQLite inside Zokio tasks links the VFS object with libzokio
 *     instead (meson: zokio_sqlite_dep) so both share one runtime. */
#ifndef ZOKIO_SQLITE_H
#define ZOKIO_SQLITE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the "zokio" VFS (as the default one when make_default is
 * non-zero). Idempotent. Returns SQLITE_OK (0), or SQLITE_ERROR when the
 * "unix" VFS it builds on is missing, SQLITE_NOMEM. */
int zk_sqlite_register(int make_default);

#ifdef __cplusplus
}
#endif
#endif
