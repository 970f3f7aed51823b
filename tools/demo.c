/* tools/demo.c — zk-demo: the runtime at work on real files and sockets.
 *
 * Starts a runtime, then from one root task:
 *   - a TCP echo server on 127.0.0.1 (one task per connection);
 *   - 100 000 file tasks: each sleeps a little (so they are all suspended at
 *     once), writes its own 4 KiB record at its own offset of one shared
 *     file, reads it back through a fresh read and verifies every byte;
 *   - 1 000 socket tasks: each connects to the echo server and does 100
 *     request/response round trips, verifying the echoed bytes;
 * and prints a summary: tasks, operations, bytes, errors, time, rates, and
 * which workers ran what. Exit status 0 only if every byte checked out.
 *
 * Usage: zk-demo [--tasks N] [--clients N] [--rounds N] [--workers N] */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zokio/zokio.h>

#define RECORD 4096
#define MAX_WORKERS 256

struct demo {
	int file_fd;
	int listen_fd;
	uint16_t port;
	long tasks, clients, rounds;
	atomic_long file_ops, net_rounds, bytes, errors, done;
	atomic_long per_worker[MAX_WORKERS];
	zk_oneshot_t all_done;
	atomic_long remaining;
};

static void finish_one(struct demo *d)
{
	if (atomic_fetch_sub(&d->remaining, 1) == 1)
		zk_oneshot_send(&d->all_done, NULL);
}

static void count_worker(struct demo *d)
{
	int w = zk_worker_index();
	if (w >= 0 && w < MAX_WORKERS)
		atomic_fetch_add(&d->per_worker[w], 1);
}

struct file_job {
	struct demo *d;
	long index;
};

static void *file_task(void *arg)
{
	struct file_job *job = arg;
	struct demo *d = job->d;
	long i = job->index;
	unsigned char out[RECORD], in[RECORD];
	zk_sleep_ms((uint64_t)(i % 50));
	for (int k = 0; k < RECORD; k++)
		out[k] = (unsigned char)(i * 31 + k);
	int64_t off = (int64_t)i * RECORD;
	ssize_t w = zk_write(d->file_fd, out, RECORD, off);
	ssize_t r = w == RECORD ? zk_read(d->file_fd, in, RECORD, off) : -1;
	if (w != RECORD || r != RECORD || memcmp(in, out, RECORD) != 0)
		atomic_fetch_add(&d->errors, 1);
	else
		atomic_fetch_add(&d->bytes, 2 * RECORD);
	atomic_fetch_add(&d->file_ops, 2);
	count_worker(d);
	free(job);
	finish_one(d);
	return NULL;
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[512];
	for (;;) {
		ssize_t n = zk_recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		ssize_t off = 0;
		while (off < n) {
			ssize_t s = zk_send(fd, buf + off, (size_t)(n - off), 0);
			if (s <= 0)
				goto out;
			off += s;
		}
	}
out:
	zk_close(fd);
	return NULL;
}

static void *echo_server(void *arg)
{
	struct demo *d = arg;
	for (;;) {
		int fd = zk_accept(d->listen_fd, NULL, NULL);
		if (fd < 0)
			break; /* cancelled at the end of the demo */
		if (zk_spawn(NULL, echo_conn, (void *)(intptr_t)fd) < 0)
			zk_close(fd);
	}
	return NULL;
}

static void *client_task(void *arg)
{
	struct demo *d = arg;
	int fd = zk_tcp_connect("127.0.0.1", d->port);
	if (fd < 0) {
		atomic_fetch_add(&d->errors, 1);
		finish_one(d);
		return NULL;
	}
	char msg[64], back[64];
	for (long r = 0; r < d->rounds; r++) {
		int len = snprintf(msg, sizeof(msg), "task %lu round %ld", zk_task_id(), r);
		if (zk_send(fd, msg, (size_t)len, 0) != len) {
			atomic_fetch_add(&d->errors, 1);
			break;
		}
		ssize_t got = 0;
		while (got < len) {
			ssize_t n = zk_recv(fd, back + got, (size_t)(len - got), 0);
			if (n <= 0)
				break;
			got += n;
		}
		if (got != len || memcmp(msg, back, (size_t)len) != 0) {
			atomic_fetch_add(&d->errors, 1);
			break;
		}
		atomic_fetch_add(&d->net_rounds, 1);
		atomic_fetch_add(&d->bytes, 2 * len);
	}
	count_worker(d);
	zk_close(fd);
	finish_one(d);
	return NULL;
}

