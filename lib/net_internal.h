/* lib/net_internal.h — what the lib/net_*.c files share: socket creation
 * helpers (close-on-exec, options set before bind). */
#ifndef ZOKIO_NET_INTERNAL_H
#define ZOKIO_NET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A socket of family/type bound to sa. For TCP SO_REUSEADDR is set; for
 * IP families ZK_TCP_REUSEPORT / ZK_TCP_V6ONLY in flags are applied before
 * bind. Returns the fd or -errno. Not suspending. */
int zk__sock_bound(int family, int type, const struct sockaddr *sa, socklen_t len,
		   unsigned flags);

/* A socket of family/type connected to sa through zk_connect (TCP streams
 * get TCP_NODELAY). Returns the fd or -errno (-EPERM outside a task).
 * Suspends. */
int zk__sock_connect(int family, int type, const struct sockaddr *sa, socklen_t len);

/* net_zc.c: how much of the len bytes left zk_send_all sends zero-copy in
 * its next call (0: copy them). */
size_t zk__send_zc_piece(size_t len);

#endif
