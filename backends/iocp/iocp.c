/* backends/iocp/iocp.c — the I/O backend on Windows: one I/O completion
 * port per worker (the vtable of backends/backend.h).
 *
 * Every op gets a request record (struct req, pooled per backend: no
 * allocation once the pool is warm) holding the OVERLAPPED the kernel
 * writes into, the WSABUF and the AcceptEx scratch. Files and sockets use
 * overlapped I/O: ReadFile/WriteFile at the op's offset, AcceptEx,
 * ConnectEx, WSARecv/WSASend, WSARecvFrom/WSASendTo. A call that fails at
 * once (no packet will come; a truncated datagram is the exception, see
 * start_socket) puts the op on the `done` FIFO, completed in the next
 * wait(), so complete() always runs from inside wait() as backend.h
 * requires. Success always comes as a packet (FILE_SKIP_COMPLETION_PORT_
 * ON_SUCCESS is not set): one path for every result.
 *
 * One port per worker, but Windows ties a handle to one port for its life:
 * the first worker to run an op on a handle associates it with its port.
 * An op on that handle submitted by another worker completes on the first
 * worker's port, which forwards the packet (PostQueuedCompletionStatus,
 * same OVERLAPPED) to the submitting worker's port: complete() still runs
 * on the owning worker. Each submit re-tries the association (one system
 * call per op; Windows refuses it for a handle tied already, which is the
 * answer we need); a per-handle cache would save it but must be cleared on
 * every close, including closes Zokio does not see.
 *
 * A foreign thread's file calls (zk__iocp_run_blocking) bypass the ports:
 * they wait on a per-thread event whose low bit keeps the packet off the
 * port the handle is tied to.
 *
 * Blocking work with no overlapped form (CreateFile for OPENAT,
 * FlushFileBuffers for FSYNC, SetFileInformationByHandle for FTRUNCATE)
 * runs on the Windows thread pool (TrySubmitThreadpoolCallback), which
 * posts the result to the owner's port: the worker never blocks on it.
 *
 * Differences from io_uring (callers see these):
 *   - An "fd" is a HANDLE or SOCKET value carried in the int (Windows keeps
 *     handle values within 32 bits). Negative fds complete with -EBADF.
 *   - Files must be opened for overlapped I/O (zk_open does so). READ and
 *     WRITE on a disk file need an offset: off == -1 (file position)
 *     completes with -EINVAL, since an overlapped handle has no position
 *     (on a socket or pipe, -1 is fine). Reading at or past the end of
 *     file completes with 0.
 *   - READV/WRITEV are not run here (-EOPNOTSUPP): backends/iocp/io_win.c
 *     runs a vector as READ/WRITE pieces.
 *   - ACCEPT, CONNECT, RECV, SEND, SHUTDOWN, CLOSE run on sockets created
 *     overlapped (zk_tcp_listen/zk_tcp_connect do so). ACCEPT's flags are
 *     ignored (no accept4 flags on Windows); the new socket inherits the
 *     listener's properties (SO_UPDATE_ACCEPT_CONTEXT). CONNECT binds an
 *     unbound socket to the wildcard address first (ConnectEx needs it).
 *     RECV/SEND flags other than MSG_PEEK/MSG_OOB complete with -EINVAL
 *     (MSG_DONTWAIT and MSG_NOSIGNAL are ignored: never blocks, no SIGPIPE).
 *   - SHUTDOWN and CLOSE run inline (they never block) and complete in the
 *     next wait().
 *   - cancel() and timeout_ns use CancelIoEx: the op completes with
 *     -ECANCELED / -ETIMEDOUT, or with its real result if it finished
 *     first. Thread-pool ops (OPENAT, FSYNC, FTRUNCATE) cannot be stopped
 *     once queued: they complete with their real result.
 *   - SENDMSG/RECVMSG (WSASendTo/WSARecvFrom): at most 8 iovecs (else
 *     -EINVAL), no control data (msg_control must be NULL: -EINVAL);
 *     msg_controllen comes back 0, msg_flags holds the Winsock flags.
 *     Unconnected UDP sockets from zk_udp_bind ignore ICMP port
 *     unreachable (SIO_UDP_CONNRESET off), so a recvfrom is not failed by
 *     an earlier sendto to a closed port. On a connected UDP socket the
 *     error is what Winsock reports (WSAECONNRESET: -ECONNRESET, where
 *     Linux says -ECONNREFUSED); not covered by the tests.
 *   - Opcodes with no Windows counterpart here complete with -EOPNOTSUPP:
 *     POLL, STATX, FALLOCATE, SYNC_FILE_RANGE, RENAMEAT,
 *     UNLINKAT, MKDIRAT, SPLICE, RECV_PBUF; SEND_ZC runs as a plain SEND.
 *     No registered buffers/files, no provided buffers, no kernel chains.
 *   - A handle is tied to the port of the runtime that first ran I/O on
 *     it: handles must not move between runtimes, and must not already be
 *     associated with a port of the program's own.
 */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#include <mswsock.h>
