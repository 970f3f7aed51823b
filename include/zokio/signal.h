/* zokio/signal.h — waiting for POSIX signals from a task.
 *
 * The first zk_signal_wait() for a signal installs a process-wide handler for
 * it (kept until the process exits; the signal's previous action, e.g. the
 * default "terminate" of SIGINT, no longer applies). The handler only counts
 * the signal and writes the runtime's signal eventfd, which every worker
 * keeps a read on in its ring; the worker whose read completes wakes every
 * task waiting for a signal that arrived. No signal mask setup is needed. */
#ifndef ZOKIO_SIGNAL_H
#define ZOKIO_SIGNAL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Suspends the calling task until signo is delivered to the process after
 * the call began. Returns signo, or
 *   -EINVAL    signo is not a catchable signal (1..64, not SIGKILL/SIGSTOP),
 *   -ECANCELED the task was cancelled,
 *   -EPERM     outside a runtime task,
 *   -errno     from sigaction. */
int zk_signal_wait(int signo);

#ifdef __cplusplus
}
#endif
#endif
