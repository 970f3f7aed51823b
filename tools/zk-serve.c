/* tools/zk-serve.c — zk-serve: a static file server on Zokio's HTTP server.
 *
 *   zk-serve DIR [--port N] [--bind ADDR] [--workers N] [--backend io_uring|epoll]
 *                [--access-log FILE|-] [--head-timeout-ms N]
 *
 * Serves the files under DIR: GET and HEAD (405 otherwise), a MIME type by
 * extension, index.html for directories (a directory named without its
 * final slash is redirected to it), ETag and Last-Modified with 304 on
 * If-None-Match / If-Modified-Since, one byte range per request (206, or
 * 416 when unsatisfiable; If-Range honoured), 404 and 403. Bodies of
 * large files go out with zk_sendfile (splice: no copy through user
 * space); small ones with the response head in one send.
 *
 * Nothing outside DIR is ever served. The request path is percent-decoded
 * once; a decoded NUL, a decoded '/' (%2f: it would change where segments
 * end), or a ".." segment is refused before any lookup, and the lookup
 * itself is openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) relative to
 * DIR, so the kernel refuses any path, symlink included, that resolves
 * outside DIR (EXDEV: 403).
 *
 * No lookup blocks a worker: openat2 first runs with RESOLVE_CACHED, which
 * answers from the dentry cache or fails with EAGAIN without waiting; only
 * then does the lookup go to a helper thread (the "opener") while the task
 * waits on a oneshot. fstat and close of an open regular file do not wait
 * for the disk. ZK_SERVE_OPEN_THREAD=1 sends every lookup to the opener
 * (for tests of that path).
 *
 * --head-timeout-ms bounds how long a request head may take to arrive once
 * it started (default 10 s; slow clients are answered 408 and closed).
 *
 * Exits 0 after SIGINT or SIGTERM, once in-flight responses are done.
 * Prints one line at startup: "zk-serve: serving DIR at http://ADDR:PORT/". */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <zokio/zokio.h>

#define MAX_PATH 4096

struct serve {
	int root;                  /* O_PATH fd of DIR */
	const char *dir;
	FILE *log;                 /* access log, or NULL */
	pthread_mutex_t log_lock;
	zk_http_server_t *srv;
};

/* ---- MIME types ------------------------------------------------------------------ */

static const struct {
	const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},           {"svg", "image/svg+xml"},
    {"png", "image/png"},                 {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},               {"gif", "image/gif"},
    {"webp", "image/webp"},               {"avif", "image/avif"},
    {"ico", "image/x-icon"},              {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},         {"woff", "font/woff"},
    {"woff2", "font/woff2"},              {"mp4", "video/mp4"},
    {"webm", "video/webm"},               {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},                 {"zip", "application/zip"},
    {"gz", "application/gzip"},           {"tar", "application/x-tar"},
    {"csv", "text/csv; charset=utf-8"},
};

static const char *mime_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(slash ? slash : path, '.');
	if (dot && dot[1])
		for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++)
			if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
				return mime_types[i].type;
	return "application/octet-stream";
}

/* ---- request path ------------------------------------------------------------------ */

static int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Turns the request-target into a path relative to DIR ("." for DIR
 * itself) in out. *dir_slash says whether the path ended in '/'. Returns 0,
 * or the status to answer with (400 malformed, 403 refused, 414 too
 * long). */