#include <ws2tcpip.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "../backend.h"
#include "iocp_internal.h"
#include "zokio/net.h" /* struct msghdr on Windows */

/* Completion keys. Handles are associated with key KEY_IO. */
#define KEY_IO 0u
#define KEY_WAKE 1u    /* wake(): no OVERLAPPED */
#define KEY_FORWARD 2u /* a packet another worker's port received for us */
#define KEY_POOL 3u    /* a thread-pool op finished; result in req->pool_res */

/* Packets reaped per GetQueuedCompletionStatusEx call. */
#define REAP_BATCH 64

/* iovecs a SENDMSG/RECVMSG may carry (WSABUFs live in the request). */
#define ZK__IOCP_MAX_IOV 8

/* AcceptEx wants room for each address plus 16 bytes. */
#define ACCEPT_ADDR_LEN (sizeof(struct sockaddr_storage) + 16)

struct zk__backend;

/* One in-flight op's kernel-facing state. */
struct req {
	OVERLAPPED ov;            /* first: packets hand us &ov */
	struct zk__backend *owner; /* the backend whose worker completes it */
	struct zk__op *op;
	struct req *next, *prev;  /* owner's live list (cancel all at fini) */
	struct req *tnext;        /* free list */
	uint64_t deadline;        /* timeout_ns expiry (QPC ns), 0: none */
	bool timed_out;           /* expired: ERROR_OPERATION_ABORTED -> -ETIMEDOUT */
	bool is_socket_op;
	WSABUF wsabuf;
	WSABUF wsabufs[ZK__IOCP_MAX_IOV]; /* SENDMSG/RECVMSG */
	INT fromlen;              /* RECVMSG: the source address's length */
	DWORD wsaflags;
	SOCKET accepted;          /* ACCEPT: the socket AcceptEx fills */
	SOCKET listener;
	int32_t pool_res;         /* KEY_POOL: the result */
	char accept_buf[2 * ACCEPT_ADDR_LEN];
};

struct zk__backend {
	HANDLE port;
	struct zk__backend_stats *stats;
	unsigned inflight;        /* submitted, complete() not yet run */
	unsigned timed;           /* live reqs with a deadline */
	struct req *live;         /* every submitted req not yet completed */
	struct req *free_reqs;
	struct zk__op *done_head, *done_tail; /* finished without a packet */
	_Atomic bool wake_posted; /* a KEY_WAKE packet is queued, not reaped */
	bool has_handles;         /* some handle is tied to this port: packets
	                           * for other workers' ops may arrive here */
};

static LPFN_CONNECTEX connectex_fn;
static LPFN_ACCEPTEX acceptex_fn;
static LPFN_GETACCEPTEXSOCKADDRS getaddrs_fn;
static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;

/* WSAStartup once per process and the Winsock extension pointers (they
 * are per-provider; every socket here is the default TCP provider). */
static BOOL CALLBACK wsa_init(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
	(void)once, (void)param, (void)ctx;
	WSADATA wd;
	if (WSAStartup(MAKEWORD(2, 2), &wd) != 0)
		return FALSE;
	SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
	if (s == INVALID_SOCKET)
		return FALSE;
	GUID g_connect = WSAID_CONNECTEX, g_accept = WSAID_ACCEPTEX,
	     g_addrs = WSAID_GETACCEPTEXSOCKADDRS;
	DWORD n;
	WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g_connect, sizeof g_connect,
		 &connectex_fn, sizeof connectex_fn, &n, NULL, NULL);
	WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g_accept, sizeof g_accept, &acceptex_fn,
		 sizeof acceptex_fn, &n, NULL, NULL);
	WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g_addrs, sizeof g_addrs, &getaddrs_fn,
		 sizeof getaddrs_fn, &n, NULL, NULL);
	closesocket(s);
	return TRUE;
}

int zk__win_wsa_init(void)
{
	return InitOnceExecuteOnce(&wsa_once, wsa_init, NULL, NULL) ? 0 : -ENETDOWN;
}

