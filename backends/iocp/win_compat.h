/* backends/iocp/win_compat.h — the few POSIX types backend.h names, for a
 * Windows build, without pulling <windows.h> into the core: sockaddr and
 * msghdr are only pointed to, socklen_t is Winsock's int, and struct iovec
 * is the one include/zokio/fs.h defines on Windows. */
#ifndef ZOKIO_WIN_COMPAT_H
#define ZOKIO_WIN_COMPAT_H

#include <stddef.h>
#include <sys/types.h>

struct sockaddr;
struct msghdr; /* SENDMSG/RECVMSG: not run by the IOCP backend (-EOPNOTSUPP) */
typedef int socklen_t; /* as <ws2tcpip.h> */

#ifndef ZK_IOVEC_DEFINED
#define ZK_IOVEC_DEFINED 1
struct iovec {
	void *iov_base;
	size_t iov_len;
};
#endif

#endif
