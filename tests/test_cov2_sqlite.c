/* tests/test_cov2_sqlite.c — the "zokio" SQLite VFS (lib/sqlite/) method by
 * method, where the workload suite does not go: the VFS calls it hands to
 * the unix VFS (randomness, clocks, sleep, dlopen, access, full path), a
 * delete of a missing file and of a directory, a delete that syncs the
 * directory, a temporary file with no name (no fd of its own: every I/O
 * call passes through to the unix VFS), an open that fails, a short read
 * (zero-filled), xFetch/xUnfetch, the file controls, the loadable-extension
 * entry points called directly, and the file I/O methods from a task. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "zokio_sqlite.h"

int sqlite3_zokiosqlite_init(sqlite3 *db, char **err, const void *api);
int sqlite3_extension_init(sqlite3 *db, char **err, const void *api);

TestSuite(cov2_sqlite, .timeout = 60);

static sqlite3_vfs *zvfs(void)
{
	cr_assert_eq(zk_sqlite_register(0), SQLITE_OK);
	sqlite3_vfs *v = sqlite3_vfs_find("zokio");
	cr_assert_not_null(v);
	return v;
}

static sqlite3_file *file_alloc(sqlite3_vfs *v)
{
	sqlite3_file *f = calloc(1, (size_t)v->szOsFile);
	cr_assert_not_null(f);
	return f;
}

Test(cov2_sqlite, vfs_passthroughs)
{
	sqlite3_vfs *v = zvfs();
	cr_assert_str_eq(v->zName, "zokio");
	cr_assert_gt(v->mxPathname, 0);

	char rnd[32] = {0}, zero[32] = {0};
	cr_assert_eq(v->xRandomness(v, (int)sizeof(rnd), rnd), (int)sizeof(rnd));
	cr_assert_neq(memcmp(rnd, zero, sizeof(rnd)), 0, "32 random bytes all zero");

	double jd = 0;
	cr_assert_eq(v->xCurrentTime(v, &jd), SQLITE_OK);
	cr_assert_gt(jd, 2460000.0, "julian day %f", jd); /* after 2023 */
	sqlite3_int64 jd64 = 0;
	cr_assert_eq(v->xCurrentTimeInt64(v, &jd64), SQLITE_OK);
	cr_assert_gt(jd64, (sqlite3_int64)2460000 * 86400000);

	/* Outside a task zk_sleep_ns fails: the unix VFS sleeps instead. */
	cr_assert_geq(v->xSleep(v, 1000), 1000);
	cr_assert_eq(v->xSleep(v, 0), 0);

	char msg[256] = {0};
	(void)v->xGetLastError(v, (int)sizeof(msg), msg);

	void *h = v->xDlOpen(v, "libc.so.6");
	cr_assert_not_null(h);
	void (*sym)(void) = v->xDlSym(v, h, "getpid");
	cr_assert_not_null(sym);
	v->xDlClose(v, h);
	cr_assert_null(v->xDlOpen(v, "/nonexistent/libzokio-none.so"));
	memset(msg, 0, sizeof(msg));
	v->xDlError(v, (int)sizeof(msg) - 1, msg);
	cr_assert_neq(msg[0], '\0', "no dlerror text");

	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/here", dir);
	int res = -1;
	cr_assert_eq(v->xAccess(v, path, SQLITE_ACCESS_EXISTS, &res), SQLITE_OK);
	cr_assert_eq(res, 0);
	/* The unix VFS counts an empty regular file as missing. */
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
	cr_assert_eq(v->xAccess(v, path, SQLITE_ACCESS_EXISTS, &res), SQLITE_OK);
	cr_assert_eq(res, 1);

	char *full = calloc(1, (size_t)v->mxPathname + 1);
	cr_assert_eq(chdir(dir), 0);
	cr_assert_eq(v->xFullPathname(v, "rel.db", v->mxPathname + 1, full), SQLITE_OK);
	cr_assert_eq(full[0], '/');
	cr_assert_not_null(strstr(full, "rel.db"));
	free(full);
	zt_rmtree(dir);
}