int zk__win_errno(DWORD err)
{
	switch (err) {
	case ERROR_SUCCESS:
		return 0;
	case ERROR_OPERATION_ABORTED:
	case WSAEINTR:
		return -ECANCELED;
	case ERROR_INVALID_HANDLE:
	case WSAEBADF:
		return -EBADF;
	case WSAENOTSOCK:
		return -ENOTSOCK;
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
	case ERROR_INVALID_DRIVE:
		return -ENOENT;
	case ERROR_ACCESS_DENIED:
	case ERROR_SHARING_VIOLATION:
	case ERROR_LOCK_VIOLATION:
	case WSAEACCES:
		return -EACCES;
	case ERROR_FILE_EXISTS:
	case ERROR_ALREADY_EXISTS:
		return -EEXIST;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
	case ERROR_NO_SYSTEM_RESOURCES:
	case WSAENOBUFS:
		return -ENOMEM;
	case ERROR_INVALID_PARAMETER:
	case ERROR_INVALID_USER_BUFFER:
	case WSAEINVAL:
		return -EINVAL;
	case ERROR_NEGATIVE_SEEK:
		return -EINVAL;
	case ERROR_DISK_FULL:
	case ERROR_HANDLE_DISK_FULL:
		return -ENOSPC;
	case ERROR_TOO_MANY_OPEN_FILES:
	case WSAEMFILE:
		return -EMFILE;
	case ERROR_NOT_SUPPORTED:
	case WSAEOPNOTSUPP:
		return -EOPNOTSUPP;
	case ERROR_CONNECTION_REFUSED:
	case WSAECONNREFUSED:
		return -ECONNREFUSED;
	case ERROR_NETNAME_DELETED:
	case WSAECONNRESET:
		return -ECONNRESET;
	case ERROR_CONNECTION_ABORTED:
	case WSAECONNABORTED:
		return -ECONNABORTED;
	case ERROR_BROKEN_PIPE:
	case WSAESHUTDOWN:
		return -EPIPE;
	case WSAEADDRINUSE:
	case ERROR_ADDRESS_ALREADY_ASSOCIATED:
		return -EADDRINUSE;
	case WSAEADDRNOTAVAIL:
		return -EADDRNOTAVAIL;
	case WSAENOTCONN:
		return -ENOTCONN;
	case WSAEISCONN:
		return -EISCONN;
	case WSAEAFNOSUPPORT:
		return -EAFNOSUPPORT;
	case ERROR_NETWORK_UNREACHABLE:
	case WSAENETUNREACH:
		return -ENETUNREACH;
	case ERROR_HOST_UNREACHABLE:
	case WSAEHOSTUNREACH:
		return -EHOSTUNREACH;
	case ERROR_SEM_TIMEOUT:
	case WSAETIMEDOUT:
		return -ETIMEDOUT;
	case WSAEMSGSIZE:
		return -EMSGSIZE;
	case ERROR_DIRECTORY:
		return -ENOTDIR;
	case ERROR_FILENAME_EXCED_RANGE:
		return -ENAMETOOLONG;
	default:
		return -EIO;
	}
}

/* NTSTATUS from OVERLAPPED.Internal to a Win32 error (ntdll). */
ULONG WINAPI RtlNtStatusToDosError(LONG status);

/* The clock of op deadlines (timeout_ns). QueryPerformanceFrequency is
 * a read of shared memory, cheap enough to ask each time. */
static uint64_t now_ns(void)
{
	LARGE_INTEGER freq, c;
	QueryPerformanceFrequency(&freq);
	QueryPerformanceCounter(&c);
	uint64_t t = (uint64_t)c.QuadPart, f = (uint64_t)freq.QuadPart;
	return t / f * 1000000000ull + t % f * 1000000000ull / f;
}

static inline HANDLE fd_handle(int32_t fd)
{
	return (HANDLE)(intptr_t)fd;
}

static struct req *req_get(struct zk__backend *b)
{
	struct req *r = b->free_reqs;
	if (r)
		b->free_reqs = r->tnext;
	else if (!(r = malloc(sizeof(*r))))
		return NULL;
	memset(&r->ov, 0, sizeof r->ov);
	r->owner = b;
	r->deadline = 0;
	r->timed_out = false;
	r->is_socket_op = false;
	r->wsaflags = 0;
	r->accepted = INVALID_SOCKET;
	r->pool_res = 0;
	return r;
}

static void req_put(struct zk__backend *b, struct req *r)
{
	r->tnext = b->free_reqs;
	b->free_reqs = r;
}

static void live_link(struct zk__backend *b, struct req *r)
{
	r->prev = NULL;
	r->next = b->live;
	if (b->live)
		b->live->prev = r;
	b->live = r;
	if (r->deadline)
		b->timed++;
}

static void live_unlink(struct zk__backend *b, struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		b->live = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->deadline)
		b->timed--;
}

/* An op that finished without a packet: completed in the next wait(). */
static void finish_later(struct zk__backend *b, struct zk__op *op, int32_t res)
{
	op->res = res;
	op->more = false;
	op->cflags = 0;
	op->b_next = NULL;
	if (b->done_tail)
		b->done_tail->b_next = op;
	else
		b->done_head = op;
	b->done_tail = op;
}

