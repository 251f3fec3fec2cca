/* libcurl's own floor against the static target of bench/agent-throughput: the rate bare libcurl
 * reaches through the interface the agent uses (a multi handle per thread, curl_multi_perform and
 * curl_multi_poll), with nothing done per response: the body is discarded (no parsing, no timing,
 * nothing stored). The agent cannot go faster than the library it drives, so this is the figure
 * its rate is compared with.
 *
 * Usage: curl-floor URL THREADS HANDLES_PER_THREAD SECONDS [perform|socket]
 *   Each thread runs its own multi handle with HANDLES_PER_THREAD easy handles in a closed loop:
 *   each POSTs bench/agent-throughput's request body (wrk.lua's) and, when it completes, is removed
 *   and added again. After SECONDS the threads stop; transfers still in flight are not counted.
 * Prints one line:
 *   N requests (F failed) in T s: R requests/s; CPU U user + S sys s, C CPU-s per 1,000 requests
 *   N counts the transfers that ended CURLE_OK with HTTP status 200, F every other completed one;
 *   R = N / T; U and S are this process's CPU time (getrusage RUSAGE_SELF) from just before the
 *   threads start to after they end; C = (U + S) / (N + F) * 1,000.
 * With `socket`, each thread drives its multi handle through curl_multi_socket_action and epoll
 * (libcurl's other interface, the one an event loop uses) instead: issue 16 asked whether that
 * would be cheaper for the agent, and this measures it on the same target.
 * Exit status: 0; 1 if nothing succeeded or libcurl could not be set up; 2 on bad arguments.
 * Built by bench/agent-throughput: cc -O2 -pthread -o curl-floor curl-floor.c -lcurl */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

static const char body[] = "{\"model\":\"static\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                           "\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"w w w w w w w w\"}]}";

struct worker {
    pthread_t thread;
    const char *url;
    long handles;
    double deadline;  /* CLOCK_MONOTONIC seconds */
    long ok, failed;
    double ended;     /* when this worker stopped sending, CLOCK_MONOTONIC seconds */
    int broken;       /* libcurl could not be set up or a multi call failed */
    int socket_mode;  /* curl_multi_socket_action and epoll instead of curl_multi_perform */
    int epoll;        /* socket mode: the descriptors libcurl asked to watch */
    double timer_at;  /* socket mode: when libcurl's timer expires (CLOCK_MONOTONIC s), -1 when none */
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Socket mode: libcurl says which descriptors to watch for what. */
static int watch(CURL *easy, curl_socket_t fd, int what, void *context, void *assigned) {
    (void)easy;
    (void)assigned;
    struct worker *w = context;
    struct epoll_event event = {0};
    event.data.fd = fd;
    if (what == CURL_POLL_REMOVE) {
        /* The descriptor may already be closed (and so gone from the set): not an error. */
        if (epoll_ctl(w->epoll, EPOLL_CTL_DEL, fd, NULL) != 0 && errno != ENOENT && errno != EBADF) w->broken = 1;
        return 0;
    }
    event.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (epoll_ctl(w->epoll, EPOLL_CTL_MOD, fd, &event) != 0 &&
        (errno != ENOENT || epoll_ctl(w->epoll, EPOLL_CTL_ADD, fd, &event) != 0)) {
        w->broken = 1;  /* a socket not watched would stall its transfer */
        return -1;
    }
    return 0;
}

static int set_timer(CURLM *multi, long timeout_ms, void *context) {
    (void)multi;
    ((struct worker *)context)->timer_at = timeout_ms < 0 ? -1 : now() + (double)timeout_ms / 1000;
    return 0;
}

static double cpu_seconds(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static size_t discard(char *data, size_t size, size_t count, void *context) {
    (void)data;
    (void)context;
    return size * count;
}

static CURL *new_easy(const char *url, struct curl_slist *headers) {
    CURL *easy = curl_easy_init();
    if (!easy) return NULL;
    if (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)(sizeof body - 1)) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK) {
        curl_easy_cleanup(easy);
        return NULL;
    }
    return easy;
}

