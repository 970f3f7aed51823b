/* lib/http/response.c — what a handler calls: the response helpers and the
 * request body reader.
 *
 * A response is built in the connection's wbuf: the head (status line,
 * cached Date, Server, the handler's headers, then the framing the server
 * owns: Content-Length or Transfer-Encoding, Connection) and, when it fits,
 * the body. Nothing is sent until the connection would wait for input or
 * wbuf fills, so the responses of pipelined requests leave together. A
 * large body goes out right behind the queued bytes in one writev; a large
 * file through zk_sendfile (splice, no copy through user space).
 *
 * The body reader hands out Content-Length bytes already buffered, then
 * receives straight into the caller's buffer; chunked bodies are decoded
 * in rbuf behind the head (the head stays where the handler's request
 * points). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "http_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

/* Files up to this size are read into wbuf and leave with the head in one
 * send; larger ones are spliced. */
#define SMALL_FILE (12 * 1024)
/* An unread body larger than this is not read to discard it: the
 * connection closes instead. */
#define DISCARD_MAX (256 * 1024)

/* Sends iov[0..cnt) completely; more: MSG_MORE on single sends (more
 * bytes follow at once: do not push a short segment for these). */
static int send_iov(zk_http_conn_t *c, struct iovec *iov, int cnt, int more)
{
	bool tried = false;
	while (cnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			cnt--;
			continue;
		}
		ssize_t n;
		if (cnt == 1 && !tried) {
			/* First try without waiting and without a timeout: a
			 * response usually fits the socket buffer, and a send
			 * that cannot wait needs no linked timeout (arming and
			 * disarming one costs more than the send). */
			tried = true;
			n = zk_send(c->fd, iov->iov_base, iov->iov_len, MSG_DONTWAIT | more);
			if (n == -EAGAIN || n == -EWOULDBLOCK)
				continue;
		} else {
			zk_timeout_next(c->srv->cfg.io_timeout_ns);
			n = cnt == 1 ? zk_send(c->fd, iov->iov_base, iov->iov_len, more)
				     : zk_writev(c->fd, iov, cnt, -1);
		}
		if (n <= 0) {
			c->broken = true;
			c->closing = true;
			return n < 0 ? (int)n : -EPIPE;
		}
		size_t done = (size_t)n;
		while (cnt > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* Sends the queued bytes; more as in send_iov. */
static int flush_(zk_http_conn_t *c, int more)
{
	if (c->broken)
		return -EPIPE;
	struct iovec iov = {c->wbuf, c->wlen};
	int r = send_iov(c, &iov, 1, more);
	c->wlen = 0;
	c->head_start = 0;
	return r;
}

int zk__http_flush(zk_http_conn_t *c)
{
	return flush_(c, 0);
}

int zk__http_send_all(zk_http_conn_t *c, const void *p, size_t n)
{
	if (c->broken)
		return -EPIPE;
	struct iovec iov[2] = {{c->wbuf, c->wlen}, {(void *)p, n}};
	int r = send_iov(c, iov, 2, 0);
	c->wlen = 0;
	c->head_start = 0;
	return r;
}

static int put(zk_http_conn_t *c, const void *p, size_t n)
{
	if (c->wlen + n > ZK__HTTP_WBUF || c->wlen + n - c->head_start > ZK__HTTP_HEAD_MAX)
		return -ENOBUFS;
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	return 0;
}

static int puts_(zk_http_conn_t *c, const char *s)
{
	return put(c, s, strlen(s));
}

/* Appends s (without its NUL) at p; returns the end. */
static char *cat(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}
#define CAT(p, lit) cat((p), (lit), sizeof(lit) - 1)

/* Appends v in decimal at p; returns the end. (snprintf costs more than
 * the rest of a small response's head.) */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

int zk_http_begin(zk_http_conn_t *c, int status)
{
	if (!c || c->status || status < 200 || status > 999)
		return -EINVAL;
	if (ZK__HTTP_WBUF - c->wlen < ZK__HTTP_HEAD_MAX) {
		int r = zk__http_flush(c);
		if (r < 0)
			return r;
	}
	c->head_start = c->wlen;
	c->status = status;
	c->no_body = c->is_head || status == 204 || status == 304;
	/* Status line, Date, Server: formatted by hand into one put (a long
	 * reason or server_name takes the snprintf path). */
	const char *reason = zk_http_reason(status);
	size_t rlen = strlen(reason), slen = strlen(c->srv->cfg.server_name);
	/* status line <= 9 + 3 + 1 + 40 + 2 bytes; "Server: " + name + CRLF */
	char line[64 + ZK__HTTP_DATE_LINE + 10 + 64];
	if (rlen > 40 || slen > 64) {
		/* Unusually long: the slow path. */
		char sl[64];
		int n = snprintf(sl, sizeof(sl), "HTTP/1.1 %d %s\r\n", status, reason);
		put(c, sl, (size_t)n);
		char date[ZK__HTTP_DATE_LINE];
		zk__http_date_line(date);
		put(c, date, sizeof(date));
		puts_(c, "Server: ");
		puts_(c, c->srv->cfg.server_name);
		return puts_(c, "\r\n");
	}
	char *p = CAT(line, "HTTP/1.1 ");
	p = put_u64(p, (uint64_t)status);
	*p++ = ' ';
	p = cat(p, reason, rlen);
	p = CAT(p, "\r\n");
	zk__http_date_line(p);
	p += ZK__HTTP_DATE_LINE;
	p = CAT(p, "Server: ");
	p = cat(p, c->srv->cfg.server_name, slen);
	p = CAT(p, "\r\n");
	return put(c, line, (size_t)(p - line));
}

static bool reserved_name(const char *name)
{
	static const char *const names[] = {"content-length", "transfer-encoding", "connection",
					    "date"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

int zk_http_header(zk_http_conn_t *c, const char *name, const char *value)
{
	if (!c || !name || !value || !c->status || c->head_done || !*name ||
	    strpbrk(name, "\r\n: \t") || strpbrk(value, "\r\n") || reserved_name(name))
		return -EINVAL;
	size_t save = c->wlen;
	int r = puts_(c, name);
	if (r == 0)
		r = put(c, ": ", 2);
	if (r == 0)
		r = puts_(c, value);
	if (r == 0)
		r = put(c, "\r\n", 2);
	if (r < 0)
		c->wlen = save;
	return r;
}

/* Ends the head. len >= 0: Content-Length; -1: chunked (or, for 1.0, until
 * close). */
static int end_head(zk_http_conn_t *c, int64_t len)
{
	if (!c || !c->status || c->head_done)
		return -EINVAL;
	if (atomic_load(&c->srv->stopping))
		c->closing = true;
	/* A request body we will not read to its end (never asked for with
	 * 100-continue, malformed, or too large to skip) ends the connection:
	 * say so now rather than close after a keep-alive response. */
	if (!c->body_done && (c->expect_continue || c->body_error ||
			      (!c->body_chunked && c->body_left > DISCARD_MAX)))
		c->closing = true;
	char line[96];
	char *p = line;
	if (len >= 0) {
		/* 204 has no length; a 304's would have to be the 200's
		 * (RFC 9110 8.6), which the caller did not give: none. */
		if (c->status != 204 && c->status != 304) {
			p = CAT(p, "Content-Length: ");
			p = put_u64(p, (uint64_t)len);
			p = CAT(p, "\r\n");
		}
	} else if (c->minor >= 1) {
		p = CAT(p, "Transfer-Encoding: chunked\r\n");
		c->chunked_out = true;
	} else {
		c->closing = true; /* HTTP/1.0: the body ends with the connection */
	}
	if (c->closing)
		p = CAT(p, "Connection: close\r\n\r\n");
	else if (c->minor == 0)
		p = CAT(p, "Connection: keep-alive\r\n\r\n");
	else
		p = CAT(p, "\r\n");
	size_t n = (size_t)(p - line);
	int r = put(c, line, n);
	if (r < 0) {
		/* No room for the framing: the head is unusable. */
		c->wlen = c->head_start;
		c->closing = true;
		return r;
	}
	c->head_done = true;
	return 0;
}

int zk_http_body(zk_http_conn_t *c, const void *body, size_t len)
{
	if (!c || (!body && len))
		return -EINVAL;
	int r = end_head(c, (int64_t)len);
	if (r < 0)
		return r;
	c->responded = true;
	if (c->no_body || len == 0)
		return 0;
	c->body_bytes = len;
	if (len <= ZK__HTTP_WBUF - c->wlen) {
		memcpy(c->wbuf + c->wlen, body, len);
		c->wlen += len;
		return 0;
	}
	return zk__http_send_all(c, body, len);
}

int zk_http_body_file(zk_http_conn_t *c, int fd, int64_t off, size_t len)
{
	if (!c || fd < 0 || off < 0)
		return -EINVAL;
	int r = end_head(c, (int64_t)len);
	if (r < 0)
		return r;
	c->responded = true;
	if (c->no_body || len == 0)
		return 0;
	if (len <= SMALL_FILE && len <= ZK__HTTP_WBUF - c->wlen) {
		size_t got = 0;
		while (got < len) {
			ssize_t n = zk_read(fd, c->wbuf + c->wlen + got, len - got, off + (int64_t)got);
			if (n <= 0) {
				/* The head promised len bytes: the connection is
				 * unusable; drop this response entirely. */
				c->wlen = c->head_start;
				c->closing = c->broken = true;
				return n < 0 ? (int)n : -EIO;
			}
			got += (size_t)n;
		}
		c->wlen += len;
		c->body_bytes = len;
		return 0;
	}
	/* The head (and queued responses) with MSG_MORE: it waits in the
	 * socket for the file's first pages and leaves in the same segment,
	 * as nginx's tcp_nopush does with TCP_CORK, without two setsockopt
	 * calls per response. zk_sendfile's last chunk pushes everything. */
	r = flush_(c, MSG_MORE);
	if (r < 0)
		return r;
	zk_timeout_next(c->srv->cfg.io_timeout_ns);
	ssize_t n = zk_sendfile(c->fd, fd, off, len);
	if (n > 0)
		c->body_bytes = (uint64_t)n;
	if (n != (ssize_t)len) {
		c->closing = c->broken = true;
		return n < 0 ? (int)n : -EIO;
	}
	return 0;
}

int zk_http_chunked_begin(zk_http_conn_t *c)
{
	int r = end_head(c, -1);
	if (r == 0 && c->no_body)
		c->responded = true;
	return r;
}

int zk_http_chunk(zk_http_conn_t *c, const void *data, size_t len)
{
	if (!c || !c->head_done || (!data && len))
		return -EINVAL;
	if (c->no_body || len == 0)
		return 0; /* HEAD: the body is not sent */
	if (c->responded)
		return -EINVAL;
	c->body_bytes += len;
	if (!c->chunked_out)
		return zk__http_send_all(c, data, len); /* 1.0: raw until close */
	char size[24];
	int n = snprintf(size, sizeof(size), "%zx\r\n", len);
	if ((size_t)n + len + 2 <= ZK__HTTP_WBUF - c->wlen) {
		memcpy(c->wbuf + c->wlen, size, (size_t)n);
		memcpy(c->wbuf + c->wlen + n, data, len);
		memcpy(c->wbuf + c->wlen + (size_t)n + len, "\r\n", 2);
		c->wlen += (size_t)n + len + 2;
		return 0;
	}
	struct iovec iov[4] = {{c->wbuf, c->wlen}, {size, (size_t)n}, {(void *)data, len},
			       {"\r\n", 2}};
	int r = send_iov(c, iov, 4, 0);
	c->wlen = 0;
	c->head_start = 0;
	return r;
}

int zk_http_chunked_end(zk_http_conn_t *c)
{
	if (!c || !c->head_done)
		return -EINVAL;
	if (c->responded)
		return 0; /* HEAD: nothing was sent */
	c->responded = true;
	if (!c->chunked_out)
		return 0;
	if (ZK__HTTP_WBUF - c->wlen < 5) {
		int r = zk__http_flush(c);
		if (r < 0)
			return r;
	}
	memcpy(c->wbuf + c->wlen, "0\r\n\r\n", 5);
	c->wlen += 5;
	return 0;
}

int zk_http_respond(zk_http_conn_t *c, int status, const char *content_type, const void *body,
		    size_t len)
{
	int r = zk_http_begin(c, status);
	if (r == 0 && content_type)
		r = zk_http_header(c, "Content-Type", content_type);
	if (r == 0)
		r = zk_http_body(c, body, len);
	return r;
}

void zk__http_error_response(zk_http_conn_t *c, int status)
{
	c->closing = true;
	if (c->status || c->broken)
		return;
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, zk_http_reason(status));
	zk_http_respond(c, status, "text/plain", body, (size_t)n);
}

int zk_http_close_after(zk_http_conn_t *c)
{
	if (!c)
		return -EINVAL;
	c->closing = true;
	return 0;
}

int zk_http_conn_fd(const zk_http_conn_t *c)
{
	return c ? c->fd : -EINVAL;
}

int zk_http_conn_status(const zk_http_conn_t *c)
{
	return c ? c->status : 0;
}

uint64_t zk_http_conn_body_bytes(const zk_http_conn_t *c)
{
	return c ? c->body_bytes : 0;
}

/* ---- request body -------------------------------------------------------------- */

static ssize_t body_fail(zk_http_conn_t *c, ssize_t err)
{
	c->body_error = true;
	c->closing = true;
	if (err == -ECONNRESET || err == -EPIPE || err == -ETIMEDOUT)
		c->broken = true;
	return err;
}

static ssize_t recv_some(zk_http_conn_t *c, void *buf, size_t len)
{
	zk_timeout_next(c->srv->cfg.io_timeout_ns);
	ssize_t n = zk_recv(c->fd, buf, len, 0);
	if (n == 0)
		return body_fail(c, -ECONNRESET); /* closed before the body's end */
	if (n < 0)
		return body_fail(c, n);
	return n;
}

static ssize_t read_chunked(zk_http_conn_t *c, void *buf, size_t len)
{
	for (;;) {
		const char *data;
		size_t dl = 0;
		if (c->pos < c->rlen) {
			ssize_t used = zk_http_chunked_decode(&c->chunk, c->rbuf + c->pos,
							      c->rlen - c->pos, len, &data, &dl);
			if (used < 0)
				return body_fail(c, used);
			c->pos += (size_t)used;
			if (dl) {
				c->body_read += dl;
				if (c->body_read > c->srv->cfg.max_body)
					return body_fail(c, -EFBIG);
				memcpy(buf, data, dl);
				return (ssize_t)dl;
			}
			if (c->chunk.done) {
				c->body_done = true;
				return 0;
			}
		}
		/* Everything buffered is consumed (the decoder only stops
		 * early after data): receive behind the head. */
		c->pos = c->rlen = c->body_start;
		if (c->rcap <= c->rlen)
			return body_fail(c, -ENOBUFS);
		ssize_t n = recv_some(c, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n < 0)
			return n;
		c->rlen += (size_t)n;
	}
}

ssize_t zk_http_read_body(zk_http_conn_t *c, void *buf, size_t len)
{
	if (!c || (!buf && len))
		return -EINVAL;
	if (c->body_error)
		return -EBADMSG;
	if (c->body_done || len == 0)
		return 0;
	if (c->expect_continue) {
		c->expect_continue = false;
		if (!c->status) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			int r = zk__http_send_all(c, cont, sizeof(cont) - 1);
			if (r < 0)
				return body_fail(c, r);
		}
	}
	if (c->body_chunked)
		return read_chunked(c, buf, len);
	size_t want = len;
	if ((uint64_t)want > (uint64_t)c->body_left)
		want = (size_t)c->body_left;
	ssize_t n;
	size_t avail = c->rlen - c->pos;
	if (avail) {
		n = (ssize_t)(want < avail ? want : avail);
		memcpy(buf, c->rbuf + c->pos, (size_t)n);
		c->pos += (size_t)n;
	} else {
		n = recv_some(c, buf, want);
		if (n < 0)
			return n;
	}
	c->body_left -= n;
	c->body_read += (uint64_t)n;
	if (c->body_left == 0)
		c->body_done = true;
	return n;
}

int zk__http_discard_body(zk_http_conn_t *c)
{
	if (c->body_done)
		return 0;
	if (c->body_error || c->expect_continue)
		return -1; /* never asked the client to send it: just close */
	if (!c->body_chunked && c->body_left > DISCARD_MAX)
		return -1;
	char tmp[4096];
	uint64_t dropped = 0;
	for (;;) {
		ssize_t n = zk_http_read_body(c, tmp, sizeof(tmp));
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
		dropped += (uint64_t)n;
		if (dropped > DISCARD_MAX)
			return -1;
	}
}
