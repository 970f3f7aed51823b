/* lib/sqlite/zokio_vfs.c — the "zokio" SQLite VFS: SQLite's data I/O on
 * Zokio's file calls, everything else on SQLite's own "unix" VFS.
 *
 * Owns one struct zfile per open SQLite file: our sqlite3_file, followed in
 * the same allocation by the unix VFS's own file object (`real`), which
 * opened the fd and keeps the locks. xRead, xWrite, xTruncate, xSync and
 * xFileSize use the fd through zk_pread/zk_pwrite/zk_ftruncate/zk_fsync/
 * zk_fdatasync/zk_statx; xLock and friends, xShm* (the WAL index),
 * xFileControl, xSectorSize and xDeviceCharacteristics go to `real`.
 *
 * Why not a VFS of our own from open to lock: POSIX advisory locks belong
 * to the process and die with *any* close of the inode, so a correct VFS
 * must share lock state and defer closes across every connection of the
 * process — which the unix VFS already does, and which is the part of SQLite
 * nobody should copy. Opening a second fd for our I/O would break it (its
 * close would drop other connections' locks), so we use the unix VFS's fd.
 * SQLite does not export it; it is the fourth member of unixFile (pMethod,
 * pVfs, pInode, h), a layout unchanged since SQLite 3.7. xOpen checks it:
 * the candidate must be an open regular file with the same device and inode
 * as the path it opened; otherwise (and for temp files without a name) the
 * file's I/O goes to the unix methods too, so a changed layout costs speed,
 * not data.
 *
 * Inside Zokio tasks: a task may resume on another worker thread after any
 * suspension, and SQLite's connection mutex is a pthread mutex that belongs
 * to the thread that took it. So a connection used from tasks must be opened
 * with SQLITE_OPEN_NOMUTEX (and used by one task at a time); SQLite's global
 * mutexes are never held across a VFS read, write or sync. The busy
 * handler's sleeps (xSleep) suspend the task instead of the worker.
 *
 * Memory-mapped I/O is disabled (xFetch hands out no page): SQLite then
 * reads through xRead, so every read is a Zokio call.
 *
 * Durability: xSync is fdatasync, like the unix VFS on Linux. A file the
 * VFS created also gets its directory synced at its first xSync (the unix VFS's DIRSYNC), so a new journal or WAL
 * survives a power cut, not just a process crash. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zokio/fs.h"
#include "zokio/task.h"
#include "zokio/time.h"
#include "zokio_sqlite.h"

#define ZK_SQLITE_API __attribute__((visibility("default")))

struct zfile {
	sqlite3_file base;     /* pMethods: our io methods once open */
	sqlite3_file *real;    /* the unix VFS's file, right after us */
	int fd;                /* the unix file's fd; -1: no Zokio I/O */
	bool dirsync;          /* sync the directory at the next xSync */
	char *dir;             /* that directory (malloc'd), or NULL */
};

/* struct zfile is followed by the unix file; keep that one aligned. */
#define ZFILE_SIZE ((sizeof(struct zfile) + 15u) & ~(size_t)15u)

static sqlite3_vfs *unix_vfs;

/* The unix VFS's fd, from its unixFile (see the top comment). */
struct unix_file_head {
	const sqlite3_io_methods *pMethod;
	sqlite3_vfs *pVfs;
	void *pInode;
	int h;
};

static int probe_fd(sqlite3_file *real, const char *path)
{
	int fd = ((const struct unix_file_head *)(const void *)real)->h;
	struct stat a, b;
	if (!path || fd < 0 || fstat(fd, &a) != 0 || !S_ISREG(a.st_mode))
		return -1;
	if (stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return -1;
	return fd;
}

/* ---- io methods ---------------------------------------------------------------- */

static int z_close(sqlite3_file *f)
{
	struct zfile *z = (struct zfile *)f;
	int rc = z->real->pMethods ? z->real->pMethods->xClose(z->real) : SQLITE_OK;
	free(z->dir);
	z->dir = NULL;
	return rc;
}

static int z_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct zfile *z = (struct zfile *)f;
	if (z->fd < 0)
		return z->real->pMethods->xRead(z->real, buf, amt, off);
	int got = 0;
	while (got < amt) {
		ssize_t n = zk_pread(z->fd, (char *)buf + got, (size_t)(amt - got), off + got);
		if (n < 0)
			return SQLITE_IOERR_READ;
		if (n == 0)
			break;
		got += (int)n;
	}
	if (got < amt) {
		/* SQLite's contract: zero the rest and say it was short. */
		memset((char *)buf + got, 0, (size_t)(amt - got));
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int z_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct zfile *z = (struct zfile *)f;
	if (z->fd < 0)
		return z->real->pMethods->xWrite(z->real, buf, amt, off);
	int done = 0;
	while (done < amt) {
		ssize_t n = zk_pwrite(z->fd, (const char *)buf + done, (size_t)(amt - done),
				      off + done);
		if (n == -ENOSPC || n == -EDQUOT)
			return SQLITE_FULL;
		if (n <= 0)
			return SQLITE_IOERR_WRITE;
		done += (int)n;
	}
	return SQLITE_OK;
}

static int z_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct zfile *z = (struct zfile *)f;
	if (z->fd < 0)
		return z->real->pMethods->xTruncate(z->real, size);
	return zk_ftruncate(z->fd, (off_t)size) == 0 ? SQLITE_OK : SQLITE_IOERR_TRUNCATE;
}