/* Ties h to b's port unless it is tied to a port already (then Windows
 * says ERROR_INVALID_PARAMETER and packets come through that port). */
static void associate(struct zk__backend *b, HANDLE h)
{
	if (CreateIoCompletionPort(h, b->port, KEY_IO, 0))
		b->has_handles = true;
	/* Completions that succeed at once still post a packet (we do not set
	 * FILE_SKIP_COMPLETION_PORT_ON_SUCCESS): one path for every result. */
}

static int iocp_init(struct zk__backend **out, const struct zk__backend_config *cfg)
{
	if (zk__win_wsa_init() < 0)
		return -ENOSYS;
	struct zk__backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	/* One thread per port: only the owning worker waits on it. */
	b->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
	if (!b->port) {
		free(b);
		return -ENOMEM;
	}
	b->stats = cfg ? cfg->stats : NULL;
	*out = b;
	return 0;
}

/* --- thread-pool ops ------------------------------------------------------ */

static int32_t open_blocking(const struct zk__op *op)
{
	int flags = (int)op->flags;
	DWORD access = 0;
	switch (flags & (O_RDONLY | O_WRONLY | O_RDWR)) {
	case O_WRONLY:
		access = GENERIC_WRITE;
		break;
	case O_RDWR:
		access = GENERIC_READ | GENERIC_WRITE;
		break;
	default:
		access = GENERIC_READ;
	}
	DWORD disp;
	if ((flags & O_CREAT) && (flags & O_EXCL))
		disp = CREATE_NEW;
	else if ((flags & O_CREAT) && (flags & O_TRUNC))
		disp = CREATE_ALWAYS;
	else if (flags & O_CREAT)
		disp = OPEN_ALWAYS;
	else if (flags & O_TRUNC)
		disp = TRUNCATE_EXISTING;
	else
		disp = OPEN_EXISTING;
	/* Share everything, as POSIX files are: another open, a rename or an
	 * unlink of an open file must not fail. */
	HANDLE h = CreateFileA(op->path, access,
			       FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, disp,
			       FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED, NULL);
	if (h == INVALID_HANDLE_VALUE)
		return zk__win_errno(GetLastError());
	if ((intptr_t)h > INT32_MAX) {
		CloseHandle(h);
		return -EMFILE;
	}
	return (int32_t)(intptr_t)h;
}

/* The blocking ops: on the thread pool for a worker, inline for a
 * foreign thread. */
static int32_t pool_op(const struct zk__op *op)
{
	int32_t res;
	switch (op->opcode) {
	case ZK__OP_OPENAT:
		res = open_blocking(op);
		break;
	case ZK__OP_FSYNC:
		res = FlushFileBuffers(fd_handle(op->fd)) ? 0 : zk__win_errno(GetLastError());
		break;
	case ZK__OP_FTRUNCATE: {
		FILE_END_OF_FILE_INFO eof = {.EndOfFile.QuadPart = (LONGLONG)op->len64};
		res = SetFileInformationByHandle(fd_handle(op->fd), FileEndOfFileInfo, &eof,
						 sizeof eof)
			      ? 0
			      : zk__win_errno(GetLastError());
		break;
	}
	default:
		res = -EOPNOTSUPP;
	}
	return res;
}

static void CALLBACK pool_run(PTP_CALLBACK_INSTANCE inst, void *ctx)
{
	(void)inst;
	struct req *r = ctx;
	r->pool_res = pool_op(r->op);
	/* The owner's port outlives every op: fini() drains them first. */
	PostQueuedCompletionStatus(r->owner->port, 0, KEY_POOL, &r->ov);
}

/* --- foreign threads -------------------------------------------------------- */

/* The calling thread's event for blocking overlapped I/O (see below). */
static _Thread_local HANDLE blocking_event;

void zk__iocp_thread_release(void)
{
	if (blocking_event) {
		CloseHandle(blocking_event);
		blocking_event = NULL;
	}
}

/* READ/WRITE at an offset, blocking the calling thread only. The event's
 * low bit set tells Windows not to post a packet to the port the handle
 * is tied to (a worker's), so no worker ever sees this I/O. */