static int target_to_path(const char *t, size_t n, char *out, bool *dir_slash)
{
	/* absolute-form (RFC 9112 3.2.2: a server MUST accept it): the
	 * authority is dropped, the path is served from DIR like any other. */
	size_t skip = 0;
	if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
		skip = 7;
	else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
		skip = 8;
	if (skip) {
		while (skip < n && t[skip] != '/' && t[skip] != '?')
			skip++;
		if (skip == n || t[skip] != '/')
			return 400;
		t += skip;
		n -= skip;
	}
	if (n == 0 || t[0] != '/')
		return 400; /* "*" (OPTIONS only) or garbage */
	size_t end = 0;
	while (end < n && t[end] != '?' && t[end] != '#')
		end++;
	char dec[MAX_PATH];
	size_t dl = 0;
	for (size_t i = 0; i < end; i++) {
		char c = t[i];
		if (c == '%') {
			int hi = i + 2 < end ? hexv(t[i + 1]) : -1;
			int lo = hi >= 0 ? hexv(t[i + 2]) : -1;
			if (lo < 0)
				return 400;
			c = (char)(hi * 16 + lo);
			i += 2;
			if (c == '\0' || c == '/')
				return 403;
		}
		if (dl + 1 >= sizeof(dec))
			return 414;
		dec[dl++] = c;
	}
	dec[dl] = 0;
	*dir_slash = dl > 0 && dec[dl - 1] == '/';
	/* Rebuild from segments: empty and "." ones dropped, ".." refused. */
	size_t o = 0;
	for (size_t i = 0; i < dl;) {
		while (i < dl && dec[i] == '/')
			i++;
		size_t s = i;
		while (i < dl && dec[i] != '/')
			i++;
		size_t len = i - s;
		if (len == 0 || (len == 1 && dec[s] == '.'))
			continue;
		if (len == 2 && dec[s] == '.' && dec[s + 1] == '.')
			return 403;
		if (o)
			out[o++] = '/';
		memcpy(out + o, dec + s, len);
		o += len;
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = 0;
	return 0;
}

/* ---- opening beneath DIR without blocking a worker ---------------------------------- */

/* openat2 beneath root; resolve_cached: fail with -EAGAIN rather than wait
 * for a lookup the dentry cache cannot answer. Returns the fd or -errno. */
static int openat2_beneath(int root, const char *path, bool resolve_cached)
{
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
					  (resolve_cached ? RESOLVE_CACHED : 0)};
	long fd;
	do
		fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : (int)fd;
}

/* A lookup that needs the disk runs on the opener thread, never on a
 * worker: the task waits on a oneshot. The job is shared by the two sides
 * (refs); if the task is cancelled while it waits, the opener closes the
 * fd nobody will take. */
struct open_job {
	struct open_job *next;
	int root;
	char path[MAX_PATH + 16];
	_Atomic int refs;
	_Atomic int fd;            /* what the opener got; -1 once the task took it */
	zk_oneshot_t done;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct open_job *head, *tail;
	bool stop;
	bool started;
	pthread_t thread;
} opener = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false, false, 0};

/* Set when the kernel has no RESOLVE_CACHED (before 5.12), or by
 * ZK_SERVE_OPEN_THREAD=1 (tests): every open then goes to the thread. */
static _Atomic bool no_cached_open;

/* The last side to let go closes an fd the task never took. */
static void job_unref(struct open_job *j)
{
	if (atomic_fetch_sub(&j->refs, 1) == 1) {
		int fd = atomic_load(&j->fd);
		if (fd >= 0)
			close(fd);
		free(j);
	}
}

static void *opener_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&opener.lock);
	for (;;) {
		while (!opener.head && !opener.stop)
			pthread_cond_wait(&opener.cond, &opener.lock);
		struct open_job *j = opener.head;
		if (!j)
			break;
		opener.head = j->next;
		if (!opener.head)
			opener.tail = NULL;
		pthread_mutex_unlock(&opener.lock);
		int fd = openat2_beneath(j->root, j->path, false);
		atomic_store(&j->fd, fd);
		zk_oneshot_send(&j->done, (void *)(intptr_t)fd);
		job_unref(j);
		pthread_mutex_lock(&opener.lock);
	}
	pthread_mutex_unlock(&opener.lock);
	return NULL;
}

static int open_beneath(int root, const char *path)
{
	if (!atomic_load_explicit(&no_cached_open, memory_order_relaxed)) {
		int fd = openat2_beneath(root, path, true);
		if (fd != -EAGAIN && fd != -EINVAL)
			return fd;
		if (fd == -EINVAL) /* no RESOLVE_CACHED here */
			atomic_store(&no_cached_open, true);
	}
	struct open_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->root = root;
	snprintf(j->path, sizeof(j->path), "%s", path);
	atomic_init(&j->refs, 2);
	atomic_init(&j->fd, -1);
	zk_oneshot_init(&j->done);
	pthread_mutex_lock(&opener.lock);
	if (opener.tail)
		opener.tail->next = j;
	else
		opener.head = j;
	opener.tail = j;
	pthread_cond_signal(&opener.cond);
	pthread_mutex_unlock(&opener.lock);
	void *v = NULL;
	int r = zk_oneshot_recv(&j->done, &v);
	if (r < 0) {
		job_unref(j); /* cancelled: whoever is last closes the fd */
		return r;
	}
	int fd = (int)(intptr_t)v;
	atomic_store(&j->fd, -1); /* ours now */
	job_unref(j);
	return fd;
}