static int sync_dir(const char *dir)
{
	int dfd = zk_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (dfd < 0)
		return SQLITE_OK; /* as the unix VFS: a directory we cannot open is not fatal */
	int r = zk_fdatasync(dfd);
	zk_close(dfd);
	return r == 0 || r == -EINVAL ? SQLITE_OK : SQLITE_IOERR_DIR_FSYNC;
}

static int z_sync(sqlite3_file *f, int flags)
{
	struct zfile *z = (struct zfile *)f;
	if (z->fd < 0)
		return z->real->pMethods->xSync(z->real, flags);
	/* fdatasync whatever the flags, as the unix VFS on Linux (full_fsync
	 * with HAVE_FDATASYNC): it flushes the data and the size, which is all
	 * a database, journal or WAL needs; a full fsync would also force an
	 * mtime-only journal commit per call. */
	(void)flags;
	int r = zk_fdatasync(z->fd);
	if (r < 0)
		return SQLITE_IOERR_FSYNC;
	if (z->dirsync && z->dir) {
		z->dirsync = false;
		return sync_dir(z->dir);
	}
	return SQLITE_OK;
}

static int z_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct zfile *z = (struct zfile *)f;
	if (z->fd < 0)
		return z->real->pMethods->xFileSize(z->real, size);
	/* SQLite asks for the size at the start of every read transaction in
	 * rollback mode. On its own threads fstat is cheapest (zk_statx would
	 * make the same syscall); in a task zk_statx keeps the worker free. */
	if (zk_task_id() == 0) {
		struct stat st;
		if (fstat(z->fd, &st) != 0)
			return SQLITE_IOERR_FSTAT;
		*size = (sqlite3_int64)st.st_size;
		return SQLITE_OK;
	}
	struct statx sx;
	if (zk_statx(z->fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx) != 0)
		return SQLITE_IOERR_FSTAT;
	*size = (sqlite3_int64)sx.stx_size;
	return SQLITE_OK;
}

#define REAL(z) (((struct zfile *)(z))->real)

static int z_lock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int z_unlock(sqlite3_file *f, int lock)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int z_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int z_file_control(sqlite3_file *f, int op, void *arg)
{
	if (op == SQLITE_FCNTL_VFSNAME) {
		*(char **)arg = sqlite3_mprintf("zokio");
		return SQLITE_OK;
	}
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int z_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int z_device_chars(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int z_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int z_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void z_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int z_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

/* No memory-mapped pages: SQLite falls back to xRead. */
static int z_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	(void)f;
	(void)off;
	(void)amt;
	*pp = NULL;
	return SQLITE_OK;
}

static int z_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	(void)f;
	(void)off;
	(void)p;
	return SQLITE_OK;
}

static const sqlite3_io_methods z_methods = {
	.iVersion = 3,
	.xClose = z_close,
	.xRead = z_read,
	.xWrite = z_write,
	.xTruncate = z_truncate,
	.xSync = z_sync,
	.xFileSize = z_file_size,
	.xLock = z_lock,
	.xUnlock = z_unlock,
	.xCheckReservedLock = z_check_reserved,
	.xFileControl = z_file_control,
	.xSectorSize = z_sector_size,
	.xDeviceCharacteristics = z_device_chars,
	.xShmMap = z_shm_map,
	.xShmLock = z_shm_lock,
	.xShmBarrier = z_shm_barrier,
	.xShmUnmap = z_shm_unmap,
	.xFetch = z_fetch,
	.xUnfetch = z_unfetch,
};

/* ---- vfs ------------------------------------------------------------------------ */

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int z_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	(void)vfs;
	struct zfile *z = (struct zfile *)f;
	memset(z, 0, sizeof(*z));
	z->fd = -1;
	z->real = (sqlite3_file *)(void *)((char *)f + ZFILE_SIZE);
	int rc = unix_vfs->xOpen(unix_vfs, name, z->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite calls no method of a file whose open failed. */
		z->base.pMethods = NULL;
		return rc;
	}
	z->fd = probe_fd(z->real, name);
	if (z->fd >= 0 && (flags & SQLITE_OPEN_CREATE) &&
	    (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL |
		      SQLITE_OPEN_SUPER_JOURNAL))) {
		z->dir = dir_of(name);
		z->dirsync = z->dir != NULL;
	}
	z->base.pMethods = &z_methods;
	return SQLITE_OK;
}

