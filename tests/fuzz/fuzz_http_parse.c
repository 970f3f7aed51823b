/* tests/fuzz/fuzz_http_parse.c — libFuzzer harness for http.h's parser and
 * chunked decoder.
 *
 * Besides memory errors (the build adds ASan/UBSan), it checks properties
 * that must hold for any input, and aborts when one does not:
 *   - the verdict of zk_http_parse does not depend on how the bytes are
 *     split between calls (the input is fed whole, byte by byte, and in
 *     pieces whose sizes come from the input itself);
 *   - on success the head length is within the input, every pointer of the
 *     request points inside it, every header value holds no CR, LF or NUL,
 *     and Content-Length and chunked are never both set;
 *   - the chunked decoder, run on the bytes after the head, gives the same
 *     data and verdict whole and byte by byte, and never reports data
 *     outside its input. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zokio/http.h>

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static const zk_http_limits_t lim = {.max_request_line = 512, .max_head = 2048};

static int parse_split(const uint8_t *d, size_t n, const uint8_t *steps, size_t nsteps,
		       zk_http_request_t *req)
{
	zk_http_parser_t p;
	zk_http_parser_reset(&p);
	size_t have = 0;
	size_t k = 0;
	int r = -EAGAIN;
	while (have < n) {
		size_t step = nsteps ? (size_t)(steps[k++ % nsteps] % 64) + 1 : 1;
		have = have + step > n ? n : have + step;
		r = zk_http_parse(&p, (const char *)d, have, req, &lim);
		if (r != -EAGAIN)
			return r;
	}
	return r;
}

static bool inside(const char *p, size_t len, const uint8_t *d, size_t n)
{
	return (const uint8_t *)p >= d && (const uint8_t *)p + len <= d + n;
}

static void check_request(const zk_http_request_t *req, const uint8_t *d, size_t n, int r)
{
	CHECK((size_t)r <= n && req->head_len == (size_t)r);
	CHECK(inside(req->method, req->method_len, d, n) && req->method_len > 0);
	CHECK(inside(req->target, req->target_len, d, n) && req->target_len > 0);
	CHECK(req->minor == 0 || req->minor == 1);
	CHECK(req->nheaders <= ZK_HTTP_MAX_HEADERS);
	for (unsigned i = 0; i < req->nheaders; i++) {
		const zk_http_header_t *h = &req->headers[i];
		CHECK(inside(h->name, h->name_len, d, n) && h->name_len > 0);
		CHECK(inside(h->value, h->value_len, d, n));
		for (size_t j = 0; j < h->value_len; j++)
			CHECK(h->value[j] != '\r' && h->value[j] != '\n' && h->value[j] != 0);
	}
	CHECK(!(req->chunked && req->content_length >= 0));
}

/* Decodes in[0..n) fed `step` bytes at a time; the data is hashed. */
static int dechunk(const uint8_t *in, size_t n, size_t step, uint64_t *hash, size_t *used)
{
	zk_http_chunked_t c;
	memset(&c, 0, sizeof(c));
	size_t pos = 0, avail = 0;
	uint64_t h = 1469598103934665603ull;
	while (!c.done) {
		if (pos == avail) {
			if (avail == n)
				break;
			avail = avail + step > n ? n : avail + step;
		}
		const char *data;
		size_t dl;
		ssize_t r = zk_http_chunked_decode(&c, (const char *)in + pos, avail - pos, step,
						   &data, &dl);
		if (r < 0)
			return (int)r;
		CHECK((size_t)r <= avail - pos);
		if (dl) {
			CHECK((const uint8_t *)data >= in + pos &&
			      (const uint8_t *)data + dl <= in + pos + (size_t)r);
			for (size_t i = 0; i < dl; i++)
				h = (h ^ (uint8_t)data[i]) * 1099511628211ull;
		}
		pos += (size_t)r;
	}
	*hash = h;
	*used = pos;
	return c.done ? 0 : -EAGAIN;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	zk_http_request_t a, b, c;
	zk_http_parser_t p;
	zk_http_parser_reset(&p);
	int whole = zk_http_parse(&p, (const char *)d, n, &a, &lim);
	int bytes = parse_split(d, n, NULL, 0, &b);
	int split = parse_split(d, n, d, n < 8 ? n : 8, &c);
	CHECK(whole == bytes && whole == split);
	if (whole > 0) {
		check_request(&a, d, (size_t)n, whole);
		CHECK(a.head_len == b.head_len && a.nheaders == b.nheaders &&
		      a.content_length == b.content_length && a.chunked == b.chunked &&
		      a.keep_alive == b.keep_alive);
	} else {
		CHECK(whole == -EAGAIN || whole == -EBADMSG || whole == -ENAMETOOLONG ||
		      whole == -EMSGSIZE || whole == -EPROTONOSUPPORT || whole == -ENOSYS);
	}
	/* The chunked decoder on the rest (or on everything if no head). */
	size_t off = whole > 0 ? (size_t)whole : 0;
	uint64_t h1 = 0, h2 = 0;
	size_t u1 = 0, u2 = 0;
	int d1 = dechunk(d + off, n - off, n - off ? n - off : 1, &h1, &u1);
	int d2 = dechunk(d + off, n - off, 1, &h2, &u2);
	CHECK(d1 == d2);
	if (d1 == 0)
		CHECK(h1 == h2 && u1 == u2);
	return 0;
}
