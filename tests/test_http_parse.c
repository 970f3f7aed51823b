/* tests/test_http_parse.c — http.h's request parser and chunked decoder:
 * valid requests, every smuggling shape RFC 9112 leaves ambiguous, limits,
 * and the same verdict whether a request arrives whole or byte by byte. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(http_parse, .timeout = 30);

/* Parses s in one call. */
static int parse_all(const char *s, size_t n, zk_http_request_t *req, const zk_http_limits_t *lim)
{
	zk_http_parser_t p;
	zk_http_parser_reset(&p);
	return zk_http_parse(&p, s, n, req, lim);
}

/* Parses s as it would arrive one byte per recv: the parser sees every
 * prefix. Each prefix before the verdict must say -EAGAIN. */
static int parse_bytewise(const char *s, size_t n, zk_http_request_t *req,
			  const zk_http_limits_t *lim)
{
	zk_http_parser_t p;
	zk_http_parser_reset(&p);
	int r = -EAGAIN;
	for (size_t i = 1; i <= n; i++) {
		r = zk_http_parse(&p, s, i, req, lim);
		if (r != -EAGAIN)
			return r;
	}
	return r;
}

/* Both ways, asserting they agree; returns the verdict. */
static int parse_both(const char *s, const zk_http_limits_t *lim, zk_http_request_t *req)
{
	zk_http_request_t r2;
	size_t n = strlen(s);
	int a = parse_all(s, n, req, lim);
	int b = parse_bytewise(s, n, &r2, lim);
	cr_assert_eq(a, b, "whole %d != bytewise %d for %.60s", a, b, s);
	return a;
}

static int verdict(const char *s)
{
	zk_http_request_t req;
	return parse_both(s, NULL, &req);
}