static int opener_start(void)
{
	const char *e = getenv("ZK_SERVE_OPEN_THREAD");
	if (e && *e == '1')
		atomic_store(&no_cached_open, true);
	int r = pthread_create(&opener.thread, NULL, opener_main, NULL);
	opener.started = r == 0;
	return -r;
}

static void opener_stop(void)
{
	if (!opener.started)
		return;
	pthread_mutex_lock(&opener.lock);
	opener.stop = true;
	pthread_cond_broadcast(&opener.cond);
	pthread_mutex_unlock(&opener.lock);
	pthread_join(opener.thread, NULL);
}

static int status_of_open_error(int err)
{
	switch (err) {
	case -ENOENT:
	case -ENOTDIR:
	case -ENAMETOOLONG:
		return 404;
	default:
		return 403; /* EXDEV (escapes DIR), ELOOP, EACCES, EPERM, ... */
	}
}

/* ---- dates, validators, ranges ------------------------------------------------------ */

static void http_date(time_t t, char *out, size_t cap)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool parse_http_date(const char *s, size_t n, time_t *out)
{
	char buf[64];
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return false;
	*out = timegm(&tm);
	return true;
}

static bool hdr_eq(const zk_http_header_t *h, const char *s)
{
	return h && h->value_len == strlen(s) && memcmp(h->value, s, h->value_len) == 0;
}

/* If-None-Match: "*" or a list of entity tags, one of which is ours (weak
 * comparison, RFC 9110 13.1.2). */
static bool etag_matches(const zk_http_header_t *h, const char *etag)
{
	size_t el = strlen(etag);
	const char *v = h->value, *end = h->value + h->value_len;
	while (v < end) {
		while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		if (v < end && *v == '*')
			return true;
		if (end - v > 2 && v[0] == 'W' && v[1] == '/')
			v += 2;
		const char *s = v;
		while (v < end && *v != ',')
			v++;
		const char *e = v;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == el && memcmp(s, etag, el) == 0)
			return true;
	}
	return false;
}

/* Range: one "bytes=" range. Returns 1 with [*start, *start + *len) set,
 * 0 to ignore the header (absent, malformed, several ranges: serve the
 * whole file), -1 when unsatisfiable (416). */
static int parse_range(const zk_http_header_t *h, uint64_t size, uint64_t *start, uint64_t *len)
{
	if (!h || h->value_len < 7 || strncasecmp(h->value, "bytes=", 6) != 0)
		return 0;
	const char *v = h->value + 6, *end = h->value + h->value_len;
	if (memchr(v, ',', (size_t)(end - v)))
		return 0;
	uint64_t a = 0, b = 0;
	bool has_a = false, has_b = false;
	while (v < end && *v >= '0' && *v <= '9') {
		if (a > UINT64_MAX / 20)
			return 0;
		a = a * 10 + (uint64_t)(*v++ - '0');
		has_a = true;
	}
	if (v == end || *v++ != '-')
		return 0;
	while (v < end && *v >= '0' && *v <= '9') {
		if (b > UINT64_MAX / 20)
			return 0;
		b = b * 10 + (uint64_t)(*v++ - '0');
		has_b = true;
	}
	if (v != end || (!has_a && !has_b))
		return 0;
	if (!has_a) { /* suffix: the last b bytes */
		if (b == 0)
			return -1;
		*len = b > size ? size : b;
		*start = size - *len;
		return size ? 1 : -1;
	}
	if (has_b && b < a)
		return 0;
	if (a >= size)
		return -1;
	if (!has_b || b >= size)
		b = size - 1;
	*start = a;
	*len = b - a + 1;
	return 1;
}

/* ---- access log ------------------------------------------------------------------------ */

static void log_request(struct serve *sv, zk_http_conn_t *c, const zk_http_request_t *req)
{
	if (!sv->log)
		return;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char ip[INET_ADDRSTRLEN] = "-";
	if (getpeername(zk_http_conn_fd(c), (struct sockaddr *)&sa, &sl) == 0 &&
	    sa.sin_family == AF_INET)
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
	char when[64];
	http_date(time(NULL), when, sizeof(when));
	pthread_mutex_lock(&sv->log_lock);
	fprintf(sv->log, "%s [%s] \"%.*s %.*s HTTP/1.%d\" %d %" PRIu64 "\n", ip, when,
		(int)req->method_len, req->method, (int)(req->target_len > 1024 ? 1024 : req->target_len),
		req->target, req->minor, zk_http_conn_status(c), zk_http_conn_body_bytes(c));
	pthread_mutex_unlock(&sv->log_lock);
}