static int32_t rw_blocking(const struct zk__op *op)
{
	HANDLE h = fd_handle(op->fd);
	if (op->off < 0 && (op->off != -1 || GetFileType(h) == FILE_TYPE_DISK))
		return -EINVAL;
	if (!blocking_event && !(blocking_event = CreateEventW(NULL, TRUE, FALSE, NULL)))
		return -ENOMEM;
	uint64_t off = op->off < 0 ? 0 : (uint64_t)op->off;
	OVERLAPPED ov = {.Offset = (DWORD)(off & 0xffffffffu), .OffsetHigh = (DWORD)(off >> 32),
			 .hEvent = (HANDLE)((uintptr_t)blocking_event | 1)};
	DWORD n = 0;
	BOOL ok = op->opcode == ZK__OP_READ ? ReadFile(h, op->buf, op->len, NULL, &ov)
					    : WriteFile(h, op->cbuf, op->len, NULL, &ov);
	if (!ok && GetLastError() != ERROR_IO_PENDING)
		return GetLastError() == ERROR_HANDLE_EOF ? 0 : zk__win_errno(GetLastError());
	if (!GetOverlappedResult(h, &ov, &n, TRUE))
		return GetLastError() == ERROR_HANDLE_EOF ? 0 : zk__win_errno(GetLastError());
	return (int32_t)n;
}

static int32_t close_now(int32_t fd);

int32_t zk__iocp_run_blocking(const struct zk__op *op)
{
	if (op->fd < 0 && op->opcode != ZK__OP_OPENAT)
		return -EBADF;
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_WRITE:
		return rw_blocking(op);
	case ZK__OP_CLOSE:
		return close_now(op->fd);
	case ZK__OP_OPENAT:
	case ZK__OP_FSYNC:
	case ZK__OP_FTRUNCATE:
		return pool_op(op);
	default:
		return -EOPNOTSUPP;
	}
}

/* --- submission ----------------------------------------------------------- */

static int32_t start_file_rw(struct zk__backend *b, struct zk__op *op, struct req *r)
{
	HANDLE h = fd_handle(op->fd);
	/* Offsets mean nothing on a socket or pipe (off == -1 is what callers
	 * pass there); a disk file has no position to use instead. */
	if (op->off < 0 && (op->off != -1 || GetFileType(h) == FILE_TYPE_DISK))
		return -EINVAL;
	uint64_t off = op->off < 0 ? 0 : (uint64_t)op->off;
	r->ov.Offset = (DWORD)(off & 0xffffffffu);
	r->ov.OffsetHigh = (DWORD)(off >> 32);
	associate(b, h);
	BOOL ok = op->opcode == ZK__OP_READ ? ReadFile(h, op->buf, op->len, NULL, &r->ov)
					    : WriteFile(h, op->cbuf, op->len, NULL, &r->ov);
	if (ok)
		return 1; /* the packet is queued */
	DWORD e = GetLastError();
	if (e == ERROR_IO_PENDING)
		return 1;
	if (e == ERROR_HANDLE_EOF)
		return 0; /* read at or past the end: 0 bytes, no packet */
	return zk__win_errno(e);
}

