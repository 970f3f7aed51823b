/* tests/test_sqlite.c — SQLite on the "zokio" VFS (lib/sqlite/): a real
 * workload in rollback-journal and WAL modes (inserts in transactions,
 * random reads and updates, integrity_check), several connections on
 * several threads, the loadable extension as the sqlite3 shell loads it,
 * SQLite inside Zokio tasks, and a crash test: a child writing through the
 * VFS is killed with SIGKILL mid-transaction many times, and after each
 * reopen the database is intact and holds exactly the committed
 * transactions. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "zokio_sqlite.h"

TestSuite(sqlite, .timeout = 120);

static void register_vfs(void)
{
	cr_assert_eq(zk_sqlite_register(0), SQLITE_OK);
	cr_assert_not_null(sqlite3_vfs_find("zokio"));
}

/* Opens path on the zokio VFS; NULL (and a recorded failure) on error. In
 * a task without SQLite's connection mutex (see zokio_sqlite.h). */
static sqlite3 *open_db(const char *path)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (zk_task_id() > 0)
		flags |= SQLITE_OPEN_NOMUTEX;
	int rc = sqlite3_open_v2(path, &db, flags, "zokio");
	if (rc != SQLITE_OK) {
		zt_fail(__FILE__, __LINE__, "open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 30000);
	return db;
}

static bool exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		zt_fail(__FILE__, __LINE__, "%s: %s", sql, err ? err : "?");
		sqlite3_free(err);
		return false;
	}
	return true;
}