/* ---- the handler ---------------------------------------------------------------------------- */

static int respond_status(zk_http_conn_t *c, int status)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, zk_http_reason(status));
	return zk_http_respond(c, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static int serve_file(zk_http_conn_t *c, const zk_http_request_t *req, const char *path, int fd,
		      const struct stat *st)
{
	char etag[64], lastmod[64];
	uint64_t mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec;
	snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", mtime_ns, (uint64_t)st->st_size);
	http_date(st->st_mtim.tv_sec, lastmod, sizeof(lastmod));
	uint64_t size = (uint64_t)st->st_size;

	const zk_http_header_t *inm = zk_http_find_header(req, "if-none-match");
	const zk_http_header_t *ims = zk_http_find_header(req, "if-modified-since");
	bool not_modified = false;
	time_t since;
	if (inm)
		not_modified = etag_matches(inm, etag);
	else if (ims && parse_http_date(ims->value, ims->value_len, &since))
		not_modified = st->st_mtim.tv_sec <= since;
	if (not_modified) {
		zk_http_begin(c, 304);
		zk_http_header(c, "ETag", etag);
		zk_http_header(c, "Last-Modified", lastmod);
		return zk_http_body(c, NULL, 0);
	}

	uint64_t start = 0, len = size;
	int ranged = parse_range(zk_http_find_header(req, "range"), size, &start, &len);
	const zk_http_header_t *ifr = zk_http_find_header(req, "if-range");
	if (ranged > 0 && ifr && !hdr_eq(ifr, etag) && !hdr_eq(ifr, lastmod))
		ranged = 0; /* the client's copy is stale: send it all */
	if (ranged == 0) {
		start = 0;
		len = size;
	}
	if (ranged < 0) {
		char cr[64];
		snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
		zk_http_begin(c, 416);
		zk_http_header(c, "Content-Range", cr);
		return zk_http_body(c, NULL, 0);
	}
	int r = zk_http_begin(c, ranged ? 206 : 200);
	if (r < 0)
		return r;
	zk_http_header(c, "Content-Type", mime_of(path));
	zk_http_header(c, "Last-Modified", lastmod);
	zk_http_header(c, "ETag", etag);
	zk_http_header(c, "Accept-Ranges", "bytes");
	if (ranged) {
		char cr[96];
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start,
			 start + len - 1, size);
		zk_http_header(c, "Content-Range", cr);
	}
	return zk_http_body_file(c, fd, (int64_t)start, (size_t)len);
}

static int handle(zk_http_conn_t *c, const zk_http_request_t *req, struct serve *sv)
{
	bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
	if (!get && !req->is_head) {
		zk_http_begin(c, 405);
		zk_http_header(c, "Allow", "GET, HEAD");
		zk_http_header(c, "Content-Type", "text/plain; charset=utf-8");
		return zk_http_body(c, "405 Method Not Allowed\n", 23);
	}
	char path[MAX_PATH + 16];
	bool dir_slash = false;
	int st_code = target_to_path(req->target, req->target_len, path, &dir_slash);
	if (st_code)
		return respond_status(c, st_code);
	int fd = open_beneath(sv->root, path);
	if (fd < 0)
		return respond_status(c, status_of_open_error(fd));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return respond_status(c, 500);
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		if (!dir_slash) {
			/* /docs -> /docs/ so that relative links resolve. */
			char loc[MAX_PATH + 8];
			size_t q = 0;
			while (q < req->target_len && req->target[q] != '?')
				q++;
			snprintf(loc, sizeof(loc), "%.*s/%.*s", (int)q, req->target,
				 (int)(req->target_len - q), req->target + q);
			zk_http_begin(c, 301);
			zk_http_header(c, "Location", loc);
			return zk_http_body(c, NULL, 0);
		}
		strcat(path, "/index.html");
		fd = open_beneath(sv->root, path);
		if (fd < 0)
			return respond_status(c, status_of_open_error(fd));
		if (fstat(fd, &st) < 0) {
			close(fd);
			return respond_status(c, 500);
		}
	}
	int r;
	if (!S_ISREG(st.st_mode))
		r = respond_status(c, 403);
	else
		r = serve_file(c, req, path, fd, &st);
	close(fd);
	return r;
}

static int handler(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx)
{
	struct serve *sv = ctx;
	int r = handle(c, req, sv);
	log_request(sv, c, req);
	return r;
}

/* ---- main ------------------------------------------------------------------------------------ */

struct sigwatch {
	zk_http_server_t *srv;
	int signo;
};