static bool span_is(const char *p, size_t n, const char *want)
{
	return n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- valid requests ---------------------------------------------------------- */

Test(http_parse, simple_get_fills_every_field)
{
	const char *s = "GET /a/b?c=d HTTP/1.1\r\nHost: example\r\nUser-Agent:  x y \t\r\n"
			"Accept: */*\r\n\r\n";
	zk_http_request_t req;
	int r = parse_both(s, NULL, &req);
	cr_assert_eq(r, (int)strlen(s));
	cr_assert(span_is(req.method, req.method_len, "GET"));
	cr_assert(span_is(req.target, req.target_len, "/a/b?c=d"));
	cr_assert_eq(req.minor, 1);
	cr_assert_eq(req.nheaders, 3);
	cr_assert(span_is(req.headers[1].name, req.headers[1].name_len, "User-Agent"));
	cr_assert(span_is(req.headers[1].value, req.headers[1].value_len, "x y"),
		  "trailing OWS trimmed, inner kept");
	cr_assert_eq(req.content_length, -1);
	cr_assert(!req.chunked);
	cr_assert(req.keep_alive);
	cr_assert(!req.is_head);
	cr_assert_eq(req.head_len, strlen(s));
	const zk_http_header_t *h = zk_http_find_header(&req, "accept");
	cr_assert_not_null(h);
	cr_assert(span_is(h->value, h->value_len, "*/*"));
	cr_assert_null(zk_http_find_header(&req, "cookie"));
}

Test(http_parse, incomplete_head_asks_for_more)
{
	zk_http_request_t req;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n";
	cr_assert_eq(parse_all(s, strlen(s), &req, NULL), -EAGAIN);
	cr_assert_eq(parse_all("", 0, &req, NULL), -EAGAIN);
	cr_assert_eq(parse_all("GET / HTTP/1.1\r", 15, &req, NULL), -EAGAIN);
}

Test(http_parse, bytes_after_the_head_are_not_consumed)
{
	const char *s = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET";
	zk_http_request_t req;
	int r = parse_all(s, strlen(s), &req, NULL);
	cr_assert_eq(r, (int)(strlen(s) - 8));
	cr_assert_eq(req.content_length, 5);
	cr_assert_eq(memcmp(s + r, "hello", 5), 0);
}

Test(http_parse, keep_alive_follows_version_and_connection)
{
	zk_http_request_t req;
	cr_assert_gt(parse_both("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", NULL, &req), 0);
	cr_assert(!req.keep_alive);
	cr_assert_gt(parse_both("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", NULL, &req), 0);
	cr_assert(!req.keep_alive);
	cr_assert_gt(parse_both("GET / HTTP/1.0\r\n\r\n", NULL, &req), 0);
	cr_assert(!req.keep_alive, "1.0 closes by default");
	cr_assert_eq(req.minor, 0);
	cr_assert_gt(parse_both("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", NULL, &req), 0);
	cr_assert(req.keep_alive);
	cr_assert_gt(parse_both("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", NULL, &req), 0);
	cr_assert(req.keep_alive, "'closed' is not 'close'");
}

Test(http_parse, head_chunked_and_expect_flags)
{
	zk_http_request_t req;
	cr_assert_gt(parse_both("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, &req), 0);
	cr_assert(req.is_head);
	cr_assert_gt(parse_both("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
				"Expect: 100-Continue\r\n\r\n", NULL, &req), 0);
	cr_assert(req.chunked);
	cr_assert(req.expect_continue);
	cr_assert_eq(req.content_length, -1);
}

Test(http_parse, leading_empty_lines_are_skipped_up_to_a_few)
{
	zk_http_request_t req;
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	cr_assert_eq(parse_both(s, NULL, &req), (int)strlen(s));
	cr_assert(span_is(req.method, req.method_len, "GET"));
	cr_assert_eq(verdict("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
}

Test(http_parse, minor_versions_above_one_count_as_1_1)
{
	zk_http_request_t req;
	cr_assert_gt(parse_both("GET / HTTP/1.7\r\nHost: a\r\n\r\n", NULL, &req), 0);
	cr_assert_eq(req.minor, 1);
}

Test(http_parse, obs_text_in_values_is_allowed)
{
	zk_http_request_t req;
	cr_assert_gt(parse_both("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n", NULL, &req), 0);
	cr_assert_eq(req.headers[1].value_len, 5);
	cr_assert_gt(parse_both("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", NULL, &req), 0);
	cr_assert_eq(req.headers[1].value_len, 0);
}

/* ---- malformed and smuggling shapes ------------------------------------------ */

Test(http_parse, bare_lf_is_rejected_everywhere)
{
	cr_assert_eq(verdict("GET / HTTP/1.1\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\n\n"), -EBADMSG);
	cr_assert_eq(verdict("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nX: a\nContent-Length: 5\r\nHost: a\r\n\r\n"), -EBADMSG);
}

Test(http_parse, bare_cr_is_rejected)
{
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), -EBADMSG);
}

Test(http_parse, content_length_may_appear_only_once)
{
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			     "Content-Length: 5\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			     "Content-Length: 6\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), -EBADMSG);
}

Test(http_parse, content_length_must_be_digits)
{
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\n"
			     "Content-Length: 99999999999999999999\r\n\r\n"), -EBADMSG);
	zk_http_request_t req;
	cr_assert_gt(parse_both("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", NULL, &req), 0);
	cr_assert_eq(req.content_length, 7);
}

Test(http_parse, transfer_encoding_with_content_length_is_rejected)
{
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			     "Content-Length: 5\r\n\r\n"), -EBADMSG);
}

