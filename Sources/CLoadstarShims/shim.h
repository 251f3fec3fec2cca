#ifndef LOADSTAR_SHIMS_H
#define LOADSTAR_SHIMS_H
/* Linux interfaces that Glibc's Swift module does not export. */
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

/* A non-blocking monotonic timerfd; -1 on failure. */
static inline int CLoadstarShims_timerfd_create(void) {
    return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

/* Arms the timer to fire once, `micros` from now (0 disarms it). */
static inline int CLoadstarShims_timerfd_arm(int fd, int64_t micros) {
    struct itimerspec spec = {0};
    spec.it_value.tv_sec = micros / 1000000;
    spec.it_value.tv_nsec = (micros % 1000000) * 1000;
    return timerfd_settime(fd, 0, &spec, 0);
}

/* Has the kernel send `sig` to this process when its parent exits (prctl is variadic, so Swift
   cannot call it directly). Note: "parent" is the thread that forked this process. */
static inline int CLoadstarShims_set_parent_death_signal(int sig) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0);
}
/* Asks the kernel for a scheduling slice of `nanos` for the calling thread (Linux 6.12 and later;
   older kernels ignore it; 100 µs is the least they accept). A thread with a shorter slice than
   the one running preempts it when it wakes, instead of waiting out that task's slice (1.4 ms on
   a 2-core machine). Only a normal (SCHED_OTHER) thread is changed: a real-time policy the thread
   was started with is kept. Returns 0 on success, -1 with errno set otherwise. */
struct CLoadstarShims_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};
static inline int CLoadstarShims_request_slice(uint64_t nanos) {
    struct CLoadstarShims_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0) return -1;
    if (attr.sched_policy != 0) return -1;
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = nanos;
    return (int)syscall(SYS_sched_setattr, 0, &attr, 0);
}
#endif
