/* zokio/http.h — an HTTP/1.1 server: a strict incremental request parser, a
 * chunked body decoder, and a server that runs one task per connection.
 *
 * The parser (RFC 9112) is deliberately strict, so that no two parsers on a
 * request's path can disagree about where it ends (request smuggling):
 *   - every line ends in CRLF; a bare LF or a bare CR anywhere in the head
 *     is a 400, as is whitespace before a field name's colon, a folded
 *     (obs-fold) line, a control byte (NUL, ...) in a field value, a
 *     non-token byte in a method or field name;
 *   - a second Content-Length (even an equal one), a second
 *     Transfer-Encoding, Transfer-Encoding together with Content-Length, a
 *     Content-Length that is not 1*DIGIT, a Transfer-Encoding in an
 *     HTTP/1.0 request, or a missing / repeated Host in HTTP/1.1 is a 400;
 *     a transfer coding other than exactly "chunked" is a 501.
 * Error results are negative errnos; zk_http_error_status() gives the
 * status code to answer with.
 *
 * Server: zk_http_server_create() binds, zk_http_server_run() (in a task)
 * accepts and runs handler(conn, req, ctx) for every request, in order,
 * on the connection's own task (keep-alive and pipelining: responses leave
 * in request order, batched into one send when requests arrive together).
 * The handler answers with the response helpers below. */
#ifndef ZOKIO_HTTP_H
#define ZOKIO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== parser ================================================================ */

/* Most header fields one request may carry (more: -EMSGSIZE, a 431). */
#define ZK_HTTP_MAX_HEADERS 64

typedef struct zk_http_header {
	const char *name;  /* not NUL-terminated */
	size_t name_len;
	const char *value; /* surrounding whitespace trimmed; not NUL-terminated */
	size_t value_len;
} zk_http_header_t;

/* A parsed request head. Every pointer points into the buffer given to
 * zk_http_parse() and is valid as long as that buffer is. */
typedef struct zk_http_request {
	const char *method;
	size_t method_len;
	const char *target;        /* the request-target as sent */
	size_t target_len;
	int minor;                 /* HTTP/1.<minor>: 0 or 1 (1.2+ counts as 1) */
	zk_http_header_t headers[ZK_HTTP_MAX_HEADERS];
	unsigned nheaders;
	int64_t content_length;    /* -1: no Content-Length */
	bool chunked;              /* Transfer-Encoding: chunked */
	bool keep_alive;           /* the connection may carry another request */
	bool expect_continue;      /* Expect: 100-continue */
	bool is_head;              /* method HEAD */
	size_t head_len;           /* bytes of the head, final CRLF included */
} zk_http_request_t;

/* Limits; 0 takes the default in the comment. */
typedef struct zk_http_limits {
	size_t max_request_line;   /* bytes before the CRLF; default 8192 */
	size_t max_head;           /* whole head, leading CRLFs included;
	                            * default 16384 */
} zk_http_limits_t;

/* Parser state kept between calls (zero it, or zk_http_parser_reset()).
 * Only bytes not seen before are scanned again, so feeding a request one
 * byte at a time costs O(n) scanning and one full parse at the end. */
typedef struct zk_http_parser {
	size_t scanned;            /* bytes checked so far */
	size_t line_start;         /* offset of the current line */
	size_t req_start;          /* offset of the request line */
	unsigned lines;            /* complete lines of this head */
} zk_http_parser_t;

void zk_http_parser_reset(zk_http_parser_t *p);

/* Parses the request head at buf[0..len). buf must hold the same bytes as
 * at the previous call on p, possibly followed by more. Returns the head's
 * length (> 0) with *req filled, or
 *   -EAGAIN           the head is not complete yet: call again with more,
 *   -EBADMSG          malformed or ambiguous (400),
 *   -ENAMETOOLONG     request line longer than max_request_line (414),
 *   -EMSGSIZE         head longer than max_head or too many fields (431),
 *   -EPROTONOSUPPORT  an HTTP version other than 1.x (505),
 *   -ENOSYS           a transfer coding other than "chunked" (501),
 *   -EINVAL           p, buf or req NULL.
 * The verdict does not depend on how the bytes were split between calls.
 * lim may be NULL for the defaults. */
int zk_http_parse(zk_http_parser_t *p, const char *buf, size_t len, zk_http_request_t *req,
		  const zk_http_limits_t *lim);

/* The status code for a parse error (400 for unknown ones), or 0 for err
 * >= 0. -EFBIG (body too large) maps to 413, -ETIMEDOUT to 408. */
int zk_http_error_status(int err);