Test(http_parse, transfer_encoding_variants)
{
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
		     -ENOSYS);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
		     -ENOSYS);
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
		     -EBADMSG, "chunked not last: length unknowable");
	cr_assert_eq(verdict("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
		     -EBADMSG);
	cr_assert_eq(verdict("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -EBADMSG);
	cr_assert_eq(zk_http_error_status(-ENOSYS), 501);
}

Test(http_parse, whitespace_before_colon_and_obs_fold_are_rejected)
{
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n"),
		     -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost\r\n\r\n"), -EBADMSG);
}

Test(http_parse, control_bytes_are_rejected)
{
	static const char nul_value[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
	zk_http_request_t req;
	cr_assert_eq(parse_all(nul_value, sizeof(nul_value) - 1, &req, NULL), -EBADMSG);
	cr_assert_eq(parse_bytewise(nul_value, sizeof(nul_value) - 1, &req, NULL), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nX\x80Y: a\r\nHost: a\r\n\r\n"), -EBADMSG);
}

Test(http_parse, request_line_shape_is_exact)
{
	cr_assert_eq(verdict("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET /\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / http/1.1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1\r\nHost: a\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), -EPROTONOSUPPORT);
	cr_assert_eq(verdict("GET / HTTP/0.9\r\n\r\n"), -EPROTONOSUPPORT);
	cr_assert_eq(zk_http_error_status(-EPROTONOSUPPORT), 505);
}

Test(http_parse, host_is_required_once_in_1_1)
{
	cr_assert_eq(verdict("GET / HTTP/1.1\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), -EBADMSG);
	cr_assert_eq(verdict("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), -EBADMSG);
	cr_assert_gt(verdict("GET / HTTP/1.0\r\n\r\n"), 0);
}

/* ---- limits ---------------------------------------------------------------------- */

static char *repeat(const char *pre, char c, size_t n, const char *post)
{
	size_t a = strlen(pre), b = strlen(post);
	char *s = malloc(a + n + b + 1);
	cr_assert_not_null(s);
	memcpy(s, pre, a);
	memset(s + a, c, n);
	memcpy(s + a + n, post, b + 1);
	return s;
}

Test(http_parse, long_request_line_is_414_before_it_ends)
{
	zk_http_limits_t lim = {.max_request_line = 100, .max_head = 1000};
	zk_http_request_t req;
	/* Exactly at the limit: fine. */
	char *ok = repeat("GET /", 'a', 100 - 5 - 9, " HTTP/1.1\r\nHost: a\r\n\r\n");
	cr_assert_gt(parse_both(ok, &lim, &req), 0);
	free(ok);
	char *bad = repeat("GET /", 'a', 100 - 5 - 8, " HTTP/1.1\r\nHost: a\r\n\r\n");
	cr_assert_eq(parse_both(bad, &lim, &req), -ENAMETOOLONG);
	free(bad);
	/* Without its end: still refused once the limit is passed. */
	char *open = repeat("GET /", 'a', 200, "");
	cr_assert_eq(parse_all(open, strlen(open), &req, &lim), -ENAMETOOLONG);
	free(open);
	cr_assert_eq(zk_http_error_status(-ENAMETOOLONG), 414);
}

Test(http_parse, large_head_is_431_before_it_ends)
{
	zk_http_limits_t lim = {.max_request_line = 100, .max_head = 200};
	zk_http_request_t req;
	char *big = repeat("GET / HTTP/1.1\r\nHost: a\r\nX: ", 'v', 300, "\r\n\r\n");
	cr_assert_eq(parse_both(big, &lim, &req), -EMSGSIZE);
	big[150] = 0; /* no end in sight yet, and still under the limit */
	cr_assert_eq(parse_all(big, strlen(big), &req, &lim), -EAGAIN);
	free(big);
	cr_assert_eq(zk_http_error_status(-EMSGSIZE), 431);
}

Test(http_parse, too_many_fields_is_431)
{
	char buf[4096];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < ZK_HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: v\r\n", i);
	snprintf(buf + n, sizeof(buf) - n, "\r\n");
	cr_assert_eq(verdict(buf), -EMSGSIZE);
}

/* ---- pipelining ------------------------------------------------------------------------ */

Test(http_parse, pipelined_requests_parse_one_after_another)
{
	const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
			"HEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t off = 0, n = strlen(s);
	const char *want[] = {"/1", "/2", "/3"};
	for (int i = 0; i < 3; i++) {
		zk_http_parser_t p;
		zk_http_request_t req;
		zk_http_parser_reset(&p);
		int r = zk_http_parse(&p, s + off, n - off, &req, NULL);
		cr_assert_gt(r, 0);
		cr_assert(span_is(req.target, req.target_len, want[i]));
		off += (size_t)r;
	}
	cr_assert_eq(off, n);
}

/* ---- chunked ------------------------------------------------------------------------------ */

/* Decodes s fed in pieces of `step` bytes (the unconsumed rest is kept,
 * as a connection buffer would), collecting the data. Returns 0 when done,
 * the error, or -EAGAIN if the input ended first. */
static int dechunk(const char *s, size_t n, size_t step, size_t max_data, char *out,
		   size_t *out_len, size_t *consumed)
{
	zk_http_chunked_t d;
	memset(&d, 0, sizeof(d));
	size_t avail = 0, pos = 0;
	*out_len = 0;
	while (!d.done) {
		if (pos == avail) {
			if (avail == n)
				return -EAGAIN;
			avail = avail + step > n ? n : avail + step;
		}
		const char *data;
		size_t dl;
		ssize_t r = zk_http_chunked_decode(&d, s + pos, avail - pos, max_data, &data, &dl);
		if (r < 0)
			return (int)r;
		if (dl)
			memcpy(out + *out_len, data, dl);
		*out_len += dl;
		pos += (size_t)r;
	}
	*consumed = pos;
	return 0;
}

static int dechunk_verdict(const char *s)
{
	char out[256];
	size_t ol, used;
	int a = dechunk(s, strlen(s), strlen(s), 1000, out, &ol, &used);
	int b = dechunk(s, strlen(s), 1, 1, out, &ol, &used);
	cr_assert_eq(a, b, "whole %d != bytewise %d for %s", a, b, s);
	return a;
}

Test(http_parse, chunked_body_decodes_whole_and_byte_by_byte)
{
	const char *s = "5\r\nhello\r\n1;ext=1;b\r\n \r\n0A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	size_t n = strlen(s);
	for (size_t step = 1; step <= n; step++) {
		char out[64];
		size_t ol, used;
		cr_assert_eq(dechunk(s, n, step, step, out, &ol, &used), 0, "step %zu", step);
		cr_assert_eq(ol, 16);
		cr_assert_eq(memcmp(out, "hello 0123456789", 16), 0);
		cr_assert_eq(used, n - 4, "stops before the next request");
	}
}

Test(http_parse, chunked_framing_errors)
{
	cr_assert_eq(dechunk_verdict("5\r\nhelloX\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("5\nhello\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("5\r\nhello\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("0x5\r\nhello\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict(" 5\r\nhello\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("-5\r\nhello\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("\r\nhello\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("0\r\n\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("0\r\n x: y\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("1;a\x01\r\nx\r\n0\r\n\r\n"), -EBADMSG);
	cr_assert_eq(dechunk_verdict("fffffffffffffffffff\r\n"), -EMSGSIZE);
	cr_assert_eq(dechunk_verdict("5\r\nhel"), -EAGAIN);
}

Test(http_parse, chunk_size_line_is_bounded)
{
	char *s = repeat("1;", 'e', 9000, "\r\nx\r\n0\r\n\r\n");
	char out[16];
	size_t ol, used;
	cr_assert_eq(dechunk(s, strlen(s), 100, 100, out, &ol, &used), -EMSGSIZE);
	free(s);
}

Test(http_parse, null_arguments_are_einval)
{
	zk_http_parser_t p;
	zk_http_request_t req;
	zk_http_parser_reset(&p);
	cr_assert_eq(zk_http_parse(NULL, "x", 1, &req, NULL), -EINVAL);
	cr_assert_eq(zk_http_parse(&p, "x", 1, NULL, NULL), -EINVAL);
	cr_assert_eq(zk_http_parse(&p, NULL, 1, &req, NULL), -EINVAL);
	const char *d;
	size_t dl;
	cr_assert_eq(zk_http_chunked_decode(NULL, "x", 1, 1, &d, &dl), -EINVAL);
	cr_assert_eq(zk_http_error_status(-EFBIG), 413);
	cr_assert_eq(zk_http_error_status(-EBADMSG), 400);
	cr_assert_str_eq(zk_http_reason(404), "Not Found");
}