static void *watch_signal(void *arg)
{
	struct sigwatch *w = arg;
	if (zk_signal_wait(w->signo) == w->signo)
		zk_http_server_stop(w->srv);
	return NULL;
}

static void *serve_main(void *arg)
{
	struct serve *sv = arg;
	struct sigwatch wi = {sv->srv, SIGINT}, wt = {sv->srv, SIGTERM};
	zk_task_t *ti = NULL, *tt = NULL;
	zk_spawn(&ti, watch_signal, &wi);
	zk_spawn(&tt, watch_signal, &wt);
	intptr_t r = zk_http_server_run(sv->srv);
	if (ti) {
		zk_cancel(ti);
		zk_join(ti, NULL);
	}
	if (tt) {
		zk_cancel(tt);
		zk_join(tt, NULL);
	}
	return (void *)r;
}

static void usage(void)
{
	fprintf(stderr, "usage: zk-serve DIR [--port N] [--bind ADDR] [--workers N] "
			"[--backend io_uring|epoll] [--access-log FILE|-] [--head-timeout-ms N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *bind = "0.0.0.0", *backend = NULL, *logpath = NULL;
	long port = 8080, workers = 0, head_timeout_ms = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--port") == 0 && v) {
			port = strtol(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--bind") == 0 && v) {
			bind = v;
			i++;
		} else if (strcmp(a, "--workers") == 0 && v) {
			workers = strtol(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--backend") == 0 && v) {
			backend = v;
			i++;
		} else if (strcmp(a, "--head-timeout-ms") == 0 && v) {
			head_timeout_ms = strtol(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--access-log") == 0 && v) {
			logpath = v;
			i++;
		} else if (a[0] == '-' || dir) {
			usage();
		} else {
			dir = a;
		}
	}
	if (!dir || port < 0 || port > 65535 || workers < 0 || workers > 256)
		usage();
	signal(SIGPIPE, SIG_IGN);
	struct serve sv = {.dir = dir};
	pthread_mutex_init(&sv.log_lock, NULL);
	sv.root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sv.root < 0) {
		fprintf(stderr, "zk-serve: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (logpath) {
		sv.log = strcmp(logpath, "-") == 0 ? stdout : fopen(logpath, "a");
		if (!sv.log) {
			fprintf(stderr, "zk-serve: %s: %s\n", logpath, strerror(errno));
			return 1;
		}
		setvbuf(sv.log, NULL, _IOFBF, 1 << 16);
	}
	if (opener_start() < 0) {
		fprintf(stderr, "zk-serve: cannot start the opener thread\n");
		return 1;
	}
	zk_config_t cfg = {.workers = (unsigned)workers};
	if (backend) {
		if (strcmp(backend, "io_uring") == 0)
			cfg.backend = ZK_BACKEND_IO_URING;
		else if (strcmp(backend, "epoll") == 0)
			cfg.backend = ZK_BACKEND_EPOLL;
		else
			usage();
	}
	zk_runtime_t *rt;
	int r = zk_runtime_create(&rt, &cfg);
	if (r < 0) {
		fprintf(stderr, "zk-serve: runtime: %s\n", strerror(-r));
		opener_stop();
		return 1;
	}
	zk_http_server_config_t hc = {.host = bind, .port = (uint16_t)port, .handler = handler,
				      .ctx = &sv, .backlog = 4096, .server_name = "zk-serve",
				      .head_timeout_ns = (uint64_t)head_timeout_ms * ZK_NSEC_PER_MSEC};
	r = zk_http_server_create(&sv.srv, &hc);
	if (r < 0) {
		fprintf(stderr, "zk-serve: listen on %s:%ld: %s\n", bind, port, strerror(-r));
		zk_runtime_free(rt);
		opener_stop();
		return 1;
	}
	printf("zk-serve: serving %s at http://%s:%d/ (%u workers, %s)\n", dir, bind,
	       zk_http_server_port(sv.srv), zk_runtime_workers(rt), zk_runtime_backend(rt));
	fflush(stdout);
	void *res = NULL;
	r = zk_block_on(rt, serve_main, &sv, &res);
	zk_http_server_free(sv.srv);
	zk_runtime_free(rt);
	opener_stop();
	if (sv.log) {
		fflush(sv.log);
		if (sv.log != stdout)
			fclose(sv.log);
	}
	close(sv.root);
	pthread_mutex_destroy(&sv.log_lock);
	return r == 0 && res == NULL ? 0 : 1;
}
