/* lib/http/chunked.c — the chunked transfer coding decoder (RFC 9112 7.1).
 *
 * A byte-at-a-time state machine over whatever the caller has buffered, so
 * a chunk header split anywhere between two recv()s decodes the same. Data
 * is never copied: the decoder reports where it is in the caller's buffer.
 * Strict like the head parser: every line ends in CRLF, a chunk's data must
 * be followed by CRLF, sizes are hex digits only (no "0x", no sign, no
 * whitespace before them), and lines are bounded. */
#include <errno.h>
#include <string.h>

#include "zokio/http.h"

/* Bound on a size line (with its extensions) and on the trailer section. */
#define MAX_LINE 8192
/* Bound on one chunk's size: 15 hex digits' worth, far above any body. */
#define MAX_CHUNK (1ull << 60)

enum {
	S_SIZE = 0,  /* hex digits of the size */
	S_SIZE_WS,   /* whitespace after the size, before ';' or CR */
	S_EXT,       /* chunk extensions, up to CR */
	S_SIZE_LF,   /* the LF ending the size line */
	S_DATA,      /* chunk data */
	S_DATA_CR,   /* the CRLF after the data */
	S_DATA_LF,
	S_TRAILER,   /* start of a trailer line, or the final CRLF */
	S_TLINE,     /* inside a trailer line */
	S_TLINE_LF,
	S_END_LF,    /* the LF of the final CRLF */
	S_DONE,
};

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool value_byte(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

ssize_t zk_http_chunked_decode(zk_http_chunked_t *d, const char *in, size_t len,
			       size_t max_data, const char **data, size_t *data_len)
{
	if (!d || !data || !data_len || (!in && len))
		return -EINVAL;
	*data = NULL;
	*data_len = 0;
	size_t i = 0;
	while (i < len && d->state != S_DONE) {
		unsigned char c = (unsigned char)in[i];
		if (d->state == S_DATA) {
			size_t n = len - i;
			if (n > d->left)
				n = (size_t)d->left;
			if (n > max_data)
				n = max_data;
			if (n == 0)
				return (ssize_t)i; /* max_data == 0 */
			*data = in + i;
			*data_len = n;
			d->left -= n;
			d->total += n;
			if (d->left == 0)
				d->state = S_DATA_CR;
			return (ssize_t)(i + n);
		}
		i++;
		switch (d->state) {
		case S_SIZE: {
			int v = hexval(c);
			if (v >= 0) {
				if (d->left > (MAX_CHUNK >> 4))
					return -EMSGSIZE;
				d->left = (d->left << 4) | (uint64_t)v;
				d->digits++;
				break;
			}
			if (d->digits == 0)
				return -EBADMSG;
			if (c == '\r')
				d->state = S_SIZE_LF;
			else if (c == ';')
				d->state = S_EXT;
			else if (c == ' ' || c == '\t')
				d->state = S_SIZE_WS;
			else
				return -EBADMSG;
			break;
		}
		case S_SIZE_WS:
			if (c == ';')
				d->state = S_EXT;
			else if (c != ' ' && c != '\t')
				return -EBADMSG;
			break;
		case S_EXT:
			if (c == '\r')
				d->state = S_SIZE_LF;
			else if (!value_byte(c))
				return -EBADMSG;
			break;
		case S_SIZE_LF:
			if (c != '\n')
				return -EBADMSG;
			d->line = 0;
			d->digits = 0;
			d->state = d->left ? S_DATA : S_TRAILER;
			continue;
		case S_DATA_CR:
			if (c != '\r')
				return -EBADMSG;
			d->state = S_DATA_LF;
			continue;
		case S_DATA_LF:
			if (c != '\n')
				return -EBADMSG;
			d->state = S_SIZE;
			d->line = 0;
			continue;
		case S_TRAILER:
			if (c == '\r') {
				d->state = S_END_LF;
				break;
			}
			/* A trailer line: a field name first (no obs-fold). */
			if (c == ' ' || c == '\t' || c == ':' || !value_byte(c))
				return -EBADMSG;
			d->state = S_TLINE;
			break;
		case S_TLINE:
			if (c == '\r')
				d->state = S_TLINE_LF;
			else if (!value_byte(c))
				return -EBADMSG;
			break;
		case S_TLINE_LF:
			if (c != '\n')
				return -EBADMSG;
			d->state = S_TRAILER;
			break;
		case S_END_LF:
			if (c != '\n')
				return -EBADMSG;
			d->state = S_DONE;
			d->done = true;
			break;
		default:
			return -EBADMSG;
		}
		/* Line bytes: size lines and the trailer section are bounded. */
		if (d->state == S_SIZE || d->state == S_SIZE_WS || d->state == S_EXT ||
		    d->state == S_SIZE_LF) {
			if (++d->line > MAX_LINE)
				return -EMSGSIZE;
		} else if (++d->trailer_bytes > MAX_LINE) {
			return -EMSGSIZE;
		}
	}
	return (ssize_t)i;
}
