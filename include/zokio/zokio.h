/* zokio/zokio.h — the whole Zokio API. */
#ifndef ZOKIO_H
#define ZOKIO_H

#ifdef _WIN32
/* The Windows build (mingw-w64, IOCP backend) has no DNS, HTTP, metrics,
 * connection pool or signals; fs.h and net.h say which of their calls it
 * has. */
#include "fs.h"
#include "net.h"
#include "runtime.h"
#include "select.h"
#include "sync.h"
#include "task.h"
#include "time.h"
#else
#include "dns.h"
#include "fs.h"
#include "http.h"
#include "metrics.h"
#include "net.h"
#include "pool.h"
#include "runtime.h"
#include "select.h"
#include "signal.h"
#include "sync.h"
#include "task.h"
#include "time.h"
#endif

#endif