static int32_t start_socket(struct zk__backend *b, struct zk__op *op, struct req *r)
{
	SOCKET s = (SOCKET)(uintptr_t)(uint32_t)op->fd;
	DWORD n = 0;
	int rc;
	r->is_socket_op = true;
	switch (op->opcode) {
	case ZK__OP_RECV:
	case ZK__OP_SEND:
	case ZK__OP_SEND_ZC:
		if (op->flags & ~(uint32_t)(MSG_PEEK | MSG_OOB | 0x40 /* MSG_DONTWAIT */ |
					   0x4000 /* MSG_NOSIGNAL */))
			return -EINVAL;
		associate(b, (HANDLE)s);
		r->wsabuf.buf = op->buf;
		r->wsabuf.len = op->len;
		r->wsaflags = op->flags & (MSG_PEEK | MSG_OOB);
		if (op->opcode == ZK__OP_RECV)
			rc = WSARecv(s, &r->wsabuf, 1, NULL, &r->wsaflags, &r->ov, NULL);
		else
			rc = WSASend(s, &r->wsabuf, 1, NULL, r->wsaflags, &r->ov, NULL);
		break;
	case ZK__OP_SENDMSG:
	case ZK__OP_RECVMSG: {
		struct msghdr *m = op->msg;
		if (!m || (m->msg_iovlen && !m->msg_iov) || m->msg_iovlen > ZK__IOCP_MAX_IOV ||
		    m->msg_control || m->msg_controllen)
			return -EINVAL;
		if (op->flags & ~(uint32_t)(MSG_PEEK | MSG_OOB | 0x40 | 0x4000))
			return -EINVAL;
		for (size_t i = 0; i < m->msg_iovlen; i++) {
			r->wsabufs[i].buf = m->msg_iov[i].iov_base;
			r->wsabufs[i].len = (ULONG)m->msg_iov[i].iov_len;
		}
		associate(b, (HANDLE)s);
		r->wsaflags = op->flags & (MSG_PEEK | MSG_OOB);
		if (op->opcode == ZK__OP_SENDMSG) {
			rc = WSASendTo(s, r->wsabufs, (DWORD)m->msg_iovlen, NULL, r->wsaflags,
				       m->msg_name, m->msg_name ? (int)m->msg_namelen : 0, &r->ov,
				       NULL);
		} else {
			r->fromlen = m->msg_name ? (INT)m->msg_namelen : 0;
			rc = WSARecvFrom(s, r->wsabufs, (DWORD)m->msg_iovlen, NULL, &r->wsaflags,
					 m->msg_name, m->msg_name ? &r->fromlen : NULL, &r->ov,
					 NULL);
		}
		break;
	}
	case ZK__OP_ACCEPT: {
		WSAPROTOCOL_INFOW info;
		int il = sizeof info;
		if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &il) != 0)
			return zk__win_errno((DWORD)WSAGetLastError());
		SOCKET a = WSASocketW(info.iAddressFamily, info.iSocketType, info.iProtocol, NULL, 0,
				      WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
		if (a == INVALID_SOCKET)
			return zk__win_errno((DWORD)WSAGetLastError());
		if ((uintptr_t)a > INT32_MAX) {
			closesocket(a);
			return -EMFILE;
		}
		r->accepted = a;
		r->listener = s;
		associate(b, (HANDLE)s);
		rc = acceptex_fn(s, a, r->accept_buf, 0, ACCEPT_ADDR_LEN, ACCEPT_ADDR_LEN, &n,
				 &r->ov)
			     ? 0
			     : SOCKET_ERROR;
		if (rc == SOCKET_ERROR && WSAGetLastError() != WSA_IO_PENDING) {
			int e = WSAGetLastError();
			closesocket(a);
			r->accepted = INVALID_SOCKET;
			return zk__win_errno((DWORD)e);
		}
		return 1;
	}
	case ZK__OP_CONNECT: {
		if (!op->caddr)
			return -EFAULT;
		/* ConnectEx needs a bound socket: bind to the wildcard address
		 * of the target's family unless bound already. */
		struct sockaddr_storage local;
		int ll = sizeof local;
		if (getsockname(s, (struct sockaddr *)&local, &ll) != 0) {
			int e = WSAGetLastError();
			if (e != WSAEINVAL)
				return zk__win_errno((DWORD)e);
			memset(&local, 0, sizeof local);
			local.ss_family = op->caddr->sa_family;
			int bl = op->caddr->sa_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
								  : (int)sizeof(struct sockaddr_in);
			if (bind(s, (struct sockaddr *)&local, bl) != 0)
				return zk__win_errno((DWORD)WSAGetLastError());
		}
		associate(b, (HANDLE)s);
		rc = connectex_fn(s, op->caddr, (int)op->addrlen, NULL, 0, NULL, &r->ov)
			     ? 0
			     : SOCKET_ERROR;
		break;
	}
	default:
		return -EOPNOTSUPP;
	}
	if (rc == 0)
		return 1;
	int e = WSAGetLastError();
	if (e == WSA_IO_PENDING)
		return 1;
	/* A datagram cut to the buffer ends with a warning status
	 * (STATUS_BUFFER_OVERFLOW), not an error: the packet is still queued,
	 * and finish_req() reads the byte count from it. */
	if (e == WSAEMSGSIZE && (op->opcode == ZK__OP_RECV || op->opcode == ZK__OP_RECVMSG))
		return 1;
	return zk__win_errno((DWORD)e);
}

static int32_t close_now(int32_t fd)
{
	SOCKET s = (SOCKET)(uintptr_t)(uint32_t)fd;
	int type;
	int tl = sizeof type;
	/* Sockets must be closed with closesocket (Winsock keeps state of its
	 * own); a handle that is no socket fails getsockopt at once. */
	if (getsockopt(s, SOL_SOCKET, SO_TYPE, (char *)&type, &tl) == 0)
		return closesocket(s) == 0 ? 0 : zk__win_errno((DWORD)WSAGetLastError());
	return CloseHandle(fd_handle(fd)) ? 0 : zk__win_errno(GetLastError());
}

