// udp_blast DST PORT COUNT PAYLOAD PPS: COUNT datagrams, sendmmsg in batches of 32, paced to
// PPS (0: flat out).  Prints "sent N elapsed_ns T".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: udp_blast DST PORT COUNT PAYLOAD PPS\n"); return 2; }
    long count = atol(argv[3]), size = atol(argv[4]);
    double pps = atof(argv[5]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) { perror("socket"); return 1; }
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    enum { B = 32 };
    static char buf[B][2048];
    struct iovec iov[B];
    struct mmsghdr msg[B];
    memset(msg, 0, sizeof msg);
    for (int i = 0; i < B; i++) {
        iov[i].iov_base = buf[i]; iov[i].iov_len = size;
        msg[i].msg_hdr.msg_iov = &iov[i]; msg[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0;
    int64_t t0 = now();
    while (sent < count) {
        int n = count - sent < B ? (int)(count - sent) : B;
        if (pps > 0) {
            int64_t due = t0 + (int64_t)((sent + n) * 1e9 / pps);
            while (now() < due) ;
        }
        for (int i = 0; i < n; i++) { uint64_t s = sent + i; memcpy(buf[i], &s, 8); }
        int r = sendmmsg(fd, msg, n, 0);
        if (r < 0) {
            // ENOBUFS/EAGAIN: the queue is full; ECONNREFUSED: an ICMP port unreachable came
            // back on this connected socket (the AF_PACKET run has no UDP listener) -- retry
            if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) continue;
            perror("sendmmsg"); return 1;
        }
        sent += r;
    }
    printf("sent %ld elapsed_ns %lld\n", sent, (long long)(now() - t0));
    return 0;
}
