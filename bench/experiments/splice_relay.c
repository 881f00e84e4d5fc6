// Download relay experiment: source -> relay -> sink over loopback TCP.
// mode copy: read up to 64 KiB, writev(header, payload)  (what websocksy does)
// mode splice: splice(src -> pipe), send(header, MSG_MORE), splice(pipe -> sink)
// Prints GiB/s and the relay thread's user/sys CPU seconds per GiB.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
static long long total = 1LL << 30;

static int listener(int *port) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (void *)&a, sizeof a);
    listen(l, 4);
    socklen_t n = sizeof a;
    getsockname(l, (void *)&a, &n);
    *port = ntohs(a.sin_port);
    return l;
}
static int dial(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (void *)&a, sizeof a)) { perror("connect"); exit(1); }
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}
static void *source(void *arg) {
    int s = (int)(long)arg;
    static char buf[CHUNK];
    memset(buf, 'x', sizeof buf);
    for (;;) if (write(s, buf, sizeof buf) <= 0) break;
    return NULL;
}
static void *sink(void *arg) {
    int s = (int)(long)arg;
    static char buf[1 << 20];
    long long got = 0;
    ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) got += n;
    return NULL;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    int use_splice = argc > 1 && !strcmp(argv[1], "splice");
    if (argc > 2) total = atoll(argv[2]) << 20;
    int p1, p2;
    int l1 = listener(&p1), l2 = listener(&p2);
    int src_w = dial(p1), src = accept(l1, NULL, NULL);
    int dst = dial(p2), sink_r = accept(l2, NULL, NULL);
    int one = 1;
    setsockopt(src, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t a, b;
    pthread_create(&a, NULL, source, (void *)(long)src_w);
    pthread_create(&b, NULL, sink, (void *)(long)sink_r);
    int pfd[2];
    if (pipe2(pfd, 0)) { perror("pipe"); return 1; }
    fcntl(pfd[1], F_SETPIPE_SZ, CHUNK);
    static char buf[CHUNK];
    unsigned char hdr[10];
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    double t0 = now();
    long long moved = 0, calls = 0;
    while (moved < total) {
        ssize_t n;
        if (use_splice) {
            n = splice(src, NULL, pfd[1], NULL, CHUNK, SPLICE_F_MOVE);
        } else {
            n = read(src, buf, CHUNK);
        }
        if (n <= 0) { perror("read"); return 1; }
        size_t h;
        hdr[0] = 0x82;
        if (n < 126) { hdr[1] = n; h = 2; }
        else if (n < 65536) { hdr[1] = 126; hdr[2] = n >> 8; hdr[3] = n; h = 4; }
        else { hdr[1] = 127; memset(hdr + 2, 0, 8); hdr[7] = 0; hdr[8] = n >> 8; hdr[9] = n; hdr[7] = n >> 16; h = 10; }
        if (use_splice) {
            if (send(dst, hdr, h, MSG_MORE) != (ssize_t)h) { perror("send"); return 1; }
            ssize_t left = n;
            while (left > 0) {
                ssize_t m = splice(pfd[0], NULL, dst, NULL, left, SPLICE_F_MOVE | SPLICE_F_MORE);
                if (m <= 0) { perror("splice out"); return 1; }
                left -= m;
                calls++;
            }
            calls += 2;
        } else {
            struct iovec v[2] = {{hdr, h}, {buf, n}};
            ssize_t want = h + n, off = 0;
            while (off < want) {
                ssize_t m = writev(dst, v, 2);
                if (m <= 0) { perror("writev"); return 1; }
                off += m;
                // advance iovecs
                while (m > 0) {
                    if ((size_t)m >= v[0].iov_len) { m -= v[0].iov_len; v[0] = v[1]; v[1].iov_len = 0; }
                    else { v[0].iov_base = (char *)v[0].iov_base + m; v[0].iov_len -= m; m = 0; }
                }
                calls++;
            }
            calls++;
        }
        moved += n;
    }
    double secs = now() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    double u = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
    double s = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    double gib = moved / (double)(1 << 30);
    printf("%s gib_s=%.2f cpu_per_gib=%.3f user=%.3f sys=%.3f calls_per_gib=%.0f\n", use_splice ? "splice" : "copy",
           gib / secs, (u + s) / gib, u / gib, s / gib, calls / gib);
    fflush(stdout);
    _exit(0);
}