static void iocp_submit(struct zk__backend *b, struct zk__op *op)
{
	ZK__BSTAT(b->stats, submitted);
	b->inflight++;
	op->more = false;
	op->cflags = 0;
	if (op->fd < 0 && op->opcode != ZK__OP_OPENAT && op->opcode != ZK__OP_NOP) {
		finish_later(b, op, -EBADF);
		return;
	}
	switch (op->opcode) {
	case ZK__OP_NOP:
		finish_later(b, op, 0);
		return;
	case ZK__OP_CLOSE:
		finish_later(b, op, close_now(op->fd));
		return;
	case ZK__OP_SHUTDOWN: {
		SOCKET s = (SOCKET)(uintptr_t)(uint32_t)op->fd;
		/* SHUT_RD/WR/RDWR are 0/1/2, as SD_RECEIVE/SEND/BOTH. */
		finish_later(b, op, shutdown(s, (int)op->flags) == 0
					    ? 0
					    : zk__win_errno((DWORD)WSAGetLastError()));
		return;
	}
	case ZK__OP_READ:
	case ZK__OP_WRITE:
	case ZK__OP_RECV:
	case ZK__OP_SEND:
	case ZK__OP_SEND_ZC:
	case ZK__OP_ACCEPT:
	case ZK__OP_CONNECT:
	case ZK__OP_SENDMSG:
	case ZK__OP_RECVMSG:
	case ZK__OP_OPENAT:
	case ZK__OP_FSYNC:
	case ZK__OP_FTRUNCATE:
		break;
	default:
		finish_later(b, op, -EOPNOTSUPP);
		return;
	}
	struct req *r = req_get(b);
	if (!r) {
		finish_later(b, op, -ENOMEM);
		return;
	}
	r->op = op;
	op->b_scratch[0] = (uint64_t)(uintptr_t)r;
	if (op->timeout_ns)
		r->deadline = now_ns() + op->timeout_ns;
	int32_t st;
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_WRITE:
		st = start_file_rw(b, op, r);
		break;
	case ZK__OP_OPENAT:
	case ZK__OP_FSYNC:
	case ZK__OP_FTRUNCATE:
		st = TrySubmitThreadpoolCallback(pool_run, r, NULL) ? 1 : -ENOMEM;
		break;
	default:
		st = start_socket(b, op, r);
	}
	if (st != 1) {
		op->b_scratch[0] = 0;
		req_put(b, r);
		finish_later(b, op, st);
		return;
	}
	live_link(b, r);
}

static void iocp_cancel(struct zk__backend *b, struct zk__op *op)
{
	(void)b;
	struct req *r = (struct req *)(uintptr_t)op->b_scratch[0];
	if (!r || r->op != op)
		return; /* finished inline: completes with its real result */
	if (r->is_socket_op || op->opcode == ZK__OP_READ || op->opcode == ZK__OP_WRITE)
		CancelIoEx(fd_handle(op->fd), &r->ov);
	/* ERROR_NOT_FOUND: the packet is queued already; the real result wins. */
}

/* --- completion ----------------------------------------------------------- */

static void complete_op(struct zk__backend *b, struct zk__op *op)
{
	b->inflight--;
	ZK__BSTAT(b->stats, completed);
	op->complete(op);
}

