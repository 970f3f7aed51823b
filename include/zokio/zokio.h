/* zokio/zokio.h — the whole Zokio API. */
#ifndef ZOKIO_H
#define ZOKIO_H

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