static void *root(void *arg)
{
	struct demo *d = arg;
	zk_task_t *server;
	if (zk_spawn(&server, echo_server, d) < 0)
		return (void *)1;
	for (long i = 0; i < d->clients; i++)
		if (zk_spawn(NULL, client_task, d) < 0) {
			atomic_fetch_add(&d->errors, 1);
			finish_one(d);
		}
	for (long i = 0; i < d->tasks; i++) {
		struct file_job *job = malloc(sizeof(*job));
		if (job) {
			job->d = d;
			job->index = i;
		}
		if (!job || zk_spawn(NULL, file_task, job) < 0) {
			free(job);
			atomic_fetch_add(&d->errors, 1);
			finish_one(d);
		}
	}
	zk_oneshot_recv(&d->all_done, NULL);
	zk_cancel(server);
	zk_join(server, NULL);
	return NULL;
}

int main(int argc, char **argv)
{
	struct demo d;
	memset(&d, 0, sizeof(d));
	d.tasks = 100000;
	d.clients = 1000;
	d.rounds = 100;
	zk_config_t cfg = {0};
	for (int i = 1; i + 1 < argc; i += 2) {
		long v = strtol(argv[i + 1], NULL, 10);
		if (!strcmp(argv[i], "--tasks"))
			d.tasks = v;
		else if (!strcmp(argv[i], "--clients"))
			d.clients = v;
		else if (!strcmp(argv[i], "--rounds"))
			d.rounds = v;
		else if (!strcmp(argv[i], "--workers"))
			cfg.workers = (unsigned)v;
		else {
			fprintf(stderr, "usage: %s [--tasks N] [--clients N] [--rounds N] [--workers N]\n",
				argv[0]);
			return 2;
		}
	}
	char dir[] = "/tmp/zk-demo-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char path[64];
	snprintf(path, sizeof(path), "%s/data", dir);
	d.file_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	d.listen_fd = zk_tcp_listen("127.0.0.1", 0, 4096);
	if (d.file_fd < 0 || d.listen_fd < 0) {
		fprintf(stderr, "setup failed: %s\n", strerror(errno));
		return 1;
	}
	d.port = (uint16_t)zk_socket_port(d.listen_fd);
	zk_oneshot_init(&d.all_done);
	atomic_store(&d.remaining, d.tasks + d.clients);
	if (d.tasks + d.clients == 0)
		zk_oneshot_send(&d.all_done, NULL);

	zk_runtime_t *rt;
	int r = zk_runtime_create(&rt, &cfg);
	if (r < 0) {
		fprintf(stderr, "zk_runtime_create: %s\n", strerror(-r));
		return 1;
	}
	uint64_t t0 = zk_now_ns();
	r = zk_block_on(rt, root, &d, NULL);
	double secs = (double)(zk_now_ns() - t0) / 1e9;
	unsigned workers = zk_runtime_workers(rt);
	printf("zk-demo on %u workers (%s backend)\n", workers, zk_runtime_backend(rt));
	zk_runtime_free(rt);

	long file_ops = atomic_load(&d.file_ops), rounds = atomic_load(&d.net_rounds);
	long errors = atomic_load(&d.errors);
	printf("  file tasks      %ld (each: sleep, write 4 KiB, read back, verify)\n", d.tasks);
	printf("  socket tasks    %ld (each: %ld echo round trips over TCP on 127.0.0.1)\n",
	       d.clients, d.rounds);
	printf("  file ops        %ld  (%.0f ops/s)\n", file_ops, file_ops / secs);
	printf("  echo round trips %ld (%.0f/s)\n", rounds, rounds / secs);
	printf("  bytes verified  %.1f MiB\n", atomic_load(&d.bytes) / 1048576.0);
	printf("  elapsed         %.3f s\n", secs);
	printf("  tasks per worker:");
	for (unsigned i = 0; i < workers && i < MAX_WORKERS; i++)
		printf(" %ld", atomic_load(&d.per_worker[i]));
	printf("\n  errors          %ld\n", errors);
	close(d.file_fd);
	close(d.listen_fd);
	unlink(path);
	rmdir(dir);
	if (r < 0 || errors || file_ops != 2 * d.tasks || rounds != d.clients * d.rounds) {
		printf("FAILED\n");
		return 1;
	}
	printf("OK\n");
	return 0;
}