static int z_delete(sqlite3_vfs *vfs, const char *name, int sync_dir_too)
{
	(void)vfs;
	int r = zk_unlinkat(AT_FDCWD, name, 0);
	if (r == -ENOENT)
		return SQLITE_IOERR_DELETE_NOENT;
	if (r < 0)
		return SQLITE_IOERR_DELETE;
	if (sync_dir_too) {
		char *dir = dir_of(name);
		if (!dir)
			return SQLITE_NOMEM;
		int rc = sync_dir(dir);
		free(dir);
		return rc;
	}
	return SQLITE_OK;
}

static int z_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return unix_vfs->xAccess(unix_vfs, name, flags, out);
}

static int z_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return unix_vfs->xFullPathname(unix_vfs, name, n, out);
}

static void *z_dlopen(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return unix_vfs->xDlOpen(unix_vfs, name);
}

static void z_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	unix_vfs->xDlError(unix_vfs, n, msg);
}

static void (*z_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return unix_vfs->xDlSym(unix_vfs, h, sym);
}

static void z_dlclose(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	unix_vfs->xDlClose(unix_vfs, h);
}

static int z_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return unix_vfs->xRandomness(unix_vfs, n, out);
}

/* SQLite's busy handler sleeps here: in a task that is a suspension (the
 * worker runs other tasks meanwhile), elsewhere the unix VFS's usleep. */
static int z_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	if (us > 0 && zk_sleep_ns((uint64_t)us * 1000u) == 0)
		return us;
	return unix_vfs->xSleep(unix_vfs, us);
}

static int z_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return unix_vfs->xCurrentTime(unix_vfs, out);
}

static int z_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return unix_vfs->xGetLastError(unix_vfs, n, out);
}

static int z_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return unix_vfs->xCurrentTimeInt64(unix_vfs, out);
}

static sqlite3_vfs z_vfs = {
	.iVersion = 2,
	.mxPathname = 0, /* set from the unix VFS */
	.zName = "zokio",
	.xOpen = z_open,
	.xDelete = z_delete,
	.xAccess = z_access,
	.xFullPathname = z_full_pathname,
	.xDlOpen = z_dlopen,
	.xDlError = z_dlerror,
	.xDlSym = z_dlsym,
	.xDlClose = z_dlclose,
	.xRandomness = z_randomness,
	.xSleep = z_sleep,
	.xCurrentTime = z_current_time,
	.xGetLastError = z_last_error,
	.xCurrentTimeInt64 = z_current_time64,
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

ZK_SQLITE_API int zk_sqlite_register(int make_default)
{
	int rc = sqlite3_initialize();
	if (rc != SQLITE_OK)
		return rc;
	pthread_mutex_lock(&reg_lock);
	if (!unix_vfs) {
		sqlite3_vfs *u = sqlite3_vfs_find("unix");
		if (!u || u->iVersion < 2) {
			pthread_mutex_unlock(&reg_lock);
			return SQLITE_ERROR;
		}
		unix_vfs = u;
		z_vfs.szOsFile = (int)ZFILE_SIZE + u->szOsFile;
		z_vfs.mxPathname = u->mxPathname;
	}
	/* Registering again only moves it to the default slot if asked. */
	rc = sqlite3_vfs_register(&z_vfs, make_default);
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

/* The loadable-extension entry points: SQLite derives
 * sqlite3_zokiosqlite_init from the file name libzokio_sqlite.so, and
 * falls back to sqlite3_extension_init. The library calls SQLite directly
 * (it links libsqlite3, the library the sqlite3 shell itself uses), so the
 * API routines table is not needed. SQLITE_OK_LOAD_PERMANENTLY keeps the
 * library loaded after the loading connection closes: the VFS outlives it. */
ZK_SQLITE_API int sqlite3_zokiosqlite_init(sqlite3 *db, char **err, const void *api)
{
	(void)db;
	(void)api;
	int rc = zk_sqlite_register(0);
	if (rc != SQLITE_OK) {
		if (err)
			*err = sqlite3_mprintf("zokio: cannot register the VFS (%d)", rc);
		return rc;
	}
	return SQLITE_OK_LOAD_PERMANENTLY;
}

ZK_SQLITE_API int sqlite3_extension_init(sqlite3 *db, char **err, const void *api)
{
	return sqlite3_zokiosqlite_init(db, err, api);
}