static long long query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		zt_fail(__FILE__, __LINE__, "%s: %s", sql, sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static bool integrity_ok(sqlite3 *db)
{
	sqlite3_stmt *st;
	bool ok = false;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
		return false;
	if (sqlite3_step(st) == SQLITE_ROW)
		ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
	sqlite3_finalize(st);
	return ok;
}

/* ---- a workload in each journal mode --------------------------------------------------- */

static void workload(const char *path, const char *mode)
{
	sqlite3 *db = open_db(path);
	if (!db)
		return;
	char sql[256];
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", mode);
	exec(db, sql);
	ZT_CHECK_EQ(query_int(db, "SELECT count(*) FROM pragma_database_list"), 1);
	exec(db, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER, pad BLOB)");
	long rows = (long)zt_scaled(100000, 5000), per_txn = 1000;
	sqlite3_stmt *ins;
	sqlite3_prepare_v2(db, "INSERT INTO kv VALUES(?, ?, randomblob(64))", -1, &ins, NULL);
	for (long k = 0; k < rows;) {
		exec(db, "BEGIN");
		for (long i = 0; i < per_txn && k < rows; i++, k++) {
			sqlite3_bind_int64(ins, 1, k);
			sqlite3_bind_int64(ins, 2, k * 3);
			ZT_CHECK_EQ(sqlite3_step(ins), SQLITE_DONE);
			sqlite3_reset(ins);
		}
		exec(db, "COMMIT");
	}
	sqlite3_finalize(ins);
	/* Random reads and updates: v becomes k * 3 + 1 for updated keys. */
	sqlite3_stmt *get, *upd;
	sqlite3_prepare_v2(db, "SELECT v FROM kv WHERE k = ?", -1, &get, NULL);
	sqlite3_prepare_v2(db, "UPDATE kv SET v = v + 1 WHERE k = ? AND v = ? * 3", -1, &upd, NULL);
	uint64_t rng = 88172645463325252ull;
	long updated = 0;
	exec(db, "BEGIN");
	for (long i = 0; i < rows / 10; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		long k = (long)(rng % (uint64_t)rows);
		sqlite3_bind_int64(get, 1, k);
		ZT_CHECK_EQ(sqlite3_step(get), SQLITE_ROW);
		long long v = sqlite3_column_int64(get, 0);
		ZT_CHECK(v == k * 3 || v == k * 3 + 1);
		sqlite3_reset(get);
		sqlite3_bind_int64(upd, 1, k);
		sqlite3_bind_int64(upd, 2, k);
		ZT_CHECK_EQ(sqlite3_step(upd), SQLITE_DONE);
		updated += sqlite3_changes(db);
		sqlite3_reset(upd);
		if (i % 500 == 499) {
			exec(db, "COMMIT");
			exec(db, "BEGIN");
		}
	}
	exec(db, "COMMIT");
	sqlite3_finalize(get);
	sqlite3_finalize(upd);
	sqlite3_close(db);

	/* Reopen: every committed row is there. */
	db = open_db(path);
	if (!db)
		return;
	ZT_CHECK(integrity_ok(db));
	ZT_CHECK_EQ(query_int(db, "SELECT count(*) FROM kv"), rows);
	ZT_CHECK_EQ(query_int(db, "SELECT count(*) FROM kv WHERE v = k * 3 + 1"), updated);
	ZT_CHECK_EQ(query_int(db, "SELECT count(*) FROM kv WHERE v != k * 3 AND v != k * 3 + 1"), 0);
	sqlite3_close(db);
}

static void run_workload(const char *mode)
{
	register_vfs();
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/w.db", dir);
	workload(path, mode);
	zk_fs_thread_release();
	zt_assert_no_failures();
	zt_rmtree(dir);
}

Test(sqlite, rollback_journal_inserts_reads_updates_and_integrity)
{
	run_workload("DELETE");
}

Test(sqlite, wal_inserts_reads_updates_and_integrity)
{
	run_workload("WAL");
}

/* ---- several connections on several threads ---------------------------------------------- */

struct shared {
	char path[PATH_MAX];
	int id;
	long rows;
};

static void *writer_thread(void *arg)
{
	struct shared *s = arg;
	sqlite3 *db = open_db(s->path);
	if (!db)
		return NULL;
	sqlite3_stmt *ins;
	sqlite3_prepare_v2(db, "INSERT INTO t(who, n) VALUES(?, ?)", -1, &ins, NULL);
	for (long n = 0; n < s->rows;) {
		exec(db, "BEGIN IMMEDIATE");
		for (int i = 0; i < 50 && n < s->rows; i++, n++) {
			sqlite3_bind_int(ins, 1, s->id);
			sqlite3_bind_int64(ins, 2, n);
			ZT_CHECK_EQ(sqlite3_step(ins), SQLITE_DONE);
			sqlite3_reset(ins);
		}
		exec(db, "COMMIT");
		/* A reader's view in between: whole transactions only (every
		 * writer commits 50 rows at a time). */
		long long c = query_int(db, "SELECT count(*) FROM t");
		ZT_CHECK(c > 0 && c % 50 == 0);
	}
	sqlite3_finalize(ins);
	sqlite3_close(db);
	zk_fs_thread_release();
	return NULL;
}

static void run_threads(const char *mode)
{
	register_vfs();
	char *dir = zt_tmpdir();
	enum { T = 4 };
	struct shared s[T];
	snprintf(s[0].path, sizeof(s[0].path), "%s/m.db", dir);
	sqlite3 *db = open_db(s[0].path);
	cr_assert_not_null(db);
	char sql[128];
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", mode);
	exec(db, sql);
	exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER, n INTEGER)");
	pthread_t th[T];
	long rows = ((long)zt_scaled(2000, 200) + 49) / 50 * 50;
	for (int i = 0; i < T; i++) {
		memcpy(s[i].path, s[0].path, sizeof(s[i].path));
		s[i].id = i;
		s[i].rows = rows;
		cr_assert_eq(pthread_create(&th[i], NULL, writer_thread, &s[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	cr_assert(integrity_ok(db));
	cr_assert_eq(query_int(db, "SELECT count(*) FROM t"), T * rows);
	for (int i = 0; i < T; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(DISTINCT n) FROM t WHERE who = %d", i);
		cr_assert_eq(query_int(db, sql), rows);
	}
	sqlite3_close(db);
	zk_fs_thread_release();
	zt_rmtree(dir);
}

Test(sqlite, four_threads_with_their_own_connections_in_wal_mode)
{
	run_threads("WAL");
}

Test(sqlite, four_threads_with_their_own_connections_in_rollback_mode)
{
	run_threads("DELETE");
}

/* ---- inside Zokio tasks -------------------------------------------------------------------- */

static void *task_workload(void *arg)
{
	workload(arg, "WAL");
	return NULL;
}

Test(sqlite, the_workload_runs_inside_a_zokio_task)
{
	register_vfs();
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/task.db", dir);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, task_workload, path);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}

/* ---- the loadable extension ------------------------------------------------------------------ */

Test(sqlite, the_extension_loads_like_the_shell_loads_it)
{
	/* libzokio_sqlite.so sits in the build dir, one level above tests/. */
	char exe[PATH_MAX], so[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	snprintf(so, sizeof(so), "%s/../libzokio_sqlite.so", exe);
	if (access(so, R_OK) != 0)
		cr_skip_test("libzokio_sqlite.so not built");
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/ext.db", dir);
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	sqlite3_enable_load_extension(db, 1);
	char *err = NULL;
	int rc = sqlite3_load_extension(db, so, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "load: %s", err ? err : "?");
	sqlite3_close(db);
	/* The VFS outlives the loading connection. */
	cr_assert_not_null(sqlite3_vfs_find("zokio"));
	char uri[PATH_MAX + 32];
	snprintf(uri, sizeof(uri), "file:%s?vfs=zokio", path);
	cr_assert_eq(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
							SQLITE_OPEN_URI,
				     NULL),
		     SQLITE_OK);
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA main.journal_mode", -1, &st, NULL), SQLITE_OK);
	sqlite3_finalize(st);
	char *vfsname = NULL;
	cr_assert_eq(sqlite3_file_control(db, "main", SQLITE_FCNTL_VFSNAME, &vfsname), SQLITE_OK);
	cr_assert_str_eq(vfsname, "zokio");
	sqlite3_free(vfsname);
	cr_assert_eq(sqlite3_exec(db, "CREATE TABLE x(a); INSERT INTO x VALUES(42);", NULL, NULL,
				  NULL),
		     SQLITE_OK);
	cr_assert_eq(query_int(db, "SELECT a FROM x"), 42);
	sqlite3_close(db);
	zt_rmtree(dir);
}

/* Debian's sqlite3 shell itself: .load the extension, open a database on
 * the zokio VFS, write, read back, check integrity. Skipped without the
 * shell. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

Test(sqlite, the_sqlite3_shell_loads_the_extension_and_uses_the_vfs)
{
#ifdef SANITIZED
	cr_skip_test("a sanitizer build's extension cannot load into the plain shell");
#endif
	if (access("/usr/bin/sqlite3", X_OK) != 0)
		cr_skip_test("no /usr/bin/sqlite3");
	char exe[PATH_MAX], so[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0);
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	snprintf(so, sizeof(so), "%s/../libzokio_sqlite.so", exe);
	if (access(so, R_OK) != 0)
		cr_skip_test("libzokio_sqlite.so not built");
	char *dir = zt_tmpdir();
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && /usr/bin/sqlite3 -batch 2>&1 <<'EOF'\n"
		 ".load %s\n"
		 ".open file:shell.db?vfs=zokio\n"
		 ".vfsname\n"
		 "PRAGMA journal_mode=wal;\n"
		 "CREATE TABLE t(a);\n"
		 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<1000)"
		 " INSERT INTO t SELECT x FROM c;\n"
		 "SELECT sum(a) FROM t;\n"
		 "PRAGMA integrity_check;\n"
		 "EOF\n",
		 dir, so);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	char out[4096] = {0};
	size_t got = fread(out, 1, sizeof(out) - 1, p);
	int st = pclose(p);
	out[got] = 0;
	cr_assert_eq(st, 0, "sqlite3 failed: %s", out);
	cr_assert_str_eq(out, "zokio\nwal\n500500\nok\n", "shell output: %s", out);
	zt_rmtree(dir);
}

/* ---- crash test -------------------------------------------------------------------------------- */

/* Each transaction k inserts ROWS_PER_TXN rows tagged k and sets the
 * counter row to k; after COMMIT returns, the child reports k on a pipe.
 * The child is killed at a random moment. Afterwards every reported k must
 * be in the database, whole, and nothing beyond the one transaction whose
 * commit may have finished without being reported. */
#define ROWS_PER_TXN 20
#define ZK_STR2(x) #x
#define ZK_STR(x) ZK_STR2(x)

static void crash_child(const char *path, const char *mode, int wfd)
{
	if (zk_sqlite_register(0) != SQLITE_OK)
		_exit(2);
	sqlite3 *db;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "zokio") !=
	    SQLITE_OK)
		_exit(3);
	sqlite3_busy_timeout(db, 10000);
	char sql[128];
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", mode);
	sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	if (sqlite3_exec(db,
			 "CREATE TABLE IF NOT EXISTS rows(txn INTEGER, i INTEGER, pad BLOB);"
			 "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, k INTEGER);"
			 "INSERT OR IGNORE INTO counter VALUES(1, 0);",
			 NULL, NULL, NULL) != SQLITE_OK)
		_exit(4);
	sqlite3_stmt *ins, *cnt;
	sqlite3_prepare_v2(db, "INSERT INTO rows VALUES(?, ?, randomblob(300))", -1, &ins, NULL);
	sqlite3_prepare_v2(db, "UPDATE counter SET k = k + 1 WHERE id = 1 RETURNING k", -1, &cnt,
			   NULL);
	for (;;) {
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			_exit(5);
		if (sqlite3_step(cnt) != SQLITE_ROW)
			_exit(6);
		long long k = sqlite3_column_int64(cnt, 0);
		sqlite3_reset(cnt);
		for (int i = 0; i < ROWS_PER_TXN; i++) {
			sqlite3_bind_int64(ins, 1, k);
			sqlite3_bind_int(ins, 2, i);
			if (sqlite3_step(ins) != SQLITE_DONE)
				_exit(7);
			sqlite3_reset(ins);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			_exit(8);
		if (write(wfd, &k, sizeof(k)) != (ssize_t)sizeof(k))
			_exit(9);
	}
}

static void crash_round(const char *path, const char *mode, unsigned delay_us, long long *total)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		crash_child(path, mode, p[1]);
		_exit(1);
	}
	close(p[1]);
	/* Let it commit for a while (at least one transaction), then kill. */
	long long k = 0, last = 0;
	cr_assert_eq(read(p[0], &k, sizeof(k)), (ssize_t)sizeof(k), "child made no commit");
	last = k;
	usleep(delay_us);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "child exited on its own (status %d)", status);
	while (read(p[0], &k, sizeof(k)) == (ssize_t)sizeof(k))
		last = k;
	close(p[0]);

	sqlite3 *db = open_db(path);
	cr_assert_not_null(db);
	cr_assert(integrity_ok(db), "integrity_check after SIGKILL");
	long long counter = query_int(db, "SELECT k FROM counter WHERE id = 1");
	cr_assert(counter == last || counter == last + 1,
		  "committed %lld, reported %lld: a commit was lost or invented", counter, last);
	/* Every transaction is whole, and they are exactly 1..counter. */
	cr_assert_eq(query_int(db, "SELECT count(*) FROM rows"), counter * ROWS_PER_TXN);
	cr_assert_eq(query_int(db, "SELECT count(DISTINCT txn) FROM rows"), counter);
	cr_assert_eq(query_int(db, "SELECT min(txn) FROM rows"), 1);
	cr_assert_eq(query_int(db, "SELECT max(txn) FROM rows"), counter);
	cr_assert_eq(query_int(db,
			       "SELECT count(*) FROM (SELECT txn FROM rows GROUP BY txn HAVING "
			       "count(*) != " ZK_STR(ROWS_PER_TXN) ")"),
		     0);
	sqlite3_close(db);
	cr_assert_geq(counter, *total, "transactions went backwards");
	*total = counter;
}

static void run_crash(const char *mode)
{
	register_vfs();
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/crash.db", dir);
	unsigned rounds = (unsigned)zt_scaled(20, 5);
	long long total = 0;
	uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
	for (unsigned r = 0; r < rounds; r++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		crash_round(path, mode, (unsigned)(rng % 30000u), &total);
	}
	cr_assert_gt(total, 0);
	zk_fs_thread_release();
	zt_rmtree(dir);
}

Test(sqlite, sigkill_mid_transaction_keeps_exactly_the_committed_transactions_rollback)
{
	run_crash("DELETE");
}

Test(sqlite, sigkill_mid_transaction_keeps_exactly_the_committed_transactions_wal)
{
	run_crash("WAL");
}
