/* lib/http/parse.c — the HTTP/1.1 request-head parser (RFC 9112, strict).
 *
 * Two passes. The scan pass runs incrementally over bytes not seen before:
 * it finds line ends, refuses a bare LF or bare CR at once, and enforces
 * the request-line (414) and head (431) limits while the head is still
 * arriving, so a client cannot make us buffer more than the limits. When
 * the empty line ending the head is found, the parse pass walks the whole
 * head once: request line, field lines, then the framing fields
 * (Content-Length, Transfer-Encoding, Host, Connection, Expect).
 *
 * Why so strict: a request is "smuggled" when two HTTP processors on its
 * path disagree about where it ends. Every ambiguity RFC 9112 lets a
 * recipient resolve one way or another (bare LF, whitespace before a colon,
 * obs-fold, a repeated Content-Length, TE with CL) is rejected outright, so
 * our reading of a request is the only one possible. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "zokio/http.h"

#define DEF_REQUEST_LINE 8192
#define DEF_HEAD 16384
/* Empty lines tolerated before a request line (RFC 9112 2.2: a server
 * SHOULD ignore at least one, sent by old clients after a POST body). */
#define MAX_LEADING_CRLF 4
/* Content-Length above this is refused as malformed: no real body is that
 * large, and it keeps every sum below INT64_MAX. */
#define MAX_CONTENT_LENGTH (1ll << 60)

/* tchar (RFC 9110 5.6.2): the bytes of a token. */
static const uint8_t tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1,  ['|'] = 1,
    ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static inline bool is_tchar(unsigned char c)
{
	return tchar_tab[c];
}

/* field-vchar / SP / HTAB / obs-text: what a field value may hold. */
static inline bool is_value_byte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

void zk_http_parser_reset(zk_http_parser_t *p)
{
	if (p)
		memset(p, 0, sizeof(*p));
}

int zk_http_error_status(int err)
{
	switch (err) {
	case -ENAMETOOLONG:
		return 414;
	case -EMSGSIZE:
		return 431;
	case -EPROTONOSUPPORT:
		return 505;
	case -ENOSYS:
		return 501;
	case -EFBIG:
		return 413;
	case -ETIMEDOUT:
		return 408;
	default:
		return err >= 0 ? 0 : 400;
	}
}

const char *zk_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "";
	}
}

static bool name_is(const zk_http_header_t *h, const char *name, size_t n)
{
	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

const zk_http_header_t *zk_http_find_header(const zk_http_request_t *req, const char *name)
{
	if (!req || !name)
		return NULL;
	size_t n = strlen(name);
	for (unsigned i = 0; i < req->nheaders; i++)
		if (name_is(&req->headers[i], name, n))
			return &req->headers[i];
	return NULL;
}

/* ---- parse pass ------------------------------------------------------------ */

/* request-line = method SP request-target SP HTTP-version CRLF; exactly one
 * SP each (RFC 9112 3: other whitespace is a recipient's choice, so no). */
static int parse_request_line(const char *s, size_t n, zk_http_request_t *req)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i >= n || s[i] != ' ')
		return -EBADMSG;
	req->method = s;
	req->method_len = i;
	size_t t = ++i;
	/* Visible US-ASCII only: no obs-text, no controls, no spaces. */
	while (i < n && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
		i++;
	if (i == t || i >= n || s[i] != ' ')
		return -EBADMSG;
	req->target = s + t;
	req->target_len = i - t;
	const char *v = s + i + 1;
	size_t vn = n - i - 1;
	if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
	    v[7] < '0' || v[7] > '9')
		return -EBADMSG;
	if (v[5] != '1')
		return -EPROTONOSUPPORT;
	req->minor = v[7] == '0' ? 0 : 1;
	req->is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS */
static int parse_field_line(const char *s, size_t n, zk_http_header_t *h)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	/* An empty name catches obs-fold (a line starting with SP/HTAB);
	 * any non-token byte before the colon (SP before ':' included) is
	 * refused too (RFC 9112 5.1: MUST reject with 400). */
	if (i == 0 || i >= n || s[i] != ':')
		return -EBADMSG;
	h->name = s;
	h->name_len = i;
	i++;
	while (i < n && is_ows((unsigned char)s[i]))
		i++;
	size_t vs = i, ve = i;
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_value_byte(c))
			return -EBADMSG;
		if (!is_ows(c))
			ve = i + 1;
	}
	h->value = s + vs;
	h->value_len = ve - vs;
	return 0;
}

/* Does the comma-separated list v contain token tok (case-insensitive)? */
static bool list_has(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);
	size_t i = 0;
	while (i < n) {
		while (i < n && (is_ows((unsigned char)v[i]) || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && is_ows((unsigned char)v[e - 1]))
			e--;
		if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
			return true;
	}
	return false;
}

static int parse_content_length(const zk_http_header_t *h, int64_t *out)
{
	if (h->value_len == 0 || h->value_len > 19)
		return -EBADMSG;
	int64_t v = 0;
	for (size_t i = 0; i < h->value_len; i++) {
		char c = h->value[i];
		if (c < '0' || c > '9')
			return -EBADMSG; /* also "1,1" and "+1" and "0x1" */
		v = v * 10 + (c - '0');
	}
	if (v > MAX_CONTENT_LENGTH)
		return -EBADMSG;
	*out = v;
	return 0;
}