/* The reason phrase of a status code ("Not Found"), "" if unknown. */
const char *zk_http_reason(int status);

/* Finds header name (case-insensitive) in req; NULL if absent. */
const zk_http_header_t *zk_http_find_header(const zk_http_request_t *req, const char *name);

/* ==== chunked body decoder =================================================== */

/* Chunked transfer coding decoder state (zero it to start). */
typedef struct zk_http_chunked {
	uint8_t state;
	bool done;                 /* last chunk and trailer section consumed */
	uint64_t left;             /* data bytes left in the current chunk */
	uint64_t total;            /* data bytes decoded so far */
	size_t line;               /* bytes of the current size/trailer line */
	size_t trailer_bytes;      /* bytes of trailer section so far */
	unsigned digits;           /* hex digits of the current size */
} zk_http_chunked_t;

/* Decodes from in[0..len). Returns the bytes of in consumed (>= 0). When
 * data is found, *data points at it (inside in) and *data_len is its length
 * (at most max_data); decoding stops right after it, so call again with
 * the rest. *data_len is 0 when no data came out of this call. d->done is
 * set once the terminating chunk and trailers are consumed; bytes after
 * that are not consumed. Errors: -EBADMSG (malformed: a bad hex size, a
 * bare LF or CR, a missing CRLF after data, a control byte in an extension
 * or trailer), -EMSGSIZE (a chunk size above 2^60, or a size/extension
 * line or trailer section above 8 KiB), -EINVAL (d, data or data_len NULL). */
ssize_t zk_http_chunked_decode(zk_http_chunked_t *d, const char *in, size_t len,
			       size_t max_data, const char **data, size_t *data_len);

/* ==== server ================================================================= */

typedef struct zk_http_server zk_http_server_t;
typedef struct zk_http_conn zk_http_conn_t;

/* Called on the connection's task for every request. It answers with the
 * response helpers below (exactly one response per request) and may read
 * the body with zk_http_read_body(). Return 0 to go on with the connection,
 * or a negative value to close it once the response is out. A handler that
 * returns without a response gets a 500 sent for it. req's pointers are
 * valid until the handler returns. */
typedef int (*zk_http_handler_fn)(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx);

/* Server configuration; zero it and set what you need (0 = default). */
typedef struct zk_http_server_config {
	const char *host;          /* IPv4 address to bind; NULL: 0.0.0.0 */
	uint16_t port;             /* 0: a free port (zk_http_server_port) */
	int listen_fd;             /* > 0: serve this listening socket instead
	                            * (not closed by the server) */
	int backlog;               /* default 1024 */
	zk_http_handler_fn handler; /* required */
	void *ctx;                 /* handler's argument */
	unsigned max_connections;  /* open at once; further connections wait
	                            * in the listen backlog; default 16384 */
	uint64_t head_timeout_ns;  /* a request head must arrive within this
	                            * from its first byte (slowloris); 10 s */
	uint64_t idle_timeout_ns;  /* keep-alive wait for the next request; 10 s.
	                            * These two are enforced by a sweep every
	                            * quarter of the shorter (at most 1 s): a
	                            * timeout fires up to one period late */
	uint64_t io_timeout_ns;    /* each body recv / response send; 30 s */
	size_t max_body;           /* request body bytes (413 above); 1 MiB */
	zk_http_limits_t limits;   /* head limits (414/431) */
	const char *server_name;   /* Server header value; "zokio" */
} zk_http_server_config_t;

/* Creates a server and its listening socket (not suspending; any thread).
 * Returns 0 or -EINVAL (cfg or handler NULL, unparsable host), -ENOMEM, or
 * the errors of zk_tcp_listen (-EADDRINUSE, ...). */
int zk_http_server_create(zk_http_server_t **out, const zk_http_server_config_t *cfg);

/* The port the server listens on, or -EINVAL. */
int zk_http_server_port(const zk_http_server_t *srv);

/* Accepts connections and serves them, one task per connection, until
 * zk_http_server_stop(); then waits for every connection to finish
 * (in-flight requests complete, idle keep-alive connections are closed)
 * and returns 0. Call from a task, once. Returns -EINVAL (srv NULL or
 * already run), -EPERM outside a task, -ECANCELED if the calling task was
 * cancelled (connections are then told to stop and waited for), or the
 * error of the listening socket. */
int zk_http_server_run(zk_http_server_t *srv);

/* Graceful stop: no new connections, idle keep-alive connections closed,
 * requests in progress answered (with Connection: close). Non-blocking;
 * callable from any thread, any number of times. Returns 0 or -EINVAL. */
int zk_http_server_stop(zk_http_server_t *srv);

