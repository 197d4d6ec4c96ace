/* The floor for RTP pacing on this machine: what the kernel and scheduler
 * alone allow, with no SIP, no codec, no flow.
 *
 * "Server" streams, like `ivr serve`'s media tick: one thread sends one
 * 172-byte packet every 20 ms to each of N receiving sockets, all at once
 * (a sendto each). In `both` mode (the default) there are as many "caller"
 * streams, like benches/loadgen.rs's bulk callers: a second thread sends one
 * packet every 20 ms to each of N other sockets, the streams spread over the
 * 20 ms in 1 ms slots, 64 packets per sendmmsg. So the floor paces the same
 * 2 x N x 50 packets/s as a bidirectional run. Each direction has its
 * receiver thread (as the generator and the server each receive one
 * direction), which timestamps every packet (epoll) and keeps the gaps
 * between a socket's packets.
 *
 * The first line is the gaps of the server streams, which are what the
 * probes of bench/loadgen.sh time; the second counts packets sent and
 * received in each direction, and the callers' gaps.
 *
 *   gcc -O2 -pthread -o /tmp/rtp-floor bench/floor.c && /tmp/rtp-floor 5000 20 [both|oneway]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Gaps in 0.01 ms bins up to 2 s (longer ones land in the last bin), and the exact maximum. */
#define BINS 200000
struct hist {
    long bins[BINS];
    long n;
    double max;
};

static void hist_add(struct hist *h, double ms) {
    long i = (long)(ms * 100);
    if (i < 0) i = 0;
    if (i >= BINS) i = BINS - 1;
    h->bins[i]++;
    h->n++;
    if (ms > h->max) h->max = ms;
}

static double hist_q(const struct hist *h, double q) {
    if (h->n == 0) return 0;
    long rank = (long)((h->n - 1) * q + 0.5), seen = 0;
    for (long i = 0; i < BINS; i++) {
        seen += h->bins[i];
        if (seen > rank) return i / 100.0;
    }
    return h->max;
}

struct direction {
    int n, *rx;
    struct sockaddr_in *addr;
    double *last;
    long received, sent;
    struct hist gaps;
};

static int n, secs;
static volatile int done;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *receiver(void *arg) {
    struct direction *d = arg;
    int ep = epoll_create1(0);
    for (int i = 0; i < d->n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, d->rx[i], &e);
    }
    struct epoll_event ev[256];
    char buf[2048];
    while (!done) {
        int k = epoll_wait(ep, ev, 256, 100);
        for (int j = 0; j < k; j++) {
            int i = ev[j].data.u32;
            while (recv(d->rx[i], buf, sizeof buf, MSG_DONTWAIT) > 0) {
                double t = now_ms();
                if (d->last[i] > 0) hist_add(&d->gaps, t - d->last[i]);
                d->last[i] = t;
                d->received++;
            }
        }
    }
    return NULL;
}

static void open_direction(struct direction *d, int count) {
    d->n = count;
    d->rx = calloc(count, sizeof *d->rx);
    d->addr = calloc(count, sizeof *d->addr);
    d->last = calloc(count, sizeof *d->last);
    for (int i = 0; i < count; i++) {
        d->rx[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (d->rx[i] < 0) {
            perror("socket (raise the open-files limit)");
            exit(1);
        }
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bind(d->rx[i], (struct sockaddr *)&a, sizeof a);
        socklen_t l = sizeof d->addr[i];
        getsockname(d->rx[i], (struct sockaddr *)&d->addr[i], &l);
    }
}

static void next_tick(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000) { t->tv_sec++; t->tv_nsec -= 1000000000; }
}

/* The server's tick: every 20 ms, a packet to every stream, one sendto each. */
static void *server_sender(void *arg) {
    struct direction *d = arg;
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    char pkt[172];
    memset(pkt, 0xff, sizeof pkt);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int tick = 0; tick < secs * 50; tick++) {
        for (int i = 0; i < d->n; i++)
            if (sendto(tx, pkt, sizeof pkt, 0, (struct sockaddr *)&d->addr[i], sizeof d->addr[i]) > 0) d->sent++;
        next_tick(&next, 20000000);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return NULL;
}

/* The callers: stream i in 1 ms slot i % 20, 64 packets per sendmmsg. */
static void *caller_sender(void *arg) {
    struct direction *d = arg;
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    static char pkt[172];
    memset(pkt, 0xff, sizeof pkt);
    struct iovec iov = {.iov_base = pkt, .iov_len = sizeof pkt};
    struct mmsghdr msgs[64];
    memset(msgs, 0, sizeof msgs);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (long slot = 0; slot < (long)secs * 50 * 20; slot++) {
        int k = 0;
        for (int i = slot % 20; i < d->n; i += 20) {
            msgs[k].msg_hdr.msg_name = &d->addr[i];
            msgs[k].msg_hdr.msg_namelen = sizeof d->addr[i];
            msgs[k].msg_hdr.msg_iov = &iov;
            msgs[k].msg_hdr.msg_iovlen = 1;
            if (++k == 64 || i + 20 >= d->n) {
                for (int off = 0; off < k;) {
                    int r = sendmmsg(tx, msgs + off, k - off, 0);
                    if (r <= 0) { off++; continue; }
                    d->sent += r;
                    off += r;
                }
                k = 0;
            }
        }
        next_tick(&next, 1000000);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atoi(argv[1]) : 1000;
    secs = argc > 2 ? atoi(argv[2]) : 10;
    int both = !(argc > 3 && strcmp(argv[3], "oneway") == 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static struct direction server, caller;
    open_direction(&server, n);
    if (both) open_direction(&caller, n);
    pthread_t rs, rc, ss, sc;
    pthread_create(&rs, NULL, receiver, &server);
    if (both) pthread_create(&rc, NULL, receiver, &caller);
    pthread_create(&ss, NULL, server_sender, &server);
    if (both) pthread_create(&sc, NULL, caller_sender, &caller);
    pthread_join(ss, NULL);
    if (both) pthread_join(sc, NULL);
    usleep(200000);
    done = 1;
    pthread_join(rs, NULL);
    if (both) pthread_join(rc, NULL);
    printf("floor: %d calls x %d s: %ld gaps, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", n, secs, server.gaps.n,
           hist_q(&server.gaps, 0.5), hist_q(&server.gaps, 0.99), server.gaps.max);
    printf("floor packets: server streams %ld of %ld received", server.received, server.sent);
    if (both)
        printf(", caller streams %ld of %ld received (their gaps p50 %.1f ms, p99 %.1f ms, max %.1f ms)", caller.received,
               caller.sent, hist_q(&caller.gaps, 0.5), hist_q(&caller.gaps, 0.99), caller.gaps.max);
    printf("\n");
    return 0;
}
