/* tests/test_cov2_dumpexit.c — ZK_TASK_DUMP_AT_EXIT after zk_block_on:
 * the finished block_on task is not reported alive at shutdown (it was, in
 * one run of six, until tasks were counted finished before their exit
 * hook ran: lib/task.c). 300 create/block_on/free rounds on one worker. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_dumpexit, .timeout = 60);

static void *nothing(void *arg)
{
	return arg;
}

Test(cov2_dumpexit, a_finished_block_on_task_is_not_reported_alive)
{
	if (!zk_metrics_enabled())
		cr_skip_test("built with -Dmetrics=false");
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/err", dir);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	int saved = dup(2);
	cr_assert_eq(dup2(fd, 2), 2);
	setenv("ZK_TASK_DUMP_AT_EXIT", "1", 1);
	for (size_t i = 0, n = zt_scaled(300, 30); i < n; i++) {
		zk_runtime_t *rt = zt_runtime(1);
		zt_run(rt, nothing, NULL);
		zk_runtime_free(rt);
	}
	unsetenv("ZK_TASK_DUMP_AT_EXIT");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[4096] = {0};
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	cr_assert_geq(n, 0);
	cr_assert_null(strstr(buf, "alive at shutdown"), "%s", buf);
	zt_rmtree(dir);
}