/* Frees a server that is not running (never run, or run returned).
 * srv may be NULL. */
void zk_http_server_free(zk_http_server_t *srv);

/* Connections open now (a snapshot), or 0 for NULL. */
unsigned zk_http_server_connections(const zk_http_server_t *srv);

/* ==== responses (from a handler, on its connection) ========================= */

/* Starts the response: status line, Date, Server. Returns 0, or -EINVAL
 * (c NULL, status outside 100..999 or 1xx, a response already started),
 * -ENOBUFS (the head outgrew the connection's 8 KiB head buffer). */
int zk_http_begin(zk_http_conn_t *c, int status);

/* Adds a header line. name and value must contain no CR, LF or NUL, and
 * the name must not be Content-Length, Transfer-Encoding, Connection or
 * Date (the server writes those). Returns 0, -EINVAL, -ENOBUFS. */
int zk_http_header(zk_http_conn_t *c, const char *name, const char *value);

/* Ends the head with Content-Length: len and sends body. HEAD responses
 * report len and send nothing; 204 and 304 responses have neither a
 * Content-Length nor a body. Small responses are
 * batched with others of the same pipelined burst. Returns 0 or -errno of
 * the send (-EPIPE, -ECONNRESET, -ETIMEDOUT, ...), -EINVAL (no begin). */
int zk_http_body(zk_http_conn_t *c, const void *body, size_t len);

/* Ends the head with Content-Length: len and sends len bytes of file fd
 * from offset off: small ones through a read into the response buffer,
 * large ones with zk_sendfile (zero-copy). Errors as zk_http_body, and
 * -EIO if the file ended before len bytes (the connection is then closed,
 * since the client was promised len bytes). */
int zk_http_body_file(zk_http_conn_t *c, int fd, int64_t off, size_t len);

/* Ends the head with Transfer-Encoding: chunked (HTTP/1.1 requests; a 1.0
 * request gets the body unframed and the connection closes after it).
 * Then zk_http_chunk() sends a chunk (len 0 does nothing) and
 * zk_http_chunked_end() the last chunk. Errors as zk_http_body. */
int zk_http_chunked_begin(zk_http_conn_t *c);
int zk_http_chunk(zk_http_conn_t *c, const void *data, size_t len);
int zk_http_chunked_end(zk_http_conn_t *c);

/* zk_http_begin + an optional Content-Type + zk_http_body. */
int zk_http_respond(zk_http_conn_t *c, int status, const char *content_type, const void *body,
		    size_t len);

/* Reads up to len bytes of the request body (de-chunked), sending
 * "100 Continue" first if the client asked for it. Returns bytes read, 0
 * at the end of the body, or -EFBIG (the body exceeds max_body: answer
 * 413), -EBADMSG (bad chunked framing), -ETIMEDOUT, -ECONNRESET, ...
 * Body bytes the handler does not read are discarded after it returns. */
ssize_t zk_http_read_body(zk_http_conn_t *c, void *buf, size_t len);

/* Closes the connection after this response (adds Connection: close if the
 * head is not sent yet). Returns 0 or -EINVAL. */
int zk_http_close_after(zk_http_conn_t *c);

/* The socket of the connection (for getpeername, logging), or -EINVAL. */
int zk_http_conn_fd(const zk_http_conn_t *c);

/* The status of the response in progress (0 before zk_http_begin), and the
 * body bytes sent so far: for access logs. */
int zk_http_conn_status(const zk_http_conn_t *c);
uint64_t zk_http_conn_body_bytes(const zk_http_conn_t *c);

/* ==== zero-copy file sending ================================================= */

/* Sends len bytes of file in_fd from offset off to socket out_sock without
 * copying them through user space: splices through a pipe (io_uring splice
 * ops; on epoll non-blocking splices retried on writability), waiting on
 * the ring for socket room. out_sock is non-blocking for the duration of
 * the call (its O_NONBLOCK flag is restored after), so no other thread may
 * use it meanwhile. Suspends; returns the bytes sent (== len unless the
 * file is shorter, or an error came after some bytes: then the count
 * sent), or, when nothing was sent, -errno: -EPIPE, -ECONNRESET,
 * -ETIMEDOUT (a zk_timeout_next() armed before bounds every wait of the
 * call: no progress for that long ends it), -ECANCELED, -EPERM (outside a
 * task), -EINVAL (off < 0), -EBADF, -ENFILE/-EMFILE (no pipe). */
ssize_t zk_sendfile(int out_sock, int in_fd, int64_t off, size_t len);

#ifdef __cplusplus
}
#endif
#endif
