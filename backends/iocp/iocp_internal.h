/* backends/iocp/iocp_internal.h — what the Windows files of the IOCP build
 * share: Winsock start-up and the Win32-error-to-errno mapping (iocp.c). */
#ifndef ZOKIO_IOCP_INTERNAL_H
#define ZOKIO_IOCP_INTERNAL_H

#include <winsock2.h> /* before windows.h, which would pull in winsock 1 */
#include <windows.h>

/* WSAStartup and the Winsock extension pointers, once per process.
 * Returns 0 or -ENETDOWN. Any thread. */
int zk__win_wsa_init(void);

/* A Win32 or Winsock error code as a negative errno (-EIO when unknown). */
int zk__win_errno(DWORD err);

struct zk__op;
/* Runs a file op (READ, WRITE, CLOSE, OPENAT, FSYNC, FTRUNCATE) on the
 * calling thread, blocking it, without any port seeing it: the foreign-
 * thread path of the file calls. Returns the result or -errno
 * (-EOPNOTSUPP for other opcodes). */
int32_t zk__iocp_run_blocking(const struct zk__op *op);

/* Frees the calling thread's blocking-I/O event (zk_fs_thread_release). */
void zk__iocp_thread_release(void);

#endif
