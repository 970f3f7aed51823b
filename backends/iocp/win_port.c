/* backends/iocp/win_port.c — the Windows versions of the few OS calls the
 * core makes outside the backend (declared in lib/internal.h under _WIN32),
 * and the signal hooks: Windows has no POSIX signals, so signal.h is not
 * built there and the runtime's signal set-up has nothing to do. */
#include <windows.h>

#include "../../lib/internal.h"

long zk__win_ncpus(void)
{
	SYSTEM_INFO si;
	GetSystemInfo(&si);
	return (long)si.dwNumberOfProcessors;
}

size_t zk__win_page_size(void)
{
	SYSTEM_INFO si;
	GetSystemInfo(&si);
	return (size_t)si.dwPageSize;
}

void zk__win_pin_thread(unsigned cpu)
{
	long n = zk__win_ncpus();
	if (n <= 0)
		return;
	unsigned bit = cpu % (unsigned)(n > 64 ? 64 : n);
	SetThreadAffinityMask(GetCurrentThread(), (DWORD_PTR)1 << bit);
}

/* No signals on Windows: zk_signal_wait is not part of the Windows build. */
int zk__signal_rt_init(zk_runtime_t *rt)
{
	(void)rt;
	return 0;
}

void zk__signal_rt_free(zk_runtime_t *rt)
{
	(void)rt;
}

void zk__signal_worker_start(struct zk__worker *w)
{
	(void)w;
}