static void *run(void *argument) {
    struct worker *w = argument;
    struct curl_slist *headers = NULL, *appended;
    const char *lines[] = {"Content-Type: application/json", "Accept: text/event-stream", "Expect:"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!(appended = curl_slist_append(headers, lines[i]))) { w->broken = 1; break; }
        headers = appended;
    }
    CURLM *multi = w->broken ? NULL : curl_multi_init();
    CURL **easy = calloc((size_t)w->handles, sizeof *easy);
    long added = 0;
    if (!multi || !easy) w->broken = 1;
    w->epoll = -1;
    w->timer_at = -1;
    if (!w->broken && w->socket_mode) {
        w->epoll = epoll_create1(0);
        if (w->epoll < 0 || curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, watch) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, w) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, set_timer) != CURLM_OK ||
            curl_multi_setopt(multi, CURLMOPT_TIMERDATA, w) != CURLM_OK)
            w->broken = 1;
    }
    for (; !w->broken && added < w->handles; added++) {
        if (!(easy[added] = new_easy(w->url, headers)) || curl_multi_add_handle(multi, easy[added]) != CURLM_OK) {
            if (easy[added]) curl_easy_cleanup(easy[added]);
            w->broken = 1;
            break;
        }
    }
    while (!w->broken) {
        double left = w->deadline - now();
        if (left <= 0) break;
        int running;
        if (w->socket_mode) {
            /* Wait for a descriptor or libcurl's timer (at most until the deadline), then let
             * libcurl act on what is ready. */
            struct epoll_event events[256];
            int wait_ms = left >= 0.1 ? 100 : (int)(left * 1000) + 1;
            if (w->timer_at >= 0) {
                double until = w->timer_at - now();
                int timer_ms = until <= 0 ? 0 : (int)(until * 1000) + 1;
                if (timer_ms < wait_ms) wait_ms = timer_ms;
            }
            int ready = epoll_wait(w->epoll, events, 256, wait_ms);
            if (ready < 0 && errno != EINTR) { w->broken = 1; break; }
            CURLMcode code = CURLM_OK;
            for (int i = 0; i < ready && code == CURLM_OK; i++) {
                int mask = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                           (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                code = curl_multi_socket_action(multi, events[i].data.fd, mask, &running);
            }
            /* libcurl's timer, once it is due (a new transfer's start is one). */
            if (code == CURLM_OK && w->timer_at >= 0 && w->timer_at <= now()) {
                w->timer_at = -1;
                code = curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
            }
            if (code != CURLM_OK || w->broken) { w->broken = 1; break; }
        } else if (curl_multi_perform(multi, &running) != CURLM_OK) { w->broken = 1; break; }
        CURLMsg *message;
        int queued;
        while ((message = curl_multi_info_read(multi, &queued))) {
            if (message->msg != CURLMSG_DONE) continue;
            CURL *done = message->easy_handle;
            long status = 0;
            if (message->data.result == CURLE_OK && curl_easy_getinfo(done, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
                status == 200)
                w->ok++;
            else
                w->failed++;
            /* message points into the multi handle: read everything needed before removing. */
            curl_multi_remove_handle(multi, done);
            if (curl_multi_add_handle(multi, done) != CURLM_OK) { w->broken = 1; break; }
        }
        if (w->broken) break;
        if (w->socket_mode) continue;
        /* Wake at the deadline at the latest; curl shortens the wait to its own timers. */
        int wait_ms = left >= 0.1 ? 100 : (int)(left * 1000) + 1;
        if (curl_multi_poll(multi, NULL, 0, wait_ms, NULL) != CURLM_OK) { w->broken = 1; break; }
    }
    w->ended = now();
    for (long i = 0; i < added; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    if (multi) curl_multi_cleanup(multi);
    if (w->epoll >= 0) close(w->epoll);
    free(easy);
    curl_slist_free_all(headers);
    return NULL;
}

static int positive_long(const char *text, long *out) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < 1 || value > 100000) return 0;
    *out = value;
    return 1;
}

int main(int argc, char **argv) {
    long threads, handles;
    double seconds = 0;
    char *end = NULL;
    int socket_mode = argc == 6 && strcmp(argv[5], "socket") == 0;
    if (argc == 5 || argc == 6) {
        errno = 0;
        seconds = strtod(argv[4], &end);
    }
    if ((argc != 5 && argc != 6) || (argc == 6 && !socket_mode && strcmp(argv[5], "perform") != 0) || !positive_long(argv[2], &threads) || !positive_long(argv[3], &handles) || errno || end == argv[4] ||
        *end || !(seconds > 0 && seconds <= 3600) || threads > 1024) {
        fprintf(stderr, "usage: curl-floor URL THREADS HANDLES_PER_THREAD SECONDS [perform|socket]\n"
                        "  THREADS 1-1024, HANDLES_PER_THREAD 1-100000, SECONDS more than 0, at most 3600\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl-floor: curl_global_init failed\n");
        return 1;
    }
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) { perror("curl-floor"); return 1; }

    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double started = now();
    long created = 0;
    for (; created < threads; created++) {
        struct worker *w = &workers[created];
        w->url = argv[1];
        w->handles = handles;
        w->deadline = started + seconds;
        w->socket_mode = socket_mode;
        int error = pthread_create(&w->thread, NULL, run, w);
        if (error) {
            /* The threads already running stop at the deadline; the run counts as failed. */
            fprintf(stderr, "curl-floor: pthread_create: %s\n", strerror(error));
            break;
        }
    }
    long ok = 0, failed = 0;
    int broken = created < threads;
    double ended = started;
    for (long i = 0; i < created; i++) {
        pthread_join(workers[i].thread, NULL);
        ok += workers[i].ok;
        failed += workers[i].failed;
        broken |= workers[i].broken;
        if (workers[i].ended > ended) ended = workers[i].ended;
    }
    getrusage(RUSAGE_SELF, &after);
    free(workers);
    curl_global_cleanup();

    double elapsed = ended - started;
    double user = cpu_seconds(after.ru_utime) - cpu_seconds(before.ru_utime);
    double sys = cpu_seconds(after.ru_stime) - cpu_seconds(before.ru_stime);
    long completed = ok + failed;
    printf("%ld requests (%ld failed) in %.2f s: %.0f requests/s; CPU %.2f user + %.2f sys s, %.3f CPU-s per 1,000 requests\n",
           ok, failed, elapsed, elapsed > 0 ? (double)ok / elapsed : 0.0, user, sys,
           completed > 0 ? (user + sys) / (double)completed * 1000 : 0.0);
    if (broken) fprintf(stderr, "curl-floor: a libcurl call failed; the figures cover what completed before it\n");
    return ok > 0 && !broken ? 0 : 1;
}