/* Transfer-Encoding: exactly "chunked" is supported. A list whose last
 * coding is not chunked leaves the length unknowable (RFC 9112 6.3: 400);
 * other codings before chunked we cannot decode (501). */
static int parse_transfer_encoding(const zk_http_header_t *h)
{
	const char *v = h->value;
	size_t n = h->value_len;
	if (n == 7 && strncasecmp(v, "chunked", 7) == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!is_tchar(c) && c != ',' && !is_ows(c) && c != ';' && c != '=' && c != '"')
			return -EBADMSG;
	}
	size_t e = n;
	while (e > 0 && v[e - 1] != ',')
		e--;
	while (e < n && is_ows((unsigned char)v[e]))
		e++;
	if (n - e == 7 && strncasecmp(v + e, "chunked", 7) == 0)
		return -ENOSYS;
	return -EBADMSG;
}

static int check_framing(zk_http_request_t *req)
{
	bool have_te = false, close = false, keep = false;
	unsigned hosts = 0;
	req->content_length = -1;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const zk_http_header_t *h = &req->headers[i];
		int r;
		switch (h->name_len) {
		case 4:
			if (name_is(h, "host", 4))
				hosts++;
			break;
		case 6:
			if (name_is(h, "expect", 6) && h->value_len == 12 &&
			    strncasecmp(h->value, "100-continue", 12) == 0)
				req->expect_continue = true;
			break;
		case 10:
			if (name_is(h, "connection", 10)) {
				close |= list_has(h->value, h->value_len, "close");
				keep |= list_has(h->value, h->value_len, "keep-alive");
			}
			break;
		case 14:
			if (name_is(h, "content-length", 14)) {
				if (req->content_length >= 0)
					return -EBADMSG; /* repeated, even if equal */
				if ((r = parse_content_length(h, &req->content_length)) < 0)
					return r;
			}
			break;
		case 17:
			if (name_is(h, "transfer-encoding", 17)) {
				if (have_te)
					return -EBADMSG;
				have_te = true;
				if ((r = parse_transfer_encoding(h)) < 0)
					return r;
				req->chunked = true;
			}
			break;
		default:
			break;
		}
	}
	if (have_te && (req->content_length >= 0 || req->minor == 0))
		return -EBADMSG;
	if (hosts > 1 || (req->minor >= 1 && hosts == 0))
		return -EBADMSG;
	req->keep_alive = req->minor >= 1 ? !close : (keep && !close);
	return 0;
}

/* The whole head is in buf[start..end) (end just past the final CRLF). */
static int parse_head(const char *buf, size_t start, size_t end, zk_http_request_t *req)
{
	memset(req, 0, offsetof(zk_http_request_t, headers));
	req->nheaders = 0;
	req->chunked = req->keep_alive = req->expect_continue = req->is_head = false;
	size_t i = start;
	const char *eol = memchr(buf + i, '\n', end - i);
	/* The scan pass guarantees every LF has its CR. */
	int r = parse_request_line(buf + i, (size_t)(eol - 1 - (buf + i)), req);
	if (r < 0)
		return r;
	i = (size_t)(eol - buf) + 1;
	while (i < end - 2) {
		eol = memchr(buf + i, '\n', end - i);
		if (req->nheaders == ZK_HTTP_MAX_HEADERS)
			return -EMSGSIZE;
		r = parse_field_line(buf + i, (size_t)(eol - 1 - (buf + i)),
				     &req->headers[req->nheaders]);
		if (r < 0)
			return r;
		req->nheaders++;
		i = (size_t)(eol - buf) + 1;
	}
	r = check_framing(req);
	if (r < 0)
		return r;
	req->head_len = end;
	return (int)end;
}

/* ---- scan pass -------------------------------------------------------------- */

int zk_http_parse(zk_http_parser_t *p, const char *buf, size_t len, zk_http_request_t *req,
		  const zk_http_limits_t *lim)
{
	if (!p || !req || (!buf && len))
		return -EINVAL;
	size_t max_line = lim && lim->max_request_line ? lim->max_request_line : DEF_REQUEST_LINE;
	size_t max_head = lim && lim->max_head ? lim->max_head : DEF_HEAD;
	if (max_head > INT32_MAX)
		max_head = INT32_MAX;
	size_t i = p->scanned;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\r') {
			if (i + 1 == len)
				break; /* its LF may come with the next bytes */
			if (buf[i + 1] != '\n')
				return -EBADMSG; /* bare CR */
			continue;
		}
		if (c != '\n') {
			if (p->lines == 0 && i - p->line_start >= max_line)
				return -ENAMETOOLONG;
			if (i >= max_head)
				return -EMSGSIZE;
			continue;
		}
		if (i == 0 || buf[i - 1] != '\r')
			return -EBADMSG; /* bare LF */
		if (i >= max_head)
			return -EMSGSIZE;
		size_t line_len = i - 1 - p->line_start;
		if (line_len == 0) {
			if (p->lines == 0) {
				/* An empty line before the request line. */
				if (p->line_start / 2 >= MAX_LEADING_CRLF)
					return -EBADMSG;
				p->line_start = p->req_start = i + 1;
				continue;
			}
			p->scanned = i + 1;
			return parse_head(buf, p->req_start, i + 1, req);
		}
		p->lines++;
		p->line_start = i + 1;
	}
	p->scanned = i;
	return -EAGAIN;
}
