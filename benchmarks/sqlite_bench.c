/* benchmarks/sqlite_bench.c — SQLite through the "zokio" VFS against
 * SQLite's default "unix" VFS (zk-sqlite-bench), same workload, same file
 * system, one process per run:
 *
 *   zk-sqlite-bench --vfs zokio|unix --dir D [--journal wal|delete]
 *                   [--txns N] [--rows R] [--reads M] [--threads T]
 *
 * T threads (default 1), each with its own connection to one database in D
 * (deleted first), run N transactions each (BEGIN IMMEDIATE, R inserts of a
 * 100-byte row, COMMIT with synchronous=FULL: every commit is durable), then
 * M random point reads each. Prints
 *   txn_per_sec=<x> reads_per_sec=<x>
 * SQLite's page cache is kept at 256 KiB so that reads reach the VFS; the
 * file is in the kernel's page cache, so they measure the per-call cost of
 * the VFS, and commits its write and fsync path. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zokio/fs.h"
#include "zokio_sqlite.h"

static const char *vfs = "zokio", *dir, *journal = "wal";
static long txns = 500, rows = 20, reads = 20000;
static unsigned nthreads = 1;
static char path[4096];

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "zk-sqlite-bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
	exit(1);
}

static sqlite3 *open_db(void)
{
	sqlite3 *db;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK)
		die(db, "open");
	sqlite3_busy_timeout(db, 60000);
	char sql[128];
	/* A small page cache (256 KiB): the reads reach the VFS. */
	snprintf(sql, sizeof(sql),
		 "PRAGMA journal_mode=%s; PRAGMA synchronous=FULL; PRAGMA cache_size=-256;", journal);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die(db, "pragma");
	return db;
}

struct worker {
	unsigned id;
	pthread_t th;
};

static pthread_barrier_t start_line, writes_done;
static uint64_t t_write0, t_write1, t_read1;

static void *writer(void *arg)
{
	struct worker *w = arg;
	sqlite3 *db = open_db();
	sqlite3_stmt *ins, *get;
	if (sqlite3_prepare_v2(db, "INSERT INTO t(who, pad) VALUES(?, randomblob(100))", -1, &ins,
			       NULL) != SQLITE_OK)
		die(db, "prepare");
	pthread_barrier_wait(&start_line);
	for (long i = 0; i < txns; i++) {
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			die(db, "begin");
		for (long r = 0; r < rows; r++) {
			sqlite3_bind_int(ins, 1, (int)w->id);
			if (sqlite3_step(ins) != SQLITE_DONE)
				die(db, "insert");
			sqlite3_reset(ins);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			die(db, "commit");
	}
	pthread_barrier_wait(&writes_done);
	long total = txns * rows * (long)nthreads;
	if (sqlite3_prepare_v2(db, "SELECT length(pad) FROM t WHERE id = ?", -1, &get, NULL) !=
	    SQLITE_OK)
		die(db, "prepare");
	uint64_t s = 0x9e3779b97f4a7c15ull * (w->id + 1);
	for (long i = 0; i < reads; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		sqlite3_bind_int64(get, 1, (sqlite3_int64)(s % (uint64_t)total) + 1);
		if (sqlite3_step(get) != SQLITE_ROW)
			die(db, "select");
		sqlite3_reset(get);
	}
	sqlite3_finalize(ins);
	sqlite3_finalize(get);
	sqlite3_close(db);
	zk_fs_thread_release();
	return NULL;
}

int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--vfs"))
			vfs = v;
		else if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--journal"))
			journal = v;
		else if (!strcmp(a, "--txns"))
			txns = atol(v);
		else if (!strcmp(a, "--rows"))
			rows = atol(v);
		else if (!strcmp(a, "--reads"))
			reads = atol(v);
		else if (!strcmp(a, "--threads"))
			nthreads = (unsigned)atoi(v);
		else {
			fprintf(stderr, "zk-sqlite-bench: unknown option %s\n", a);
			return 2;
		}
	}
	if (!dir || txns < 1 || rows < 1 || reads < 0 || nthreads < 1 || nthreads > 64 ||
	    (strcmp(vfs, "zokio") && strcmp(vfs, "unix"))) {
		fprintf(stderr, "usage: zk-sqlite-bench --vfs zokio|unix --dir D [--journal wal|delete]"
				" [--txns N] [--rows R] [--reads M] [--threads T]\n");
		return 2;
	}
	if (zk_sqlite_register(0) != SQLITE_OK) {
		fprintf(stderr, "zk-sqlite-bench: cannot register the zokio VFS\n");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/bench.db", dir);
	const char *sfx[] = {"", "-wal", "-shm", "-journal"};
	for (unsigned i = 0; i < 4; i++) {
		char p[4200];
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		unlink(p);
	}
	sqlite3 *db = open_db();
	if (sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER, pad BLOB)", NULL,
			 NULL, NULL) != SQLITE_OK)
		die(db, "create");
	pthread_barrier_init(&start_line, NULL, nthreads + 1);
	pthread_barrier_init(&writes_done, NULL, nthreads + 1);
	struct worker *ws = calloc(nthreads, sizeof(*ws));
	for (unsigned i = 0; i < nthreads; i++) {
		ws[i].id = i;
		pthread_create(&ws[i].th, NULL, writer, &ws[i]);
	}
	pthread_barrier_wait(&start_line);
	t_write0 = mono_ns();
	pthread_barrier_wait(&writes_done);
	t_write1 = mono_ns();
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(ws[i].th, NULL);
	t_read1 = mono_ns();
	sqlite3_close(db);
	free(ws);
	double tps = (double)txns * nthreads * 1e9 / (double)(t_write1 - t_write0);
	double rps = (double)reads * nthreads * 1e9 / (double)(t_read1 - t_write1);
	printf("txn_per_sec=%.1f reads_per_sec=%.0f\n", tps, rps);
	return 0;
}
