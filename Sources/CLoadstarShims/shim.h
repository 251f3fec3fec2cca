#ifndef LOADSTAR_SHIMS_H
#define LOADSTAR_SHIMS_H
/* Linux interfaces that Glibc's Swift module does not export. */
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <stdint.h>

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
#endif
