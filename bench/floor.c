/* The floor for RTP pacing on this machine: a minimal C sender sends one
 * 172-byte packet every 20 ms to each of N receiving sockets; a receiver
 * thread (epoll) timestamps every packet and reports the inter-packet gaps.
 * No SIP, no codec, no flow: what the kernel and scheduler alone allow.
 *
 *   gcc -O2 -pthread -o /tmp/rtp-floor bench/floor.c && /tmp/rtp-floor 5000 20
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static int n, secs, *rx;
static struct sockaddr_in *addr;
static double *last, *gaps;
static long ngaps, maxgaps;
static volatile int done;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *receiver(void *arg) {
    (void)arg;
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, rx[i], &e);
    }
    struct epoll_event ev[256];
    char buf[2048];
    while (!done) {
        int k = epoll_wait(ep, ev, 256, 100);
        for (int j = 0; j < k; j++) {
            int i = ev[j].data.u32;
            while (recv(rx[i], buf, sizeof buf, MSG_DONTWAIT) > 0) {
                double t = now_ms();
                if (last[i] > 0 && ngaps < maxgaps) gaps[ngaps++] = t - last[i];
                last[i] = t;
            }
        }
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    n = argc > 1 ? atoi(argv[1]) : 1000;
    secs = argc > 2 ? atoi(argv[2]) : 10;
    rx = calloc(n, sizeof *rx);
    addr = calloc(n, sizeof *addr);
    last = calloc(n, sizeof *last);
    maxgaps = (long)n * secs * 50 + 1000;
    gaps = malloc(maxgaps * sizeof *gaps);
    for (int i = 0; i < n; i++) {
        rx[i] = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bind(rx[i], (struct sockaddr *)&a, sizeof a);
        socklen_t l = sizeof addr[i];
        getsockname(rx[i], (struct sockaddr *)&addr[i], &l);
    }
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    pthread_t th;
    pthread_create(&th, NULL, receiver, NULL);
    char pkt[172];
    memset(pkt, 0xff, sizeof pkt);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int tick = 0; tick < secs * 50; tick++) {
        for (int i = 0; i < n; i++) sendto(tx, pkt, sizeof pkt, 0, (struct sockaddr *)&addr[i], sizeof addr[i]);
        next.tv_nsec += 20000000;
        if (next.tv_nsec >= 1000000000) { next.tv_sec++; next.tv_nsec -= 1000000000; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    usleep(200000);
    done = 1;
    pthread_join(th, NULL);
    qsort(gaps, ngaps, sizeof *gaps, cmp);
    printf("floor: %d calls x %d s: %ld gaps, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", n, secs, ngaps,
           gaps[ngaps / 2], gaps[(long)(ngaps * 0.99)], gaps[ngaps - 1]);
    return 0;
}