Test(cov2_sqlite, delete_errors_and_dir_sync)
{
	sqlite3_vfs *v = zvfs();
	char *dir = zt_tmpdir();
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/missing.db", dir);
	cr_assert_eq(v->xDelete(v, path, 0), SQLITE_IOERR_DELETE_NOENT);

	/* unlink(2) of a directory fails with EISDIR: a plain delete error. */
	snprintf(path, sizeof(path), "%s/sub", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(v->xDelete(v, path, 0), SQLITE_IOERR_DELETE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);

	/* A delete that syncs its directory, with a path and without one. */
	snprintf(path, sizeof(path), "%s/gone.db", dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(v->xDelete(v, path, 1), SQLITE_OK);
	cr_assert_eq(stat(path, &st), -1);
	cr_assert_eq(chdir(dir), 0);
	fd = open("bare.db", O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(v->xDelete(v, "bare.db", 1), SQLITE_OK);
	cr_assert_eq(stat("bare.db", &st), -1);
	zt_rmtree(dir);
}

Test(cov2_sqlite, open_fails)
{
	sqlite3_vfs *v = zvfs();
	sqlite3_file *f = file_alloc(v);
	int out = 0;
	int rc = v->xOpen(v, "/nonexistent-dir-zokio/x.db", f,
			  SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB, &out);
	cr_assert_eq(rc & 0xff, SQLITE_CANTOPEN, "rc %d", rc);
	cr_assert_null(f->pMethods);
	free(f);
}

/* A temporary file (no name): the unix VFS's file has no path to match its
 * fd against, so every I/O method goes to the unix VFS. */
Test(cov2_sqlite, nameless_temp_file)
{
	sqlite3_vfs *v = zvfs();
	sqlite3_file *f = file_alloc(v);
	int out = 0;
	int rc = v->xOpen(v, NULL, f,
			  SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				  SQLITE_OPEN_DELETEONCLOSE | SQLITE_OPEN_EXCLUSIVE,
			  &out);
	cr_assert_eq(rc, SQLITE_OK);
	cr_assert_not_null(f->pMethods);
	const sqlite3_io_methods *m = f->pMethods;

	char data[4096], back[4096];
	zt_fill(data, sizeof(data), 7);
	cr_assert_eq(m->xWrite(f, data, (int)sizeof(data), 0), SQLITE_OK);
	cr_assert_eq(m->xWrite(f, data, (int)sizeof(data), 4096), SQLITE_OK);
	cr_assert_eq(m->xSync(f, SQLITE_SYNC_NORMAL), SQLITE_OK);
	sqlite3_int64 sz = 0;
	cr_assert_eq(m->xFileSize(f, &sz), SQLITE_OK);
	cr_assert_eq(sz, 8192);
	cr_assert_eq(m->xRead(f, back, (int)sizeof(back), 4096), SQLITE_OK);
	cr_assert_eq(memcmp(back, data, sizeof(back)), 0);
	cr_assert_eq(m->xTruncate(f, 4096), SQLITE_OK);
	cr_assert_eq(m->xFileSize(f, &sz), SQLITE_OK);
	cr_assert_eq(sz, 4096);

	char *name = NULL;
	cr_assert_eq(m->xFileControl(f, SQLITE_FCNTL_VFSNAME, &name), SQLITE_OK);
	cr_assert_str_eq(name, "zokio");
	sqlite3_free(name);
	cr_assert_gt(m->xSectorSize(f), 0);
	(void)m->xDeviceCharacteristics(f);
	void *p = (void *)1;
	cr_assert_eq(m->xFetch(f, 0, 4096, &p), SQLITE_OK);
	cr_assert_null(p);
	cr_assert_eq(m->xUnfetch(f, 0, NULL), SQLITE_OK);
	cr_assert_eq(m->xClose(f), SQLITE_OK);
	free(f);
}

struct dbfile {
	sqlite3_vfs *v;
	sqlite3_file *f;
	char path[PATH_MAX];
};

/* Writes 100 bytes, reads 200: SQLite's short-read contract (the rest
 * zeroed). Called on a plain thread and from a task. */
static void *short_read(void *arg)
{
	struct dbfile *d = arg;
	const sqlite3_io_methods *m = d->f->pMethods;
	char data[100], back[200];
	zt_fill(data, sizeof(data), 3);
	memset(back, 0xee, sizeof(back));
	ZT_CHECK_EQ(m->xTruncate(d->f, 0), SQLITE_OK);
	ZT_CHECK_EQ(m->xWrite(d->f, data, (int)sizeof(data), 0), SQLITE_OK);
	ZT_CHECK_EQ(m->xSync(d->f, SQLITE_SYNC_FULL), SQLITE_OK);
	ZT_CHECK_EQ(m->xSync(d->f, SQLITE_SYNC_NORMAL), SQLITE_OK);
	sqlite3_int64 sz = -1;
	ZT_CHECK_EQ(m->xFileSize(d->f, &sz), SQLITE_OK);
	ZT_CHECK_EQ(sz, 100);
	ZT_CHECK_EQ(m->xRead(d->f, back, (int)sizeof(back), 0), SQLITE_IOERR_SHORT_READ);
	ZT_CHECK(memcmp(back, data, sizeof(data)) == 0);
	bool zeroed = true;
	for (size_t i = sizeof(data); i < sizeof(back); i++)
		zeroed &= back[i] == 0;
	ZT_CHECK(zeroed);
	/* Wholly past the end: all zeroes. */
	memset(back, 0xee, sizeof(back));
	ZT_CHECK_EQ(m->xRead(d->f, back, 50, 1000), SQLITE_IOERR_SHORT_READ);
	ZT_CHECK_EQ(back[0], 0);
	ZT_CHECK_EQ(back[49], 0);
	/* The sleep of SQLite's busy handler suspends a task. */
	if (zk_task_id() != 0)
		ZT_CHECK_EQ(d->v->xSleep(d->v, 500), 500);
	return NULL;
}

Test(cov2_sqlite, main_db_short_read_thread_and_task)
{
	struct dbfile d;
	d.v = zvfs();
	char *dir = zt_tmpdir();
	snprintf(d.path, sizeof(d.path), "%s/main.db", dir);
	d.f = file_alloc(d.v);
	int out = 0;
	int rc = d.v->xOpen(d.v, d.path, d.f,
			    SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out);
	cr_assert_eq(rc, SQLITE_OK);
	short_read(&d);
	zt_assert_no_failures();
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, short_read, &d);
	zk_runtime_free(rt);
	cr_assert_eq(d.f->pMethods->xClose(d.f), SQLITE_OK);
	free(d.f);
	zt_rmtree(dir);
}

Test(cov2_sqlite, extension_entry_points)
{
	char *err = NULL;
	cr_assert_eq(sqlite3_zokiosqlite_init(NULL, &err, NULL), SQLITE_OK_LOAD_PERMANENTLY);
	cr_assert_null(err);
	cr_assert_eq(sqlite3_extension_init(NULL, NULL, NULL), SQLITE_OK_LOAD_PERMANENTLY);
	cr_assert_not_null(sqlite3_vfs_find("zokio"));
	/* Registering as the default moves it to the default slot. */
	cr_assert_eq(zk_sqlite_register(1), SQLITE_OK);
	sqlite3_vfs *def = sqlite3_vfs_find(NULL);
	cr_assert_not_null(def);
	cr_assert_str_eq(def->zName, "zokio");
}