static void finish_req(struct zk__backend *b, struct req *r, DWORD bytes, ULONG_PTR key)
{
	struct zk__op *op = r->op;
	int32_t res;
	live_unlink(b, r);
	if (key == KEY_POOL) {
		res = r->pool_res;
		if (op->opcode == ZK__OP_OPENAT && res >= 0)
			associate(b, fd_handle(res));
	} else {
		LONG status = (LONG)r->ov.Internal;
		DWORD err = status == 0 ? 0 : RtlNtStatusToDosError(status);
		if (err == ERROR_HANDLE_EOF && op->opcode == ZK__OP_READ)
			err = 0; /* at or past the end of file: 0 bytes */
		if (err == ERROR_MORE_DATA &&
		    (op->opcode == ZK__OP_RECV || op->opcode == ZK__OP_RECVMSG))
			err = 0; /* a datagram cut to the buffer: its first bytes, as Linux */
		if (err == 0) {
			res = (int32_t)bytes;
		} else if (err == ERROR_OPERATION_ABORTED && r->timed_out) {
			res = -ETIMEDOUT;
		} else {
			res = zk__win_errno(err);
		}
		if (op->opcode == ZK__OP_ACCEPT) {
			SOCKET a = r->accepted;
			if (res >= 0 && setsockopt(a, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
						   (char *)&r->listener, sizeof r->listener) != 0)
				res = zk__win_errno((DWORD)WSAGetLastError());
			if (res < 0) {
				closesocket(a);
			} else {
				if (op->addr && op->addrlen_p) {
					struct sockaddr *la, *ra;
					int ll, rl;
					getaddrs_fn(r->accept_buf, 0, ACCEPT_ADDR_LEN,
						    ACCEPT_ADDR_LEN, &la, &ll, &ra, &rl);
					int cap = *op->addrlen_p;
					memcpy(op->addr, ra, (size_t)(rl < cap ? rl : cap));
					*op->addrlen_p = rl;
				}
				res = (int32_t)(uintptr_t)a;
			}
		} else if (op->opcode == ZK__OP_RECVMSG && res >= 0) {
			if (op->msg->msg_name)
				op->msg->msg_namelen = (socklen_t)r->fromlen;
			op->msg->msg_controllen = 0;
			op->msg->msg_flags = (int)r->wsaflags;
		} else if (op->opcode == ZK__OP_CONNECT && res >= 0) {
			SOCKET s = (SOCKET)(uintptr_t)(uint32_t)op->fd;
			setsockopt(s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
			res = 0;
		}
	}
	op->b_scratch[0] = 0;
	r->op = NULL;
	req_put(b, r);
	op->res = res;
	complete_op(b, op);
}

/* Cancels the reqs whose deadline passed; returns the nearest deadline
 * still ahead (0: none). O(ops with a timeout): they are few (a timeout
 * is per op, zk_timeout_next). */
static uint64_t expire(struct zk__backend *b, uint64_t now)
{
	if (!b->timed)
		return 0;
	uint64_t next = 0;
	for (struct req *r = b->live; r; r = r->next) {
		if (!r->deadline || r->timed_out)
			continue;
		if (r->deadline <= now) {
			r->timed_out = true;
			iocp_cancel(b, r->op);
		} else if (!next || r->deadline < next) {
			next = r->deadline;
		}
	}
	return next;
}

static int iocp_wait(struct zk__backend *b, int64_t timeout_ns)
{
	int done = 0;
	/* Ops that finished inline first; if any, the port is only polled. */
	while (b->done_head) {
		struct zk__op *op = b->done_head;
		b->done_head = op->b_next;
		if (!b->done_head)
			b->done_tail = NULL;
		complete_op(b, op);
		done++;
	}
	if (done)
		timeout_ns = 0;
	/* Nothing of ours in flight and no handle tied to our port (whose
	 * packets we would have to forward): a poll has nothing to find. */
	if (timeout_ns == 0 && !b->live && !b->has_handles && !atomic_load(&b->wake_posted))
		return done;
	uint64_t now = b->timed ? now_ns() : 0;
	uint64_t next = expire(b, now);
	if (next) {
		int64_t until = (int64_t)(next - now);
		if (timeout_ns < 0 || until < timeout_ns)
			timeout_ns = until;
	}
	/* Milliseconds, rounded up: rounding down would wake early and spin
	 * on a timer not yet due. */
	DWORD ms = timeout_ns < 0 ? INFINITE
				  : (DWORD)((timeout_ns + 999999) / 1000000 > 0x7fffffff
						    ? 0x7fffffff
						    : (timeout_ns + 999999) / 1000000);
	OVERLAPPED_ENTRY ents[REAP_BATCH];
	ULONG n = 0;
	ZK__BSTAT(b->stats, enters);
	if (!GetQueuedCompletionStatusEx(b->port, ents, REAP_BATCH, &n, ms, FALSE))
		n = 0; /* WAIT_TIMEOUT */
	for (ULONG i = 0; i < n; i++) {
		ULONG_PTR key = ents[i].lpCompletionKey;
		if (key == KEY_WAKE) {
			atomic_store(&b->wake_posted, false);
			continue;
		}
		struct req *r = (struct req *)ents[i].lpOverlapped;
		if (r->owner != b) {
			/* A handle tied to our port, an op of another worker. */
			PostQueuedCompletionStatus(r->owner->port, ents[i].dwNumberOfBytesTransferred,
						   KEY_FORWARD, &r->ov);
			continue;
		}
		finish_req(b, r, ents[i].dwNumberOfBytesTransferred, key);
		done++;
	}
	if (b->timed)
		expire(b, now_ns());
	return done;
}

static void iocp_wake(struct zk__backend *b)
{
	/* One wake packet at a time: a burst of wakes is one wait() ending. */
	if (!atomic_exchange(&b->wake_posted, true))
		PostQueuedCompletionStatus(b->port, 0, KEY_WAKE, NULL);
}

static unsigned iocp_inflight(const struct zk__backend *b)
{
	return b->inflight;
}

static void iocp_fini(struct zk__backend *b)
{
	for (struct req *r = b->live; r; r = r->next)
		iocp_cancel(b, r->op);
	while (b->inflight)
		iocp_wait(b, -1);
	while (b->free_reqs) {
		struct req *r = b->free_reqs;
		b->free_reqs = r->tnext;
		free(r);
	}
	CloseHandle(b->port);
	free(b);
}

const struct zk__backend_vtable zk__backend_iocp = {
	.name = "iocp",
	.init = iocp_init,
	.fini = iocp_fini,
	.submit = iocp_submit,
	.cancel = iocp_cancel,
	.wait = iocp_wait,
	.wake = iocp_wake,
	.inflight = iocp_inflight,
};
